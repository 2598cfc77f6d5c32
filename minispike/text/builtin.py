"""The built-in demo dataset: 292 short English sentences (146 negative, 146 positive) about films,
food, travel, products and everyday life, written for minispike (not taken from any dataset;
released with the project under its licence, and CC0 for the sentences themselves).

File: ``builtin_sentences.tsv`` next to this module, header ``label<TAB>text``, 0 = negative,
1 = positive.  Registered as task ``builtin`` with the same hashed 80/10/10 split as MR/Subj, so
the demo and the examples run with no data directory and no download.
"""
from __future__ import annotations

from pathlib import Path

from .tasks import TaskData, get_task, load_task

BUILTIN_FILE = Path(__file__).resolve().parent / "builtin_sentences.tsv"


def load_builtin(split: str = "train") -> TaskData:
    """``load_task("builtin", split)``: 232 train / 30 dev / 30 test examples."""
    return load_task("builtin", split)


def builtin_texts() -> list[str]:
    """Every sentence of the built-in set (all splits)."""
    return load_task("builtin", "all").texts


def builtin_tokenizer(vocab_size: int = 2000):
    """A small WordPiece tokenizer built from the built-in sentences (no download needed)."""
    from .tokenizer import Tokenizer
    return Tokenizer.build_wordpiece(builtin_texts(), vocab_size=vocab_size)


BUILTIN_TASK = get_task("builtin")
