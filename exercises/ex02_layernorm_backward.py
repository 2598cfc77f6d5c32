"""Exercise 2: layer norm, the forward cache and the backward.

Read first: docs/layernorm.md (the derivation, term by term), minispike/ops/nn.py (LayerNorm),
            examples/01_autograd_by_hand.py.
Check:      python -m minispike check ex02

Layer norm normalises each row (the last axis, D numbers) and applies a learned affine map.
Every leading axis is a row: x (B, L, D) has B * L rows.

    forward                                  names as in docs/layernorm.md
    mu   = mean(x)                           (..., 1)   over the last axis
    xc   = x - mu
    var  = mean(xc^2)                        (..., 1)   divide by D (not D - 1)
    rstd = 1 / sqrt(var + eps)               (..., 1)
    xhat = xc * rstd                         (..., D)
    y    = xhat * w + b                      w, b: (D,)

The forward returns ``y`` and the cache ``(xhat, rstd)``: with ``w``, all the backward needs.
Given ``dy = dL/dy`` (the shape of x):

    db    = sum over rows of dy                                   (D,)
    dw    = sum over rows of dy * xhat                            (D,)
    dxhat = dy * w                                                (..., D)
    dx    = rstd * (dxhat                       the direct path
                    - mean(dxhat)               through the mean mu
                    - xhat * mean(dxhat * xhat) through the variance (rstd))

(means over the last axis, keepdims=True).

Your task: write ``layernorm_forward`` and ``layernorm_backward``.

The checker compares y, xhat, rstd (shape (..., 1)) and dx, dw, db with minispike's
LayerNorm op on random rows, a batch of sequences (2, 3, 4), a constant row (var = 0) and
D = 1; it then checks your backward against finite differences of your forward.
"""
import numpy as np


def layernorm_forward(x, w, b, eps=1e-5):
    """``y, (xhat, rstd)``: y and xhat shaped like x, rstd shaped x.shape[:-1] + (1,)."""
    raise NotImplementedError("layernorm_forward is yours to write: mu, var, rstd, xhat, y (see the docstring)")


def layernorm_backward(dy, cache, w):
    """``(dx, dw, db)`` from ``dy = dL/dy``, the forward's ``cache = (xhat, rstd)`` and ``w``."""
    raise NotImplementedError("layernorm_backward is yours to write: the three terms of dx, then dw and db")
