"""Optional compiled kernels (numba) for three forward passes; NumPy stays the reference.

``pip install 'minispike[fast]'`` adds numba; minispike then runs these kernels where they
apply, and its NumPy code everywhere else. They apply to forward passes on float32 host
arrays: GELU's and the attention softmax's in training too (GELU's kernel also returns what
its backward reads), LayerNorm's only for inference (its backward reads xhat and 1/std,
which NumPy's forward keeps, the one the fused student ops share). Every backward, float64
(so every gradient check), CuPy and the strict test backend run the NumPy code, which
tests/test_compiled.py compares each kernel with. Each kernel (in ``_numba_kernels.py``) is
a plain loop over one block of rows, compiled with ``nogil`` so that ``minispike.parallel``
runs the blocks on every core as it runs NumPy's passes.

    gelu(a, keep=False)                 a Phi(a) = a (1 + erf(a / sqrt 2)) / 2; keep: also Phi(a), e^(-a^2/2)
    layer_norm(x, weight, bias, eps)    (x - mean) / sqrt(var + eps) * weight + bias, per row of (N, D)
    masked_softmax(s, mask_add, scale)  s = softmax(s * scale + M) over the last axis, in place:
                                        BERT attention's scores, one block of batch rows

The first two return new arrays, or None where they do not apply (the caller then runs
NumPy's code); the third returns False there.

Why these: NumPy runs GELU as about twenty passes over the array, one of them an
exponential (backend.normal_cdf), LayerNorm as eight, and the attention's softmax as seven
(scale, mask, max, subtract, exp, sum, divide), the reductions over short rows; the teacher's
inference spent nearly a quarter of its time there (docs/results.md). A compiled loop makes
one pass (over a row that stays in cache, for the row-wise two). The softmax's exponential is
e^x = (e^(x/256))^256 with e^(x/256) from ten terms of its Taylor series, in float64
(1e-7 relative on [-100, 0]; the multiply-adds vectorise, where a call to exp would not).
GELU's value needs no exponential at all (its backward's density e^(-a^2/2) comes from the
same series as the softmax's): erf is a ratio of two polynomials,

    erf(z) = z P(z^2) / Q(z^2)   for |z| < 3.92,   sign(z) beyond (where float32's erf is +-1)

with P of degree 6 and Q of degree 4, fitted for minispike (linearised least squares,
reweighted towards the minimax error, on Chebyshev nodes of [0, 4]): 5.5e-8 from erf in
float64; in float32 the GELU is within 2.4e-7 x max(1, |a|) of the exact one, the NumPy
path (A&S 7.1.26) within 1.9e-7 x max(1, |a|).

A forward with the kernels differs from one without them by float32 rounding (the order of
a row's sums, the erf formula): 1e-6 relative on a layer's output, so a prediction on the
edge between two labels, or a teacher fine-tuned for many steps, can come out differently,
as on another CPU. ``MINISPIKE_COMPILED=0`` or ``use(False)`` turns them off; ``state()``
says whether they are on, and if not, why. numba is imported, and the kernels compiled (a
few seconds, then cached on disk), on first use.
"""
from __future__ import annotations

import contextlib
import logging
import os

import numpy as np

from . import parallel

__all__ = ["state", "enabled", "use", "scope", "gelu", "layer_norm", "masked_softmax", "ERF_P", "ERF_Q",
           "ERF_SATURATES"]

# erf(z) = z P(z^2) / Q(z^2): coefficients of w^0, w^1, ... (float64 fit; the kernel rounds them to float32)
ERF_P = (1.128378700523714, 0.21362121780360635, 0.05239033426819059, 0.004278661118134893,
         0.0001551406270620722, -1.9879437128250688e-06, 1.9210748852804826e-08)
ERF_Q = (1.0, 0.5226447145218407, 0.12066538641695553, 0.0155229242168036, 0.0010943657801816284)
ERF_SATURATES = 3.92  # |z| beyond which float32's erf(z) rounds to +-1 (1 - erf(3.92) = 2.5e-8)

log = logging.getLogger("minispike.compiled")
_switch = {"on": os.environ.get("MINISPIKE_COMPILED", "1") != "0"}
_kernels: dict = {}  # once loaded: name -> compiled function, and "version"; or "error": why not


def _load():
    """Import numba and compile the kernels (once); False, with the reason kept, when numba is missing."""
    if "error" in _kernels or "version" in _kernels:
        return "version" in _kernels
    try:
        import numba
    except ImportError:
        _kernels["error"] = "numba is not installed (pip install 'minispike[fast]')"
        return False
    try:
        from ._numba_kernels import KERNELS as kernels
    except Exception as e:  # a numba that cannot build them here: said once, and NumPy runs
        _kernels["error"] = f"numba {numba.__version__} could not compile the kernels: {type(e).__name__}: {e}"
        log.warning("minispike.compiled: %s; running NumPy's code", _kernels["error"])
        return False
    _kernels.update(kernels, version=numba.__version__)
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


def gelu(a, keep=False):
    """``GELU(a)``, on blocks on every core; with ``keep`` (training) the tuple ``(GELU(a), Phi(a),
    e^(-a^2/2))``, what GELU's backward reads. None where it does not apply."""
    if not (_fits(a) and enabled()):
        return None
    outs = [np.empty_like(a) for _ in range(3 if keep else 1)]
    flat = [a.reshape(-1)] + [o.reshape(-1) for o in outs]
    kernel = _kernels["gelu_keep" if keep else "gelu"]
    parallel.for_blocks(lambda r: kernel(*(x[r] for x in flat)), a.size, np)
    return tuple(outs) if keep else outs[0]


def layer_norm(x, weight, bias, eps):
    """``LayerNorm(x)`` over the last axis of (N, D) ``x`` (nothing kept for a backward), on
    blocks of rows on every core; None where it does not apply."""
    if not (_fits(x, weight, bias) and x.ndim == 2 and enabled()):
        return None
    y, kernel = np.empty_like(x), _kernels["layer_norm"]
    parallel.for_blocks(lambda r: kernel(x[r], weight, bias, np.float32(eps), y[r]), x.shape[0], np,
                        per_row=x.shape[1])
    return y


def masked_softmax(s, mask_add, scale) -> bool:
    """In place, on the calling thread: ``s`` (b, H, L, L) becomes ``softmax(s * scale + M)`` over
    its last axis, ``mask_add`` (b, 1, 1, L) the additive key mask M or None. For one block of
    ``ops.attention``'s batch rows (it runs the blocks on every core and calls ``enabled()``
    first, on its own thread, so that numba loads there). False where it does not apply."""
    b, L = s.shape[0], s.shape[-1]
    if mask_add is not None and getattr(mask_add, "shape", None) != (b, 1, 1, L):
        return False  # a per-query mask (b, 1, L, L), or one broadcast over the batch: NumPy's code
    mask = np.zeros((b, L), np.float32) if mask_add is None else mask_add.reshape(b, L)
    if not (_fits(s, mask) and s.ndim == 4 and enabled()):
        return False
    _kernels["masked_softmax"](s, mask, np.float32(scale))
    return True
