"""Finite-difference gradient checking, in float64.

For a function ``f(x_1, ..., x_n) -> y`` and a random upstream gradient ``u`` (so the check
is not a plain sum), the analytic gradient of ``L = sum(u * f(x))`` is compared with the
central difference

    dL/dx_i[j] ~ (L(x + h e_j) - L(x - h e_j)) / (2 h)

on every coordinate of small inputs, or on a random sample of coordinates of big ones.
A mismatch raises ``GradcheckError`` naming the op, the input, the worst coordinate and
both values.
"""
from __future__ import annotations

from . import backend
from .tensor import Tensor

__all__ = ["gradcheck", "GradcheckError", "CHECKED"]

CHECKED: set[str] = set()  # names of the Functions that a passing gradcheck went through


class GradcheckError(AssertionError):
    """The analytic gradient disagrees with the finite difference."""


def gradcheck(fn, inputs, name=None, eps=1e-6, atol=1e-6, rtol=1e-4, max_coords=60, seed=0):
    """Check ``fn(*inputs)``'s backward against central differences; return True or raise.

    ``inputs`` are Tensors; those with ``requires_grad`` are checked (they must be float64).
    """
    name = name or getattr(fn, "__name__", "fn")
    rng = backend.host_rng(seed)  # host-side: the upstream gradient and the coordinate sample
    for i, t in enumerate(inputs):
        if t.requires_grad and str(t.dtype) != "float64":
            raise TypeError(f"gradcheck({name}): input {i} is {t.dtype}; finite differences need float64")

    out = fn(*inputs)
    xp = out.xp
    upstream = xp.asarray(rng.standard_normal(out.shape))
    for t in inputs:
        t.grad = None
    out.backward(upstream, retain_graph=True)  # the graph is walked again below, for the names it holds

    def loss():
        return float((fn(*inputs).data * upstream).sum())

    for i, t in enumerate(inputs):
        if not t.requires_grad:
            continue
        analytic = backend.to_numpy(t.grad) if t.grad is not None else None
        t.data = xp.ascontiguousarray(t.data).reshape(t.shape)  # keep 0-d inputs 0-d
        flat = t.data.reshape(-1)  # a view: nudging it nudges the input
        n = t.size
        coords = range(n) if n <= max_coords else rng.choice(n, size=max_coords, replace=False)
        worst = None
        for j in coords:
            j = int(j)
            old = float(flat[j])
            flat[j] = old + eps
            plus = loss()
            flat[j] = old - eps
            minus = loss()
            flat[j] = old
            numeric = (plus - minus) / (2 * eps)
            got = 0.0 if analytic is None else float(analytic.reshape(-1)[j])
            err = abs(got - numeric) - (atol + rtol * abs(numeric))
            if worst is None or err > worst[0]:
                worst = (err, j, got, numeric)
        if worst is not None and worst[0] > 0:
            _, j, got, numeric = worst
            index = _unravel(j, t.shape)
            raise GradcheckError(
                f"gradcheck failed for {name}: input {i} (shape {t.shape}) at index {index}: "
                f"backward gives {got:.8g}, finite difference gives {numeric:.8g} "
                f"(|diff| {abs(got - numeric):.3g} > atol {atol} + rtol {rtol} * |numeric|)"
                + (" [backward returned no gradient for this input]" if analytic is None else ""))
    CHECKED.update(_functions_in(out))
    return True


def _functions_in(out):
    """The names of the Functions in the graph behind ``out``."""
    names, stack, seen = set(), [out], set()
    while stack:
        t = stack.pop()
        if id(t) in seen or getattr(t, "_ctx", None) is None:
            continue
        seen.add(id(t))
        names.add(t._ctx.fn.__name__)
        stack.extend(i for i in t._ctx.inputs if isinstance(i, Tensor))
    return names


def _unravel(j, shape):
    index = []
    for n in reversed(shape):
        index.append(j % n)
        j //= n
    return tuple(reversed(index))


def make_inputs(*shapes, seed=0, requires_grad=True, scale=1.0):
    """Random float64 Tensors of the given shapes on the current backend."""
    rng = backend.host_rng(seed)
    xp = backend.current()
    return [Tensor(xp.asarray(rng.standard_normal(s) * scale), requires_grad=requires_grad) for s in shapes]

