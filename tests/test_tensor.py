"""The engine itself: accumulation, topological order, no_grad, detach, broadcasting."""
import numpy as np
import pytest

from minispike import no_grad, ops
from minispike.tensor import Tensor, unbroadcast


def test_gradient_accumulates_over_uses_and_calls():
    x = Tensor([2.0, 3.0], requires_grad=True)
    y = (x * x + x).sum()  # dy/dx = 2x + 1
    y.backward()
    np.testing.assert_allclose(x.grad, [5.0, 7.0])
    (x * 3.0).sum().backward()  # a second backward adds
    np.testing.assert_allclose(x.grad, [8.0, 10.0])


def test_diamond_graph_visits_each_node_once():
    x = Tensor([1.5], requires_grad=True)
    a = x * 2.0
    b = a * a + a.exp()  # a used twice
    b.sum().backward()
    np.testing.assert_allclose(x.grad, 2 * (2 * 3.0 + np.exp(3.0)), rtol=1e-6)


def test_no_grad_and_detach_build_no_graph():
    x = Tensor([1.0], requires_grad=True)
    with no_grad():
        y = x * 2.0
    assert not y.requires_grad and y._ctx is None
    z = (x * 2.0).detach()
    assert not z.requires_grad


def test_deep_chain_does_not_recurse():
    x = Tensor([1.0], requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0
    y.sum().backward()
    assert x.grad[0] == 1.0


def test_unbroadcast_sums_stretched_axes():
    g = np.ones((2, 3, 4))
    assert unbroadcast(g, (3, 1)).shape == (3, 1)
    np.testing.assert_array_equal(unbroadcast(g, (3, 1)), np.full((3, 1), 8.0))
    assert unbroadcast(g, (4,)).shape == (4,)


def test_backward_needs_scalar_or_gradient():
    x = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match="scalar"):
        (x * 2.0).backward()


def test_repr_names_the_function():
    x = Tensor(np.zeros((2, 3), np.float32), requires_grad=True)
    assert "fn=Add" in repr(x + 1.0) and "shape=(2, 3)" in repr(x)


def test_numpy_operands_on_the_left():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = np.array([3.0, 4.0], np.float32) * x
    assert isinstance(y, Tensor)
    ops.sum(y).backward()
    np.testing.assert_allclose(x.grad, [3.0, 4.0])
