"""Surrogate gradients: exact Heaviside forward, surrogate backward = d(primitive)/dx."""
import math

import numpy as np
import pytest

from minispike import backend
from minispike.gradcheck import gradcheck
from minispike.spiking.surrogate import (ATan, FastSigmoid, Heaviside, Rectangular, Sigmoid, SuperSpike,
                                         get_surrogate, heaviside)
from minispike.tensor import Tensor

ALL = [ATan(), Sigmoid(), FastSigmoid(), Rectangular(), ATan(3.0), Sigmoid(2.0), FastSigmoid(5.0), Rectangular(0.5)]
POINTS = np.array([-3.0, -1.1, -0.7, -0.33, -0.1, -0.01, 0.013, 0.12, 0.31, 0.66, 1.3, 2.9])


def arr(a, dtype=np.float64):
    return backend.current().asarray(np.asarray(a, dtype=dtype))


@pytest.mark.parametrize("sur", ALL, ids=repr)
def test_forward_is_heaviside_exactly(sur, xp):
    x = arr([-2.0, -1e-300, 0.0, -0.0, 1e-300, 0.5, 3.0])
    s = sur(Tensor(x))
    assert backend.to_numpy(s.data).tolist() == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]  # Theta(0) = 1
    assert s.dtype == np.float64
    s32 = sur(Tensor(arr([-1.0, 0.0, 1.0], np.float32)))
    assert s32.dtype == np.float32  # the dtype is kept


@pytest.mark.parametrize("sur", ALL, ids=repr)
def test_derivative_is_the_derivative_of_the_primitive(sur):
    x = arr(POINTS)
    if isinstance(sur, Rectangular):  # keep clear of the kinks at |x| = w/2
        x = x[np.abs(np.abs(POINTS) - sur.alpha / 2) > 0.02]
    h = 1e-6
    fd = (sur.primitive(x + h) - sur.primitive(x - h)) / (2 * h)
    np.testing.assert_allclose(sur.derivative(x), fd, rtol=1e-7, atol=1e-9)


def test_known_values():
    x = arr([0.0, 0.5])
    # ATan(2): g'(0) = 1, g'(0.5) = 1 / (1 + (pi/2)^2)
    np.testing.assert_allclose(ATan().derivative(x), [1.0, 1.0 / (1.0 + (math.pi / 2) ** 2)], rtol=1e-15)
    np.testing.assert_allclose(ATan().primitive(x)[0], 0.5)
    np.testing.assert_allclose(Sigmoid().derivative(x)[0], 1.0)  # a/4 at 0
    np.testing.assert_allclose(FastSigmoid(25.0).derivative(x), [1.0, 1.0 / 13.5 ** 2])
    np.testing.assert_allclose(Rectangular(1.0).derivative(arr([0.0, 0.49, 0.51])), [1.0, 1.0, 0.0])
    assert SuperSpike is FastSigmoid


@pytest.mark.parametrize("sur", ALL, ids=repr)
def test_spiking_backward_uses_the_surrogate(sur, xp):
    x = Tensor(arr(POINTS), requires_grad=True)
    u = arr(np.linspace(-1, 1, POINTS.size))
    sur(x).backward(u)
    np.testing.assert_allclose(backend.to_numpy(x.grad), backend.to_numpy(u * sur.derivative(x.data)), rtol=1e-15)


@pytest.mark.parametrize("name", ["atan", "sigmoid", "fast_sigmoid", "rectangular"])
def test_gradcheck_smooth_mode(name, xp):
    sur = get_surrogate(name, spiking=False)
    x = Tensor(arr(POINTS * (0.3 if name == "rectangular" else 1.0)), requires_grad=True)
    x.data = x.data[np.abs(np.abs(POINTS * 0.3) - 0.5) > 0.02] if name == "rectangular" else x.data
    assert gradcheck(lambda t: Heaviside.apply(t, surrogate=sur), [x], name=f"Heaviside[{name}]", atol=1e-8)
    np.testing.assert_allclose(backend.to_numpy(sur(Tensor(x.data)).data), backend.to_numpy(sur.primitive(x.data)))


def test_helpers():
    assert isinstance(get_surrogate("ATan"), ATan) and get_surrogate("sigmoid", 2.0).alpha == 2.0
    assert get_surrogate("superspike", spiking=False).spiking is False
    with pytest.raises(ValueError, match="unknown surrogate"):
        get_surrogate("tanh")
    assert heaviside(Tensor(arr([0.0]))).data[0] == 1.0
    assert repr(ATan(spiking=False)) == "ATan(2, spiking=False)"
