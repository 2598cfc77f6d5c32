"""Element-wise ops and matmul, each forward next to its backward.

    add      y = a + b          da = g            db = g
    sub      y = a - b          da = g            db = -g
    mul      y = a * b          da = g b          db = g a
    div      y = a / b          da = g / b        db = -g a / b^2
    neg      y = -a             da = -g
    pow      y = a^p (p const)  da = g p a^(p-1)
    matmul   Y = A @ B          dA = G @ B^T      dB = A^T @ G      (batched over leading axes)
    exp      y = e^a            da = g y
    log      y = ln a           da = g / a
    tanh     y = tanh a         da = g (1 - y^2)
    sigmoid  y = 1/(1+e^-a)     da = g y (1 - y)
    relu     y = max(a, 0)      da = g [a > 0]          (the derivative at 0 is taken as 0)
    gelu     y = a Phi(a),  Phi(a) = (1 + erf(a / sqrt 2)) / 2
                                da = g (Phi(a) + a phi(a)),  phi(a) = exp(-a^2/2) / sqrt(2 pi)

Broadcasting is undone by the engine (``tensor.unbroadcast``), so these backwards return
gradients in the broadcast shape.
"""
import math

from .. import backend, compiled, parallel
from ..tensor import Function


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, g):
        return g, g


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        return a - b

    @staticmethod
    def backward(ctx, g):
        return g, -g


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        return g * b, g * a


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        return g / b, -g * a / (b * b)


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return -g


class Pow(Function):
    @staticmethod
    def forward(ctx, a, p):
        ctx.save_for_backward(a)
        ctx.p = p
        return a ** p

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        return g * ctx.p * a ** (ctx.p - 1), None


class MatMul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        xp = backend.get_array_module(g)
        if b.ndim == 1:  # (..., n) @ (n,) -> (...)
            return g[..., None] * b, (g[..., None] * a).reshape(-1, a.shape[-1]).sum(0)
        if a.ndim == 1:  # (n,) @ (..., n, m) -> (..., m)
            return (b @ g[..., None])[..., 0], a[:, None] * g[..., None, :]
        return g @ xp.swapaxes(b, -1, -2), xp.swapaxes(a, -1, -2) @ g


class Exp(Function):
    @staticmethod
    def forward(ctx, a):
        y = backend.get_array_module(a).exp(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        return g * y


class Log(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return backend.get_array_module(a).log(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        return g / a


class Tanh(Function):
    @staticmethod
    def forward(ctx, a):
        y = backend.get_array_module(a).tanh(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        return g * (1 - y * y)


class Sigmoid(Function):
    @staticmethod
    def forward(ctx, a):
        xp = backend.get_array_module(a)
        y = 0.5 * (xp.tanh(0.5 * a) + 1)  # = 1 / (1 + e^-a), without overflow
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        return g * y * (1 - y)


class ReLU(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a > 0)
        return a * (a > 0)

    @staticmethod
    def backward(ctx, g):
        (positive,) = ctx.saved
        return g * positive


class GELU(Function):
    """GELU in its exact erf form, the one BERT uses: ``y = a Phi(a)``, ``dy/da = Phi(a) + a phi(a)``
    with ``phi(a) = e^(-a^2/2) / sqrt(2 pi)``.

    Elementwise, so each direction is the work on a block of the flattened array, run on
    both cores in cache-sized blocks by ``minispike.parallel`` (one block: the plain path; the
    same numbers). The forward keeps ``Phi(a)`` and ``e^(-a^2/2)`` (``backend.normal_cdf``
    computes both), so the backward needs no exponential of its own. On float32 host arrays,
    ``minispike.compiled`` runs the forward as one compiled pass when numba is installed
    (this NumPy code is then the reference its test compares with)."""

    @staticmethod
    def forward(ctx, a):
        xp = backend.get_array_module(a)
        got = compiled.gelu(a, keep=ctx.needs_grad)  # numba installed: one compiled pass; None: not here
        if got is not None:
            if not ctx.needs_grad:
                return got
            ctx.save_for_backward(a, got[1], got[2])  # Phi(a), e^(-a^2/2)
            return got[0]
        y = xp.empty_like(a)
        # Phi(a) and e^(-a^2/2), kept for the backward; without one (no_grad) Phi goes into y's buffer
        cdf, gauss = (xp.empty_like(a), xp.empty_like(a)) if ctx.needs_grad else (y, None)
        a1, cdf1, y1 = a.reshape(-1), cdf.reshape(-1), y.reshape(-1)  # flat views
        gauss1 = gauss.reshape(-1) if gauss is not None else None

        def block(r):
            backend.normal_cdf(a1[r], out=(cdf1[r], gauss1[r] if gauss1 is not None else xp.empty_like(a1[r])))
            xp.multiply(a1[r], cdf1[r], out=y1[r])  # y = a Phi(a)

        parallel.for_blocks(block, a1.shape[0], xp)  # ~20 passes, each over a cached block
        if ctx.needs_grad:
            ctx.save_for_backward(a, cdf, gauss)
        return y

    @staticmethod
    def backward(ctx, g):
        a, cdf, gauss = ctx.saved
        xp = backend.get_array_module(a)
        da = xp.empty_like(a)
        a1, cdf1, gauss1, g1, da1 = a.reshape(-1), cdf.reshape(-1), gauss.reshape(-1), g.reshape(-1), da.reshape(-1)

        def block(r):
            slope = xp.multiply(a1[r], gauss1[r], out=da1[r])
            slope *= 1.0 / math.sqrt(2.0 * math.pi)  # a phi(a)
            slope += cdf1[r]  # Phi(a) + a phi(a)
            slope *= g1[r]

        parallel.for_blocks(block, a1.shape[0], xp)
        return da



def add(a, b): return Add.apply(a, b)
def sub(a, b): return Sub.apply(a, b)
def mul(a, b): return Mul.apply(a, b)
def div(a, b): return Div.apply(a, b)
def neg(a): return Neg.apply(a)
def pow(a, p): return Pow.apply(a, p)  # noqa: A001 - mirrors the operator's name
def matmul(a, b): return MatMul.apply(a, b)
def exp(a): return Exp.apply(a)
def log(a): return Log.apply(a)
def tanh(a): return Tanh.apply(a)
def sigmoid(a): return Sigmoid.apply(a)
def relu(a): return ReLU.apply(a)
def gelu(a): return GELU.apply(a)
