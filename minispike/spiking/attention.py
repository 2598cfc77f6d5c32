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

from .. import backend, ops
from ..nn import LayerNorm, Linear, Module
from ..tensor import Function
from .lif import LIF
from .spike_linear import spike_linear, spiking_mlp

__all__ = ["SpikeLinear", "SpikingSelfAttention", "SpikingMLP", "spiking_attention", "SpikingAttentionFunction"]


def spiking_attention(q, k, v, key_mask=None, scale=0.125):
    """``(Q K^T) V * scale`` per head, computed as ``Q (K^T V * scale)``; no softmax.

    ``q, k, v``: (T, B, h, L, d_h) Tensors; ``key_mask``: (B, L), 1 for real tokens, or None.
    """
    T, B, h, L, d_h = k.shape
    if key_mask is not None:  # zero the keys of padded tokens: they reach no query
        k = k * key_mask.reshape(1, B, 1, L, 1)
    kv = (k.transpose(0, 1, 2, 4, 3) @ v) * scale  # (T, B, h, d_h, d_h) = K^T V * scale
    return q @ kv  # (T, B, h, L, d_h) = (Q K^T) V * scale


class SpikingAttentionFunction(Function):
    """``spiking_attention`` as one op on (T, B, L, D) arrays, heads split inside: the same
    numbers, written straight into the (T, B, L, D) layout the attention LIF reads, and the
    masked keys recomputed in the backward instead of kept (two (T, B, L, D) arrays less per
    block). ``Y = SpikingAttentionFunction.apply(q, k, v, key_mask, heads=h, scale=s)``.

    With ``K_m = K * m`` (the key mask), per head (T, B, h fixed; Q, K_m, V are (L, d_h)):

        KV = K_m^T V * s              dKV = Q^T dY
        Y  = Q KV                     dQ  = dY KV^T
                                      dV  = K_m (dKV s),   dK = (V (dKV s)^T) * m
    """

    @staticmethod
    def forward(ctx, q, k, v, key_mask=None, *, heads=1, scale=0.125):
        xp = backend.get_array_module(q)
        km = k if key_mask is None else k * key_mask[None, :, :, None]  # (T, B, L, D): padded keys are 0
        kv = (_split(km, heads).swapaxes(-1, -2) @ _split(v, heads)) * scale  # (T, B, h, d_h, d_h)
        y = xp.empty_like(q)  # (T, B, L, D): the heads side by side
        xp.matmul(_split(q, heads), kv, out=_split(y, heads))
        ctx.save_for_backward(q, k, v, kv)
        ctx.key_mask, ctx.heads, ctx.scale = key_mask, heads, scale
        return y

    @staticmethod
    def backward(ctx, dy):
        q, k, v, kv = ctx.saved
        xp = backend.get_array_module(dy)
        h, m = ctx.heads, ctx.key_mask
        km = k if m is None else k * m[None, :, :, None]  # recomputed, not kept
        dyh = _split(dy, h)  # (T, B, h, L, d_h)
        dq, dk, dv = xp.empty_like(q), xp.empty_like(k), xp.empty_like(v)
        xp.matmul(dyh, kv.swapaxes(-1, -2), out=_split(dq, h))  # dQ = dY KV^T
        dkv = _split(q, h).swapaxes(-1, -2) @ dyh  # (T, B, h, d_h, d_h) = Q^T dY
        dkv *= ctx.scale
        xp.matmul(_split(km, h), dkv, out=_split(dv, h))  # dV = K_m dKV s
        xp.matmul(_split(v, h), dkv.swapaxes(-1, -2), out=_split(dk, h))  # dK_m = V (dKV s)^T
        if m is not None:
            dk *= m[None, :, :, None]
        return dq, dk, dv, None


def _split(x, heads):  # (T, B, L, D) array -> (T, B, h, L, d_h) view
    T, B, L, D = x.shape
    return x.reshape(T, B, L, heads, D // heads).swapaxes(2, 3)


class SpikeLinear(Module):
    """``LIF(LayerNorm(Linear(x)))`` on ``(T, B, L, D_in)`` -> ``(T, B, L, D_out)`` spikes.

    ``fused=True`` (the default) runs the three as one op (``spiking.spike_linear``: the same
    numbers, a quarter less memory kept for the backward); ``fused=False`` composes the three
    ops, the reference the fused op is tested against (and the path for a learnable tau or
    threshold, whose gradients only the LIF op carries)."""

    def __init__(self, d_in, d_out, *, ln_eps=1e-5, lif=None, fused=True):
        self.fc = Linear(d_in, d_out)
        self.ln = LayerNorm(d_out, eps=ln_eps)
        self.lif = LIF(**{**(lif or {}), "overwrite_input": True})  # the LN output is the LIF's alone
        self.fused = bool(fused)

    def fusable(self) -> bool:
        """Whether the fused op may run: fused, and tau and V_th plain numbers (not learnable)."""
        return self.fused and isinstance(self.lif.tau, float) and isinstance(self.lif.v_threshold, float)

    def parameters_in_order(self):
        """``(W, b, ln_w, ln_b)``, as the fused ops take them."""
        return self.fc.weight, self.fc.bias, self.ln.weight, self.ln.bias

    def forward(self, x, static=None):
        """``static``: when x is one (B, L, D_in) input repeated over T (the encoded embedding),
        pass that (B, L, D_in) Tensor: Linear and LayerNorm then run once, not T times."""
        lif = self.lif
        if self.fusable():
            store = lif.trace_store()
            steps = x.shape[0] if static is not None else None
            out = spike_linear(static if static is not None else x, *self.parameters_in_order(), eps=self.ln.eps,
                               steps=steps, store=store, **lif.options())
            lif.report(store)
            return out
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
        self.fused = True  # False: spiking_attention composed of ops, the reference

    def _heads(self, x):  # (T, B, L, D) -> (T, B, h, L, d_h)
        T, B, L, D = x.shape
        return x.reshape(T, B, L, self.heads, D // self.heads).transpose(0, 1, 3, 2, 4)

    def forward(self, x, key_mask=None, static=None):
        """``x``: (T, B, L, D); ``key_mask``: (B, L) with 1 for real tokens, or None;
        ``static``: (B, L, D) when x is that input repeated over T (see SpikeLinear)."""
        T, B, L, D = x.shape
        q, k, v = self.q(x, static), self.k(x, static), self.v(x, static)  # (T, B, L, D) spikes each
        if self.fused:  # the same numbers in one op (SpikingAttentionFunction)
            y = SpikingAttentionFunction.apply(q, k, v, key_mask, heads=self.heads, scale=self.scale)
        else:
            y = spiking_attention(self._heads(q), self._heads(k), self._heads(v), key_mask, self.scale)
            y = y.transpose(0, 1, 3, 2, 4).reshape(T, B, L, D)  # (T, B, h, L, d_h) -> heads back side by side
        y = self.attn_lif(y)  # (T, B, L, D)
        return self.out(y)


class SpikingMLP(Module):
    """``down(up(x))``: D -> hidden (4D) -> D, each Linear -> LayerNorm -> LIF.

    When both units are fused (with the same neuron settings), the two run as one op
    (``spiking.spike_linear.SpikingMLPFunction``) that keeps the hidden spikes as booleans."""

    def __init__(self, dim, hidden, *, ln_eps=1e-5, lif=None):
        self.up = SpikeLinear(dim, hidden, ln_eps=ln_eps, lif=lif)
        self.down = SpikeLinear(hidden, dim, ln_eps=ln_eps, lif=lif)

    def forward(self, x):
        up, down = self.up, self.down
        if up.fusable() and down.fusable() and _same_neurons(up.lif, down.lif) and up.ln.eps == down.ln.eps:
            stores = (up.lif.trace_store(), down.lif.trace_store())
            out = spiking_mlp(x, up.parameters_in_order(), down.parameters_in_order(), eps=up.ln.eps,
                              stores=stores, **up.lif.options())
            up.lif.report(stores[0])
            down.lif.report(stores[1])
            return out
        return down(up(x))


def _same_neurons(a, b) -> bool:
    """Whether two LIF layers have the same settings (surrogates compared by kind, alpha and spiking)."""
    def settings(lif):
        return {**lif.options(), "surrogate": repr(lif.surrogate)}
    return settings(a) == settings(b)
