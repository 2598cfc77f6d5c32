"""BERT's softmax attention as one op: ``Y = dropout(softmax(Q K^T s + M)) V`` per head, forward and backward.

The same numbers as the ops it replaces one after the other (``matmul``, ``* s``, ``+ M``,
``softmax``, ``dropout``, ``matmul``, the heads put back side by side; they stay in
``BertSelfAttention(fused=False)``, the reference tests/test_fused_ops.py compares this op with),
laid out differently:

* one input ``qkv`` (B, L, 3D): the query, key and value projections side by side, the
  output of one matrix product; its gradient is written into one (B, L, 3D) array, so the
  three projections' backward is one product as well.
* batch rows are independent: each direction is the work on a block of them, run on both
  cores by ``minispike.parallel`` (NumPy's stacked matmul and softmax on one block at a time,
  in cache); the output is written straight into the (B, L, D) layout the next Linear reads.
* with numba installed, the forward's scale, mask and softmax are one compiled pass per row
  on float32 host arrays (``minispike.compiled.masked_softmax``; the backward is this one).

Per head, with ``P`` the probabilities, ``K`` the dropout's keep mask and ``p`` its rate:

    forward   S = Q K^T s + M        P = softmax(S)     A = P * K / (1 - p)     Y = A V
    backward  dA = dY V^T            dV = A^T dY        dP = dA * K / (1 - p)
              dS = P * (dP - sum_j dP P)                dQ = dS K s,   dK = dS^T Q s
"""
from __future__ import annotations

from .. import backend, compiled, parallel
from ..tensor import Function
from .nn import softmax_backward_rows, softmax_rows

__all__ = ["SoftmaxAttention", "softmax_attention"]


def _heads(x, heads):  # (b, L, D) array -> (b, H, L, d) view
    b, L, D = x.shape
    return x.reshape(b, L, heads, D // heads).swapaxes(1, 2)


class SoftmaxAttention(Function):
    """``Y = SoftmaxAttention.apply(qkv, mask_add, heads=H, scale=s, dropout=p, training=t, store=None)``.

    ``qkv``: (B, L, 3D); ``mask_add``: (B, 1, 1, L) added to the scores (0 or the most negative
    float) or None; returns Y (B, L, D). ``store``, a dict, receives the probabilities P
    (B, H, L, L) for reading (``output_attentions``; they carry no gradient of their own)."""

    @staticmethod
    def forward(ctx, qkv, mask_add=None, *, heads=1, scale=1.0, dropout=0.0, training=False, store=None):
        xp = backend.get_array_module(qkv)
        B, L, D3 = qkv.shape
        D = D3 // 3
        q, k, v = (_heads(qkv[..., i * D:(i + 1) * D], heads) for i in range(3))  # (B, H, L, d) views
        probs = xp.empty((B, heads, L, L), dtype=qkv.dtype)
        keep = backend.rand(probs.shape, xp=xp, dtype=qkv.dtype) >= dropout if training and dropout > 0 else None
        drop_scale = 1.0 / (1.0 - dropout) if keep is not None else None
        y = xp.empty((B, L, D), dtype=qkv.dtype)
        yh = _heads(y, heads)
        kernel = compiled.enabled()  # numba installed: the scale, mask and softmax in one compiled pass

        def rows(r):
            s = xp.matmul(q[r], k[r].swapaxes(-1, -2), out=probs[r])  # (b, H, L, L) = Q K^T
            if not (kernel and compiled.masked_softmax(s, None if mask_add is None else mask_add[r], scale)):
                s *= scale
                if mask_add is not None:
                    s += mask_add[r]
                s2 = s.reshape(-1, L)
                softmax_rows(s2, s2)
            a = s if keep is None else s * (keep[r].astype(s.dtype) * drop_scale)  # dropout on the probabilities
            xp.matmul(a, v[r], out=yh[r])  # Y = A V, heads side by side

        parallel.for_blocks(rows, B, xp, per_row=heads * L * L)
        ctx.save_for_backward(qkv, probs)
        ctx.keep, ctx.drop_scale, ctx.heads, ctx.scale = keep, drop_scale, heads, scale
        if store is not None:
            store["probs"] = probs
        return y

    @staticmethod
    def backward(ctx, dy):
        qkv, probs = ctx.saved
        xp = backend.get_array_module(dy)
        B, L, D3 = qkv.shape
        D, h, keep = D3 // 3, ctx.heads, ctx.keep
        q, k, v = (_heads(qkv[..., i * D:(i + 1) * D], h) for i in range(3))
        dqkv = xp.empty_like(qkv)  # (B, L, 3D): dQ, dK, dV side by side
        dq, dk, dv = (_heads(dqkv[..., i * D:(i + 1) * D], h) for i in range(3))
        dyh = _heads(dy, h)

        def rows(r):
            p = probs[r]
            keep_r = None if keep is None else keep[r].astype(p.dtype) * ctx.drop_scale
            a = p if keep_r is None else p * keep_r
            xp.matmul(a.swapaxes(-1, -2), dyh[r], out=dv[r])  # dV = A^T dY
            dp = dyh[r] @ v[r].swapaxes(-1, -2)  # dA = dY V^T, (b, H, L, L)
            if keep_r is not None:
                dp *= keep_r  # through the dropout
            d = xp.empty_like(dp)  # through the softmax: dS = P * (dP - sum(dP * P))
            softmax_backward_rows(dp.reshape(-1, L), p.reshape(-1, L), d.reshape(-1, L))
            d *= ctx.scale  # through the scale
            xp.matmul(d, k[r], out=dq[r])  # dQ = dS K
            xp.matmul(d.swapaxes(-1, -2), q[r], out=dk[r])  # dK = dS^T Q

        parallel.for_blocks(rows, B, xp, per_row=h * L * L)
        return dqkv, None


def softmax_attention(qkv, mask_add=None, heads=1, scale=1.0, dropout=0.0, training=False, store=None):
    """Functional ``SoftmaxAttention`` on a (B, L, 3D) Tensor."""
    return SoftmaxAttention.apply(qkv, mask_add, heads=heads, scale=scale, dropout=dropout, training=training,
                                  store=store)
