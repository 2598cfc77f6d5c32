"""``Module`` and ``Parameter``: named, nested collections of trainable tensors.

A Module's parameters are found by walking its attributes: a ``Parameter`` attribute ``w``
of a child module ``layer`` of a list ``blocks`` is named ``blocks.0.layer.w``, the dotted
path used in checkpoints. ``load_state_dict`` is strict by default: a missing key, an
unexpected key or a shape mismatch raises one error that names every offending key.

``repr(model)`` prints the tree, as PyTorch does, with each module's own parameter shapes
and the parameter count of every subtree; identical neighbours in a ``ModuleList`` are
folded into one entry (``(0-11): 12 x SpikeBlock(...)``)::

    SpikeBert(  # 25,186 parameters
      (embedding): Embedding(100, 32)  # weight (100, 32): 3,200
      (blocks): ModuleList(  # 16,896
        (0-1): 2 x SpikeBlock(  # 8,448 each
      ...
"""
from __future__ import annotations

from typing import Any, Iterator

from .. import backend
from ..tensor import Tensor


class Parameter(Tensor):
    """A Tensor that a Module trains (``requires_grad=True``)."""

    __slots__ = ()

    def __init__(self, data, requires_grad=True):
        super().__init__(data, requires_grad=requires_grad)


class StateDictError(KeyError):
    """A state dict does not match the module (missing, unexpected or misshapen keys)."""

    def __str__(self):
        return str(self.args[0])


class Module:
    """Base class: subclasses set attributes in ``__init__`` and write ``forward``."""

    training = True

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    # -- the tree -------------------------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for name, value in vars(self).items():
            full = f"{prefix}.{name}" if prefix else name
            if isinstance(value, Parameter):
                yield full, value
            elif isinstance(value, Module):
                yield from value.named_parameters(full)

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    # -- modes ----------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        for _, m in self.named_modules():
            m.training = mode
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Parameter arrays by dotted name (the arrays themselves, on their device)."""
        return {name: p.data for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict, strict: bool = True,
                        source: str = "state dict") -> tuple[list[str], list[str]]:
        """Copy arrays into the parameters, checking every key and shape.

        Returns ``(missing, unexpected)``; with ``strict`` (the default) any of them, or a
        shape mismatch, raises ``StateDictError`` naming every offending key and ``source``.
        """
        own = dict(self.named_parameters())
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                      for k in sorted(set(own) & set(state)) if tuple(state[k].shape) != tuple(own[k].shape)]
        problems = []
        if missing:
            problems.append(f"missing keys: {', '.join(missing)}")
        if mismatched:
            problems.append(f"shape mismatches: {'; '.join(mismatched)}")
        if unexpected and strict:
            problems.append(f"unexpected keys: {', '.join(unexpected)}")
        if problems and (strict or mismatched):
            raise StateDictError(f"{source} does not match {type(self).__name__}: " + " | ".join(problems))
        loaded = {k: state[k] for k in sorted(set(own) & set(state))}
        wrong = [f"{k} ({a.dtype})" for k, a in loaded.items() if a.dtype.kind not in "fc"]
        if wrong:
            raise StateDictError(f"{source}: integer or bool tensors where {type(self).__name__} expects floating "
                                 f"point: {', '.join(wrong)}; refusing to cast them (is this the right file?)")
        bad = first_non_finite(loaded)
        if bad:
            raise StateDictError(f"{source}: tensor {bad} holds NaN or infinite values; refusing to load it "
                                 "(the run that wrote it had diverged)")
        for k in set(own) & set(state):
            p = own[k]
            p.data = p.xp.asarray(backend.to_numpy(state[k]) if _is_foreign(state[k], p.data) else state[k],
                                  dtype=p.dtype).copy()
        return missing, unexpected

    # -- printing -------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The settings shown inside ``Name(...)``; subclasses override it."""
        return ""

    def __repr__(self) -> str:
        return "\n".join(_tree_lines(self, "", ""))

    def to(self, dtype=None, xp=None) -> "Module":
        """Move every parameter to another array module and/or dtype."""
        for _, p in self.named_parameters():
            target = xp or p.xp
            data = backend.to_numpy(p.data) if target is not p.xp else p.data
            p.data = target.asarray(data, dtype=dtype or p.dtype)
        return self


def _own_parameters(module):
    """(name, Parameter) held by ``module`` itself, not by its children."""
    return [(n, v) for n, v in vars(module).items() if isinstance(v, Parameter)]


def _describe(module):
    """``Name(settings)``: a module's own ``__repr__`` if it writes one, else from ``extra_repr``."""
    if type(module).__repr__ is not Module.__repr__:
        return repr(module)
    return f"{type(module).__name__}({module.extra_repr()})"


def _tree_lines(module, head, indent, each=False):
    """The lines of ``module``'s repr; ``head`` goes before it (``(attn): ``, ``(0-3): 4 x ``)."""
    n = module.num_parameters()
    per = " each" if each else ""
    children = list(module.named_children())
    if not children:  # a leaf: one line, with the shapes of its parameters
        own = ", ".join(f"{name} {tuple(p.shape)}" for name, p in _own_parameters(module))
        note = f"  # {own}: {n:,}{per}" if n else ""
        return [f"{indent}{head}{_describe(module)}{note}"]
    note = f"  # {n:,}{per}{'' if indent else ' parameters'}" if n else ""
    lines = [f"{indent}{head}{type(module).__name__}({note}"]
    if module.extra_repr():  # a container's own settings: the first line inside, as PyTorch
        lines.append(f"{indent}  {module.extra_repr()}")
    groups = []  # [first name, last name, child, text]: identical neighbours of a ModuleList folded
    for name, child in children:
        text = "\n".join(_tree_lines(child, "", ""))
        if isinstance(module, ModuleList) and groups and groups[-1][3] == text:
            groups[-1][1] = name
        else:
            groups.append([name, name, child, text])
    for first, last, child, _ in groups:
        if first == last:
            lines += _tree_lines(child, f"({first}): ", indent + "  ")
        else:
            count = int(last) - int(first) + 1
            lines += _tree_lines(child, f"({first}-{last}): {count} x ", indent + "  ", each=True)
    lines.append(f"{indent})")
    return lines


def first_non_finite(arrays):
    """The name of the first array (``name -> array``, any device, in order) holding a NaN or
    an infinity, with how many such values it holds (``"name (3 of 64 values)"``), or None."""
    for name, a in arrays.items():
        xp = backend.get_array_module(a)
        if a.dtype.kind in "fc" and not bool(xp.isfinite(a).all()):
            return f"{name} ({int((~xp.isfinite(a)).sum())} of {a.size} values)"
    return None


def _is_foreign(a, b):
    return backend.get_array_module(a) is not backend.get_array_module(b)


class ModuleList(Module):
    """A list of modules whose parameters are named ``0.``, ``1.``, ..."""

    def __init__(self, modules=()):
        self._items = []
        for m in modules:
            self.append(m)

    def append(self, module):
        setattr(self, str(len(self._items)), module)
        self._items.append(module)

    def __getitem__(self, i):
        return self._items[i]

    def __len__(self):
        return len(self._items)

    def __iter__(self):
        return iter(self._items)

    def named_children(self):
        for i, m in enumerate(self._items):
            yield str(i), m

    def named_parameters(self, prefix=""):
        for i, m in enumerate(self._items):
            yield from m.named_parameters(f"{prefix}.{i}" if prefix else str(i))
