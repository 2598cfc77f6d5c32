"""The backend: strict arrays refuse host round trips; core code never calls numpy on data."""
import re
from pathlib import Path

import numpy as np
import pytest

import minispike
from minispike import backend, ops
from minispike.backend import HostConversionError
from minispike.tensor import Tensor

PKG = Path(minispike.__file__).parent
# Floors that touch files and host memory may use numpy; everything else takes xp from its inputs.
# pipeline.py handles host-side token ids, labels and predictions (model data goes through xp).
HOST_SIDE = {"backend.py", "cli.py", "pipeline.py"}
HOST_DIRS = {"io", "text"}


def test_strict_refuses_silent_host_conversion(strict):
    a = strict.asarray(np.arange(6.0).reshape(2, 3))  # explicit move: allowed
    with pytest.raises(HostConversionError):
        np.asarray(a)
    with pytest.raises(HostConversionError):
        a + np.ones((2, 3))
    with pytest.raises(HostConversionError):
        np.concatenate([a, a])
    with pytest.raises(HostConversionError):
        strict.concatenate([a, np.ones((2, 3))])
    assert float((a * 2 + 1).sum()) == 36.0
    assert backend.get_array_module(a) is strict
    np.testing.assert_array_equal(backend.to_numpy(a), np.arange(6.0).reshape(2, 3))


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
