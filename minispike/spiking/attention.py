"""Spiking self-attention (SSA) and the spiking MLP of SpikeBERT, on ``(T, B, L, D)`` spikes.

A spiking linear unit is ``SpikeLinear(x) = LIF(LN(x W^T + b))``. With it:

    Q = SpikeLinear_q(x),  K = SpikeLinear_k(x),  V = SpikeLinear_v(x)        (T, B, L, D) spikes
    split into h heads of d_h = D / h:  Q_h, K_h, V_h                          (T, B, h, L, d_h)
    A_h = Q_h K_h^T          (no softmax: spikes are non-negative)             (T, B, h, L, L)
    Y_h = (A_h V_h) * scale  (scale 0.125)
    Y   = LIF_attn(concat_h Y_h)  at its own threshold (0.5 = V_th / 2 in the official code)
    SSA(x) = SpikeLinear_out(Y)

    MLP(x) = SpikeLinear_down(SpikeLinear_up(x)),  up: D -> 4D,  down: 4D -> D

Padding: with a key mask ``m`` (B, L; 1 = real token), ``K`` is multiplied by ``m`` before
the product, so ``A[i, j] = 0`` for every padded key ``j``: padded tokens contribute nothing
to real tokens (the official code has no mask; without one the result is identical).

Cost: without softmax the product associates, ``(Q K^T) V = Q (K^T V)``; minispike computes
``K^T V`` (d_h x d_h per head) first, which needs ``2 L d_h^2`` instead of ``2 L^2 d_h``
multiply-adds per head and never builds the L x L matrix; the scale is applied to the small
``K^T V``. On spikes every partial sum is an integer (<= L d_h) and 0.125 a power of two, so
both orders give bit-identical results in float32 and float64.
"""
from __future__ import annotations

from .. import ops
from ..nn import LayerNorm, Linear, Module
from .lif import LIF

__all__ = ["SpikeLinear", "SpikingSelfAttention", "SpikingMLP", "spiking_attention"]


def spiking_attention(q, k, v, key_mask=None, scale=0.125):
    """``(Q K^T) V * scale`` per head, computed as ``Q (K^T V * scale)``; no softmax.

    ``q, k, v``: (T, B, h, L, d_h) Tensors; ``key_mask``: (B, L), 1 for real tokens, or None.
    """
    T, B, h, L, d_h = k.shape
    if key_mask is not None:  # zero the keys of padded tokens: they reach no query
        k = k * key_mask.reshape(1, B, 1, L, 1)
    kv = (k.transpose(0, 1, 2, 4, 3) @ v) * scale  # (T, B, h, d_h, d_h) = K^T V * scale
    return q @ kv  # (T, B, h, L, d_h) = (Q K^T) V * scale


class SpikeLinear(Module):
    """``LIF(LayerNorm(Linear(x)))`` on ``(T, B, L, D_in)`` -> ``(T, B, L, D_out)`` spikes."""

    def __init__(self, d_in, d_out, *, ln_eps=1e-5, lif=None):
        self.fc = Linear(d_in, d_out)
        self.ln = LayerNorm(d_out, eps=ln_eps)
        self.lif = LIF(**{**(lif or {}), "overwrite_input": True})  # the LN output is the LIF's alone

    def forward(self, x, static=None):
        """``static``: when x is one (B, L, D_in) input repeated over T (the encoded embedding),
        pass that (B, L, D_in) Tensor: Linear and LayerNorm then run once, not T times."""
        if static is not None:
            h = self.ln(self.fc(static.reshape(-1, static.shape[-1])))  # (B L, D_out)
            h = h.reshape(1, *static.shape[:-1], h.shape[-1])
            return self.lif(ops.expand(h, (x.shape[0], *h.shape[1:])))  # the same drive at every t
        lead = x.shape[:-1]  # (T, B, L)
        h = self.fc(x.reshape(-1, x.shape[-1]))  # (T B L, D_out): one BLAS call
        h = self.ln(h)
        return self.lif(h.reshape(*lead, h.shape[-1]))  # (T, B, L, D_out)


class SpikingSelfAttention(Module):
    """Token-level spiking self-attention; parameters ``q, k, v, out`` (each fc + ln) and two LIF groups."""

    def __init__(self, dim, heads, *, scale=0.125, attn_threshold=0.5, ln_eps=1e-5, lif=None):
        if dim % heads:
            raise ValueError(f"SpikingSelfAttention: dim {dim} is not divisible by heads {heads}")
        lif = dict(lif or {})
        self.dim, self.heads, self.scale = dim, heads, float(scale)
        self.q = SpikeLinear(dim, dim, ln_eps=ln_eps, lif=lif)
        self.k = SpikeLinear(dim, dim, ln_eps=ln_eps, lif=lif)
        self.v = SpikeLinear(dim, dim, ln_eps=ln_eps, lif=lif)
        self.attn_lif = LIF(**{**lif, "v_threshold": attn_threshold, "overwrite_input": True})
        self.out = SpikeLinear(dim, dim, ln_eps=ln_eps, lif=lif)

    def _heads(self, x):  # (T, B, L, D) -> (T, B, h, L, d_h)
        T, B, L, D = x.shape
        return x.reshape(T, B, L, self.heads, D // self.heads).transpose(0, 1, 3, 2, 4)

    def forward(self, x, key_mask=None, static=None):
        """``x``: (T, B, L, D); ``key_mask``: (B, L) with 1 for real tokens, or None;
        ``static``: (B, L, D) when x is that input repeated over T (see SpikeLinear)."""
        T, B, L, D = x.shape
        q = self._heads(self.q(x, static))  # (T, B, h, L, d_h)
        k = self._heads(self.k(x, static))
        v = self._heads(self.v(x, static))
        y = spiking_attention(q, k, v, key_mask, self.scale)  # (T, B, h, L, d_h)
        y = y.transpose(0, 1, 3, 2, 4).reshape(T, B, L, D)  # heads back side by side
        y = self.attn_lif(y)
        return self.out(y)


class SpikingMLP(Module):
    """``down(up(x))``: D -> hidden (4D) -> D, each Linear -> LayerNorm -> LIF."""

    def __init__(self, dim, hidden, *, ln_eps=1e-5, lif=None):
        self.up = SpikeLinear(dim, hidden, ln_eps=ln_eps, lif=lif)
        self.down = SpikeLinear(hidden, dim, ln_eps=ln_eps, lif=lif)

    def forward(self, x):
        return self.down(self.up(x))
