"""Exercise 3: softmax + cross-entropy on logits, forward and backward.

Read first: docs/layernorm.md (the softmax and cross-entropy sections), minispike/ops/losses.py.
Check:      python -m minispike check ex03

A classifier's loss on a batch of B rows of C logits ``z`` with gold labels ``y``:

    softmax(z)_c = exp(z_c - max z) / sum_k exp(z_k - max z)     (subtract the row's max:
                                                                   exp(1000) overflows)
    L  = -(1/B) sum_b log softmax(z_b)[y_b]                        the batch mean
    dL/dz = (softmax(z) - onehot(y)) / B                           (B, C)

Fusing the two ops gives this short gradient: the softmax's Jacobian and the log's 1/p
cancel. Compute log softmax as ``z - max - log(sum exp(z - max))`` so that no log sees a 0.

Shapes: ``logits`` (B, C) floats, ``labels`` (B,) integers in 0..C-1. ``cross_entropy``
returns a float, ``cross_entropy_grad`` an array (B, C).

The checker compares both with minispike's ``ops.cross_entropy`` (and the engine's
gradient of it) on random logits, B = 1, and huge logits (+-1000), then checks your
gradient against finite differences of your loss.
"""
import numpy as np


def cross_entropy(logits, labels):
    """The mean over the batch of -log softmax(logits)[label], as a float."""
    raise NotImplementedError("cross_entropy is yours to write: a stable log-softmax, then the batch mean")


def cross_entropy_grad(logits, labels):
    """dL/dlogits, shaped (B, C)."""
    raise NotImplementedError("cross_entropy_grad is yours to write: (softmax - onehot) / B")
