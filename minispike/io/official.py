"""The student in the official SpikeBERT key layout (github.com/Lvchangze/SpikeBERT), both ways.

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

followed by ``.weight`` / ``.bias``. Weights keep PyTorch's ``[out, in]`` layout. Checks are
strict: every parameter must be in the file, every key of the file must be used, every shape
must match; one error lists every problem. Files: ``.npz`` (optionally with a key prefix, as
the reference's ``param/``) and ``.safetensors``. A PyTorch ``state_dict`` saved with
``safetensors.torch.save_file(model.state_dict(), path)`` loads here directly.
"""
from __future__ import annotations

import os
import re

import numpy as np

from .. import backend

__all__ = ["NAME_MAP", "to_official_name", "from_official_name", "to_official_state", "load_official_state",
           "save_official", "load_official", "read_official", "config_from_official", "OfficialFormatError"]

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


class OfficialFormatError(KeyError):
    """A state does not match the official layout or the model (names every problem)."""

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


def to_official_state(model) -> dict:
    """Host NumPy arrays of every parameter under its official name."""
    out = {}
    for name, p in model.named_parameters():
        out[to_official_name(name)] = backend.to_numpy(p.data)
    return out


def load_official_state(model, state: dict, source="official state"):
    """Copy an official-layout state (name -> array) into ``model``, strictly."""
    own = dict(model.named_parameters())
    problems, mapped = [], {}
    for key, value in state.items():
        try:
            name = from_official_name(key)
        except OfficialFormatError:
            problems.append(f"unknown official key {key!r}")
            continue
        if name not in own:
            problems.append(f"{key!r} (minispike {name!r}) is not a parameter of this model")
            continue
        if tuple(value.shape) != tuple(own[name].shape):
            problems.append(f"{key!r}: file {tuple(value.shape)} vs model {tuple(own[name].shape)}")
            continue
        mapped[name] = value
    missing = [to_official_name(n) if _has_official(n) else n for n in own if n not in mapped]
    missing = [m for m in missing if not any(m in p for p in problems)]
    if missing:
        problems.append("missing keys: " + ", ".join(missing))
    if problems:
        raise OfficialFormatError(f"{source} does not match the model: " + " | ".join(problems))
    for name, value in mapped.items():
        p = own[name]
        p.data = p.xp.asarray(backend.to_numpy(value), dtype=p.dtype).copy()
    return model


def _has_official(name):
    try:
        to_official_name(name)
        return True
    except OfficialFormatError:
        return False


def read_official(path, prefix: str | None = None) -> dict:
    """Official-layout arrays from ``.npz`` or ``.safetensors`` (``prefix``: e.g. ``param/``; auto for npz)."""
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        state = _st_load(path)
    else:
        with np.load(path) as z:
            keys = list(z.files)
            if prefix is None:
                prefix = "param/" if any(k.startswith("param/") for k in keys) else ""
            state = {k: z[k] for k in keys}
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not state:
        raise OfficialFormatError(f"{path}: no tensors found" + (f" under prefix {prefix!r}" if prefix else ""))
    return state


def save_official(model, path, prefix: str = ""):
    """Write ``model`` in the official layout to ``.npz`` or ``.safetensors``."""
    path = os.fspath(path)
    state = {prefix + k: np.ascontiguousarray(v) for k, v in to_official_state(model).items()}
    if path.endswith(".safetensors"):
        _st_save(state, path)
    else:
        np.savez(path, **state)
    return path


def config_from_official(state: dict, heads: int = 8, T: int = 4, **overrides):
    """A ``SpikeBertConfig`` (official numerics) sized from the shapes of an official state."""
    from ..models.spikebert import SpikeBertConfig
    vocab, dim = state["emb.weight"].shape
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
    classes = state["classifier.weight"].shape[0] if "classifier.weight" in state else 2
    teacher = state["transforms.0.fc.weight"].shape[0] if "transforms.0.fc.weight" in state else dim
    kw = dict(vocab_size=vocab, dim=dim, depth=depth, heads=heads, T=T, num_classes=classes,
              mlp_ratio=hidden // dim, teacher_dim=teacher)
    kw.update(overrides)
    return SpikeBertConfig.preset("official", **kw)


def load_official(path, model=None, heads: int = 8, T: int = 4, prefix: str | None = None, **overrides):
    """Load an official-layout file into ``model`` (or a new official-config ``SpikeBert``)."""
    state = read_official(path, prefix=prefix)
    if model is None:
        from ..models.spikebert import SpikeBert
        model = SpikeBert(config_from_official(state, heads=heads, T=T, **overrides))
    return load_official_state(model, state, source=os.fspath(path))


def _st_load(path):
    try:
        from .safetensors import load_file
    except ImportError:  # pragma: no cover - the package's own reader is the normal path
        from safetensors.numpy import load_file
    return load_file(path)


def _st_save(state, path):
    try:
        from .safetensors import save_file
    except ImportError:  # pragma: no cover
        from safetensors.numpy import save_file
    save_file(state, path)
