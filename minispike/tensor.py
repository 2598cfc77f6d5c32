"""A tiny reverse-mode autograd engine: ``Tensor``, ``Function``, ``backward``.

A ``Tensor`` wraps an array of the current backend (``data``) and, when it was produced
by a differentiable op, the ``Function`` node that made it (``_ctx``). Each op is a
``Function`` subclass with two static methods side by side:

    forward(ctx, *arrays, **options) -> array          # compute, save what backward needs on ctx
    backward(ctx, grad)              -> grads, one per input (None where there is none)

``Tensor.backward()`` sorts the graph topologically and walks it once in reverse, applying
the chain rule ``dL/dx = sum over uses of backward(dL/dy)``. Broadcasting is undone in
one place (``unbroadcast``): a gradient is summed over the axes its input was stretched along.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

from . import backend

__all__ = ["Tensor", "Function", "no_grad", "is_grad_enabled", "unbroadcast", "tensor"]

_grad_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_grad_state, "enabled", True)


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Inside ``with no_grad():`` ops build no graph (inference, teacher outputs, updates)."""
    old = is_grad_enabled()
    _grad_state.enabled = False
    try:
        yield
    finally:
        _grad_state.enabled = old


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``: the backward of NumPy broadcasting."""
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad


class Context:
    """What a Function's forward leaves for its backward (``ctx.saved``, plus attributes).

    ``ctx.needs_grad`` tells the forward whether a backward can follow (False under ``no_grad``
    or when no input requires a gradient)."""

    saved: tuple = ()
    needs_grad: bool = True

    def save_for_backward(self, *arrays):
        self.saved = arrays


class _Spent(Context):
    """What is left of a node after its backward ran (without ``retain_graph``): its op's name."""

    inputs = None

    def __init__(self, fn):
        self.fn = fn


class Function:
    """A differentiable op: subclass it, write ``forward`` and ``backward``, call ``apply``."""

    registry: dict[str, type] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        Function.registry[cls.__name__] = cls

    @staticmethod
    def forward(ctx, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs) -> "Tensor":
        """Run forward on the arrays of ``args``; record the node if a gradient is needed."""
        ctx = Context()
        arrays = [a.data if isinstance(a, Tensor) else a for a in args]
        needs = is_grad_enabled() and any(isinstance(a, Tensor) and a.requires_grad for a in args)
        ctx.needs_grad = needs  # a forward may skip what only its backward would use
        out = cls.forward(ctx, *arrays, **kwargs)
        result = Tensor(out, requires_grad=needs)
        if needs:
            ctx.fn = cls
            ctx.inputs = args
            result._ctx = ctx
        return result


class Tensor:
    """An array plus what is needed to differentiate through it."""

    __slots__ = ("data", "grad", "requires_grad", "_ctx", "name", "__weakref__")
    __array_priority__ = 2000  # so that `ndarray * Tensor` calls Tensor.__rmul__

    def __init__(self, data, requires_grad: bool = False, dtype=None, name: str | None = None):
        if isinstance(data, Tensor):
            data = data.data
        data = backend.ensure_array(data)
        xp = backend.get_array_module(data) if _is_array(data) else backend.current()
        if not _is_array(data):
            data = xp.asarray(data, dtype=dtype or _infer_dtype(data))
        elif dtype is not None and data.dtype != dtype:
            data = data.astype(dtype)
        self.data = data
        self.grad = None
        self.requires_grad = requires_grad
        self._ctx = None
        self.name = name

    # -- facts ----------------------------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)
    size = property(lambda self: self.data.size)
    xp = property(lambda self: backend.get_array_module(self.data))

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        fn = f", fn={self._ctx.fn.__name__}" if self._ctx is not None else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}{grad}{fn})"

    def numpy(self) -> Any:  # a numpy.ndarray
        """A host NumPy copy of the data (explicit: works on every backend)."""
        return backend.to_numpy(self.data)

    def item(self) -> float | int | bool:
        return self.data.item()

    def detach(self) -> "Tensor":
        """The same data, cut off from the graph."""
        return Tensor(self.data)

    # -- backward -------------------------------------------------------------------------
    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Fill ``.grad`` of every leaf that requires it with d(self)/d(leaf).

        ``grad`` is the upstream gradient (default 1 for a scalar). Each node lets go of what
        its forward saved (and of its inputs) once its backward has run, so the graph's memory
        is freed as the walk goes down it, as PyTorch does; ``retain_graph=True`` keeps the
        graph for another backward through it.
        """
        if grad is None:
            if self.size != 1:
                raise ValueError(f"backward() without a gradient needs a scalar, got shape {self.shape}")
            grad = self.xp.ones_like(self.data)
        grad = grad.data if isinstance(grad, Tensor) else grad

        order, seen = [], set()

        def visit(t):  # depth-first topological sort (iterative: graphs can be deep)
            stack = [(t, False)]
            while stack:
                node, done = stack.pop()
                if done:
                    order.append(node)
                    continue
                if id(node) in seen:
                    continue
                seen.add(id(node))
                stack.append((node, True))
                if node._ctx is not None:
                    if node._ctx.inputs is None:
                        raise RuntimeError(
                            f"backward() through the graph a second time: the first backward freed what "
                            f"{node._ctx.fn.__name__} saved; pass backward(retain_graph=True) the first time")
                    for p in node._ctx.inputs:
                        if isinstance(p, Tensor) and p.requires_grad and id(p) not in seen:
                            stack.append((p, False))
        visit(self)

        grads = {id(self): grad}
        while order:  # in reverse topological order; popping lets each node go once it is done
            node = order.pop()
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node._ctx is None:  # a leaf: accumulate
                node.grad = g if node.grad is None else node.grad + g
                continue
            ctx = node._ctx
            in_grads = ctx.fn.backward(ctx, g)
            if not isinstance(in_grads, tuple):
                in_grads = (in_grads,)
            for inp, ig in zip(ctx.inputs, in_grads):
                if ig is None or not isinstance(inp, Tensor) or not inp.requires_grad:
                    continue
                ig = unbroadcast(ig, inp.shape)
                key = id(inp)
                grads[key] = ig if key not in grads else grads[key] + ig
            if not retain_graph:  # this node is done: what its forward saved, and its inputs, may go
                node._ctx = _Spent(ctx.fn)

    def zero_grad(self) -> None:
        self.grad = None

    # -- operators (the ops live in minispike.ops; imported lazily to keep floors clean) -----
    def __add__(self, o): return _ops().add(self, o)
    def __radd__(self, o): return _ops().add(o, self)
    def __sub__(self, o): return _ops().sub(self, o)
    def __rsub__(self, o): return _ops().sub(o, self)
    def __mul__(self, o): return _ops().mul(self, o)
    def __rmul__(self, o): return _ops().mul(o, self)
    def __truediv__(self, o): return _ops().div(self, o)
    def __rtruediv__(self, o): return _ops().div(o, self)
    def __neg__(self): return _ops().neg(self)
    def __pow__(self, p): return _ops().pow(self, p)
    def __matmul__(self, o): return _ops().matmul(self, o)
    def __rmatmul__(self, o): return _ops().matmul(o, self)
    def __getitem__(self, idx): return _ops().getitem(self, idx)

    def sum(self, axis=None, keepdims=False) -> "Tensor": return _ops().sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False) -> "Tensor": return _ops().mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False) -> "Tensor": return _ops().max(self, axis, keepdims)
    def exp(self) -> "Tensor": return _ops().exp(self)
    def log(self) -> "Tensor": return _ops().log(self)
    def tanh(self) -> "Tensor": return _ops().tanh(self)
    def sigmoid(self) -> "Tensor": return _ops().sigmoid(self)
    def relu(self) -> "Tensor": return _ops().relu(self)

    def reshape(self, *shape) -> "Tensor":
        return _ops().reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)

    def transpose(self, *axes) -> "Tensor":
        return _ops().transpose(self, axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else (axes or None))

    permute = transpose

    def expand(self, *shape) -> "Tensor":
        return _ops().expand(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)

    @property
    def T(self) -> "Tensor":
        return self.transpose()


def _ops():
    from . import ops
    return ops


def _is_array(x):
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, Tensor)


def _infer_dtype(x):
    """Python floats (and lists of them) take the default dtype; ints stay integer."""
    def first(v):
        while isinstance(v, (list, tuple)) and v:
            v = v[0]
        return v
    v = first(x)
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return None
    return backend.default_dtype()


def tensor(data, requires_grad: bool = False, dtype=None, name: str | None = None) -> Tensor:
    """``Tensor(...)`` as a function, for symmetry with the ops."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, name=name)
