"""Every registered Function has passed a finite-difference gradient check in this run.

``minispike.gradcheck.gradcheck`` records the Functions in each graph it checks; this test
runs last (see conftest.py) and fails if a Function of the package was never checked.
"""
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest

import minispike
from minispike.gradcheck import CHECKED
from minispike.tensor import Function

# Functions that are not differentiable by design, with the reason.
NOT_DIFFERENTIABLE = {}


def _import_all():
    for mod in pkgutil.walk_packages(minispike.__path__, "minispike."):
        if mod.name.endswith("__main__") or (mod.name == "minispike._numba_kernels"
                                             and importlib.util.find_spec("numba") is None):
            continue  # the numba kernels import numba, the optional extra [fast]
        importlib.import_module(mod.name)


def test_every_function_is_gradchecked(request):
    _import_all()
    args, keyword = request.config.args, request.config.option.keyword
    if keyword or not all(Path(a).is_dir() for a in args):
        pytest.skip("only part of the suite ran: coverage is judged on the full suite")
    registered = {name for name, cls in Function.registry.items() if cls.__module__.startswith("minispike")}
    unchecked = sorted(registered - CHECKED - set(NOT_DIFFERENTIABLE))
    assert not unchecked, f"Functions with no passing gradcheck in this run: {unchecked}"
