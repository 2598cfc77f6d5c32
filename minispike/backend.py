"""The one place that knows about array libraries.

minispike computes on an *array module* ``xp``: NumPy on a CPU, CuPy on a GPU, or
``strict``, a NumPy wrapper for tests whose arrays behave like CuPy's: they refuse to be
turned silently into host NumPy arrays (``np.asarray(a)`` raises), refuse to be mixed with
host arrays in arithmetic, and refuse ``numpy.<function>(a)`` calls. Code above this floor
takes ``xp = get_array_module(x)`` from the arrays it is handed and never imports NumPy
for data, so a CuPy run never falls back to the host by accident.

Also here: the default floating dtype (float32; float64 for gradient checks), device moves
(``to_device``, ``to_numpy``) and one seeded random generator that draws on the host and
moves the numbers, so NumPy and CuPy runs see the same numbers for the same seed.
"""
from __future__ import annotations

import contextlib
import functools
import threading
import types

import numpy as np

__all__ = [
    "use", "current", "ensure_array", "get_array_module", "to_device", "to_numpy", "asarray",
    "default_dtype", "set_default_dtype", "dtype_scope", "seed", "get_rng",
    "randn", "rand", "erf", "scatter_add", "STRICT", "StrictArray",
]

_state = threading.local()


def _get(name, default):
    return getattr(_state, name, default)


# ----------------------------------------------------------------------------------------
# The strict test backend
# ----------------------------------------------------------------------------------------
class HostConversionError(TypeError):
    """Raised when a strict (device-like) array is silently turned into a host array."""


class StrictArray:
    """A NumPy array that behaves like a device array (CuPy-like strictness).

    ``np.asarray(a)``, ``np.exp(a)``, ``a + host_ndarray`` raise; operators between strict
    arrays and Python scalars work; ``a.get()`` / ``to_numpy(a)`` is the explicit move.
    """

    __slots__ = ("_a",)
    __array_priority__ = 1000

    def __init__(self, a):
        self._a = a

    # -- explicit conversions (allowed) ---------------------------------------------------
    def get(self):
        return self._a.copy()

    def item(self):
        return self._a.item()

    def tolist(self):
        return self._a.tolist()

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __bool__(self):
        return bool(self._a)

    def __index__(self):
        return self._a.__index__()

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        for i in range(len(self._a)):
            yield self[i]

    # -- implicit conversions (refused, as CuPy refuses them) -----------------------------
    def __array__(self, *args, **kwargs):
        raise HostConversionError(
            "implicit conversion of a strict (device) array to a host NumPy array; "
            "use xp functions, or backend.to_numpy(x) when you really mean to copy to the host")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if any(isinstance(x, np.ndarray) and x.ndim > 0 for x in inputs):
            raise HostConversionError(f"ufunc {ufunc.__name__} mixes a strict (device) array with a host array")
        return _wrap(getattr(ufunc, method)(*_unwrap(inputs), **_unwrap(kwargs)))

    def __array_function__(self, func, types_, args, kwargs):
        raise HostConversionError(f"numpy.{func.__name__} called on a strict array: call it on xp instead")

    # -- attributes -----------------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    T = property(lambda self: StrictArray(self._a.T))
    real = property(lambda self: StrictArray(self._a.real))
    flags = property(lambda self: self._a.flags)
    strides = property(lambda self: self._a.strides)

    def __repr__(self):
        return "strict." + repr(self._a)

    def __getitem__(self, idx):
        return _wrap(self._a[_unwrap(idx)])

    def __setitem__(self, idx, value):
        if isinstance(value, np.ndarray) and value.ndim > 0:
            raise HostConversionError("assigning a host array into a strict (device) array")
        self._a[_unwrap(idx)] = _unwrap(value)

    def __getattr__(self, name):  # methods: reshape, sum, astype, copy, max, ...
        if name.startswith("__") or name in ("data", "ctypes"):  # no __array_interface__, no buffers
            raise AttributeError(f"strict arrays have no {name!r}: it would expose host memory")
        attr = getattr(self._a, name)
        if callable(attr):
            @functools.wraps(attr)
            def method(*args, **kwargs):
                return _wrap(attr(*_unwrap(args), **_unwrap(kwargs)))
            return method
        return _wrap(attr)

    def __reduce__(self):
        return (StrictArray, (self._a,))


def _binary(name):
    def op(self, other):
        if isinstance(other, np.ndarray) and other.ndim > 0:
            raise HostConversionError(f"operator {name} mixes a strict (device) array with a host array")
        return _wrap(getattr(self._a, name)(_unwrap(other)))
    op.__name__ = name
    return op


def _unary(name):
    def op(self):
        return _wrap(getattr(self._a, name)())
    op.__name__ = name
    return op


for _n in ("add", "radd", "sub", "rsub", "mul", "rmul", "truediv", "rtruediv", "floordiv",
           "rfloordiv", "mod", "pow", "rpow", "matmul", "rmatmul", "lt", "le", "gt", "ge",
           "eq", "ne", "and", "rand", "or", "ror", "xor", "iadd", "isub", "imul", "itruediv"):
    setattr(StrictArray, f"__{_n}__", _binary(f"__{_n}__"))
for _n in ("neg", "pos", "abs", "invert"):
    setattr(StrictArray, f"__{_n}__", _unary(f"__{_n}__"))
StrictArray.__hash__ = None


def _unwrap(x):
    if isinstance(x, StrictArray):
        return x._a
    if isinstance(x, tuple):
        return tuple(_unwrap(v) for v in x)
    if isinstance(x, list):
        return [_unwrap(v) for v in x]
    if isinstance(x, dict):
        return {k: _unwrap(v) for k, v in x.items()}
    return x


def _wrap(x):
    if isinstance(x, (np.ndarray, np.generic)):
        return StrictArray(np.asarray(x))
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


class _StrictModule(types.ModuleType):
    """``xp`` for the strict backend: every numpy name, taking and giving StrictArrays.

    Host NumPy arrays passed to its functions are refused, except by ``asarray`` / ``array``,
    which are the explicit host-to-device move (as ``cupy.asarray`` is).
    """

    _moves = {"asarray", "array", "ascontiguousarray"}

    def __init__(self, name, source):
        super().__init__(name)
        self._source = source

    def __getattr__(self, name):
        attr = getattr(self._source, name)
        if isinstance(attr, types.ModuleType):
            sub = _StrictModule(f"{self.__name__}.{name}", attr)
            setattr(self, name, sub)
            return sub
        if not callable(attr) or isinstance(attr, type):
            return attr  # dtypes (xp.float32), constants (xp.pi, xp.inf), classes
        moves = name in self._moves

        @functools.wraps(attr)
        def fn(*args, **kwargs):
            if not moves:
                _refuse_host(args, name)
                _refuse_host(tuple(kwargs.values()), name)
            return _wrap(attr(*_unwrap(args), **_unwrap(kwargs)))
        if isinstance(attr, np.ufunc):  # keep ufunc methods such as xp.add.at
            fn.at = lambda a, idx, b: attr.at(_unwrap(a), _unwrap(idx), _unwrap(b))
        setattr(self, name, fn)
        return fn


def _refuse_host(args, name):
    for a in args:
        if isinstance(a, np.ndarray) and a.ndim > 0:
            raise HostConversionError(f"xp.{name} got a host NumPy array: move it with xp.asarray first")
        if isinstance(a, (list, tuple)):
            _refuse_host(a, name)


STRICT = _StrictModule("minispike.strict", np)


# ----------------------------------------------------------------------------------------
# Choosing the array module
# ----------------------------------------------------------------------------------------
def _cupy():
    try:
        import cupy
    except ImportError as e:  # pragma: no cover - depends on the machine
        raise RuntimeError("backend 'cupy' asked for, but CuPy is not installed "
                           "(pip install 'minispike[gpu]')") from e
    return cupy


def use(name: str):
    """Select the array module new tensors are created on: "numpy", "cupy" or "strict"."""
    modules = {"numpy": lambda: np, "cupy": _cupy, "strict": lambda: STRICT}
    if name not in modules:
        raise ValueError(f"unknown backend {name!r}: choose one of {sorted(modules)}")
    _state.xp = modules[name]()
    return _state.xp


def current():
    """The array module selected by ``use`` (NumPy unless told otherwise)."""
    return _get("xp", np)


def get_array_module(*arrays):
    """The array module that owns these arrays (``cupy``, ``strict`` or ``numpy``)."""
    for x in arrays:
        if hasattr(x, "requires_grad"):  # a Tensor: look at its data
            x = x.data
        if isinstance(x, StrictArray):
            return STRICT
        mod = type(x).__module__
        if mod.startswith("cupy"):
            return _cupy()
    return np


def ensure_array(x):
    """NumPy reductions return scalars (np.float64); make them 0-d arrays like CuPy's."""
    return np.asarray(x) if isinstance(x, np.generic) else x


def asarray(x, dtype=None, xp=None):
    """Put ``x`` on the device of ``xp`` (default: the current backend)."""
    xp = xp or current()
    return xp.asarray(x, dtype=dtype)


def to_device(x, name: str | None = None):
    """Move an array to the backend ``name`` (default: the current one)."""
    xp = use_name(name) if name else current()
    return xp.asarray(to_numpy(x))


def use_name(name):
    return {"numpy": np, "strict": STRICT}.get(name) or _cupy()


def to_numpy(x):
    """An explicit copy to host NumPy (from NumPy, strict or CuPy arrays)."""
    if isinstance(x, StrictArray):
        return x.get()
    if type(x).__module__.startswith("cupy"):
        return x.get()
    return np.asarray(x)


# ----------------------------------------------------------------------------------------
# dtypes
# ----------------------------------------------------------------------------------------
def default_dtype():
    """The floating dtype new tensors get (float32 unless changed)."""
    return _get("dtype", np.float32)


def set_default_dtype(dtype):
    _state.dtype = np.dtype(dtype).type


@contextlib.contextmanager
def dtype_scope(dtype):
    """``with dtype_scope(np.float64): ...`` builds models and tensors in float64."""
    old = default_dtype()
    set_default_dtype(dtype)
    try:
        yield
    finally:
        _state.dtype = old


# ----------------------------------------------------------------------------------------
# Random numbers: drawn on the host, then moved, so every backend sees the same numbers
# ----------------------------------------------------------------------------------------
def seed(s: int):
    """Reset the global generator (model initialisation, dropout masks)."""
    _state.rng = np.random.default_rng(s)


def get_rng() -> np.random.Generator:
    rng = _get("rng", None)
    if rng is None:
        seed(0)
    return _state.rng


def host_rng(s: int) -> np.random.Generator:
    """A fresh host generator (for host-side draws such as gradcheck's upstream gradient)."""
    return np.random.default_rng(s)


def randn(shape, std=1.0, xp=None, dtype=None):
    """Normal(0, std^2) numbers of ``shape`` on ``xp`` in the default dtype."""
    host = get_rng().standard_normal(shape) * std
    return (xp or current()).asarray(host, dtype=dtype or default_dtype())


def rand(shape, xp=None, dtype=None):
    """Uniform[0, 1) numbers of ``shape`` on ``xp``."""
    host = get_rng().random(shape)
    return (xp or current()).asarray(host, dtype=dtype or default_dtype())


# ----------------------------------------------------------------------------------------
# Functions NumPy lacks or names differently from CuPy
# ----------------------------------------------------------------------------------------
def erf(x):
    """The error function on the array's own device.

    float64: SciPy on the host (cupyx on a GPU), exact to rounding, so float64 gradient
    checks see the true function. float32 on the host: Abramowitz & Stegun 7.1.26,
    ``erf(a) = 1 - (c1 t + ... + c5 t^5) exp(-a^2)`` with ``t = 1 / (1 + p a)``, in place,
    absolute error below 1.5e-7 (under float32's own rounding of GELU) and about 5x faster.
    """
    xp = get_array_module(x)
    if xp is not np and xp is not STRICT:  # pragma: no cover - GPU only
        from cupyx.scipy.special import erf as _erf
        return _erf(x)
    raw = _unwrap(x)
    if raw.dtype != np.float32:
        from scipy.special import erf as _erf
        return _wrap(_erf(raw)) if xp is STRICT else _erf(raw)
    a = np.abs(raw)
    t = a * np.float32(0.3275911)
    t += 1
    np.reciprocal(t, out=t)
    poly = np.full_like(raw, 1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly *= t
        poly += np.float32(c)
    poly *= t
    np.multiply(a, a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    poly *= a
    np.subtract(1, poly, out=poly)
    out = np.copysign(poly, raw, out=poly)
    return _wrap(out) if xp is STRICT else out


def scatter_add(target, index, values):
    """``target[index] += values`` with repeated indices summed (in place)."""
    xp = get_array_module(target)
    if xp is np or xp is STRICT:
        np.add.at(_unwrap(target), _unwrap(index), _unwrap(values))
    else:  # pragma: no cover - GPU only
        import cupyx
        cupyx.scatter_add(target, index, values)
    return target
