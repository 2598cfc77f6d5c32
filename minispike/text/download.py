"""Fetch the task files from their pinned public URLs, verify sha256, write atomically.

For every file of a task:  stream the bytes into ``<dest>.part-<pid>`` next to the destination,
hashing as they arrive; if the byte count disagrees with Content-Length or

    sha256(bytes) != the pinned checksum (see tasks.py / ../shared/data/README.md)

the partial file is deleted and :class:`ChecksumError` names the file, the URL and both digests;
otherwise ``os.replace`` moves it into place (atomic on POSIX and Windows), so an interrupted or
refused download never leaves a file at the destination.  A file already present with the right
checksum is left alone.

Command line (wired by ``minispike.cli``):  ``python -m minispike download TASK|all [--data-dir DIR]
[--from DIR] [--base-url URL]``; see :func:`add_download_arguments` and :func:`run_download`.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from .tasks import TASKS, DataError, get_task, is_inside_relative, resolve_data_dir

CHUNK = 1 << 16


class ChecksumError(DataError):
    """A fetched or copied file does not match its pinned sha256; nothing was written."""


class DownloadError(DataError):
    """A file could not be fetched (network, HTTP status, truncated transfer); nothing was written."""


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch_to(src_desc: str, reader, expected_len, dest: Path, sha: str) -> None:
    """Stream ``reader`` into a temp file beside ``dest``, verify, then os.replace.  A file-system
    fault (read-only directory, full disk, a file where a directory belongs) is a DownloadError
    naming the path; the temp file is removed either way."""
    blocking = next((p for p in (dest.parent, *dest.parent.parents) if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise DownloadError(f"{blocking}: is a file, expected a directory (to hold {dest})")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"{e.filename or dest.parent}: cannot create the directory: {e.strerror}") from None
    tmp = dest.with_name(f"{dest.name}.part-{os.getpid()}")
    h = hashlib.sha256()
    n = 0
    try:
        with _writing(dest):
            f = open(tmp, "wb")
        with f:
            while True:
                chunk = reader.read(CHUNK)
                if not chunk:
                    break
                h.update(chunk)
                with _writing(dest):
                    f.write(chunk)
                n += len(chunk)
            with _writing(dest):
                f.flush()
                os.fsync(f.fileno())
        if expected_len is not None and n != expected_len:
            raise DownloadError(f"{dest.name}: transfer from {src_desc} stopped after {n} of {expected_len} bytes; "
                                f"nothing written")
        got = h.hexdigest()
        if got != sha:
            raise ChecksumError(f"refusing {src_desc}: sha256 mismatch for {dest}: expected {sha}, got {got}; "
                                f"the file differs from the pinned published version; nothing was written")
        with _writing(dest):
            os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def _writing(dest: Path):
    """Turn a file-system fault while writing (full disk, read-only directory) into a DownloadError naming ``dest``."""
    try:
        yield
    except OSError as e:
        raise DownloadError(f"{dest}: cannot write: {e.strerror}; nothing written") from None


def destination(root: Path, rel: str) -> Path:
    """``root / rel``, refused unless it lies inside ``root`` (no absolute path, no '..', no symlink out)."""
    dest = Path(root) / rel
    if not is_inside_relative(rel) or not dest.resolve().is_relative_to(Path(root).resolve()):
        raise DownloadError(f"download source {rel!r}: expected a path inside the data directory {root}; "
                            f"refusing to write outside it")
    return dest


def _tasks_for(task) -> list:
    if task == "all":
        return [t for t in TASKS.values() if t.sources]
    names = [task] if isinstance(task, str) else list(task)
    out = []
    for name in names:
        t = get_task(name)
        if not t.sources:
            raise DataError(f"task {t.name} has no public source to download (it is local or built in)")
        out.append(t)
    return out


def download(task="all", data_dir=None, base_url: str | None = None, from_dir=None, timeout: float = 60.0,
             force: bool = False, log=None) -> list[Path]:
    """Fetch the files of ``task`` (a name, a list of names, or ``"all"``) into ``data_dir``.

    ``data_dir`` defaults as in :func:`minispike.text.tasks.resolve_data_dir`.  ``base_url`` replaces
    the public URLs by ``base_url + "/" + relative path`` (a mirror laid out like the data
    directory, e.g. ``sst2/train.txt``); ``from_dir`` copies from a local folder with that layout
    instead of fetching.  Every file is verified against its pinned sha256 and written atomically.
    Files already present with the right checksum are skipped (unless ``force``).  Returns the
    paths of the task files; raises :class:`ChecksumError` / :class:`DownloadError` (both
    :class:`DataError`) listing every file that failed after trying them all.
    """
    log = log or (lambda msg: None)
    dest_root = resolve_data_dir(data_dir)
    done, errors = [], []
    for t in _tasks_for(task):
        for rel, src in t.sources.items():
            dest = destination(dest_root, rel)
            if dest.is_file() and not force and sha256_file(dest) == src.sha256:
                log(f"{rel}: present, checksum ok")
                done.append(dest)
                continue
            try:
                if from_dir is not None:
                    path = Path(from_dir) / rel
                    if not path.is_file():
                        raise DownloadError(f"{rel}: not found in {from_dir} (expected {path})")
                    with open(path, "rb") as f:
                        _fetch_to(str(path), f, path.stat().st_size, dest, src.sha256)
                else:
                    url = base_url.rstrip("/") + "/" + rel if base_url else src.url
                    log(f"{rel}: fetching {url}")
                    try:
                        req = urllib.request.Request(url, headers={"User-Agent": "minispike"})
                        with urllib.request.urlopen(req, timeout=timeout) as resp:
                            length = resp.headers.get("Content-Length")
                            _fetch_to(url, resp, int(length) if length else None, dest, src.sha256)
                    except urllib.error.HTTPError as e:
                        raise DownloadError(f"{rel}: HTTP {e.code} {e.reason} from {url}") from None
                    except (urllib.error.URLError, OSError, TimeoutError) as e:
                        if isinstance(e, DataError):
                            raise
                        reason = getattr(e, "reason", e)
                        raise DownloadError(f"{rel}: cannot fetch {url}: {reason}") from None
                log(f"{rel}: ok, sha256 verified")
                done.append(dest)
            except DataError as e:  # reported once, with the others, when every file has been tried
                errors.append(e)
    if errors:
        kind = ChecksumError if all(isinstance(e, ChecksumError) for e in errors) else DownloadError
        msg = " | ".join(str(e) for e in errors)
        raise kind(f"{len(errors)} file(s) failed: {msg}" if len(errors) > 1 else msg)
    return done


def add_download_arguments(parser) -> None:
    """Add the ``download`` sub-command's arguments to an argparse parser."""
    parser.add_argument("task", help="a task name (" + ", ".join(t for t in TASKS if TASKS[t].sources) + ") or 'all'")
    parser.add_argument("--data-dir", default=None, help="where to put the files (default: $MINISPIKE_DATA, "
                        "else ~/.cache/minispike/data)")
    parser.add_argument("--from", dest="from_dir", default=None, metavar="DIR",
                        help="copy and verify from a local folder laid out like the data directory")
    parser.add_argument("--base-url", default=None, help="fetch from a mirror laid out like the data directory")
    parser.add_argument("--force", action="store_true", help="fetch again even when a verified file is present")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a server (default 60)")


def run_download(args) -> int:
    """Run the ``download`` sub-command; raises DataError (one-line message for the CLI) on failure."""
    paths = download(args.task, data_dir=args.data_dir, base_url=args.base_url, from_dir=args.from_dir,
                     timeout=args.timeout, force=args.force, log=lambda m: print(m, file=sys.stderr))
    print(f"{len(paths)} file(s) verified in {resolve_data_dir(args.data_dir)}")
    return 0
