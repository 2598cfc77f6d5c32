"""Negative controls for ``gradcheck``: its upstream gradient is random, not all ones.

A backward that is right only when every upstream entry is equal (it averages the upstream,
or transposes it) passes a check whose upstream is all ones; gradcheck must catch both.
"""
import numpy as np
import pytest

from minispike import backend
from minispike.gradcheck import GradcheckError, gradcheck, make_inputs
from minispike.tensor import Function


class AveragesUpstream(Function):
    """y = 3 x, with the broken backward 3 mean(g) (equal to 3 g when g is uniform)."""

    @staticmethod
    def forward(ctx, x):
        return x * 3.0

    @staticmethod
    def backward(ctx, g):
        return backend.get_array_module(g).full_like(g, 3.0) * g.mean()


class TransposesUpstream(Function):
    """y = 3 x on a square matrix, with the broken backward 3 g^T (right for a symmetric g)."""

    @staticmethod
    def forward(ctx, x):
        return x * 3.0

    @staticmethod
    def backward(ctx, g):
        return g.T * 3.0


@pytest.mark.parametrize("broken", [AveragesUpstream, TransposesUpstream], ids=lambda f: f.__name__)
def test_gradcheck_catches_a_backward_that_is_right_only_for_a_uniform_upstream(broken, xp, f64):
    (x,) = make_inputs((4, 4))
    with pytest.raises(GradcheckError, match=broken.__name__):
        gradcheck(broken.apply, [x], name=broken.__name__)
    # the same op behind a sum sees a uniform upstream, and then it passes: only the random
    # upstream above tells the broken backward from the right one
    assert gradcheck(lambda x: broken.apply(x).sum().reshape(1), [x], name=broken.__name__)


def test_the_upstream_is_random_and_not_uniform(f64):
    """The check really sends a non-uniform upstream: record what backward receives."""
    seen = []

    class Spy(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1.0

        @staticmethod
        def backward(ctx, g):
            seen.append(backend.to_numpy(g))
            return g

    (x,) = make_inputs((3, 5))
    gradcheck(Spy.apply, [x], name="Spy")
    upstream = seen[0]
    assert upstream.shape == (3, 5) and np.unique(upstream).size == upstream.size
