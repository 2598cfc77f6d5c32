"""Exercise 8: spiking self-attention, forward and backward, with the key mask.

Read first: docs/spiking-attention.md, minispike/spiking/attention.py (spiking_attention),
            examples/06_spiking_vs_softmax_attention.py.
Check:      python -m minispike check ex08

SpikeBERT's attention has no softmax: queries, keys and values are spikes, and per time
step, sentence and head

    Km = K * m                      m: key_mask (B, L), 1 = real token, 0 = padding, seen
                                    as (1, B, 1, L, 1): a padded key reaches no query
    Y  = (Q Km^T) V * scale         (T, B, h, L, d_h); computed as Q (Km^T V * scale)

Matrix products are over the last two axes (``@`` batches over the leading ones;
``np.swapaxes(A, -1, -2)`` is the per-head transpose). Y is linear in each of Q, Km, V, so
with dY = dL/dY and the d_h x d_h matrix KV = Km^T V * scale:

    dQ  = dY KV^T
    dKV = Q^T dY
    dKm = V dKV^T * scale,     dK = dKm * m      (the mask again: padded keys get 0)
    dV  = Km dKV * scale

Shapes: Q, K, V, dY (T, B, h, L, d_h); key_mask (B, L); scale a float (0.125 in SpikeBERT).

The checker compares Y and dQ, dK, dV with minispike's spiking_attention (and the engine's
gradients of it) on spikes with padding, a sentence of padding only, T = 1 and L = 1; then
checks your backward against finite differences of your forward.
"""
import numpy as np


def attention_forward(Q, K, V, key_mask, scale):
    """Y = (Q (K * mask)^T) V * scale, shaped (T, B, h, L, d_h)."""
    raise NotImplementedError("attention_forward is yours to write: mask the keys, then two matmuls")


def attention_backward(Q, K, V, key_mask, scale, dY):
    """``(dQ, dK, dV)``, each shaped like its input."""
    raise NotImplementedError("attention_backward is yours to write: dQ, dK, dV (see the docstring)")
