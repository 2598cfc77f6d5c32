"""Shared fixtures: the strict backend, float64, paths to the shared data."""
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


@pytest.fixture(params=["numpy", "strict"])
def xp(request):
    """Run the test on both NumPy and the strict backend."""
    return backend.use(request.param)


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
