"""Reductions.

    sum   y = sum_axis a          da = g broadcast back over the summed axes
    mean  y = sum_axis a / n      da = g / n broadcast back
    max   y = max_axis a          da = g where a is the maximum, shared equally among ties
"""
from .. import backend
from ..tensor import Function


def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axis = (axis,) if isinstance(axis, int) else axis
    return tuple(a % ndim for a in axis)


def _restore(g, shape, axes):
    """Give g (reduced over ``axes`` without keepdims) back its size-1 axes, then broadcast."""
    xp = backend.get_array_module(g)
    kept = [1 if i in axes else n for i, n in enumerate(shape)]
    return xp.broadcast_to(g.reshape(kept), shape)


class Sum(Function):
    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        ctx.shape, ctx.axes = a.shape, _axes(axis, a.ndim)
        return a.sum(axis=ctx.axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        return _restore(g, ctx.shape, ctx.axes)


class Mean(Function):
    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        ctx.shape, ctx.axes = a.shape, _axes(axis, a.ndim)
        ctx.n = 1
        for ax in ctx.axes:
            ctx.n *= a.shape[ax]
        return a.mean(axis=ctx.axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        return _restore(g, ctx.shape, ctx.axes) / ctx.n


class Max(Function):
    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        ctx.axes = _axes(axis, a.ndim)
        y = a.max(axis=ctx.axes, keepdims=True)
        ctx.save_for_backward(a == y)
        return y if keepdims else y.reshape([n for i, n in enumerate(a.shape) if i not in ctx.axes])

    @staticmethod
    def backward(ctx, g):
        (is_max,) = ctx.saved
        share = is_max / is_max.sum(axis=ctx.axes, keepdims=True)  # ties split the gradient
        return _restore(g, is_max.shape, ctx.axes) * share


def sum(a, axis=None, keepdims=False): return Sum.apply(a, axis=axis, keepdims=keepdims)  # noqa: A001
def mean(a, axis=None, keepdims=False): return Mean.apply(a, axis=axis, keepdims=keepdims)
def max(a, axis=None, keepdims=False): return Max.apply(a, axis=axis, keepdims=keepdims)  # noqa: A001
