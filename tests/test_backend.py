"""The backend: strict arrays refuse host round trips; core code never calls numpy on data."""
import re
from pathlib import Path

import numpy as np
import pytest

import minispike
from minispike import backend, ops, optim
from minispike.backend import HostConversionError
from minispike.tensor import Tensor

PKG = Path(minispike.__file__).parent
# Floors that touch files and host memory may use numpy; everything else takes xp from its inputs.
# pipeline.py handles host-side token ids, labels and predictions (model data goes through xp).
# autograder.py grades learners' exercises, which are NumPy functions by design; notebooks.py
# converts example files (its docstring shows example code that imports NumPy).
HOST_SIDE = {"backend.py", "cli.py", "pipeline.py", "autograder.py", "notebooks.py",
             "compiled.py", "_numba_kernels.py"}  # numba kernels: host float32 arrays only (checked there)
HOST_DIRS = {"io", "text"}


# -- the strict backend refuses exactly what CuPy refuses (cupy/_core/core.pyx, _kernel.pyx,
#    _scalar.pyx, _routines_indexing.pyx), one case per line: (what, code, CuPy's answer)
def _host_cases(xp):
    a = xp.asarray(np.arange(6.0).reshape(2, 3))  # the explicit host -> device move
    host = np.ones((2, 3))
    return a, [
        # refused: TypeError in CuPy
        ("np.asarray(device)", lambda: np.asarray(a), "raises"),
        ("np.array(device)", lambda: np.array(a), "raises"),
        ("device + host array", lambda: a + host, "raises"),
        ("host array + device", lambda: host + a, "raises"),
        ("device + 0-d host array", lambda: a + np.array(2.0), "raises"),
        ("xp.add(device, 0-d host array)", lambda: xp.add(a, np.array(2.0)), "raises"),
        ("device + Python list", lambda: a + [1.0, 2.0, 3.0], "raises"),
        ("Python list * device", lambda: [1.0, 2.0, 3.0] * a, "raises"),
        ("device == Python list", lambda: a == [0.0, 1.0, 2.0], "raises"),
        ("xp.maximum(device, list)", lambda: xp.maximum(a, [1.0, 2.0, 3.0]), "raises"),
        ("xp.where(cond, device, list)", lambda: xp.where(a > 1, a, [0.0, 0.0, 0.0]), "raises"),
        ("xp.exp(host array)", lambda: xp.exp(host), "raises"),
        ("xp.concatenate([device, host])", lambda: xp.concatenate([a, host]), "raises"),
        ("np.concatenate([device, host])", lambda: np.concatenate([a, host]), "raises"),
        ("xp.concatenate([device, list])", lambda: xp.concatenate([a, [[1.0, 2.0, 3.0]]]), "raises"),
        ("xp.ascontiguousarray(host)", lambda: xp.ascontiguousarray(host), "raises"),
        ("xp.add.at(host, idx, device)", lambda: xp.add.at(host, np.array([0]), a[0]), "raises"),
        ("xp.add.at(device, slice, host)", lambda: xp.add.at(a, slice(0, 2), host), "raises"),
        ("backend.scatter_add(device, idx, host)", lambda: backend.scatter_add(host, np.array([0]), a[0]), "raises"),
        ("device[basic] = host array", lambda: a.__setitem__(slice(None), host), "raises"),
        ("device[basic] = Python list", lambda: a.__setitem__(0, [1.0, 2.0, 3.0]), "raises"),
        ("ufunc(out=host)", lambda: np.exp(a, out=host), "raises"),
        ("device.dot(host)", lambda: a.dot(host.T), "raises"),
        # accepted: CuPy takes these
        ("device + Python scalar", lambda: a + 2.0, "works"),
        ("device + NumPy scalar", lambda: a + np.float64(2.0), "works"),
        ("NumPy scalar * device", lambda: np.float32(2.0) * a, "works"),
        ("device < 0-d host array (comparisons only)", lambda: a < np.array(2.0), "works"),
        ("np.exp(device) (__array_ufunc__)", lambda: np.exp(a), "works"),
        ("np.add(device, 1)", lambda: np.add(a, 1), "works"),
        ("np.sum(device) (__array_function__)", lambda: np.sum(a), "works"),
        ("np.concatenate([device, device])", lambda: np.concatenate([a, a]), "works"),
        ("np.where(device > 1, device, 0)", lambda: np.where(a > 1, a, 0.0), "works"),
        ("xp.asarray(host) (the explicit move)", lambda: xp.asarray(host), "works"),
        ("xp.asarray(list)", lambda: xp.asarray([1.0, 2.0]), "works"),
        ("device[host index]", lambda: a[np.array([1, 0])], "works"),
        ("device[advanced] = host (CuPy copies it)", lambda: a.__setitem__(np.array([0]), host[:1]), "works"),
        ("device[basic] = 0-d host (fill)", lambda: a.__setitem__(slice(None), np.array(3.0)), "works"),
        ("xp.add.at(device, host idx, device)", lambda: xp.add.at(a, np.array([0, 0]), a[0]), "works"),
        ("xp.random.default_rng(0).random(3)", lambda: xp.random.default_rng(0).random(3), "works"),
    ]


@pytest.mark.parametrize("case", range(len(_host_cases(np)[1])), ids=[c[0] for c in _host_cases(np)[1]])
def test_strict_refuses_exactly_what_cupy_refuses(case, strict):
    a, cases = _host_cases(strict)
    what, code, expected = cases[case]
    if expected == "raises":
        with pytest.raises(HostConversionError):
            code()
    else:
        out = code()
        if out is not None:  # what CuPy returns is a device array
            assert backend.get_array_module(out) is strict, f"{what} returned {type(out).__name__}"


def test_results_stay_on_the_device(strict):
    a = strict.asarray(np.arange(6.0).reshape(2, 3))
    assert float((a * 2 + 1).sum()) == 36.0 and float(np.sum(a)) == 15.0
    assert isinstance(a, strict.ndarray) and backend.get_array_module(a) is strict
    gen = strict.random.default_rng(0)
    assert backend.get_array_module(gen.standard_normal((2, 2))) is strict
    assert backend.get_array_module(strict.random.rand(3)) is strict
    np.testing.assert_array_equal(backend.to_numpy(a), np.arange(6.0).reshape(2, 3))


def test_a_numpy_scalar_becomes_a_device_scalar(strict):
    """``Tensor(np.float64(2))`` is a scalar on the current device, not a host 0-d array."""
    t = Tensor(np.float64(2.0))
    assert backend.get_array_module(t.data) is strict and t.dtype == np.float64 and t.shape == ()
    x = Tensor(strict.asarray(np.ones(3)))
    assert backend.get_array_module((x * t).data) is strict


def test_sync_counter_counts_every_wait_for_the_device(strict):
    a = strict.asarray(np.arange(4.0))
    with backend.count_syncs() as c:
        float(a.sum()), int(a[1]), bool(a[2] > 1), a.max().item(), a[:2].tolist(), f"{a[0]:.1f}"
        backend.to_numpy(a), a.get()  # the explicit copies wait for the device too
        a + 1.0, a.shape, strict.exp(a).sum(), len(a)  # device work and host facts: no wait
    assert c.count == 8, c
    assert all("test_backend.py" in site for site in c.sites), c.sites
    assert sum(n for site, n in c.sites.items() if "(get)" in site) == 2


def test_strict_backend_runs_the_engine(strict):
    x = Tensor(backend.randn((3, 4)), requires_grad=True)
    y = ops.softmax(ops.gelu(x) * 2.0, -1).sum()
    y.backward()
    assert backend.get_array_module(x.grad) is strict
    assert backend.get_array_module(y.data) is strict


def test_same_random_numbers_on_every_backend():
    backend.seed(7)
    a = backend.randn((4,), xp=np)
    backend.seed(7)
    b = backend.randn((4,), xp=backend.STRICT)
    np.testing.assert_array_equal(a, backend.to_numpy(b))


def test_default_dtype_and_scope():
    assert Tensor([1.0, 2.0]).dtype == np.float32
    assert Tensor([1, 2]).dtype.kind == "i"
    with backend.dtype_scope(np.float64):
        assert Tensor([1.0]).dtype == np.float64
    assert backend.default_dtype() == np.float32


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown backend"):
        backend.use("torch")


def test_cupy_backend_when_available():
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed: no GPU on this machine")
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # pragma: no cover - GPU machines only
        pytest.skip(f"CuPy cannot see a GPU: {e}")
    backend.use("cupy")  # pragma: no cover - GPU machines only
    x = Tensor(backend.randn((3, 4)), requires_grad=True)
    ops.softmax(x, -1).sum().backward()
    assert backend.get_array_module(x.grad) is cupy


def core_files():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        if rel.parts[0] in HOST_DIRS or rel.name in HOST_SIDE:
            continue
        yield path


def test_core_code_never_calls_numpy_on_data():
    """Core floors take ``xp`` from their inputs: no ``np.``/``numpy.`` calls, no numpy import."""
    offenders = []
    pattern = re.compile(r"(^|[^\w.])(np|numpy)\.\w+|^\s*(import numpy|from numpy)")
    for path in core_files():
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if pattern.search(code) and "# host:" not in line:
                offenders.append(f"{path.relative_to(PKG)}:{n}: {line.strip()}")
    assert not offenders, "core code calls numpy directly:\n" + "\n".join(offenders)


def test_the_scan_catches_a_numpy_call(tmp_path):
    """Negative control for the scan above."""
    pattern = re.compile(r"(^|[^\w.])(np|numpy)\.\w+|^\s*(import numpy|from numpy)")
    assert pattern.search("y = np.exp(x)") and pattern.search("import numpy as np")
    assert not pattern.search("y = xp.exp(x)") and not pattern.search("y = self.np.x")


def test_float32_erf_is_accurate_and_float64_exact(xp):
    from scipy.special import erf
    x = np.linspace(-6, 6, 10001)
    got32 = backend.to_numpy(backend.erf(xp.asarray(x.astype(np.float32))))
    assert got32.dtype == np.float32 and np.abs(got32 - erf(x)).max() < 1e-6
    got64 = backend.to_numpy(backend.erf(xp.asarray(x)))
    assert np.array_equal(got64, erf(x))


def test_dropout_keeps_the_dtype():
    x = Tensor(np.ones((4, 4), np.float32), requires_grad=True)
    assert ops.dropout(x, 0.5, training=True).dtype == np.float32
