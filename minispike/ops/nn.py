"""Neural-network ops with hand-derived backwards (see docs/layernorm.md; softmax attention: docs/bert.md).

linear       y = x W^T + b                    dx = g W,  dW = g^T x (over all rows),  db = sum g
softmax      p = e^(x - max) / sum e^(x - max)
                                              dx = p * (g - sum(g * p))
log_softmax  l = x - max - log sum e^(x - max)
                                              dx = g - softmax(x) * sum(g)
layer_norm   xhat = (x - mu) * rstd,  rstd = 1 / sqrt(var + eps),  y = xhat * w + b
                                              dxhat = g * w
                                              dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
                                              dw = sum g * xhat,  db = sum g
dropout      y = x * m / (1 - p),  m ~ Bernoulli(1 - p) in training, y = x in evaluation
                                              dx = g * m / (1 - p)
where        y = c ? a : b                    da = g * c,  db = g * (1 - c)
masked_fill  y = mask ? value : x             dx = g * (1 - mask)
"""
from .. import backend, compiled, parallel
from ..tensor import Function, Tensor


class Linear(Function):
    """A fused affine map; rows of any leading shape are flattened into one BLAS call."""

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        x2 = x.reshape(-1, x.shape[-1])  # (N, in): one big GEMM, not a batch of small ones
        y = x2 @ weight.T  # (N, out)
        if bias is not None:
            y += bias
        return y.reshape(x.shape[:-1] + (weight.shape[0],))

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved
        g2 = g.reshape(-1, g.shape[-1])  # (N, out)
        dx = (g2 @ weight).reshape(x.shape)  # (..., in)
        dw = g2.T @ x.reshape(-1, x.shape[-1])  # (out, in)
        db = g2.sum(axis=0) if ctx.has_bias else None
        return dx, dw, db


class Softmax(Function):
    """Over the last axis, rows are independent: each direction is the work on a block of rows
    (``softmax_rows``, ``softmax_backward_rows``, also used by ``ops.attention``), run on both
    cores by ``minispike.parallel`` (one block: the plain path; the same numbers). Another axis
    is moved last first."""

    @staticmethod
    def forward(ctx, x, axis=-1):
        xp = backend.get_array_module(x)
        xl = xp.moveaxis(x, axis, -1)
        x2 = xl.reshape(-1, xl.shape[-1])  # (N, n)
        p = xp.empty_like(x2)
        parallel.for_blocks(lambda r: softmax_rows(x2[r], p[r]), x2.shape[0], xp, per_row=x2.shape[1])
        p = xp.moveaxis(p.reshape(xl.shape), -1, axis)
        ctx.save_for_backward(p)
        ctx.axis = axis
        return p

    @staticmethod
    def backward(ctx, g):
        (p,) = ctx.saved
        xp = backend.get_array_module(g)
        pl, gl = xp.moveaxis(p, ctx.axis, -1), xp.moveaxis(g, ctx.axis, -1)
        p2, g2 = pl.reshape(-1, pl.shape[-1]), gl.reshape(-1, gl.shape[-1])  # (N, n)
        dx = xp.empty_like(p2)
        parallel.for_blocks(lambda r: softmax_backward_rows(g2[r], p2[r], dx[r]), p2.shape[0], xp, per_row=p2.shape[1])
        return xp.moveaxis(dx.reshape(pl.shape), -1, ctx.axis)


def softmax_rows(x, p):
    """Softmax of a block of rows ``x`` (n, L) into ``p`` (may be ``x``'s own buffer)."""
    xp = backend.get_array_module(x)
    e = xp.subtract(x, x.max(axis=1, keepdims=True), out=p)
    xp.exp(e, out=e)
    e /= e.sum(axis=1, keepdims=True)


def softmax_backward_rows(g, p, dx):
    """The backward of ``softmax_rows`` for a block of rows: ``dx = p * (g - sum(g * p))``
    (``dx``, a buffer of its own, holds ``g * p`` on the way)."""
    xp = backend.get_array_module(g)
    s = xp.multiply(g, p, out=dx).sum(axis=1, keepdims=True)  # sum(g * p)
    xp.subtract(g, s, out=dx)
    dx *= p


class LogSoftmax(Function):
    @staticmethod
    def forward(ctx, x, axis=-1):
        xp = backend.get_array_module(x)
        shifted = x - x.max(axis=axis, keepdims=True)
        out = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved
        xp = backend.get_array_module(out)
        return g - xp.exp(out) * g.sum(axis=ctx.axis, keepdims=True)


class LayerNorm(Function):
    """Layer norm over the last axis, forward and backward written out (llm.c style).

    Rows are flattened to (N, D) and are independent: each direction is written once as the
    work on a block of rows (``layer_norm_rows``, ``layer_norm_backward_rows``, also used by
    the fused ``spiking.spike_linear``), which ``minispike.parallel`` runs on both cores (one
    block: the plain path). Row dot products use einsum; intermediate arrays are reused in
    place, so each direction allocates two (N, D) arrays. Without a gradient (inference) on
    float32 host arrays, ``minispike.compiled`` runs the forward as one compiled pass per row
    when numba is installed (this code is then the reference its test compares with).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps=1e-12):
        xp = backend.get_array_module(x)
        D = x.shape[-1]
        x2 = x.reshape(-1, D)  # (N, D)
        y = None if ctx.needs_grad else compiled.layer_norm(x2, weight, bias, eps)  # None: not compiled here
        if y is not None:  # inference, numba installed: nothing kept for a backward
            return y.reshape(x.shape)
        xhat, y = xp.empty_like(x2), xp.empty_like(x2)  # (N, D)
        rstd = xp.empty((x2.shape[0], 1), dtype=x2.dtype)  # (N, 1)
        parallel.for_blocks(lambda r: layer_norm_rows(x2[r], xhat[r], rstd[r], y[r], weight, bias, eps),
                            x2.shape[0], xp, per_row=D)
        ctx.save_for_backward(xhat, rstd, weight)
        ctx.shape = x.shape
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, g):
        xhat, rstd, weight = ctx.saved
        xp = backend.get_array_module(g)
        D = xhat.shape[1]
        g2 = g.reshape(-1, D)  # (N, D)
        dx = xp.empty_like(xhat)  # (N, D)
        parts = parallel.for_blocks(lambda r: layer_norm_backward_rows(g2[r], xhat[r], rstd[r], weight, dx[r]),
                                    g2.shape[0], xp, per_row=D)
        dweight, dbias = parts[0]
        for dw, db in parts[1:]:  # the blocks' sums over rows
            dweight, dbias = dweight + dw, dbias + db
        return dx.reshape(ctx.shape), dweight, dbias


def layer_norm_rows(x, xhat, rstd, y, weight, bias, eps):
    """LayerNorm of a block of rows ``x`` (n, D): fills ``xhat`` (n, D), ``rstd`` (n, 1) and
    ``y`` (n, D; may be ``x``'s own buffer: x is read before y is written)."""
    xp = backend.get_array_module(x)
    xh = xp.subtract(x, x.mean(axis=1, keepdims=True), out=xhat)  # x - mu
    var = xp.einsum("ij,ij->i", xh, xh)[:, None] / x.shape[1]  # mean((x - mu)^2)
    rstd[...] = 1.0 / xp.sqrt(var + eps)
    xh *= rstd  # xhat = (x - mu) * rstd
    xp.multiply(xh, weight, out=y)
    y += bias


def layer_norm_backward_rows(g, xhat, rstd, weight, dx):
    """The backward of ``layer_norm_rows`` for a block of rows: fills ``dx`` (n, D; may be
    ``g``'s own buffer: g is read before dx is written) and returns this block's sums over
    rows ``(dweight, dbias)``."""
    xp = backend.get_array_module(g)
    dweight = xp.einsum("ij,ij->j", g, xhat)  # dL/dw = sum over rows of g * xhat
    dbias = g.sum(axis=0)  # dL/db = sum over rows of g
    dxhat = xp.multiply(g, weight, out=dx)  # through the affine
    # through the normalisation: the mean term and the variance term
    mean_dxhat = dxhat.mean(axis=1, keepdims=True)
    mean_dxhat_xhat = xp.einsum("ij,ij->i", dxhat, xhat)[:, None] / xhat.shape[1]
    variance_term = xhat * mean_dxhat_xhat
    dxhat -= mean_dxhat
    dxhat -= variance_term
    dxhat *= rstd  # dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
    return dweight, dbias


class Dropout(Function):
    @staticmethod
    def forward(ctx, x, p=0.1, training=True):
        if not training or p == 0.0:
            ctx.scale = None
            return x
        xp = backend.get_array_module(x)
        keep = backend.rand(x.shape, xp=xp, dtype=x.dtype) >= p
        ctx.scale = keep.astype(x.dtype) * (1.0 / (1.0 - p))  # m / (1 - p), in x's dtype
        return x * ctx.scale

    @staticmethod
    def backward(ctx, g):
        return g if ctx.scale is None else g * ctx.scale


class Where(Function):
    @staticmethod
    def forward(ctx, cond, a, b):
        ctx.cond = cond
        return backend.get_array_module(cond).where(cond, a, b)

    @staticmethod
    def backward(ctx, g):
        return None, g * ctx.cond, g * (~ctx.cond)


class MaskedFill(Function):
    @staticmethod
    def forward(ctx, x, mask, value):
        ctx.mask = mask
        return backend.get_array_module(x).where(mask, x.dtype.type(value), x)

    @staticmethod
    def backward(ctx, g):
        return g * (~ctx.mask), None, None


def _raw(t):
    return t.data if isinstance(t, Tensor) else t


def linear(x, weight, bias=None): return Linear.apply(x, weight, bias)
def softmax(x, axis=-1): return Softmax.apply(x, axis=axis)
def log_softmax(x, axis=-1): return LogSoftmax.apply(x, axis=axis)
def layer_norm(x, weight, bias, eps=1e-12): return LayerNorm.apply(x, weight, bias, eps=eps)
def dropout(x, p=0.1, training=True): return Dropout.apply(x, p=p, training=training)
def where(cond, a, b): return Where.apply(_raw(cond).astype(bool), a, b)
def masked_fill(x, mask, value): return MaskedFill.apply(x, _raw(mask).astype(bool), value)
