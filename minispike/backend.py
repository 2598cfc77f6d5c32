"""The one place that knows about array libraries.

minispike computes on an *array module* ``xp``: NumPy on a CPU, CuPy on a GPU, or
``strict``, a NumPy wrapper for tests whose arrays refuse what CuPy's refuse, case by case
(docs/backends.md has the table, taken from CuPy's source): ``np.asarray(a)`` raises; a
kernel (an operator, a ufunc, ``xp.where``) takes device arrays, Python scalars and NumPy
scalars, never a host array (not even a 0-d one) or a Python list; ``xp.<f>`` refuses host
arrays except in the explicit moves ``xp.asarray`` / ``xp.array``; ``np.exp(a)`` and
``np.sum(a)`` work and stay on the device (CuPy's ``__array_ufunc__`` / ``__array_function__``).
It also counts the implicit device-to-host synchronisations (``float(a)``, ``a.item()``,
``bool(a)``, ...) that CuPy allows but that stall a GPU: ``with count_syncs() as c: ...``.
Code above this floor takes ``xp = get_array_module(x)`` from the arrays it is handed and
never imports NumPy for data, so a CuPy run never falls back to the host by accident.

Also here: the default floating dtype (float32; float64 for gradient checks), device moves
(``to_device``, ``to_numpy``) and one seeded random generator that draws on the host and
moves the numbers, so NumPy and CuPy runs see the same numbers for the same seed.
"""
from __future__ import annotations

import collections
import contextlib
import functools
import math
import sys
import threading
import types

import numpy as np

__all__ = [
    "use", "current", "ensure_array", "get_array_module", "to_device", "to_numpy", "asarray",
    "default_dtype", "set_default_dtype", "dtype_scope", "seed", "get_rng",
    "randn", "rand", "erf", "scatter_add", "STRICT", "StrictArray", "HostConversionError", "count_syncs",
]

_state = threading.local()


def _get(name, default):
    return getattr(_state, name, default)


# ----------------------------------------------------------------------------------------
# The strict test backend
# ----------------------------------------------------------------------------------------
class HostConversionError(TypeError):
    """Raised where CuPy would refuse: a device array mixed with, or silently turned into, host data."""


_PY_SCALARS = (bool, int, float, complex)
_COMPARISONS = {"less", "less_equal", "equal", "not_equal", "greater", "greater_equal"}
# NumPy functions that CuPy runs as elementwise kernels although NumPy has no ufunc for them
_KERNEL_FUNCTIONS = {"where", "clip"}
# functions whose first argument is a sequence of arrays (CuPy: every item a device array)
_SEQUENCE_FUNCTIONS = {"concatenate", "stack", "vstack", "hstack", "dstack", "column_stack"}
# functions whose output shape depends on the data: CuPy waits for the device to size it
_DATA_SHAPED = {"nonzero", "argwhere", "flatnonzero", "unique", "compress", "extract"}


def _is_scalar(x):
    """What a CuPy kernel accepts besides device arrays: Python and NumPy scalars."""
    return isinstance(x, _PY_SCALARS) or isinstance(x, np.generic)


def _check_operands(values, what, comparison=False):
    """A kernel's operands: strict arrays, Python scalars, NumPy scalars (CuPy's CScalar).

    A comparison also takes a 0-d host array (CuPy turns it into ``.item()``).
    """
    for x in values:
        if isinstance(x, StrictArray) or _is_scalar(x) or x is None:  # None: xp.clip(a, 0, None)
            continue
        if comparison and isinstance(x, np.ndarray) and x.ndim == 0:
            continue
        if isinstance(x, np.ndarray):
            raise HostConversionError(
                f"{what} mixes a strict (device) array with a host NumPy array of shape {x.shape}: "
                "move it with xp.asarray first")
        if isinstance(x, (list, tuple)):
            raise HostConversionError(
                f"{what} got a Python {type(x).__name__} as an operand: a device kernel takes arrays "
                "and scalars only; make it an array with xp.asarray")
        raise HostConversionError(f"{what} got an operand of unsupported type {type(x).__name__}")


def _refuse_host(args, name):
    """A non-kernel xp function: no host NumPy array anywhere in its arguments."""
    for a in args:
        if isinstance(a, np.ndarray):
            raise HostConversionError(f"xp.{name} got a host NumPy array: move it with xp.asarray first")
        if isinstance(a, (list, tuple)):
            _refuse_host(a, name)
        elif isinstance(a, dict):
            _refuse_host(tuple(a.values()), name)


def _is_advanced(idx):
    """CuPy turns list, array and bool indices into device arrays (a host copy it allows)."""
    parts = idx if isinstance(idx, tuple) else (idx,)
    return any(isinstance(s, (list, tuple, np.ndarray, StrictArray, bool, np.bool_)) for s in parts)


def _check_scatter(target, idx, value, what, kernel):
    """``a[idx] = v`` (kernel=False) or ``xp.add.at(a, idx, v)`` (kernel=True), as CuPy checks them.

    The target must be a device array. With an advanced index CuPy copies any host value to
    the device; with a basic one, assignment takes only scalars and 0-d arrays (``fill``) and
    ``add.at`` runs a kernel (``_check_operands``).
    """
    if not isinstance(target, StrictArray):
        raise HostConversionError(f"{what}: the target is a {type(target).__name__}, not a strict (device) array")
    if _is_advanced(idx) or value is None:
        return
    if kernel:
        _check_operands((value,), what)
    elif isinstance(value, (np.ndarray, list, tuple)) and np.ndim(value) > 0:
        raise HostConversionError(
            f"{what}: a basic index takes a device array or a scalar, not a host {type(value).__name__} "
            "(CuPy: 'non-scalar numpy.ndarray cannot be used for fill')")


# -- implicit synchronisations ---------------------------------------------------------------
class SyncCounter:
    """The implicit device-to-host synchronisations seen inside ``with count_syncs() as c:``.

    ``c.count``: how many; ``c.sites``: a Counter of ``"file:line (kind)"`` outside this module,
    to find them. The explicit copies (``to_numpy(a)``, ``a.get()``, kind ``get``) and results
    whose size depends on the data (``xp.nonzero``, boolean masks, kind ``shape``) wait for the
    device too, so they count as well.
    """

    def __init__(self):
        self.count = 0
        self.sites = collections.Counter()

    def __repr__(self):
        return f"SyncCounter({self.count}: {dict(self.sites)})"


_counters: list = []  # active counters (all threads: a thread pool's syncs count too)


def _synced(kind):
    if not _counters:
        return
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
    site = f"{frame.f_code.co_filename}:{frame.f_lineno} ({kind})" if frame is not None else kind
    for c in list(_counters):
        c.count += 1
        c.sites[site] += 1


@contextlib.contextmanager
def count_syncs():
    """Count ``float(a)``, ``int(a)``, ``bool(a)``, ``a.item()``, ``to_numpy(a)``, ... on strict
    arrays (each one a GPU stall under CuPy): ``with count_syncs() as c: step(); print(c.count, c.sites)``."""
    counter = SyncCounter()
    _counters.append(counter)
    try:
        yield counter
    finally:
        _counters.remove(counter)


class StrictArray:
    """A NumPy array that behaves like a CuPy array (see the module docstring).

    ``a.get()`` / ``to_numpy(a)`` is the explicit move to the host; it and ``float(a)``,
    ``a.item()`` work (and count as synchronisations); ``np.asarray(a)``, ``a + host_array`` raise.
    """

    __slots__ = ("_a",)
    __array_priority__ = 1000

    def __init__(self, a):
        self._a = a

    # -- explicit conversion (allowed, counted) ---------------------------------------------
    def get(self):
        _synced("get")
        return self._a.copy()

    # -- implicit synchronisations (allowed, counted) ---------------------------------------
    def item(self, *args):
        _synced("item")
        return self._a.item(*args)

    def tolist(self):
        _synced("tolist")
        return self._a.tolist()

    def __float__(self):
        _synced("float")
        return float(self._a)

    def __int__(self):
        _synced("int")
        return int(self._a)

    def __complex__(self):
        _synced("complex")
        return complex(self._a)

    def __bool__(self):
        _synced("bool")
        return bool(self._a)

    def __index__(self):
        _synced("index")
        return self._a.__index__()

    def __format__(self, spec):
        _synced("format")
        return format(self._a, spec)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        for i in range(len(self._a)):
            yield self[i]

    # -- implicit conversion (refused, as CuPy refuses it) -----------------------------------
    def __array__(self, *args, **kwargs):
        raise HostConversionError(
            "implicit conversion of a strict (device) array to a host NumPy array; "
            "use xp functions, or backend.to_numpy(x) when you really mean to copy to the host")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        """``np.exp(a)``, ``np.add(a, 1)``: CuPy runs its own ufunc of that name on the device."""
        outs = kwargs.get("out", ())
        for x in inputs + tuple(outs):
            if not (isinstance(x, (StrictArray, np.ndarray)) or _is_scalar(x)):
                return NotImplemented  # NumPy then raises TypeError, as it does for CuPy
        if outs:
            if any(not isinstance(o, StrictArray) for o in outs):
                raise HostConversionError(f"ufunc {ufunc.__name__}: out= must be strict (device) arrays")
        if method == "at":
            return getattr(STRICT, ufunc.__name__).at(*inputs)
        _check_operands(inputs, f"ufunc {ufunc.__name__}", comparison=ufunc.__name__ in _COMPARISONS)
        inputs = tuple(x.item() if isinstance(x, np.ndarray) else x for x in inputs)  # 0-d, comparisons only
        return _wrap(getattr(ufunc, method)(*_unwrap(inputs), **_unwrap(kwargs)))

    def __array_function__(self, func, types_, args, kwargs):
        """``np.sum(a)``, ``np.concatenate([a, b])``: CuPy dispatches to ``cupy.<name>``."""
        if any(not issubclass(t, (StrictArray, np.ndarray)) for t in types_):
            return NotImplemented
        module = STRICT
        try:
            for part in func.__module__.split(".")[1:]:
                module = getattr(module, part)
            twin = getattr(module, func.__name__)
        except AttributeError:
            return NotImplemented
        return twin(*args, **kwargs)

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

    def __getitem__(self, idx):  # host indices are fine: CuPy copies them to the device
        if any(isinstance(s, StrictArray) and s.dtype == bool for s in (idx if isinstance(idx, tuple) else (idx,))):
            _synced("shape")  # a boolean mask: the result's size is data-dependent
        return _wrap(self._a[_unwrap(idx)])

    def __setitem__(self, idx, value):
        _check_scatter(self, idx, value, "a[index] = value", kernel=False)
        self._a[_unwrap(idx)] = _unwrap(value)

    def __getattr__(self, name):  # methods: reshape, sum, astype, copy, max, ...
        if name.startswith("__") or name in ("data", "ctypes"):  # no __array_interface__, no buffers
            raise AttributeError(f"strict arrays have no {name!r}: it would expose host memory")
        attr = getattr(self._a, name)
        if callable(attr):
            def method(*args, **kwargs):
                if name in _DATA_SHAPED:
                    _synced("shape")
                if name != "fill":  # fill takes a 0-d host array, as CuPy's does
                    _refuse_host(args, f"ndarray.{name}")
                    _refuse_host(tuple(kwargs.values()), f"ndarray.{name}")
                return _wrap(attr(*_unwrap(args), **_unwrap(kwargs)))
            return method
        return _wrap(attr)

    def __reduce__(self):
        return (StrictArray, (self._a,))


def _should_use_rop(other):
    """CuPy's rule: defer to ``other``'s reflected operator when it opts out of ufuncs or
    outranks us by ``__array_priority__`` (a Tensor does: ``strict_array * Tensor``)."""
    ufunc = getattr(other, "__array_ufunc__", _MISSING)
    if ufunc is not _MISSING:
        return ufunc is None
    return getattr(other, "__array_priority__", 0) > StrictArray.__array_priority__


_MISSING = object()


def _binary(name):
    comparison = name in ("__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__")

    def op(self, other):
        if type(other) is StrictArray:  # the common cases first: this runs for every operator
            return _wrap(getattr(self._a, name)(other._a))
        if type(other) in _PY_SCALARS:
            return _wrap(getattr(self._a, name)(other))
        if _should_use_rop(other):
            return NotImplemented
        _check_operands((other,), f"operator {name}", comparison=comparison)
        if isinstance(other, np.ndarray):  # a 0-d host array in a comparison
            other = other.item()
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
    if type(x) is np.ndarray:
        return StrictArray(x)
    if isinstance(x, (np.ndarray, np.generic)):
        return StrictArray(np.asarray(x))
    if isinstance(x, (np.random.Generator, np.random.RandomState)):
        return _StrictGenerator(x)
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


class _StrictGenerator:
    """``xp.random.default_rng(s)``: draws land on the device, as ``cupy.random``'s do."""

    def __init__(self, gen):
        self._gen = gen

    def __getattr__(self, name):
        attr = getattr(self._gen, name)
        if not callable(attr):
            return attr

        def method(*args, **kwargs):
            _refuse_host(args, f"random.{name}")
            return _wrap(attr(*_unwrap(args), **_unwrap(kwargs)))
        return method


class _StrictModule(types.ModuleType):
    """``xp`` for the strict backend: every numpy name, taking and giving StrictArrays.

    Kernels (ufuncs, ``where``, ``clip``) take strict arrays and scalars only; other functions
    refuse host arrays; ``asarray`` / ``array`` are the explicit host-to-device move (as
    ``cupy.asarray`` is).
    """

    _moves = {"asarray", "array"}

    def __init__(self, name, source):
        super().__init__(name)
        self._source = source

    def __getattr__(self, name):
        if name == "ndarray":  # isinstance(a, xp.ndarray), as with cupy.ndarray
            return StrictArray
        attr = getattr(self._source, name)
        if isinstance(attr, types.ModuleType):
            sub = _StrictModule(f"{self.__name__}.{name}", attr)
            setattr(self, name, sub)
            return sub
        if isinstance(attr, type) and issubclass(attr, (np.random.Generator, np.random.RandomState)):
            return lambda *a, **k: _StrictGenerator(attr(*_unwrap(a), **_unwrap(k)))
        if not callable(attr) or isinstance(attr, type):
            return attr  # dtypes (xp.float32), constants (xp.pi, xp.inf), classes
        kernel = isinstance(attr, np.ufunc) or name in _KERNEL_FUNCTIONS

        @functools.wraps(attr)
        def fn(*args, **kwargs):
            if name in _DATA_SHAPED or (name == "where" and len(args) == 1):
                _synced("shape")
            if kernel:
                _check_operands(args, f"xp.{name}", comparison=name in _COMPARISONS)
                out = kwargs.get("out")
                if out is not None and not all(isinstance(o, StrictArray) for o in
                                               (out if isinstance(out, tuple) else (out,))):
                    raise HostConversionError(f"xp.{name}: out= must be a strict (device) array")
                args = tuple(x.item() if isinstance(x, np.ndarray) else x for x in args)
            elif name not in self._moves:
                if name in _SEQUENCE_FUNCTIONS and args and isinstance(args[0], (list, tuple)):
                    _check_operands(args[0], f"xp.{name}")
                _refuse_host(args, name)
                _refuse_host(tuple(kwargs.values()), name)
            return _wrap(attr(*_unwrap(args), **_unwrap(kwargs)))
        if isinstance(attr, np.ufunc):  # keep ufunc methods such as xp.add.at
            def at(a, idx, b=None):
                _check_scatter(a, idx, b, f"xp.{name}.at", kernel=True)
                attr.at(_unwrap(a), _unwrap(idx), _unwrap(b))
            fn.at = at
        setattr(self, name, fn)
        return fn


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
    """A NumPy scalar (np.float64, what a host reduction returns) is a scalar: it becomes a
    0-d array on the current backend, as a Python number does (CuPy's reductions give 0-d
    device arrays already)."""
    return current().asarray(x) if isinstance(x, np.generic) else x


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
AS_P = 0.3275911  # Abramowitz & Stegun 7.1.26: erf(u) = 1 - t (c1 + t (c2 + ... + t c5)) e^(-u^2), t = 1 / (1 + p u)
AS_C = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def _as_tail(a, scale, factor, out=None):
    """``factor * (1 - erf(u))`` and ``e^(-u^2)`` for ``u = scale * a``, ``a >= 0`` (float32, host, in place:
    the constants are folded into the coefficients, so the work is 17 passes over ``a``). ``out``:
    the two result arrays (the second may be ``a`` itself)."""
    f32 = np.float32
    q_out, e_out = out if out is not None else (None, None)
    t = np.multiply(a, f32(AS_P * scale), out=e_out if e_out is not None and e_out is not a else None)
    t += 1
    np.reciprocal(t, out=t)
    q = np.multiply(t, f32(AS_C[4] * factor), out=q_out)
    for c in AS_C[3::-1]:  # Horner: q = factor t (c1 + t (c2 + t (c3 + t (c4 + t c5))))
        q += f32(c * factor)
        q *= t
    e = np.multiply(a, a, out=t if e_out is None else e_out)
    e *= f32(-scale * scale)
    np.exp(e, out=e)
    q *= e
    return q, e


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
    q, _ = _as_tail(np.abs(raw), 1.0, 1.0)
    np.subtract(1, q, out=q)
    out = np.copysign(q, raw, out=q)
    return _wrap(out) if xp is STRICT else out


def normal_cdf(x, out=None):
    """``(Phi(x), e^(-x^2 / 2))``: the standard normal CDF and its density times sqrt(2 pi), on x's device
    (``out``: two arrays of x's shape to write them into).

    ``Phi(x) = (1 + erf(x / sqrt 2)) / 2``. float64 (and CuPy): from the exact erf. float32
    on the host: the same A&S formula as ``erf``, written for Phi directly,
    ``Phi(x) = 1/2 + sign(x) (1/2 - q)`` with ``q = (1 - erf(|x| / sqrt 2)) / 2`` (19 passes,
    the exponential computed once and returned: GELU's backward needs it).
    """
    xp = get_array_module(x)
    raw = _unwrap(x)
    if (xp is not np and xp is not STRICT) or raw.dtype != np.float32:
        cdf = erf(x * (1.0 / math.sqrt(2.0)))
        cdf += 1.0
        cdf *= 0.5
        gauss = xp.exp(-0.5 * (x * x))
        if out is None:
            return cdf, gauss
        out[0][...], out[1][...] = cdf, gauss
        return out
    outs = None if out is None else tuple(_unwrap(o) for o in out)
    a = np.abs(raw, out=None if outs is None else outs[1])  # |x| in the second output, which ends as e^(-x^2/2)
    q, e = _as_tail(a, 1.0 / math.sqrt(2.0), 0.5, out=None if outs is None else (outs[0], a))
    np.subtract(np.float32(0.5), q, out=q)
    np.copysign(q, raw, out=q)
    q += np.float32(0.5)
    return (_wrap(q), _wrap(e)) if xp is STRICT else (q, e)


def scatter_add(target, index, values):
    """``target[index] += values`` with repeated indices summed (in place)."""
    xp = get_array_module(target)
    if xp is STRICT:
        STRICT.add.at(target, index, values)
    elif xp is np:
        np.add.at(target, index, values)
    else:  # pragma: no cover - GPU only
        import cupyx
        cupyx.scatter_add(target, index, values)
    return target
