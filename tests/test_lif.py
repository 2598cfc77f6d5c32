"""The LIF neuron: hand-computed dynamics, explicit BPTT vs the unrolled graph, gradchecks, traces."""
import itertools

import numpy as np
import pytest

from minispike import backend
from minispike.gradcheck import gradcheck
from minispike.spiking import LIF, ATan, Sigmoid, lif, record, unrolled_lif
from minispike.spiking.lif import LIFFunction
from minispike.tensor import Tensor, no_grad


def arr(a, dtype=np.float64):
    return backend.current().asarray(np.asarray(a, dtype=dtype))


def const(value, T=4, n=1):
    return Tensor(arr(np.full((T, n), value)))


def run(x, **kw):
    store = {}
    s = lif(x, store=store, **kw)
    return backend.to_numpy(s.data)[:, 0], backend.to_numpy(store["H"])[:, 0]


# -- dynamics computed by hand ----------------------------------------------------------------
def test_constant_input_hard_reset(xp):
    # tau 2, X = 1.5: H0 = 0.75; H1 = 0.75 + (1.5 - 0.75)/2 = 1.125 fires, V1 = 0; then again
    s, h = run(const(1.5), tau=2.0, v_threshold=1.0, v_reset=0.0)
    assert s.tolist() == [0, 1, 0, 1]
    np.testing.assert_allclose(h, [0.75, 1.125, 0.75, 1.125], rtol=0, atol=0)


def test_constant_input_soft_reset():
    # soft: V1 = 1.125 - 1 = 0.125; H2 = 0.125 + (1.5 - 0.125)/2 = 0.8125; H3 = 0.8125 + 0.34375
    s, h = run(const(1.5), tau=2.0, v_reset=None)
    assert s.tolist() == [0, 1, 0, 1]
    np.testing.assert_allclose(h, [0.75, 1.125, 0.8125, 1.15625], rtol=0, atol=0)


def test_reset_to_nonzero_value():
    # V_reset = -0.5: spikingjelly's charge leaks towards V_reset: H = V + (X - (V - V_r)) / tau
    s, h = run(const(3.0, T=3), tau=2.0, v_reset=-0.5)
    # V[-1] = -0.5: H0 = -0.5 + (3 + 0.5 - 0.5... ) -> -0.5 + (3 - 0)/2 = 1.0 fires (Theta(0) = 1)
    assert s.tolist() == [1, 1, 1]
    np.testing.assert_allclose(h, [1.0, 1.0, 1.0])


def test_known_spike_times_and_non_decay_input():
    # decay_input=False: H = V (1 - 1/tau) + X. X = 0.6: 0.6, 0.9, 1.05 (fires), 0.6
    s, h = run(const(0.6), tau=2.0, decay_input=False)
    assert s.tolist() == [0, 0, 1, 0]
    np.testing.assert_allclose(h, [0.6, 0.9, 1.05, 0.6], rtol=1e-15)


def test_threshold_boundary_fires_at_exactly_v_threshold():
    # X = 2, tau 2: H0 = 1.0 == V_th exactly -> fires (Heaviside(0) = 1)
    s, h = run(const(2.0, T=1), tau=2.0)
    assert h.tolist() == [1.0] and s.tolist() == [1.0]
    below = np.nextafter(2.0, 0.0)
    s, h = run(const(below, T=1), tau=2.0)
    assert h[0] < 1.0 and s.tolist() == [0.0]
    # the attention threshold 0.5, float32
    s, _ = run(Tensor(arr([[1.0], [0.0]], np.float32)), tau=2.0, v_threshold=0.5)
    assert s.tolist() == [1.0, 0.0]


def test_tau_edges():
    x = Tensor(arr([[0.5], [1.2], [0.9], [1.0]]))
    s, h = run(x, tau=1.0)  # tau = 1: no memory, H = X
    np.testing.assert_array_equal(h, [0.5, 1.2, 0.9, 1.0])
    assert s.tolist() == [0, 1, 0, 1]
    s, h = run(const(1.0, T=4), tau=1e9, decay_input=False)  # no leak: a perfect integrator
    np.testing.assert_allclose(h, [1.0, 1.0, 1.0, 1.0])
    s, h = run(const(0.4, T=4), tau=1e9, decay_input=False, v_reset=None)
    np.testing.assert_allclose(h, [0.4, 0.8, 1.2, 0.6], rtol=1e-8)
    assert s.tolist() == [0, 0, 1, 0]
    with pytest.raises(ValueError, match="tau must be >= 1"):
        LIF(tau=0.5)


def test_initial_membrane():
    s, h = run(const(0.0, T=2), tau=2.0, v0=arr([3.0]))
    np.testing.assert_allclose(h, [1.5, 0.0])  # leaks from 3 to 1.5 (fires), reset to 0
    assert s.tolist() == [1, 0]


def test_module_float32_and_shapes():
    x = Tensor(backend.randn((4, 2, 3, 5), 1.0), requires_grad=True)
    y = LIF()(x)
    assert y.shape == x.shape and y.dtype == np.float32
    assert set(np.unique(y.numpy())) <= {0.0, 1.0}
    y.sum().backward()
    assert x.grad.dtype == np.float32 and x.grad.shape == x.shape
    assert "tau=2.0" in repr(LIF())


def test_backward_saves_only_h():
    x = Tensor(backend.randn((4, 3, 5), 1.0), requires_grad=True)
    y = LIF()(x)
    saved = y._ctx.saved
    assert len(saved) == 1 and saved[0].shape == x.shape


# -- explicit BPTT against the unrolled graph --------------------------------------------------
CASES = list(itertools.product([0.0, None, -0.2], [True, False], [True, False]))


@pytest.mark.parametrize("v_reset,detach,decay", CASES)
@pytest.mark.parametrize("spiking", [False, True])
def test_explicit_bptt_matches_unrolled(v_reset, detach, decay, spiking, f64):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 3, 4)) * 1.5
    v0 = rng.standard_normal((3, 4)) * 0.3
    u = rng.standard_normal(x.shape)
    grads = []
    outs = []
    for fn in (lif, unrolled_lif):
        tx, tv0 = Tensor(arr(x), requires_grad=True), Tensor(arr(v0), requires_grad=True)
        tau, vth = Tensor(arr(1.7), requires_grad=True), Tensor(arr(0.8), requires_grad=True)
        s = fn(tx, tau=tau, v_threshold=vth, v_reset=v_reset, surrogate=ATan(spiking=spiking),
               detach_reset=detach, decay_input=decay, v0=tv0)
        s.backward(arr(u))
        outs.append(s.numpy())
        grads.append([t.grad for t in (tx, tv0, tau, vth)])
    np.testing.assert_allclose(outs[0], outs[1], rtol=0, atol=1e-12)
    for name, a, b in zip(["x", "v0", "tau", "v_threshold"], *grads):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-10, err_msg=name)


# -- learnable tau and V_th in every corner: v0 x reset x decay_input ----------------------------
def _v0(kind):
    """The initial membrane: None (V_reset, or 0 for soft reset), a number, or a learnable array."""
    if kind == "array":
        return Tensor(arr(np.random.default_rng(6).standard_normal((2, 3)) * 0.3), requires_grad=True)
    return None if kind == "none" else 0.3


@pytest.mark.parametrize("v0_kind", ["none", "number", "array"])
@pytest.mark.parametrize("v_reset", [0.0, -0.2, None], ids=["hard-at-0", "hard-at-minus-0.2", "soft"])
@pytest.mark.parametrize("decay", [True, False], ids=["decay_input", "no-decay_input"])
def test_learnable_tau_and_threshold_in_every_corner(v0_kind, v_reset, decay, f64):
    """dtau and dV_th against the unrolled graph (both detach settings) and finite differences.

    v0=None with a non-zero V_reset starts the membrane at V_reset: a dtau that used V[-1] = 0
    there is wrong here (dtau 1.119 for 1.260, 0.548 for 0.579), and only this corner shows it."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 2, 3)) * 1.5
    u = rng.standard_normal(x.shape)
    for detach in (True, False):
        grads = []
        for fn in (lif, unrolled_lif):
            tx = Tensor(arr(x), requires_grad=True)
            tau, vth = Tensor(arr(1.8), requires_grad=True), Tensor(arr(0.9), requires_grad=True)
            v0 = _v0(v0_kind)
            s = fn(tx, tau=tau, v_threshold=vth, v_reset=v_reset, surrogate=ATan(), detach_reset=detach,
                   decay_input=decay, v0=v0)
            s.backward(arr(u))
            grads.append([t.grad for t in (tx, tau, vth)] + ([v0.grad] if v0_kind == "array" else []))
        assert abs(float(grads[1][1])) > 1e-3  # tau matters here
        for name, a, b in zip(["x", "tau", "v_threshold", "v0"], *grads):
            np.testing.assert_allclose(backend.to_numpy(a), backend.to_numpy(b), rtol=1e-10, atol=1e-12,
                                       err_msg=f"{name} (detach_reset={detach})")
    tx = Tensor(arr(x), requires_grad=True)
    tau, vth = Tensor(arr(1.8), requires_grad=True), Tensor(arr(0.9), requires_grad=True)
    v0 = _v0(v0_kind)
    inputs = [tx, tau, vth] + ([v0] if v0_kind == "array" else [])
    sur = ATan(spiking=False)  # smooth, so that finite differences see the same function
    fn = lambda x, tau, vth, *v: LIFFunction.apply(x, v[0] if v else v0, tau, vth, v_reset=v_reset,  # noqa: E731
                                                   surrogate=sur, detach_reset=False, decay_input=decay)
    assert gradcheck(fn, inputs, name="LIFFunction", atol=1e-8, rtol=1e-6)


# -- detach_reset: the reset path contributes exactly nothing ----------------------------------
@pytest.mark.parametrize("hard", [True, False])
def test_detach_reset_removes_exactly_the_reset_term(hard, f64):
    # Loss = S[1]. Gradient reaching X[0] goes H[1] -> V[0] -> (kept membrane, and the reset spike).
    sur = ATan(spiking=False)
    x = np.array([[1.7], [0.4]])
    tau, vth, vr = 2.0, 1.0, (0.0 if hard else None)
    grads = {}
    for detach in (True, False):
        tx = Tensor(arr(x), requires_grad=True)
        store = {}
        s = lif(tx, tau=tau, v_threshold=vth, v_reset=vr, surrogate=sur, detach_reset=detach, store=store)
        s.backward(arr([[0.0], [1.0]]))
        grads[detach] = (tx.grad[0, 0], store)
    H = backend.to_numpy(grads[True][1]["H"])[:, 0]
    S0 = sur.primitive(H[0] - vth)
    g0, g1 = sur.derivative(H[0] - vth), sur.derivative(H[1] - vth)
    beta = 1 - 1 / tau
    keep = (1 - S0) if hard else 1.0
    expected_detached = g1 * beta * keep / tau  # through the leak and the kept membrane only
    reset_term = g1 * beta * ((0.0 - H[0]) if hard else -vth) * g0 / tau
    np.testing.assert_allclose(grads[True][0], expected_detached, rtol=1e-14)
    np.testing.assert_allclose(grads[False][0] - grads[True][0], reset_term, rtol=1e-12)
    assert abs(reset_term) > 1e-3  # the term exists, and detach_reset removes all of it


# -- finite differences (spiking=False, float64), NumPy and the strict backend -----------------
@pytest.mark.parametrize("v_reset,decay", [(0.0, True), (None, True), (0.1, False)])
def test_gradcheck_lif(v_reset, decay, xp, f64):
    rng = np.random.default_rng(2)
    x = Tensor(arr(rng.standard_normal((4, 2, 3)) * 1.5), requires_grad=True)
    v0 = Tensor(arr(rng.standard_normal((2, 3)) * 0.2), requires_grad=True)
    tau, vth = Tensor(arr(2.3), requires_grad=True), Tensor(arr(0.9), requires_grad=True)
    for sur in (ATan(spiking=False), Sigmoid(spiking=False)):
        fn = lambda x, v0, tau, vth: LIFFunction.apply(x, v0, tau, vth, v_reset=v_reset, surrogate=sur,  # noqa: E731
                                                       detach_reset=False, decay_input=decay)
        assert gradcheck(fn, [x, v0, tau, vth], name="LIFFunction", atol=1e-8, rtol=1e-6)


def test_gradcheck_lif_module_learnable(f64):
    neuron = LIF(tau=2.5, learnable_tau=True, learnable_threshold=True, surrogate=ATan(spiking=False),
                 detach_reset=False)
    assert {n for n, _ in neuron.named_parameters()} == {"tau", "v_threshold"}
    x = Tensor(arr(np.random.default_rng(3).standard_normal((3, 5)) * 2), requires_grad=True)
    assert gradcheck(lambda x, tau, vth: neuron(x), [x, neuron.tau, neuron.v_threshold], name="LIF", atol=1e-8)


def test_gradcheck_unrolled(f64):
    x = Tensor(arr(np.random.default_rng(4).standard_normal((3, 4)) * 1.5), requires_grad=True)
    assert gradcheck(lambda x: unrolled_lif(x, surrogate=ATan(spiking=False), detach_reset=False), [x],
                     name="unrolled_lif", atol=1e-8)


# -- traces ----------------------------------------------------------------------------------
def test_record_and_trace():
    a, b = LIF(name="a"), LIF(name="b", trace=True)
    x = Tensor(arr(np.full((4, 2), 1.5), np.float32))
    with record() as rec:
        with no_grad():
            b(a(x) * 3.0)
        b(x)
    assert rec.names() == ["a", "b"] and len(rec.traces["b"]) == 2
    assert rec.firing_rates()["a"] == 0.5  # spikes at t = 1, 3
    np.testing.assert_allclose(rec["a"]["membrane"][:, 0], [0.75, 1.125, 0.75, 1.125])
    assert b.last_trace["spikes"].shape == (4, 2)
    a(x)  # outside record(): nothing is kept
    assert len(rec.traces["a"]) == 1
    with record(keep=False) as rec2:
        a(x)
    assert rec2.traces == {} and rec2.firing_rates() == {"a": 0.5}
