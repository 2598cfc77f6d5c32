"""Exercise 1: the backward of a multiply that broadcasts.

Read first: docs/autograd.md (the engine and ``unbroadcast``), examples/01_autograd_by_hand.py.
Check:      python -m minispike check ex01

NumPy broadcasting stretches an input to the output's shape without copying it: in
``y = a * b`` with ``a`` (2, 3, 4) and ``b`` (3, 1), ``b`` is used as if it were (2, 3, 4).
Every copy of an entry of ``b`` receives its own share of the gradient, and the entry's
gradient is the SUM of those shares. So the backward of an op whose inputs broadcast is

    y = a * b                          (elementwise, with broadcasting)
    da = unbroadcast(g * b, a.shape)   g = dL/dy, in y's (broadcast) shape
    db = unbroadcast(g * a, b.shape)

where ``unbroadcast(grad, shape)`` sums ``grad`` down to ``shape``:

    1. sum over the leading axes broadcasting added    (2, 3, 4) -> (3, 4)  for shape (3, 1)
    2. sum, keeping the axis (keepdims=True), over     (3, 4)    -> (3, 1)
       every axis where ``shape`` has size 1 and the gradient does not

Your task: write ``unbroadcast`` and ``mul_backward``.

Shapes: ``grad`` any shape that ``shape`` broadcasts to; ``shape`` a tuple (``()`` is a scalar).
``a``, ``b`` any two shapes that broadcast together; ``grad`` has their broadcast shape.
Return NumPy arrays of exactly the shapes asked (``()`` for a scalar input).

The checker compares ``unbroadcast`` with minispike.tensor.unbroadcast and ``mul_backward``
with the engine's gradient of ``ops.mul`` on several shapes (a leading axis, a size-1 axis,
a scalar, both inputs stretched), then checks ``mul_backward`` against finite differences
of ``a * b`` with a random upstream gradient. A gradient of the wrong shape fails by itself.
"""
import numpy as np


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape`` (the backward of broadcasting); return an array of that shape."""
    raise NotImplementedError("unbroadcast is yours to write: sum over the stretched axes (see the docstring)")


def mul_backward(a, b, grad):
    """``(da, db)`` for ``y = a * b`` given ``grad = dL/dy``; each in its input's shape."""
    raise NotImplementedError("mul_backward is yours to write: grad times the other factor, then unbroadcast")
