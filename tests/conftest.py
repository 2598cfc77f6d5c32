"""Shared fixtures: the strict backend, float64, paths to the shared data, the backend under test.

``xp``-taking tests are backend-generic: they run on NumPy and the strict backend, and on CuPy
too with ``python -m pytest --backend-under-test cupy`` (or ``MINISPIKE_TEST_BACKEND=cupy``),
where those runs carry the ``device`` and ``gpu`` markers. Tests marked ``gpu`` skip, with the
reason, where CuPy or a GPU is missing (benchmarks/gpu_check.sh runs them on a GPU).
"""
import os
from pathlib import Path

import numpy as np
import pytest

from minispike import backend

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _fresh_backend():
    """Every test starts on NumPy, float32, seed 0, and is left that way afterwards."""
    backend.use("numpy")
    backend.set_default_dtype(np.float32)
    backend.seed(0)
    yield
    backend.use("numpy")
    backend.set_default_dtype(np.float32)


@pytest.fixture
def strict():
    """Run the test on the strict (device-like) backend: host round trips raise."""
    return backend.use("strict")


BACKENDS = ("numpy", "strict", "cupy")


def pytest_addoption(parser):
    parser.addoption("--backend-under-test", choices=BACKENDS, default=os.environ.get("MINISPIKE_TEST_BACKEND"),
                     help="also run the backend-generic (xp) tests on this backend; cupy needs a GPU "
                          "(default: $MINISPIKE_TEST_BACKEND, else NumPy and strict only)")


def gpu_unavailable():
    """Why CuPy cannot run here (a one-line reason), or None when it can."""
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed (pip install -e '.[gpu]' on a machine with an NVIDIA GPU)"
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDARuntimeError: no driver or no device
        return f"CuPy is installed but finds no GPU: {e}"
    return None


def pytest_generate_tests(metafunc):
    """``xp`` runs on NumPy and strict, and on the backend under test when it is another one."""
    if "xp" in metafunc.fixturenames:
        names = ["numpy", "strict"]
        chosen = metafunc.config.getoption("--backend-under-test")
        if chosen and chosen not in names:
            names.append(chosen)
        marks = {"cupy": [pytest.mark.device, pytest.mark.gpu], "strict": [pytest.mark.device]}
        metafunc.parametrize("xp", [pytest.param(n, id=n, marks=marks.get(n, [])) for n in names], indirect=True)


def pytest_runtest_setup(item):
    if item.get_closest_marker("gpu"):
        reason = gpu_unavailable()
        if reason:
            pytest.skip(reason)


@pytest.fixture
def xp(request):
    """Run the test on NumPy, the strict backend and (``--backend-under-test cupy``) CuPy."""
    return backend.use(request.param)


# -- tests/interop (marker interop): minispike against transformers, spikingjelly, snnTorch ----
# They run in CI's second venv (.ci/run) and skip, with the reason, where those packages are
# absent. Nothing is downloaded: their models are tiny random ones, or the installed MiniLM.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
_interop_skipped = []


def pytest_runtest_logreport(report):
    """In CI's interop venv (MINISPIKE_INTEROP_REQUIRED=1) every package is there on purpose: a
    skip means the job checked less than it says, so it fails the run."""
    if os.environ.get("MINISPIKE_INTEROP_REQUIRED") and report.skipped and "tests/interop/" in report.nodeid:
        _interop_skipped.append(report.nodeid)


pytest_collectreport = pytest_runtest_logreport  # a module skipped at import (no torch) counts too


def pytest_sessionfinish(session, exitstatus):
    if _interop_skipped:
        print(f"\ninterop: {len(_interop_skipped)} test(s) skipped where every interop package should be "
              f"installed: {', '.join(_interop_skipped[:5])}")
        session.exitstatus = 1


@pytest.fixture
def f64():
    backend.set_default_dtype(np.float64)
    return np.float64


SHARED_DATA = SHARED / "data"
needs_data = pytest.mark.skipif(not (SHARED_DATA / "README.md").is_file(),
                                reason=f"real data not found at {SHARED_DATA}")


@pytest.fixture
def restore_registry():
    """Tasks registered by a test do not leak into the next one."""
    import minispike.text as T
    saved = dict(T.TASKS)
    yield
    T.TASKS.clear()
    T.TASKS.update(saved)


@pytest.fixture
def shared_data():
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip(f"the shared data directory {path} is not present")
    return path


def pytest_collection_modifyitems(session, config, items):
    """Run the gradient-check coverage test last, after every gradient check has run."""
    last = [i for i in items if "test_gradcheck_coverage" in i.nodeid]
    rest = [i for i in items if "test_gradcheck_coverage" not in i.nodeid]
    items[:] = rest + last
