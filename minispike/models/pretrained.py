"""What the teacher's and the student's checkpoint directories share.

Both are written by ``save_pretrained(dir, tokenizer=...)`` in the layout of every BERT
checkpoint on the hub (``config.json``, ``model.safetensors``, tokenizer files) and read by
``from_pretrained(dir)``. This module holds the parts they have in common:

* the tokenizer files a checkpoint carries (``tokenizer_files``), and
* the task a fine-tuned checkpoint was trained for, in ``config.json`` as transformers names it:

      "id2label":  {"0": "negative", "1": "positive"}     class index (a string) -> label name
      "label2id":  {"negative": 0, "positive": 1}         the inverse
      "task":      "sst2"                                  the task it was trained on
      "max_length": 64                                     tokens per sentence it was trained with

  ``task_fields`` writes them, ``checkpoint_task`` reads them back (``None`` where an older
  checkpoint has none).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from ..io.checkpoint import CheckpointError

__all__ = ["TOKENIZER_FILES", "tokenizer_files", "task_fields", "checkpoint_task", "CheckpointTask"]

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "vocab_extension.json")


def tokenizer_files(tokenizer):
    """(files, writer) for ``io.save_checkpoint`` from what a user passes as ``tokenizer``.

    An object with ``save_pretrained(dir)`` (minispike's Tokenizer) becomes the writer; a
    ``tokenizers.Tokenizer`` is saved as tokenizer.json; a file is copied; a directory gives its
    vocabulary files (``TOKENIZER_FILES``)."""
    if tokenizer is None:
        return None, None
    if hasattr(tokenizer, "save_pretrained"):
        return None, tokenizer.save_pretrained
    if type(tokenizer).__module__.startswith("tokenizers"):
        return {"tokenizer.json": lambda dest: tokenizer.save(dest)}, None
    src = os.fspath(tokenizer)
    if os.path.isfile(src):
        return {os.path.basename(src): _Path(src)}, None
    if os.path.isdir(src):
        found = {f: _Path(os.path.join(src, f)) for f in TOKENIZER_FILES if os.path.isfile(os.path.join(src, f))}
        if not found:
            raise CheckpointError(f"{src}: no tokenizer files ({', '.join(TOKENIZER_FILES)}) in the directory")
        return found, None
    raise CheckpointError(f"{src}: tokenizer path does not exist")


class _Path(os.PathLike):
    """A source path for ``save_checkpoint``'s ``files`` (copied, not read as text)."""

    def __init__(self, p):
        self.p = p

    def __fspath__(self):
        return self.p


def task_fields(label_names, task=None, max_length=None) -> dict:
    """The config.json fields that name a checkpoint's classes, task and length."""
    names = [str(n) for n in label_names]
    if len(set(names)) != len(names):
        raise ValueError(f"label names must differ, got {names}")
    fields = {"id2label": {str(i): n for i, n in enumerate(names)}, "label2id": {n: i for i, n in enumerate(names)}}
    if task is not None:
        fields["task"] = str(task)
    if max_length is not None:
        fields["max_length"] = int(max_length)
    return fields


@dataclass
class CheckpointTask:
    """What a checkpoint's config.json says about its task (``None``: not said)."""

    task: str | None
    max_length: int | None
    label_names: list | None


def checkpoint_task(config: dict) -> CheckpointTask:
    """The task, length and label names in a checkpoint's config.json (a dict)."""
    id2label = config.get("id2label")
    names = None
    if isinstance(id2label, dict) and id2label:
        names = [id2label[k] for k in sorted(id2label, key=int)]
        if all(n == f"LABEL_{i}" for i, n in enumerate(names)):  # transformers' placeholders: no names
            names = None
    length = config.get("max_length")
    return CheckpointTask(config.get("task"), int(length) if length is not None else None, names)
