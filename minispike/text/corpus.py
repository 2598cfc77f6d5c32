"""The unlabelled corpus of stage 1 (general distillation on text without labels).

    corpus(language) = dedup( train split of every available task of that language
                              + augmented sentences (optional) + user text files (one sentence a line) )
                       minus every sentence that occurs in a dev or test split of any available
                       task of that language (``exclude_eval``; e.g. MR shares sentences with SST)

Dev and test splits never contribute.  Size is reported in sentences and in tokens (word pieces
of the given tokenizer, else whitespace words for English and characters for Chinese).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .augment import split_words
from .tasks import DataError, get_task, list_tasks, load_task


@dataclass
class Corpus:
    sentences: list
    language: str
    sources: dict = field(default_factory=dict)      # source -> sentences it contributed (after dedup and exclusion)
    n_tokens: int = 0
    token_unit: str = "words"
    duplicates_dropped: int = 0
    eval_overlap_dropped: int = 0
    missing_tasks: list = field(default_factory=list)

    def __len__(self):
        return len(self.sentences)

    def __iter__(self):
        return iter(self.sentences)

    def summary(self) -> str:
        src = ", ".join(f"{k} {v}" for k, v in self.sources.items())
        s = (f"stage-1 corpus ({self.language}): {len(self.sentences)} sentences, {self.n_tokens} {self.token_unit} "
             f"[{src}]; dropped {self.duplicates_dropped} duplicates and {self.eval_overlap_dropped} sentences "
             f"found in dev/test splits")
        if self.missing_tasks:
            s += f"; tasks without data here: {', '.join(self.missing_tasks)}"
        return s

    __str__ = summary

    def write(self, path) -> None:
        Path(path).write_text("".join(s.replace("\n", " ") + "\n" for s in self.sentences), encoding="utf-8")


def read_text_file(path) -> list[str]:
    """One sentence per line (UTF-8, blank lines ignored)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"corpus file {path} not found") from None
    out = []
    for i, line in enumerate(raw.split(b"\n"), 1):
        try:
            s = line.decode("utf-8").strip()
        except UnicodeDecodeError as e:
            raise DataError(f"{path}:{i}: not UTF-8 ({e.reason} at byte {e.start}): {line[:80]!r}") from None
        if s:
            out.append(s)
    return out


def build_corpus(language: str = "en", tasks: Sequence[str] | None = None, data_dir=None,
                 extra_files: Sequence = (), augmented: Sequence[str] = (), tokenizer=None,
                 exclude_eval: bool = True, skip_bad: bool = False, include_builtin: bool | None = None) -> Corpus:
    """Build the stage-1 corpus; see the module docstring.

    ``tasks`` defaults to every published task (one with download sources) of ``language`` whose
    files are present; the built-in demo set only when no such English task is available, or when
    ``include_builtin``.  User tasks join through ``tasks=[...]`` (their dev/test are then
    excluded too) or ``extra_files``.
    """
    if tasks is None:
        cands = [t for t in list_tasks(language) if t.sources]          # the published tasks
        avail = [t for t in cands if t.available(data_dir)]
        missing = [t.name for t in cands if not t.available(data_dir)]
        use_builtin = include_builtin if include_builtin is not None else (not avail and language == "en")
        if use_builtin:
            avail.append(get_task("builtin"))
        task_objs = avail
    else:
        task_objs = [get_task(t) for t in tasks]
        missing = []
        for t in task_objs:
            if t.language != language:
                raise DataError(f"task {t.name} is {t.language}, the corpus is {language}")
    seen, sentences, sources, origin = set(), [], {}, []
    dups = 0

    def add(source, items):
        nonlocal dups
        n = 0
        for s in items:
            if s in seen:
                dups += 1
                continue
            seen.add(s)
            sentences.append(s)
            origin.append(source)
            n += 1
        sources[source] = sources.get(source, 0) + n

    for t in task_objs:
        add(f"{t.name}/train", load_task(t, "train", data_dir=data_dir, skip_bad=skip_bad).texts)
    if augmented:
        add("augmented", augmented)
    for f in extra_files:
        add(str(f), read_text_file(f))
    dropped = 0
    if exclude_eval:
        eval_tasks = {t.name: t for t in task_objs}
        for t in list_tasks(language):
            if t.sources and t.available(data_dir):
                eval_tasks.setdefault(t.name, t)
        held_out = set()
        for t in eval_tasks.values():
            for split in ("dev", "test"):
                if split in t.splits:
                    held_out.update(load_task(t, split, data_dir=data_dir, skip_bad=True).texts)
        keep = [s not in held_out for s in sentences]
        dropped = len(sentences) - sum(keep)
        sentences = [s for s, k in zip(sentences, keep) if k]
        origin = [o for o, k in zip(origin, keep) if k]
        sources = {src: origin.count(src) for src in sources}
    if tokenizer is not None:
        n_tokens = sum(len(ids) - 2 for ids in tokenizer.encode_ids(sentences, max_length=10**6))
        unit = "word pieces"
    else:
        n_tokens = sum(len(split_words(s, language)) for s in sentences)
        unit = "characters" if language == "zh" else "words"
    return Corpus(sentences, language, sources, n_tokens, unit, dups, dropped, missing)
