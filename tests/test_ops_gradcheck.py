"""Finite-difference checks of every engine op, float64, on NumPy and the strict backend.

Shapes are drawn by hypothesis (broadcasting and size-1 axes included); boundary points
(ReLU/GELU at 0, softmax with -inf entries) are tested exactly.
"""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from minispike import backend, ops
from minispike.gradcheck import GradcheckError, gradcheck
from minispike.tensor import Function, Tensor

SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


def T(a, requires_grad=True):
    return Tensor(backend.current().asarray(np.asarray(a, dtype=np.float64)), requires_grad=requires_grad)


def rnd(shape, seed=0, lo=None):
    r = np.random.default_rng(seed).standard_normal(shape)
    return np.abs(r) + lo if lo is not None else r


def broadcast_partner(shape, data):
    """A shape that broadcasts against ``shape``: some axes set to 1, some leading axes dropped."""
    ones = data.draw(st.lists(st.booleans(), min_size=len(shape), max_size=len(shape)))
    other = tuple(1 if o else n for n, o in zip(shape, ones))
    drop = data.draw(st.integers(0, len(other) - 1))
    return other[drop:]


@pytest.fixture(autouse=True)
def _f64(f64):
    yield


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div"])
@SETTINGS
@given(shape=shapes, data=st.data())
def test_binary_broadcasting(name, shape, data, xp):
    other = broadcast_partner(shape, data)
    a = T(rnd(shape, 1))
    b = T(rnd(other, 2, lo=0.5) if name == "div" else rnd(other, 2))
    gradcheck(getattr(ops, name), [a, b], name=name)
    gradcheck(getattr(ops, name), [b, a] if name != "div" else [b, T(rnd(shape, 3, lo=0.5))], name=name)


@pytest.mark.parametrize("name,lo", [("neg", None), ("exp", None), ("log", 0.3), ("tanh", None),
                                      ("sigmoid", None), ("relu", None), ("gelu", None)])
@SETTINGS
@given(shape=shapes)
def test_unary(name, lo, shape, xp):
    x = rnd(shape, 4, lo=lo)
    if name == "relu":
        x = np.where(np.abs(x) < 1e-3, 0.5, x)  # finite differences straddling 0 are meaningless
    gradcheck(getattr(ops, name), [T(x)], name=name)


def test_pow_and_scalar_operators(xp):
    a = T(rnd((3, 4), 5, lo=0.5))
    gradcheck(lambda a: a ** 3 + 2.0 * a - 1.0 / a + a / 4.0 - (3.0 - a), [a], name="pow/scalars")
    gradcheck(lambda a: ops.pow(a, 0.5), [a], name="pow")


@SETTINGS
@given(b=st.integers(1, 3), n=st.integers(1, 4), k=st.integers(1, 4), m=st.integers(1, 4), batched_b=st.booleans())
def test_matmul(b, n, k, m, batched_b, xp):
    a = T(rnd((b, n, k), 6))
    w = T(rnd((b, k, m) if batched_b else (k, m), 7))
    gradcheck(ops.matmul, [a, w], name="matmul")
    gradcheck(ops.matmul, [a, T(rnd((k,), 8))], name="matmul (vector right)")
    gradcheck(ops.matmul, [T(rnd((n,), 9)), T(rnd((b, n, m), 9))], name="matmul (vector left)")


@SETTINGS
@given(shape=shapes, data=st.data(), keepdims=st.booleans())
def test_reductions(shape, data, keepdims, xp):
    axis = data.draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1)))
    x = T(rnd(shape, 10))
    gradcheck(lambda x: ops.sum(x, axis, keepdims), [x], name="sum")
    gradcheck(lambda x: ops.mean(x, axis, keepdims), [x], name="mean")
    gradcheck(lambda x: ops.max(x, axis, keepdims), [x], name="max")


def test_max_splits_ties_exactly(xp):
    x = T([[1.0, 3.0, 3.0], [2.0, 0.0, -1.0]])
    ops.max(x, axis=1).backward(backend.current().asarray([1.0, 1.0]))
    np.testing.assert_array_equal(backend.to_numpy(x.grad), [[0, 0.5, 0.5], [1, 0, 0]])


@SETTINGS
@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=4).map(tuple), data=st.data())
def test_shape_ops(shape, data, xp):
    x = T(rnd(shape, 11))
    perm = data.draw(st.permutations(range(len(shape))))
    gradcheck(lambda x: x.transpose(*perm) * T(rnd(tuple(shape[p] for p in perm), 12), False), [x], name="transpose")
    gradcheck(lambda x: x.reshape(-1) * T(rnd((int(np.prod(shape)),), 13), False), [x], name="reshape")
    gradcheck(lambda x: ops.expand(x[:1], (3,) + shape[1:]), [x], name="expand")
    y = T(rnd(shape, 14))
    axis = data.draw(st.integers(0, len(shape) - 1))
    gradcheck(lambda a, b: ops.concatenate([a, b, a], axis=axis), [x, y], name="concatenate")
    gradcheck(lambda a, b: ops.stack([a, b], axis=axis), [x, y], name="stack")


def test_getitem_slices_and_gather(xp):
    x = T(rnd((5, 4, 3), 15))
    gradcheck(lambda x: x[1:4, ::2], [x], name="getitem slice")
    idx = backend.current().asarray(np.array([0, 3, 3, 1]))  # repeated index: scatter-add
    gradcheck(lambda x: x[idx], [x], name="getitem gather")
    gradcheck(lambda x: x[:, None, 2], [x], name="getitem newaxis")


def test_embedding_repeated_ids(xp):
    w = T(rnd((6, 3), 16))
    ids = backend.current().asarray(np.array([[0, 2, 2], [5, 0, 1]]))
    gradcheck(lambda w: ops.embedding(w, ids), [w], name="embedding")


@SETTINGS
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple))
def test_softmax_family(shape, xp):
    x = T(rnd(shape, 17) * 3)
    gradcheck(lambda x: ops.softmax(x, -1), [x], name="softmax")
    gradcheck(lambda x: ops.log_softmax(x, -1), [x], name="log_softmax")
    gradcheck(lambda x: ops.softmax(x, 0), [x], name="softmax axis 0")


@SETTINGS
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=2).map(tuple), d=st.integers(2, 6))
def test_layer_norm_and_linear(shape, d, xp):
    x, w, b = T(rnd(shape + (d,), 18)), T(rnd((d,), 19)), T(rnd((d,), 20))
    gradcheck(lambda x, w, b: ops.layer_norm(x, w, b, eps=1e-5), [x, w, b], name="layer_norm")
    W, bias = T(rnd((3, d), 21)), T(rnd((3,), 22))
    gradcheck(lambda x, W, bias: ops.linear(x, W, bias), [x, W, bias], name="linear")
    gradcheck(lambda x, W: ops.linear(x, W), [x, W], name="linear (no bias)")


def test_dropout_train_and_eval(xp):
    x = T(rnd((4, 5), 23))
    backend.seed(3)
    # the same mask on every call: re-seed inside fn so finite differences see one function
    def fn(x):
        backend.seed(3)
        return ops.dropout(x, 0.4, training=True)
    gradcheck(fn, [x], name="dropout")
    y = ops.dropout(x, 0.4, training=False)
    np.testing.assert_array_equal(backend.to_numpy(y.data), backend.to_numpy(x.data))
    kept = backend.to_numpy(fn(x).data) != 0
    assert 0 < kept.mean() < 1


def test_where_and_masked_fill(xp):
    a, b = T(rnd((3, 4), 24)), T(rnd((3, 4), 25))
    cond = backend.current().asarray(np.random.default_rng(0).random((3, 4)) > 0.5)
    gradcheck(lambda a, b: ops.where(cond, a, b), [a, b], name="where")
    gradcheck(lambda a: ops.softmax(ops.masked_fill(a, cond, -1e9), -1), [a], name="masked_fill")


def test_losses(xp):
    z = T(rnd((4, 3), 26))
    labels = backend.current().asarray(np.array([0, 2, 1, 2]))
    gradcheck(lambda z: ops.cross_entropy(z, labels), [z], name="cross_entropy")
    p = backend.current().asarray(np.array([[0.2, 0.5, 0.3], [1, 0, 0], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]]))
    gradcheck(lambda z: ops.kl_div(z, p), [z], name="kl_div")
    gradcheck(lambda z: ops.kl_div(z, p, temperature=2.0), [z], name="kl_div tau=2")
    a, b = T(rnd((2, 3, 4), 27)), T(rnd((2, 3, 4), 28))
    mask = backend.current().asarray(np.array([[1, 1, 0], [1, 0, 0]])[..., None])
    gradcheck(lambda a, b: ops.mse_loss(a, b), [a, b], name="mse_loss")
    gradcheck(lambda a, b: ops.mse_loss(a, b, mask), [a, b], name="mse_loss masked")


def test_losses_against_hand_computation():
    z = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    y = np.array([1, 2])
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    assert ops.cross_entropy(T(z), y).item() == pytest.approx(-(logp[0, 1] + logp[1, 2]) / 2, abs=1e-12)
    p = np.array([[0.1, 0.6, 0.3], [0.2, 0.2, 0.6]])
    assert ops.kl_div(T(z), p).item() == pytest.approx((p * (np.log(p) - logp)).sum() / 2, abs=1e-12)
    a, b, m = np.arange(6.0).reshape(2, 3), np.ones((2, 3)), np.array([[1.0], [0.0]])
    assert ops.mse_loss(T(a), T(b), m).item() == pytest.approx(((a[0] - 1) ** 2).sum() / 3, abs=1e-12)


def test_boundaries_exact(xp):
    x = T([0.0])
    ops.relu(x).backward(backend.current().asarray([1.0]))
    assert float(x.grad[0]) == 0.0  # ReLU'(0) is taken as 0
    x = T([0.0])
    y = ops.gelu(x)
    y.backward(backend.current().asarray([1.0]))
    assert float(y.data[0]) == 0.0 and float(x.grad[0]) == 0.5  # GELU(0) = 0, GELU'(0) = Phi(0) = 1/2
    z = T([[0.0, -math.inf, 1.0]])
    p = ops.softmax(z, -1)
    assert float(p.data[0, 1]) == 0.0
    p.backward(backend.current().asarray([[1.0, 5.0, -1.0]]))
    assert float(z.grad[0, 1]) == 0.0 and np.isfinite(backend.to_numpy(z.grad)).all()


class WrongSigmoid(Function):
    """A deliberately wrong backward (a missing factor y): the negative control."""

    @staticmethod
    def forward(ctx, a):
        y = 1 / (1 + backend.get_array_module(a).exp(-a))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        return g * (1 - y)


def test_negative_control_wrong_backward_is_caught():
    with pytest.raises(GradcheckError, match=r"WrongSigmoid.*input 0.*backward gives"):
        gradcheck(lambda a: WrongSigmoid.apply(a), [T(rnd((3,), 29))], name="WrongSigmoid")
    from minispike.gradcheck import CHECKED
    CHECKED.discard("WrongSigmoid")


def test_gradcheck_refuses_float32():
    with pytest.raises(TypeError, match="float64"):
        gradcheck(ops.exp, [Tensor(np.ones(3, dtype=np.float32), requires_grad=True)])


# the negative control's Function is a test fixture, not a package op
Function.registry.pop("WrongSigmoid", None)
