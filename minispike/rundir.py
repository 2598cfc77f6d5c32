"""A run directory: what it holds, who writes it, and when a new run may use it.

    DIR/config.json        the settings the run started with: train, model, and the stage's
                           own settings (task, teacher, preset, augmentation, ...)
    DIR/log.jsonl          one JSON object a line per event (start, train, eval, resume, end)
    DIR/checkpoints/last   the resumable checkpoint (weights, optimizer, step, data position, RNG)
    DIR/checkpoints/best   the best dev checkpoint (what evaluate, predict and energy load)
    DIR/metrics.json       the final numbers, written once at the end
    DIR/.lock              "pid host time" of the process writing the run, while it runs

A full run (``run``, ``demo``) is a directory of such stage directories (teacher/, stage1/,
stage2/, direct/) with summary.json and energy*.json beside them.

Every training stage starts with ``claim(DIR, resume=, overwrite=, settings=)``:

1. lock: DIR/.lock is created exclusively (``O_EXCL``: of two processes one wins). A lock
   held by a live process is refused, naming its pid and host; a lock whose process is gone
   (same host, no such pid) is stale: said, and taken over.
2. what DIR holds: a directory that holds a run is refused, naming what it holds, unless
   ``resume``    continue it: it must hold a checkpoint, and the settings must be the same
                 (``CHANGEABLE`` lists the few that may differ), or
   ``overwrite`` DIR is moved aside to DIR.old-YYYYmmdd-HHMMSS (nothing is deleted).
3. what a crash left is repaired (``io.checkpoint.repair_checkpoints``).

The lock is released when the ``with`` block ends, normally or by an error; a claim of a
directory this process already holds (a stage inside ``run``) is a no-op. ``read_log`` is
the one reader of log.jsonl: resume, plot, compare and report all use it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import json
import os
import socket
import sys
import time

from .io.checkpoint import read_json, repair_checkpoints

__all__ = ["RunDirError", "claim", "claims_run_dir", "holdings", "has_checkpoint", "differences", "normalise",
           "refuse_changed", "flat_settings", "read_log", "note", "CHANGEABLE", "LOCK_NAME"]

LOCK_NAME = ".lock"
RUN_FILES = ("config.json", "log.jsonl", "checkpoints", "metrics.json", "summary.json", "energy.json")
STAGE_DIRS = ("teacher", "stage1", "stage2", "direct", "small-teacher")
# settings that may differ on --resume (they change how often things are recorded, not the result)
CHANGEABLE = ("train.eval_every", "train.checkpoint_every", "settings.stage.quiet", "settings.stage.eval_batch_size",
              "settings.stage.cache_dir")
HOW_TO_OPEN = ("resume", "overwrite")  # how this command treats the directory: not settings of the run
PATH_SETTINGS = ("teacher", "student_init", "data_dir", "cache_dir", "corpus_files")


class RunDirError(ValueError):
    """A run directory that cannot be used as asked: shown as one line by the CLI."""


def note(message):
    """Tell the user something they should know but that does not stop the run (stderr)."""
    print(f"minispike: {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------
# What a directory holds
# ----------------------------------------------------------------------------------------
def holdings(path):
    """The run files and stage directories in ``path`` (empty: it holds no run)."""
    if not os.path.isdir(path):
        return []
    found = [f for f in RUN_FILES if os.path.exists(os.path.join(path, f))]
    found += [f"{d}/" for d in STAGE_DIRS if holdings(os.path.join(path, d))]
    return found


def _describe(path, found):
    what = ", ".join(found)
    if os.path.isfile(os.path.join(path, "metrics.json")) or os.path.isfile(os.path.join(path, "summary.json")):
        return f"a finished run ({what})"
    return f"a run ({what})"


def has_checkpoint(path):
    """Whether --resume can continue ``path``: its checkpoints/last (or the backup an interrupted
    save left), or, for a full run, that of one of its stages."""
    ckpts = os.path.join(path, "checkpoints")
    if os.path.isdir(os.path.join(ckpts, "last")):
        return True
    if os.path.isdir(ckpts) and any(e.startswith(".last.old-") for e in os.listdir(ckpts)):
        return True
    return any(has_checkpoint(os.path.join(path, d)) for d in STAGE_DIRS if os.path.isdir(os.path.join(path, d)))


# ----------------------------------------------------------------------------------------
# The lock
# ----------------------------------------------------------------------------------------
def _alive(pid):
    if os.name == "nt":  # there os.kill(pid, 0) would send CTRL_C_EVENT: assume the owner lives
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _read_lock(lock):
    try:
        with open(lock, encoding="utf-8") as f:
            pid, host, started = f.read().split(None, 2)
        return int(pid), host, started.strip()
    except (OSError, ValueError):
        return None


def _acquire(path):
    """Create ``path``/.lock for this process, or refuse naming the live owner."""
    lock = os.path.join(path, LOCK_NAME)
    me = (os.getpid(), socket.gethostname())
    for _ in range(3):  # a stale lock removed, or a racing owner that just released it: try again
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _read_lock(lock)
            if owner is None:  # being written by its owner this very moment, or torn by a kill
                time.sleep(0.1)
                owner = _read_lock(lock)
            if owner is not None and owner[1] != me[1]:
                raise RunDirError(
                    f"{path} is locked by process {owner[0]} on host {owner[1]} (since {owner[2]}); wait for it "
                    f"to finish, or if it is gone, delete {lock}") from None
            if owner is not None and owner[0] != me[0] and _alive(owner[0]):
                raise RunDirError(
                    f"{path} is being written by process {owner[0]} on this host (since {owner[2]}): two runs "
                    f"must not share a directory; wait for it, stop it, or choose another --out") from None
            what = "unreadable" if owner is None else f"of process {owner[0]}, which is no longer running"
            note(f"{lock}: a stale lock ({what}, left by a run that was killed); taking it over")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"{me[0]} {me[1]} {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        return lock
    raise RunDirError(f"{path}: could not take the lock {lock}; is another run starting in it?")


def _release(lock):
    owner = _read_lock(lock)
    if owner is not None and owner[0] == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)


# ----------------------------------------------------------------------------------------
# Settings: what --resume compares
# ----------------------------------------------------------------------------------------
def flat_settings(d, prefix=""):
    """A nested config dict as one level of dotted keys: ``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flat_settings(v, key + "."))
        else:
            out[key] = v
    return out


def differences(stored, new):
    """``"key: old -> new"`` for every setting of ``new`` that differs from ``stored`` (both
    nested dicts as in config.json), except the ``CHANGEABLE`` ones; sections that ``stored``
    lacks (a run written by an older minispike) are not compared."""
    old = flat_settings({k: v for k, v in stored.items() if k in new})
    now = flat_settings({k: new[k] for k in new if k in stored})
    keys = [k for k in now if k not in CHANGEABLE and old.get(k, "(not set)") != now[k]]
    return [f"{k}: {json.dumps(old.get(k, '(not set)'))} -> {json.dumps(now[k])}" for k in keys]


def _jsonable(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return os.fspath(value) if isinstance(value, os.PathLike) else str(value)


def normalise(settings):
    """The settings as config.json will hold them (JSON types; paths made absolute)."""
    def walk(d):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v)
            elif k in PATH_SETTINGS and isinstance(v, str):
                d[k] = os.path.abspath(v)
            elif k in PATH_SETTINGS and isinstance(v, list):
                d[k] = [os.path.abspath(x) for x in v]
    out = json.loads(json.dumps(settings, default=_jsonable))
    walk(out)
    return out


def refuse_changed(path, stored, new):
    """Raise naming every difference between the settings ``path`` was started with and ``new``."""
    diffs = differences(stored, new)
    if diffs:
        allowed = ", ".join(k.rsplit(".", 1)[-1] for k in CHANGEABLE)
        raise RunDirError(f"--resume: {path} was started with other settings: {'; '.join(diffs)} "
                          f"(only {allowed} may change on --resume; start a new run with another --out, "
                          f"or --overwrite)")


# ----------------------------------------------------------------------------------------
# Claiming a directory
# ----------------------------------------------------------------------------------------
@dataclasses.dataclass
class Claim:
    path: str
    lock: str
    settings: dict | None = None  # the stage's own settings, for config.json
    depth: int = 1


_HELD: dict = {}  # absolute path -> Claim, the directories this process holds


def _move_aside(path, found):
    what = _describe(path, found)
    aside = f"{path}.old-{time.strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while os.path.exists(aside):
        aside, n = f"{path}.old-{time.strftime('%Y%m%d-%H%M%S')}-{n}", n + 1
    os.replace(path, aside)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(aside, LOCK_NAME))
    note(f"{path} held {what}: moved aside to {aside} (nothing was deleted)")
    return aside


@contextlib.contextmanager
def claim(path, *, resume=False, overwrite=False, expect=None):
    """Hold run directory ``path`` for the ``with`` block (see the module docstring).

    ``expect``: sections of config.json (``{"train": ..., "settings": ...}``) that a resumed
    run must match. Yields a ``Claim``; its ``settings`` (set by ``claims_run_dir``) are what
    the training loop records in config.json."""
    path = os.path.abspath(os.fspath(path))
    held = _HELD.get(path)
    if held is not None:  # already ours (a stage inside run): nothing to check again
        held.depth += 1
        try:
            yield held
        finally:
            held.depth -= 1
        return
    if resume and overwrite:
        raise RunDirError("--resume continues a run and --overwrite moves it aside: choose one")
    if os.path.exists(path) and not os.path.isdir(path):
        raise RunDirError(f"{path} exists and is a file, not a run directory; choose another --out")
    created = not os.path.exists(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"{path}: cannot create the run directory ({e.strerror})") from None
    lock = _acquire(path)
    try:
        found = holdings(path)
        if found and not resume:
            if not overwrite:
                raise RunDirError(
                    f"{path} already holds {_describe(path, found)}: continue it with --resume, start over with "
                    f"--overwrite (moves it aside to {os.path.basename(path)}.old-<date-time>), "
                    "or choose another --out")
            _move_aside(path, found)
            os.makedirs(path)
            lock = _acquire(path)
        if resume and not has_checkpoint(path):
            what = f"it holds {', '.join(found)} but no checkpoints/last" if found else "it holds no run"
            raise RunDirError(f"--resume: nothing to continue in {path} ({what}); start without --resume"
                              + (", with --overwrite" if found else ""))
        for d in (path, os.path.join(path, "checkpoints")):
            for line in repair_checkpoints(d):
                note(line)
        config = os.path.join(path, "config.json")
        if resume and expect is not None and os.path.isfile(config):
            refuse_changed(path, read_json(config, "config.json"), normalise(expect))
        held = _HELD[path] = Claim(path, lock)
        yield held
    finally:
        _HELD.pop(path, None)
        _release(lock)
        if created and not os.listdir(path):  # refused before it wrote anything: leave no empty directory
            os.rmdir(path)


def claims_run_dir(stage):
    """Decorator: ``stage(run_dir, cfg, train, ...)`` runs holding ``run_dir``; ``cfg.resume``
    and ``cfg.overwrite`` decide what happens to a run already there. ``cfg`` and every other
    argument are the run's settings, recorded in config.json and compared on --resume."""
    signature = inspect.signature(stage)

    @functools.wraps(stage)
    def wrapper(run_dir, cfg, *args, **kwargs):
        bound = signature.bind(run_dir, cfg, *args, **kwargs)
        bound.apply_defaults()
        named = list(bound.arguments.items())[2:]
        stage_cfg = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in HOW_TO_OPEN}
        settings = normalise({"stage": stage_cfg, **{k: v for k, v in named if k != "train"}})
        expect = {"settings": settings}
        if "train" in bound.arguments:  # select_metric is the stage's own choice, set after this
            expect["train"] = {k: v for k, v in dataclasses.asdict(bound.arguments["train"]).items()
                               if k != "select_metric"}
        with claim(run_dir, resume=cfg.resume, overwrite=getattr(cfg, "overwrite", False), expect=expect) as held:
            if held.depth == 1:
                held.settings = settings
            return stage(*bound.args, **bound.kwargs)
    return wrapper


# ----------------------------------------------------------------------------------------
# log.jsonl
# ----------------------------------------------------------------------------------------
def read_log(path):
    """The records of a run's ``log.jsonl``, one JSON object a line.

    A last line cut short (a run killed while writing it) is reported and skipped; any other
    line that is not a JSON object is an error naming the file and line.
    """
    path = os.fspath(path)
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    records = []
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            if n == last:
                note(f"{path}:{n + 1}: the last line is cut short (the run was stopped while writing it); skipped")
                break
            raise RunDirError(f"{path}:{n + 1}: not a JSON line ({e.msg})") from None
        if not isinstance(rec, dict):
            raise RunDirError(f"{path}:{n + 1}: not a JSON object")
        records.append(rec)
    return records
