"""Optional compiled kernels (numba) for float32 hot spots on the host; NumPy stays the reference.

``pip install 'minispike[fast]'`` adds numba; minispike then runs these kernels where they
measure better (docs/results.md), and its NumPy code everywhere else and on every other
backend (CuPy, the strict test backend, float64). Each kernel is a plain loop over one block
of a flat array, compiled with ``nogil`` so that ``minispike.parallel`` runs the blocks on
every core as it runs NumPy's passes; the op that uses it keeps its NumPy path, which
tests/test_compiled.py compares the kernel with.

    gelu(a, y)    y = a Phi(a) = a (1 + erf(a / sqrt 2)) / 2, for inference (nothing kept for a backward)

Why GELU, and why only without a gradient: NumPy needs about twenty passes over the array
for it, one of them an exponential (backend.normal_cdf), and the teacher's inference spent
a sixth of its time there. Without a backward to feed, GELU needs no exponential at all:
erf is a ratio of two polynomials, one pass of multiply-adds that the compiler vectorises,

    erf(z) = z P(z^2) / Q(z^2)   for |z| < 3.92,   sign(z) beyond (where float32's erf is +-1)

with P of degree 6 and Q of degree 4, fitted here (linearised least squares, reweighted
towards the minimax error, on Chebyshev nodes of [0, 4]): 5.5e-8 from erf in float64; in
float32 the GELU is within 2.4e-7 x max(1, |a|) of the exact one, the NumPy path (A&S
7.1.26) within 1.9e-7 x max(1, |a|). Training keeps the NumPy forward: the backward needs
the density e^(-a^2/2), which the NumPy forward computes once and keeps.

``MINISPIKE_COMPILED=0`` or ``use(False)`` turns the kernels off; ``state()`` says whether
they are on, and if not, why. numba is imported, and the kernels compiled, on first use.
"""
from __future__ import annotations

import contextlib
import os

import numpy as np

from . import parallel

__all__ = ["state", "enabled", "use", "scope", "gelu", "ERF_P", "ERF_Q", "ERF_SATURATES"]

# erf(z) = z P(z^2) / Q(z^2): coefficients of w^0, w^1, ... (float64 fit; the kernel rounds them to float32)
ERF_P = (1.128378700523714, 0.21362121780360635, 0.05239033426819059, 0.004278661118134893,
         0.0001551406270620722, -1.9879437128250688e-06, 1.9210748852804826e-08)
ERF_Q = (1.0, 0.5226447145218407, 0.12066538641695553, 0.0155229242168036, 0.0010943657801816284)
ERF_SATURATES = 3.92  # |z| beyond which float32's erf(z) rounds to +-1 (1 - erf(3.92) = 2.5e-8)

_switch = {"on": os.environ.get("MINISPIKE_COMPILED", "1") != "0"}
_kernels: dict = {}  # "gelu" -> the compiled function, or "error" -> why numba is not there


def _load():
    """Import numba and compile the kernels (once); False, with the reason kept, when numba is missing."""
    if "error" in _kernels or "gelu" in _kernels:
        return "gelu" in _kernels
    try:
        import numba
    except ImportError:
        _kernels["error"] = "numba is not installed (pip install 'minispike[fast]')"
        return False
    f32 = np.float32
    p0, p1, p2, p3, p4, p5, p6 = (f32(c) for c in ERF_P)
    q0, q1, q2, q3, q4 = (f32(c) for c in ERF_Q)
    inv_sqrt2, edge, half, one = f32(1 / np.sqrt(2)), f32(ERF_SATURATES), f32(0.5), f32(1)

    # error_model="numpy": the division raises nothing, so the loop is vectorised
    @numba.njit("void(float32[::1], float32[::1])", nogil=True, error_model="numpy", cache=True)
    def gelu_block(a, y):  # y = a (1 + erf(a / sqrt 2)) / 2, elementwise
        for i in range(a.shape[0]):
            x = a[i]
            z = x * inv_sqrt2
            w = z * z
            p = p0 + w * (p1 + w * (p2 + w * (p3 + w * (p4 + w * (p5 + w * p6)))))
            q = q0 + w * (q1 + w * (q2 + w * (q3 + w * q4)))
            e = z * p / q  # erf(z)
            if z > edge:
                e = one
            if z < -edge:
                e = -one
            y[i] = half * x * (one + e)

    _kernels["gelu"] = gelu_block
    _kernels["version"] = numba.__version__
    return True


def state() -> str:
    """'on (numba X)', or 'off: ' and the reason."""
    if not _switch["on"]:
        return "off: turned off (MINISPIKE_COMPILED=0 or compiled.use(False))"
    return f"on (numba {_kernels['version']})" if _load() else f"off: {_kernels['error']}"


def enabled() -> bool:
    return _switch["on"] and _load()


def use(flag: bool) -> None:
    """Turn the compiled kernels on or off for this process."""
    _switch["on"] = bool(flag)


@contextlib.contextmanager
def scope(flag: bool):
    """``with compiled.scope(False): ...`` runs NumPy's code only (the reference)."""
    old = _switch["on"]
    use(flag)
    try:
        yield
    finally:
        use(old)


def _fits(*arrays) -> bool:  # host float32 arrays, contiguous (the strict backend's and CuPy's are not np.ndarray)
    return all(type(x) is np.ndarray and x.dtype == np.float32 and x.flags.c_contiguous for x in arrays)


def gelu(a, y) -> bool:
    """``y[...] = GELU(a)`` with the compiled kernel, on blocks on every core; False (and ``y``
    untouched) where it does not apply: then the caller runs its NumPy code."""
    if not (_fits(a, y) and a.shape == y.shape and enabled()):
        return False
    a1, y1, kernel = a.reshape(-1), y.reshape(-1), _kernels["gelu"]
    parallel.for_blocks(lambda r: kernel(a1[r], y1[r]), a1.shape[0], np)
    return True
