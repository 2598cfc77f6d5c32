"""Exercise 4: KL(teacher || student) with a temperature, and its gradient.

Read first: docs/distillation.md (the logits term), minispike/ops/losses.py (KLDiv),
            minispike/distill.py (distill_loss), examples/09_stage2_distillation.py.
Check:      python -m minispike check ex04

Stage 2 makes the student's logits ``z_s`` imitate the teacher's ``z_t``. Both are softened
by a temperature tau (tau > 1 spreads the probabilities, so the teacher's "dark knowledge"
about the wrong classes is visible):

    p = softmax(z_t / tau)                    the teacher (a constant: no gradient)
    q = softmax(z_s / tau)                    the student
    L = tau^2 * (1/B) sum_b sum_c p_bc (log p_bc - log q_bc)        batch mean
    dL/dz_s = tau * (q - p) / B                                     (B, C)

The tau^2 in front (Hinton et al.) cancels the 1/tau^2 that softening puts on the
gradient's size, so changing tau does not change the loss's weight; one 1/tau of the
gradient comes from the chain rule through z_s / tau. Where p = 0, p log p = 0 (its limit).

Shapes: ``student_logits`` and ``teacher_logits`` (B, C), ``tau`` a positive float.
``kl_temperature`` returns a float, ``kl_temperature_grad`` an array (B, C).

The checker compares both with minispike's ``ops.kl_div`` applied as ``distill_loss`` applies
it (teacher softened by tau) for tau = 1, 2, 4, B = 1, and a teacher so sure that p = 0
exactly for the other classes; then your gradient against finite differences of your loss.
"""
import numpy as np


def kl_temperature(student_logits, teacher_logits, tau):
    """tau^2 KL(softmax(z_t / tau) || softmax(z_s / tau)), the batch mean, as a float."""
    raise NotImplementedError("kl_temperature is yours to write: soften both, KL(p || q), times tau^2")


def kl_temperature_grad(student_logits, teacher_logits, tau):
    """dL/dstudent_logits, shaped (B, C)."""
    raise NotImplementedError("kl_temperature_grad is yours to write: tau (q - p) / B")
