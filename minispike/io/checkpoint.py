"""Checkpoint directories, saved atomically.

A checkpoint is one directory in the layout every BERT checkpoint on the hub uses:

    config.json          the model's configuration (JSON object)
    model.safetensors    the tensors (name -> array)
    state.json           optional extra JSON state (step, epoch, optimizer scalars, RNG, ...)
    <other files>        optional: vocabulary / tokenizer files, ...

Atomicity: everything is written into a fresh temporary sibling directory
``.<name>.tmp-XXXX``; only when every file is complete (and fsynced) is it swapped in:

    1. rename the old directory (if any) to ``.<name>.old-<nanoseconds>``
    2. rename the temporary directory to ``<name>``
    3. delete the old directory

A crash before 2 leaves the old checkpoint untouched; a crash between 1 and 2 leaves the
old checkpoint complete under ``.<name>.old-<ns>``, which ``load_checkpoint`` falls back to
(the newest such backup, and says so). A half-written checkpoint is never visible under
``<name>``. ``repair_checkpoints(parent)``, called when a run starts, tidies what a crash
left: temporary directories are deleted, a backup whose checkpoint is missing is renamed
back to ``<name>``, other backups are deleted. JSON files are written atomically too
(temporary file, fsync, rename).

Generic: the student, the teacher and optimizer states all use
``save_checkpoint(dir, tensors, config, extra)`` / ``load_checkpoint(dir)``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field, fields

import numpy as np

from .safetensors import atomic_write, load_file, save_file

__all__ = ["Checkpoint", "CheckpointError", "save_checkpoint", "load_checkpoint",
           "CONFIG_NAME", "WEIGHTS_NAME", "STATE_NAME", "write_json", "read_json", "repair_checkpoints"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
STATE_NAME = "state.json"
OPTIMIZER_PREFIX = "optimizer."  # the names under which a training checkpoint keeps the optimizer's moments


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be saved or loaded; the message names the path."""


@dataclass
class Checkpoint:
    path: str
    tensors: dict
    config: dict
    extra: dict | None = None
    files: list = field(default_factory=list)

    @property
    def weights(self) -> dict:
        """The model's tensors: ``tensors`` without the optimizer state (``optimizer.*``) that a
        training checkpoint (``checkpoints/last``) carries beside them."""
        return {k: v for k, v in self.tensors.items() if not k.startswith(OPTIMIZER_PREFIX)}


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if hasattr(o, "tolist"):  # CuPy / strict arrays
        return o.tolist()
    raise TypeError(f"object of type {type(o).__name__} is not JSON serializable")


def write_json(path, obj):
    """Write ``obj`` as indented JSON to ``path`` atomically (a kill leaves the old file or the new)."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def read_json(path, what="JSON file"):
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: {what} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: {what} is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: {what} must hold a JSON object, got {type(obj).__name__}")
    return obj


def save_checkpoint(directory, tensors, config, extra=None, files=None, writer=None, dtypes=None,
                    metadata=None):
    """Atomically write a checkpoint directory; returns its path.

    ``tensors``: name -> array (NumPy, CuPy, strict or Tensor). ``config``: JSON-able dict.
    ``extra``: optional JSON-able dict saved as ``state.json``. ``files``: optional
    name -> bytes | str (text) | source path (``os.PathLike``) | callable(dest_path), for
    vocabulary and tokenizer files. ``writer``: optional callable(tmp_dir) writing more files
    (e.g. a tokenizer's ``save_pretrained``). ``dtypes``/``metadata``: passed to ``save_file``.
    """
    directory = os.path.abspath(os.fspath(directory))
    if not isinstance(config, dict):
        raise CheckpointError(f"{directory}: config must be a dict, got {type(config).__name__}")
    files = dict(files or {})
    parent, name = os.path.split(directory)
    os.makedirs(parent, exist_ok=True)
    if os.path.exists(directory):
        if not os.path.isdir(directory):
            raise CheckpointError(f"{directory}: exists and is not a directory")
        present = set(os.listdir(directory))
        if present and not present & {CONFIG_NAME, WEIGHTS_NAME}:
            shown = sorted(present)
            raise CheckpointError(
                f"{directory}: refusing to replace a non-empty directory that is not a checkpoint "
                f"(it holds {', '.join(shown[:10])}{' ...' if len(shown) > 10 else ''}; choose another directory)")
    tmp = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
    try:
        save_file(tensors, os.path.join(tmp, WEIGHTS_NAME), metadata=metadata, dtypes=dtypes)
        write_json(os.path.join(tmp, CONFIG_NAME), config)
        if extra is not None:
            write_json(os.path.join(tmp, STATE_NAME), extra)
        for fname, src in files.items():
            if os.path.basename(fname) != fname or fname in (CONFIG_NAME, WEIGHTS_NAME, STATE_NAME):
                raise CheckpointError(f"{directory}: invalid extra file name {fname!r}")
            dest = os.path.join(tmp, fname)
            if callable(src):
                src(dest)
            elif isinstance(src, bytes):
                with open(dest, "wb") as f:
                    f.write(src)
            elif isinstance(src, os.PathLike):
                shutil.copyfile(src, dest)
            elif isinstance(src, str):
                with open(dest, "w", encoding="utf-8") as f:
                    f.write(src)
            else:
                raise CheckpointError(f"{directory}: extra file {fname!r} must be bytes, str, a path or "
                                      f"a callable, got {type(src).__name__}")
        if writer is not None:
            writer(tmp)
        _fsync_dir(tmp)
        old = None
        if os.path.exists(directory):
            old = os.path.join(parent, f".{name}.old-{time.time_ns()}")  # the number orders backups
            os.replace(directory, old)
        os.replace(tmp, directory)
        _fsync_dir(parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _fsync_dir(d):
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def load_checkpoint(directory, dtype=None, load_tensors=True):
    """Read a checkpoint directory written by ``save_checkpoint`` (or any hub-style BERT dir).

    Returns a ``Checkpoint(path, tensors, config, extra, files)``. ``dtype``: convert float
    tensors to it (F16/BF16 are always converted to the compute dtype).
    """
    directory = os.path.abspath(os.fspath(directory))
    if not os.path.isdir(directory):
        backups = _backups(directory)
        if backups and _complete(backups[-1]):
            warnings.warn(f"{directory}: missing; an interrupted save left the previous checkpoint at "
                          f"{backups[-1]}, loading that")
            directory = backups[-1]
        else:
            raise CheckpointError(f"{directory}: checkpoint directory not found")
    weights = os.path.join(directory, WEIGHTS_NAME)
    if not os.path.isfile(weights):
        raise CheckpointError(f"{directory}: no {WEIGHTS_NAME} in the checkpoint directory")
    config = read_json(os.path.join(directory, CONFIG_NAME), "config.json")
    state_path = os.path.join(directory, STATE_NAME)
    extra = read_json(state_path, "state.json") if os.path.exists(state_path) else None
    tensors = load_file(weights, dtype=dtype) if load_tensors else None
    files = sorted(f for f in os.listdir(directory) if f not in (CONFIG_NAME, WEIGHTS_NAME, STATE_NAME))
    return Checkpoint(directory, tensors, config, extra, files)


_BACKUP = re.compile(r"^\.(?P<name>.+)\.old-(?P<tag>[^.]+)$")
_TEMPORARY = re.compile(r"^\..+\.tmp-[^.]+$")  # save_checkpoint's temporary directory
_TEMPORARY_FILE = re.compile(r"^\..+\.tmp$")  # atomic_write's temporary file


def _backups(directory):
    """The backups an interrupted save of ``directory`` left beside it, oldest first (by the
    nanoseconds in their name; older minispike versions named them at random: by mtime)."""
    parent, name = os.path.split(directory)
    found = [(m["tag"], os.path.join(parent, e)) for e in (os.listdir(parent) if os.path.isdir(parent) else ())
             if (m := _BACKUP.match(e)) and m["name"] == name]
    return [path for _, path in sorted(found, key=lambda t: int(t[0]) if t[0].isdigit() else os.stat(t[1]).st_mtime_ns)]


def _complete(directory):
    return all(os.path.isfile(os.path.join(directory, f)) for f in (WEIGHTS_NAME, CONFIG_NAME))


def repair_checkpoints(parent):
    """Tidy the checkpoints under ``parent`` after a crash; returns one sentence per repair.

    Temporary directories and files of an unfinished save are deleted. A checkpoint missing while a
    complete backup of it exists (a crash between the two renames) gets the newest backup
    back; every other backup is a leftover of a finished save and is deleted. Call it only
    while holding the run directory (no save can be in progress).
    """
    notes = []
    if not os.path.isdir(parent):
        return notes
    for entry in sorted(os.listdir(parent)):
        path = os.path.join(parent, entry)
        if _TEMPORARY.match(entry) and os.path.isdir(path):
            shutil.rmtree(path)
        elif _TEMPORARY_FILE.match(entry) and os.path.isfile(path):
            os.unlink(path)
        else:
            continue
        notes.append(f"removed {path}, left by a save that was interrupted")
    names = {m["name"] for e in os.listdir(parent) if (m := _BACKUP.match(e))}
    for name in sorted(names):
        directory = os.path.join(parent, name)
        backups = _backups(directory)
        if not os.path.isdir(directory) and _complete(backups[-1]):
            os.replace(backups.pop(), directory)
            notes.append(f"{directory}: put back from the backup an interrupted save left beside it")
        for b in backups:
            shutil.rmtree(b)
    return notes


_JSON_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,), "dict": (dict,),
               "list": (list,), "None": (type(None),)}


def check_config_types(config) -> None:
    """Refuse a configuration dataclass (read from a config.json) whose fields hold values of the
    wrong JSON type, e.g. ``"dim": "256"``, naming the key; true/false is not a number here."""
    for f in fields(config):
        kinds = [k.strip() for k in str(f.type).split("|")]
        if not all(k in _JSON_TYPES for k in kinds):
            continue  # an annotation this check does not read (e.g. tuple)
        value = getattr(config, f.name)
        if not any(isinstance(value, _JSON_TYPES[k]) and not (isinstance(value, bool) and k in ("int", "float"))
                   for k in kinds):
            raise ValueError(f"key {f.name!r} is {value!r} ({type(value).__name__}); expected {' or '.join(kinds)}")
