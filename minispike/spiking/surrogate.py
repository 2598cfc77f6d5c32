"""Surrogate gradients: a Heaviside step forward, a smooth derivative backward.

A spiking neuron fires ``S = Theta(x)`` with ``x = H - V_th``. The step has derivative 0
almost everywhere, so training replaces ``dTheta/dx`` by the derivative ``g'(x)`` of a smooth
"primitive" ``g`` that looks like a step:

    name          primitive g(x)                               surrogate g'(x)
    ATan          atan(pi/2 a x) / pi + 1/2          (a = 2)   a / (2 (1 + (pi/2 a x)^2))
    Sigmoid       sigma(a x) = 1 / (1 + e^(-a x))    (a = 4)   a sigma(a x) (1 - sigma(a x))
    FastSigmoid   1/2 + x / (1 + k |x|)              (k = 25)  1 / (1 + k |x|)^2        (SuperSpike)
    Rectangular   clip(x / w + 1/2, 0, 1)            (w = 1)   1/w if |x| < w/2 else 0

Forward convention: ``Theta(x) = 1 if x >= 0 else 0``, so ``Theta(0) = 1`` (as spikingjelly's
ATan does: a membrane exactly at threshold fires).

Every surrogate carries a ``spiking`` switch. With ``spiking=True`` (the default) the forward
is the step. With ``spiking=False`` the forward is the primitive ``g`` itself, whose true
derivative is exactly the surrogate used backward: the whole network becomes a smooth
function and finite differences can check every gradient (``minispike.gradcheck``).

FastSigmoid follows snnTorch/SuperSpike: the surrogate is not normalised (its integral is
2/k), so the primitive ranges over (1/2 - 1/k, 1/2 + 1/k). Rectangular's primitive has kinks
at ``|x| = w/2``; finite differences must stay away from them.
"""
from __future__ import annotations

import math

from .. import backend
from ..tensor import Function

__all__ = ["Surrogate", "ATan", "Sigmoid", "FastSigmoid", "SuperSpike", "Rectangular",
           "Heaviside", "heaviside", "get_surrogate", "SURROGATES"]


class Surrogate:
    """Base class: ``primitive(x)`` (smooth step) and ``derivative(x)`` (its exact derivative).

    Both take and return raw ``xp`` arrays. ``step(x)`` is what the forward uses: the
    Heaviside step when ``self.spiking`` else the primitive. Calling a surrogate on a Tensor
    applies the ``Heaviside`` Function: ``spikes = ATan()(h - v_th)``.
    """

    name = "surrogate"

    def __init__(self, alpha: float, spiking: bool = True):
        self.alpha = float(alpha)
        self.spiking = bool(spiking)

    def primitive(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def derivative(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self, x):
        """The forward: Heaviside ``x >= 0`` in x's dtype, or the primitive when not spiking."""
        if self.spiking:
            return (x >= 0).astype(x.dtype)
        return self.primitive(x)

    def __call__(self, x):
        return Heaviside.apply(x, surrogate=self)

    def __repr__(self):
        flag = "" if self.spiking else ", spiking=False"
        return f"{type(self).__name__}({self.alpha:g}{flag})"

    def to_config(self) -> dict:
        return {"name": self.name, "alpha": self.alpha}


class ATan(Surrogate):
    """spikingjelly's default: ``g'(x) = a / (2 (1 + (pi/2 a x)^2))``, ``a = 2``."""

    name = "atan"

    def __init__(self, alpha: float = 2.0, spiking: bool = True):
        super().__init__(alpha, spiking)

    def primitive(self, x):
        xp = backend.get_array_module(x)
        return xp.arctan((math.pi / 2 * self.alpha) * x) / math.pi + 0.5

    def derivative(self, x):
        # the same order of operations as spikingjelly: a / 2 / (1 + (pi/2 a x)^2)
        xp = backend.get_array_module(x)
        u = xp.asarray((math.pi / 2 * self.alpha) * x)  # a fresh array: the rest works in place
        u *= u
        u += 1.0
        return xp.divide(self.alpha / 2, u, out=u)


class Sigmoid(Surrogate):
    """``g(x) = sigma(a x)``, ``g'(x) = a sigma (1 - sigma)``, ``a = 4``."""

    name = "sigmoid"

    def __init__(self, alpha: float = 4.0, spiking: bool = True):
        super().__init__(alpha, spiking)

    def primitive(self, x):
        xp = backend.get_array_module(x)
        return 1.0 / (1.0 + xp.exp(-self.alpha * x))

    def derivative(self, x):
        s = self.primitive(x)
        return self.alpha * s * (1.0 - s)


class FastSigmoid(Surrogate):
    """SuperSpike / fast sigmoid: ``g'(x) = 1 / (1 + k|x|)^2``, slope ``k = alpha = 25``."""

    name = "fast_sigmoid"

    def __init__(self, alpha: float = 25.0, spiking: bool = True):
        super().__init__(alpha, spiking)

    def primitive(self, x):
        xp = backend.get_array_module(x)
        return 0.5 + x / (1.0 + self.alpha * xp.abs(x))

    def derivative(self, x):
        xp = backend.get_array_module(x)
        d = 1.0 + self.alpha * xp.abs(x)
        return 1.0 / (d * d)


SuperSpike = FastSigmoid


class Rectangular(Surrogate):
    """Boxcar: ``g'(x) = 1/w`` on ``|x| < w/2``, else 0; width ``w = alpha = 1``."""

    name = "rectangular"

    def __init__(self, alpha: float = 1.0, spiking: bool = True):
        super().__init__(alpha, spiking)

    def primitive(self, x):
        xp = backend.get_array_module(x)
        return xp.clip(x / self.alpha + 0.5, 0.0, 1.0)

    def derivative(self, x):
        xp = backend.get_array_module(x)
        return (xp.abs(x) < self.alpha / 2).astype(x.dtype) * (1.0 / self.alpha)


SURROGATES = {"atan": ATan, "sigmoid": Sigmoid, "fast_sigmoid": FastSigmoid,
              "superspike": FastSigmoid, "rectangular": Rectangular}


def get_surrogate(name: str, alpha: float | None = None, spiking: bool = True) -> Surrogate:
    """A surrogate by name (``atan``, ``sigmoid``, ``fast_sigmoid``, ``rectangular``)."""
    try:
        cls = SURROGATES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown surrogate {name!r}: choose one of {sorted(SURROGATES)}") from None
    return cls(spiking=spiking) if alpha is None else cls(alpha, spiking=spiking)


class Heaviside(Function):
    """``S = Theta(x)`` forward (or ``g(x)`` when not spiking); ``dx = dS * g'(x)`` backward."""

    @staticmethod
    def forward(ctx, x, *, surrogate):
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return surrogate.step(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved
        return g * ctx.surrogate.derivative(x)


def heaviside(x, surrogate: Surrogate | None = None):
    """Spikes ``Theta(x)`` of a Tensor with a surrogate gradient (ATan(2) by default)."""
    return Heaviside.apply(x, surrogate=surrogate or ATan())
