"""The official SpikeBERT file layout (github.com/Lvchangze/SpikeBERT): key names and shapes.

This module knows the file format only: the names of the tensors, their shapes, and how to
read and write them. It knows no model; ``SpikeBert.from_official`` / ``save_official``
(``minispike/models/spikebert.py``) build and export the student through it.

One table, ``NAME_MAP``, pairs each minispike module path with its official name; it is read
left-to-right on export and right-to-left on import, so the two directions cannot disagree:

    minispike                         official
    embedding                         emb
    blocks.{i}.attn.{q,k,v}.fc / .ln  blocks.{i}.attn.{q,k,v}_m / _ln
    blocks.{i}.attn.out.fc / .ln      blocks.{i}.attn.last_m / last_ln
    blocks.{i}.mlp.up.fc / .ln        blocks.{i}.mlp.fc1 / ln1
    blocks.{i}.mlp.down.fc / .ln      blocks.{i}.mlp.fc2 / ln2
    transforms.{i}.fc / .ln           transforms.{i}.fc / ln
    final_ln                          last_ln
    classifier                        classifier

followed by ``.weight`` / ``.bias``. Weights keep PyTorch's ``[out, in]`` layout. Files:
``.safetensors`` (``safetensors.torch.save_file(model.state_dict(), path)`` writes one that
loads here) and ``.npz`` (optionally with a key prefix, as the reference's ``param/``). A
``module.`` prefix on every key (a state saved from ``torch.nn.DataParallel`` or
``DistributedDataParallel``) is detected and stripped.

What the shapes cannot tell (heads, time steps, sequence length, neuron constants, labels)
travels in the file's metadata when minispike writes it, as one JSON object: under the key
``minispike`` of the safetensors ``__metadata__`` (beside ``"format": "pt"``), or as the
``.npz`` entry ``__metadata__``. A file from the official code has none: then the reader must
be told (``read_official_metadata`` returns ``{}``).
"""
from __future__ import annotations

import json
import os
import re

import numpy as np

from .safetensors import atomic_write, load_file, read_header, save_file

__all__ = ["NAME_MAP", "DATA_PARALLEL_PREFIX", "to_official_name", "from_official_name", "has_official_name",
           "read_official", "read_official_metadata", "write_official", "official_sizes", "check_official_state",
           "OfficialFormatError"]

# (minispike module path, official module path); "{i}" is the block index. Written once.
NAME_MAP = [
    ("embedding", "emb"),
    ("blocks.{i}.attn.q.fc", "blocks.{i}.attn.q_m"),
    ("blocks.{i}.attn.q.ln", "blocks.{i}.attn.q_ln"),
    ("blocks.{i}.attn.k.fc", "blocks.{i}.attn.k_m"),
    ("blocks.{i}.attn.k.ln", "blocks.{i}.attn.k_ln"),
    ("blocks.{i}.attn.v.fc", "blocks.{i}.attn.v_m"),
    ("blocks.{i}.attn.v.ln", "blocks.{i}.attn.v_ln"),
    ("blocks.{i}.attn.out.fc", "blocks.{i}.attn.last_m"),
    ("blocks.{i}.attn.out.ln", "blocks.{i}.attn.last_ln"),
    ("blocks.{i}.mlp.up.fc", "blocks.{i}.mlp.fc1"),
    ("blocks.{i}.mlp.up.ln", "blocks.{i}.mlp.ln1"),
    ("blocks.{i}.mlp.down.fc", "blocks.{i}.mlp.fc2"),
    ("blocks.{i}.mlp.down.ln", "blocks.{i}.mlp.ln2"),
    ("transforms.{i}.fc", "transforms.{i}.fc"),
    ("transforms.{i}.ln", "transforms.{i}.ln"),
    ("final_ln", "last_ln"),
    ("classifier", "classifier"),
]
DATA_PARALLEL_PREFIX = "module."  # what torch.nn.DataParallel / DistributedDataParallel put in front
METADATA_KEY = "__metadata__"  # the .npz entry holding the metadata
SAFETENSORS_METADATA_KEY = "minispike"  # its key inside a safetensors file's own __metadata__


class OfficialFormatError(KeyError):
    """A file or state that does not fit the official layout (the message names every problem)."""

    def __str__(self):
        return str(self.args[0])


def _pattern(template):
    return re.compile("^" + re.escape(template).replace(re.escape("{i}"), r"(\d+)") + r"\.(weight|bias)$")


_TO = [(_pattern(a), b) for a, b in NAME_MAP]
_FROM = [(_pattern(b), a) for a, b in NAME_MAP]


def _translate(name, table, direction):
    for pat, target in table:
        m = pat.match(name)
        if m:
            groups = m.groups()
            out = target.replace("{i}", groups[0]) if "{i}" in target else target
            return f"{out}.{groups[-1]}"
    raise OfficialFormatError(f"{name!r} has no {direction} name (see minispike.io.official.NAME_MAP)")


def to_official_name(name: str) -> str:
    """``blocks.0.attn.q.fc.weight`` -> ``blocks.0.attn.q_m.weight``."""
    return _translate(name, _TO, "official")


def from_official_name(name: str) -> str:
    """``blocks.0.attn.q_m.weight`` -> ``blocks.0.attn.q.fc.weight``."""
    return _translate(name, _FROM, "minispike")


def has_official_name(name: str) -> bool:
    return any(pat.match(name) for pat, _ in _TO)


# ----------------------------------------------------------------------------------------
# Reading and writing
# ----------------------------------------------------------------------------------------
def _format(path):
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".safetensors", ".npz"):
        found = ext or "a name without extension"
        raise OfficialFormatError(f"{path}: the official layout is written as .safetensors or .npz, not {found!r}")
    return ext


def _strip_data_parallel(state, path):
    """Drop a ``module.`` prefix that every key carries; refuse a file where only some do."""
    prefixed = [k for k in state if k.startswith(DATA_PARALLEL_PREFIX)]
    if not prefixed:
        return state
    if len(prefixed) != len(state):
        plain = sorted(set(state) - set(prefixed))[:3]
        raise OfficialFormatError(f"{path}: {len(prefixed)} of {len(state)} keys start with "
                                  f"{DATA_PARALLEL_PREFIX!r} (torch DataParallel) and the others do not "
                                  f"(e.g. {', '.join(plain)}): expected all or none")
    return {k[len(DATA_PARALLEL_PREFIX):]: v for k, v in state.items()}


def read_official(path, prefix: str | None = None) -> dict:
    """Official-layout arrays (official name -> NumPy array) from ``.npz`` or ``.safetensors``.

    ``prefix``: keep only the keys under it and drop it (e.g. ``param/``; found by itself in an
    ``.npz`` whose keys use ``param/``). A ``module.`` prefix on every key is stripped."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise OfficialFormatError(f"{path}: no such file")
    if _format(path) == ".safetensors":
        state = load_file(path)
    else:
        with np.load(path, allow_pickle=False) as z:
            keys = [k for k in z.files if k != METADATA_KEY]
            if prefix is None:
                prefix = "param/" if any(k.startswith("param/") for k in keys) else ""
            state = {k: z[k] for k in keys}
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not state:
        raise OfficialFormatError(f"{path}: no tensors found" + (f" under prefix {prefix!r}" if prefix else ""))
    return _strip_data_parallel(state, path)


def read_official_metadata(path) -> dict:
    """The settings minispike wrote beside the tensors (``{}`` for a file without them)."""
    path = os.fspath(path)
    if _format(path) == ".safetensors":
        raw = (read_header(path)[1] or {}).get(SAFETENSORS_METADATA_KEY)
    else:
        with np.load(path, allow_pickle=False) as z:
            raw = str(z[METADATA_KEY]) if METADATA_KEY in z.files else None
    if raw is None:
        return {}
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise OfficialFormatError(f"{path}: its minispike metadata is not valid JSON ({e.msg})") from None
    if not isinstance(meta, dict):
        raise OfficialFormatError(f"{path}: its minispike metadata must be a JSON object, got {type(meta).__name__}")
    return meta


def write_official(state: dict, path, metadata: dict | None = None, prefix: str = ""):
    """Write official-layout arrays to ``.npz`` or ``.safetensors`` (atomically), with ``metadata``
    (a JSON object)."""
    path = os.fspath(path)
    state = {prefix + k: np.ascontiguousarray(v) for k, v in state.items()}
    text = json.dumps(metadata or {}, sort_keys=True)
    if _format(path) == ".safetensors":
        save_file(state, path, metadata={"format": "pt", SAFETENSORS_METADATA_KEY: text})
    else:
        atomic_write(path, lambda f: np.savez(f, **state, **{METADATA_KEY: np.array(text)}))
    return path


# ----------------------------------------------------------------------------------------
# Sizes and checks (names and shapes only)
# ----------------------------------------------------------------------------------------
def official_sizes(state: dict, source="official state") -> dict:
    """What the shapes of an official state say: vocabulary, width, depth, MLP width, classes,
    tap width. Heads, T and sequence length are not in the shapes."""
    needed = ["emb.weight", "blocks.0.mlp.fc1.weight"]
    missing = [k for k in needed if k not in state]
    if missing:
        raise OfficialFormatError(f"{source}: not an official SpikeBERT state (no {', '.join(missing)}; "
                                  f"it has e.g. {', '.join(sorted(state)[:3])})")
    vocab, dim = state["emb.weight"].shape
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    hidden = int(state["blocks.0.mlp.fc1.weight"].shape[0])
    sizes = dict(vocab_size=int(vocab), dim=int(dim), depth=depth, hidden=hidden)
    if "classifier.weight" in state:  # a stage-1 ("pre_distill") model has no classifier
        sizes["num_classes"] = int(state["classifier.weight"].shape[0])
    if "transforms.0.fc.weight" in state:
        sizes["teacher_dim"] = int(state["transforms.0.fc.weight"].shape[0])
    return sizes


def check_official_state(state: dict, expected: dict, source="official state"):
    """Every expected key (official name -> shape) present with its shape, no key left over;
    one error lists every problem, in official names."""
    problems = []
    unknown = [k for k in state if not any(pat.match(k) for pat, _ in _FROM)]
    if unknown:
        problems.append("unknown official keys: " + ", ".join(map(repr, sorted(unknown))))
    extra = sorted(k for k in state if k not in expected and k not in unknown)
    if extra:
        problems.append("keys this model has no place for: " + ", ".join(map(repr, extra)))
    missing = sorted(k for k in expected if k not in state)
    if missing:
        problems.append("missing keys: " + ", ".join(missing))
    for k in sorted(set(state) & set(expected)):
        if tuple(state[k].shape) != tuple(expected[k]):
            problems.append(f"{k!r}: file {tuple(state[k].shape)} vs model {tuple(expected[k])}")
    if problems:
        raise OfficialFormatError(f"{source} does not match the model: " + " | ".join(problems))
