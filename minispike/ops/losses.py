"""Losses, each fused into one op with a closed-form backward.

cross_entropy  L = -(1/B) sum_b log softmax(z_b)[y_b]
                                      dz = (softmax(z) - onehot(y)) / B
kl_div         L = (tau^2 / B) sum_b sum_c p_bc (log p_bc - log q_bc),   log q = log_softmax(z / tau)
                 (z: student logits; p: teacher probabilities, already softened by tau)
                                      dz = (tau / B) (q - p)
mse_loss       L = sum m (a - b)^2 / (sum m * D)   (mean over kept entries; m broadcast, 1 = keep)
                                      da = 2 m (a - b) / N,   db = -da
"""
from .. import backend
from ..tensor import Function, Tensor


def _log_softmax(z):
    xp = backend.get_array_module(z)
    s = z - z.max(axis=-1, keepdims=True)
    return s - xp.log(xp.exp(s).sum(axis=-1, keepdims=True))


class CrossEntropy(Function):
    @staticmethod
    def forward(ctx, logits, labels):
        xp = backend.get_array_module(logits)
        logp = _log_softmax(logits)  # (B, C)
        rows = xp.arange(logits.shape[0])
        ctx.save_for_backward(logp, labels)
        return -logp[rows, labels].mean()

    @staticmethod
    def backward(ctx, g):
        logp, labels = ctx.saved
        xp = backend.get_array_module(logp)
        d = xp.exp(logp)  # softmax(z)
        d[xp.arange(d.shape[0]), labels] -= 1.0  # - onehot(y)
        return g * d / d.shape[0], None


class KLDiv(Function):
    """KL(teacher p || student q) from student logits, as distillation uses it."""

    @staticmethod
    def forward(ctx, logits, teacher_probs, temperature=1.0):
        xp = backend.get_array_module(logits)
        logq = _log_softmax(logits / temperature)
        p = teacher_probs
        logp = xp.log(xp.where(p > 0, p, 1.0))  # 0 log 0 = 0
        ctx.save_for_backward(logq, p)
        ctx.tau = temperature
        return (p * (logp - logq)).sum() / logits.shape[0] * temperature ** 2

    @staticmethod
    def backward(ctx, g):
        logq, p = ctx.saved
        xp = backend.get_array_module(logq)
        return g * (xp.exp(logq) - p) * (ctx.tau / logq.shape[0]), None, None


class MSELoss(Function):
    @staticmethod
    def forward(ctx, a, b, mask=None):
        xp = backend.get_array_module(a)
        diff = a - b
        shape = xp.broadcast_shapes(a.shape, b.shape) if hasattr(xp, "broadcast_shapes") else diff.shape
        if mask is None:
            n = diff.size
            m = None
        else:
            m = xp.broadcast_to(mask.astype(diff.dtype), shape)
            n = xp.maximum(m.sum(dtype=xp.float64), 1.0).astype(diff.dtype)  # on the device: no sync
            diff = diff * m
        ctx.save_for_backward(diff)
        ctx.n = n
        return (diff * diff).sum() / n

    @staticmethod
    def backward(ctx, g):
        (diff,) = ctx.saved
        d = g * 2.0 * diff / ctx.n
        return d, -d, None


def _raw(t):
    return t.data if isinstance(t, Tensor) else t


def cross_entropy(logits, labels): return CrossEntropy.apply(logits, _raw(labels))
def kl_div(student_logits, teacher_probs, temperature=1.0):
    return KLDiv.apply(student_logits, _raw(teacher_probs), temperature=temperature)
def mse_loss(a, b, mask=None): return MSELoss.apply(a, b, None if mask is None else _raw(mask))
