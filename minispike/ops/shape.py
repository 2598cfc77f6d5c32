"""Ops that move, select or combine entries without changing them.

    reshape      y = a.reshape(s)              da = g.reshape(a.shape)
    transpose    y = a.transpose(p)            da = g.transpose(inverse(p))
    expand       y = broadcast_to(a, s)        da = g summed back to a.shape (done by the engine)
    concatenate  y = [a1, a2, ...] on axis     da_i = the slice of g that came from a_i
    stack        y = stack(a1, a2, ...)        da_i = g[i] (on the new axis)
    getitem      y = a[idx]                    da = zeros; da[idx] += g   (scatter-add: repeated
                                                     integer indices collect every use)
    embedding    y = W[ids]                    dW = zeros; dW[ids] += g   (getitem on rows)
"""
from .. import backend
from ..tensor import Function, Tensor


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        return a.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape), None


class Transpose(Function):
    @staticmethod
    def forward(ctx, a, axes):
        axes = tuple(reversed(range(a.ndim))) if axes is None else tuple(ax % a.ndim for ax in axes)
        ctx.axes = axes
        return a.transpose(axes)

    @staticmethod
    def backward(ctx, g):
        inverse = [0] * len(ctx.axes)
        for i, ax in enumerate(ctx.axes):
            inverse[ax] = i
        return g.transpose(inverse), None


class Expand(Function):
    @staticmethod
    def forward(ctx, a, shape):
        return backend.get_array_module(a).broadcast_to(a, shape)

    @staticmethod
    def backward(ctx, g):
        return g, None  # the engine sums g back to the input's shape


class Concatenate(Function):
    @staticmethod
    def forward(ctx, *arrays, axis=0):
        ctx.axis = axis
        ctx.sizes = [a.shape[axis] for a in arrays]
        return backend.get_array_module(*arrays).concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx, g):
        xp = backend.get_array_module(g)
        cuts = []
        total = 0
        for n in ctx.sizes[:-1]:
            total += n
            cuts.append(total)
        return tuple(xp.split(g, cuts, axis=ctx.axis))


class Stack(Function):
    @staticmethod
    def forward(ctx, *arrays, axis=0):
        ctx.axis = axis
        return backend.get_array_module(*arrays).stack(arrays, axis=axis)

    @staticmethod
    def backward(ctx, g):
        xp = backend.get_array_module(g)
        return tuple(xp.moveaxis(g, ctx.axis, 0))


class GetItem(Function):
    """Basic slicing and integer-array indexing (gather), with a scatter-add backward."""

    @staticmethod
    def forward(ctx, a, idx):
        ctx.shape, ctx.dtype, ctx.idx = a.shape, a.dtype, idx
        return a[idx]

    @staticmethod
    def backward(ctx, g):
        xp = backend.get_array_module(g)
        grad = xp.zeros(ctx.shape, dtype=g.dtype)
        backend.scatter_add(grad, ctx.idx, g)
        return grad, None


class Embedding(Function):
    """Row lookup ``W[ids]``; the backward adds each token's gradient into its row."""

    @staticmethod
    def forward(ctx, weight, ids):
        ctx.shape, ctx.ids = weight.shape, ids
        return weight[ids]

    @staticmethod
    def backward(ctx, g):
        xp = backend.get_array_module(g)
        grad = xp.zeros(ctx.shape, dtype=g.dtype)
        backend.scatter_add(grad, ctx.ids.reshape(-1), g.reshape(-1, ctx.shape[1]))
        return grad, None


def _raw(idx):
    """Indices may be Tensors (their data is used; indices carry no gradient)."""
    if isinstance(idx, Tensor):
        return idx.data
    if isinstance(idx, tuple):
        return tuple(_raw(i) for i in idx)
    return idx


def reshape(a, shape): return Reshape.apply(a, tuple(shape))
def transpose(a, axes=None): return Transpose.apply(a, None if axes is None else tuple(axes))
def expand(a, shape): return Expand.apply(a, tuple(shape))
def concatenate(tensors, axis=0): return Concatenate.apply(*tensors, axis=axis)
def stack(tensors, axis=0): return Stack.apply(*tensors, axis=axis)
def getitem(a, idx): return GetItem.apply(a, _raw(idx))
def embedding(weight, ids): return Embedding.apply(weight, _raw(ids))
