"""Optimisers, the learning-rate schedule and gradient clipping.

SGD with momentum:   v <- mu v + g;               p <- p - lr (v + wd p)
AdamW (decoupled):   m <- b1 m + (1 - b1) g;      v <- b2 v + (1 - b2) g^2
                     mhat = m / (1 - b1^t);       vhat = v / (1 - b2^t)
                     p <- p - lr (mhat / (sqrt(vhat) + eps) + wd p)
Cosine with warm-up: lr(s) = lr * s / w                                   for s < w
                     lr(s) = lr * (m + (1 - m) (1 + cos(pi (s - w) / (S - w))) / 2)   after
Clipping:            if ||g||_2 (all parameters together) > c: g <- g c / ||g||_2
"""
from __future__ import annotations

import math

from . import backend, parallel


class Optimizer:
    def __init__(self, params, lr):
        self.params = [p for p in params if p.requires_grad]
        self.lr = lr
        self.step_count = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict:
        """Host copies of the optimiser state (for checkpoints)."""
        return {"step_count": self.step_count, "lr": self.lr,
                "buffers": {k: [None if a is None else backend.to_numpy(a).copy() for a in v]
                            for k, v in self._buffers().items()}}

    def load_state_dict(self, state: dict) -> None:
        self.step_count, self.lr = state["step_count"], state["lr"]
        for k, arrays in state["buffers"].items():
            own = self._buffers()[k]
            if len(own) != len(arrays):
                raise ValueError(f"optimizer state has {len(arrays)} {k} buffers for {len(own)} parameters")
            for i, (p, a) in enumerate(zip(self.params, arrays)):
                own[i] = None if a is None else p.xp.asarray(a, dtype=p.dtype).copy()

    def _buffers(self):
        return {}


class SGD(Optimizer):
    def __init__(self, params, lr=0.01, momentum=0.0, weight_decay=0.0):
        super().__init__(params, lr)
        self.momentum, self.weight_decay = momentum, weight_decay
        self.velocity = [None] * len(self.params)

    def _buffers(self):
        return {"velocity": self.velocity}

    def step(self) -> None:
        self.step_count += 1
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad
            if self.momentum:
                self.velocity[i] = g if self.velocity[i] is None else self.momentum * self.velocity[i] + g
                g = self.velocity[i]
            if self.weight_decay:
                g = g + self.weight_decay * p.data
            p.data -= self.lr * g


class AdamW(Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr)
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay
        self.m = [None] * len(self.params)
        self.v = [None] * len(self.params)

    def _buffers(self):
        return {"m": self.m, "v": self.v}

    def step(self) -> None:
        self.step_count += 1
        c1, c2 = 1 - self.betas[0] ** self.step_count, 1 - self.betas[1] ** self.step_count
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            if self.m[i] is None:
                self.m[i], self.v[i] = p.xp.zeros_like(p.data), p.xp.zeros_like(p.data)
            arrays = (p.data, p.grad, self.m[i], self.v[i])
            if all(a.flags.c_contiguous for a in arrays):  # flat views, blocks on every core: the same numbers
                flat = [a.reshape(-1) for a in arrays]
                parallel.for_blocks(lambda r: self._update(*(a[r] for a in flat), c1, c2), flat[0].shape[0], p.xp)
            else:
                self._update(*arrays, c1, c2)

    def _update(self, p, g, m, v, c1, c2):
        """The update of one block of a parameter ``p``, its gradient ``g`` and moments ``m``, ``v``
        (``p``, ``m``, ``v`` in place); ``c1``, ``c2`` are the bias corrections 1 - b^t."""
        xp = backend.get_array_module(p)
        b1, b2 = self.betas
        m *= b1
        m += (1 - b1) * g  # m = b1 m + (1 - b1) g
        g2 = g * g
        g2 *= 1 - b2
        v *= b2
        v += g2  # v = b2 v + (1 - b2) g^2
        if self.weight_decay:
            p *= 1 - self.lr * self.weight_decay  # decoupled decay
        denom = xp.sqrt(v)
        denom *= 1 / math.sqrt(c2)
        denom += self.eps  # sqrt(vhat) + eps
        update = m / denom
        update *= self.lr / c1  # lr mhat / (sqrt(vhat) + eps)
        p -= update


def cosine_schedule(step, total_steps, base_lr, warmup_steps=0, min_ratio=0.0):
    """The learning rate at ``step``: linear warm-up, then cosine decay to ``min_ratio * base_lr``."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def clip_grad_norm(params, max_norm):
    """Scale all gradients together so their global L2 norm is at most ``max_norm``.

    Returns the norm before clipping as a 0-d float64 array on the gradients' device (or 0.0
    without gradients): computed and applied there, with no device-to-host synchronisation
    (``float()`` it only to log it). The squares are summed in float64, one dot per parameter.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    xp = backend.get_array_module(grads[0])
    sq = None
    for g in grads:
        dot = (g.reshape(-1) @ g.reshape(-1)).astype(xp.float64)  # a BLAS dot each
        sq = dot if sq is None else sq + dot
    total = xp.sqrt(sq)
    scale = xp.where(total > max_norm, max_norm / (total + 1e-6), 1.0)  # 1.0: unchanged, exactly
    scales = {}  # the scale in each gradient dtype, cast once
    for p in params:
        if p.grad is not None:
            s = scales.setdefault(p.grad.dtype, scale.astype(p.grad.dtype))
            p.grad = p.grad * s
    return total
