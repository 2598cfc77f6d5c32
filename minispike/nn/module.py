"""``Module`` and ``Parameter``: named, nested collections of trainable tensors.

A Module's parameters are found by walking its attributes: a ``Parameter`` attribute ``w``
of a child module ``layer`` of a list ``blocks`` is named ``blocks.0.layer.w``, the dotted
path used in checkpoints. ``load_state_dict`` is strict by default: a missing key, an
unexpected key or a shape mismatch raises one error that names every offending key.
"""
from __future__ import annotations

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
    def named_children(self):
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self, prefix=""):
        for name, value in vars(self).items():
            full = f"{prefix}.{name}" if prefix else name
            if isinstance(value, Parameter):
                yield full, value
            elif isinstance(value, Module):
                yield from value.named_parameters(full)

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def num_parameters(self):
        return sum(p.size for p in self.parameters())

    # -- modes ----------------------------------------------------------------------------
    def train(self, mode=True):
        for _, m in self.named_modules():
            m.training = mode
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    # -- state ----------------------------------------------------------------------------
    def state_dict(self):
        """Parameter arrays by dotted name (the arrays themselves, on their device)."""
        return {name: p.data for name, p in self.named_parameters()}

    def load_state_dict(self, state, strict=True, source="state dict"):
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
        for k in set(own) & set(state):
            p = own[k]
            p.data = p.xp.asarray(backend.to_numpy(state[k]) if _is_foreign(state[k], p.data) else state[k],
                                  dtype=p.dtype).copy()
        return missing, unexpected

    def to(self, dtype=None, xp=None):
        """Move every parameter to another array module and/or dtype."""
        for _, p in self.named_parameters():
            target = xp or p.xp
            data = backend.to_numpy(p.data) if target is not p.xp else p.data
            p.data = target.asarray(data, dtype=dtype or p.dtype)
        return self


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
