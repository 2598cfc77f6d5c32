"""Exercise 9: the masked feature-distillation loss (MSE over real tokens only).

Read first: docs/distillation.md (Masks, the features term), minispike/distill.py
            (feature_loss), minispike/ops/losses.py (MSELoss), examples/08_stage1_distillation.py.
Check:      python -m minispike check ex09

The student's features (B, L, D) imitate the teacher's hidden states at every real token.
Sentences in a batch are padded to one length L; padding must pull on nothing. With the
token mask m (B, L), 1 = real, 0 = padding, broadcast over the D features:

    N = max(sum over b, l of m[b, l] * D, 1)          the number of KEPT entries
    L = sum m (a - b)^2 / N                            a: student, b: teacher
    dL/da = 2 m (a - b) / N                            (B, L, D)

The max(., 1) keeps a batch of padding only at loss 0 instead of 0 / 0.

Shapes: ``student``, ``teacher`` (B, L, D) floats; ``mask`` (B, L) of 0.0 / 1.0.
``masked_mse`` returns a float, ``masked_mse_grad`` an array (B, L, D).

The checker compares both with minispike's ``ops.mse_loss(student, teacher, mask[..., None])``
(what ``feature_loss`` calls) on padded sentences, a sentence of padding only, no padding
and a batch of padding only; then your gradient against finite differences of your loss.
"""
import numpy as np


def masked_mse(student, teacher, mask):
    """The mean of (student - teacher)^2 over the kept entries, as a float."""
    raise NotImplementedError("masked_mse is yours to write: mask, sum, divide by the kept count")


def masked_mse_grad(student, teacher, mask):
    """dL/dstudent, shaped (B, L, D)."""
    raise NotImplementedError("masked_mse_grad is yours to write: 2 m (a - b) / N")
