"""The fused student ops against their plain compositions, and the memory they exist to save.

* ``SpikeLinearFunction`` (Linear -> LayerNorm -> LIF), ``SpikingMLPFunction`` (two of them, the
  hidden spikes kept as booleans) and ``SpikingAttentionFunction`` (heads split inside, masked
  keys recomputed): the same spikes and membranes bit for bit as the composed ops
  (``fused=False``), gradients to 1e-6 in float32 and 1e-12 in float64, for every reset and
  charge variant, a repeated (static) input and a key mask; float64 gradchecks of each op with
  the smooth primitive, and a planted mistake in each backward that the comparison catches.
* The engine lets go of each node's saved arrays once its backward ran (a second backward
  says so in one line; ``retain_graph=True`` keeps them), and the fused student's graph holds
  at most 80% of the composed one's bytes.
"""
import numpy as np
import pytest

from minispike import backend, ops
from minispike.gradcheck import gradcheck
from minispike.models.spikebert import SpikeBert, SpikeBertConfig
from minispike.spiking import ATan, record
from minispike.spiking import spike_linear as fused_ops
from minispike.spiking.attention import (SpikeLinear, SpikingAttentionFunction, SpikingMLP, spiking_attention)
from minispike.tensor import Tensor

NEURONS = {  # the LIF variants the fused op must reproduce
    "hard to 0": dict(),
    "hard to -0.3": dict(v_reset=-0.3),
    "soft": dict(v_reset=None),
    "no decay_input": dict(decay_input=False),
    "reset not detached": dict(detach_reset=False),
    "threshold 0.5, tau 3": dict(v_threshold=0.5, tau=3.0),
}


def _rand(shape, seed, scale=1.0, spikes=False):
    rng = np.random.default_rng(seed)
    a = (rng.random(shape) < 0.3) if spikes else rng.standard_normal(shape) * scale
    return backend.current().asarray(a.astype(backend.default_dtype()))


def _set_fused(model, fused):
    for _, m in model.named_modules():
        if hasattr(m, "fused"):
            m.fused = fused
    return model


def _run(module_factory, fused, x_shape, seed=0, static=False, grad_seed=1):
    """Output, recorded membranes and spikes, input and parameter gradients of one module."""
    backend.seed(seed)
    m = _set_fused(module_factory(), fused)
    x = Tensor(_rand(x_shape, seed + 10, spikes=not static, scale=2.0), requires_grad=True)
    with record() as rec:
        out = m(Tensor(backend.current().zeros((4,) + x_shape)), static=x) if static else m(x)
    up = _rand(out.shape, grad_seed)
    out.backward(up)
    traces = {k: (backend.to_numpy(v[-1]["spikes"]), backend.to_numpy(v[-1]["membrane"])) for k, v in rec.traces.items()}
    grads = {k: backend.to_numpy(p.grad) for k, p in m.named_parameters()}
    return backend.to_numpy(out.data), traces, backend.to_numpy(x.grad), grads


def _assert_same(fused, plain, rtol):
    out_f, tr_f, dx_f, g_f = fused
    out_p, tr_p, dx_p, g_p = plain
    np.testing.assert_array_equal(out_f, out_p)  # the spikes, exactly
    assert tr_f.keys() == tr_p.keys() and tr_f
    for k in tr_f:
        np.testing.assert_array_equal(tr_f[k][0], tr_p[k][0], err_msg=f"spikes of {k}")
        np.testing.assert_array_equal(tr_f[k][1], tr_p[k][1], err_msg=f"membrane of {k}")
    for name, a, b in [("input", dx_f, dx_p)] + [(k, g_f[k], g_p[k]) for k in g_p]:
        scale = max(float(np.abs(b).max()), 1e-30)
        assert np.abs(a - b).max() <= rtol * scale, f"gradient of {name}: {np.abs(a - b).max() / scale:.3g} > {rtol}"


@pytest.mark.parametrize("neuron", list(NEURONS), ids=list(NEURONS))
@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-6), (np.float64, 1e-12)], ids=["float32", "float64"])
def test_spike_linear_is_the_three_ops(neuron, dtype, rtol, xp):
    backend.set_default_dtype(dtype)

    def make():
        m = SpikeLinear(12, 20, lif=NEURONS[neuron])
        m.lif.name = "lif"
        return m

    for static in (False, True):  # an input per step, or one repeated over T (the encoded embedding)
        shape = (3, 5, 12) if static else (4, 3, 5, 12)
        _assert_same(_run(make, True, shape, static=static), _run(make, False, shape, static=static), rtol)


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-6), (np.float64, 1e-12)], ids=["float32", "float64"])
def test_spiking_mlp_is_two_spike_linears(dtype, rtol, xp):
    backend.set_default_dtype(dtype)

    def make():
        m = SpikingMLP(12, 48, lif=dict(v_threshold=0.3))
        m.up.lif.name, m.down.lif.name = "up", "down"
        return m

    _assert_same(_run(make, True, (4, 3, 5, 12)), _run(make, False, (4, 3, 5, 12)), rtol)


def test_the_mlp_keeps_its_hidden_spikes_as_booleans():
    m = SpikingMLP(8, 32, lif=dict(v_threshold=0.3))
    x = Tensor(_rand((4, 2, 3, 8), 0, spikes=True), requires_grad=True)
    out = m(x)
    hidden = out._ctx.down.saved[0]
    assert hidden.dtype == np.bool_ and hidden.shape == (4, 2, 3, 32)
    smooth = SpikingMLP(8, 32, lif=dict(surrogate=ATan(spiking=False)))  # real values are kept as they are
    assert smooth(x)._ctx.down.saved[0].dtype == np.float32


@pytest.mark.parametrize("masked", [False, True], ids=["no mask", "key mask"])
@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-6), (np.float64, 1e-12)], ids=["float32", "float64"])
def test_attention_op_is_spiking_attention(masked, dtype, rtol, xp):
    backend.set_default_dtype(dtype)
    T, B, L, D, h = 2, 3, 6, 8, 2
    q, k, v = (Tensor(_rand((T, B, L, D), s, spikes=True), requires_grad=True) for s in (1, 2, 3))
    mask = backend.current().asarray(np.array([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4], dtype=dtype)) if masked else None
    up = _rand((T, B, L, D), 4)

    def split(t):
        return t.reshape(T, B, L, h, D // h).transpose(0, 1, 3, 2, 4)

    fused = SpikingAttentionFunction.apply(q, k, v, mask, heads=h, scale=0.125)
    fused.backward(up)
    got = [backend.to_numpy(t.grad) for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    plain = spiking_attention(split(q), split(k), split(v), mask, 0.125).transpose(0, 1, 3, 2, 4).reshape(T, B, L, D)
    plain.backward(up)
    np.testing.assert_array_equal(backend.to_numpy(fused.data), backend.to_numpy(plain.data))
    for name, a, t in zip("qkv", got, (q, k, v)):
        b = backend.to_numpy(t.grad)
        assert np.abs(a - b).max() <= rtol * np.abs(b).max(), f"d{name}"


@pytest.mark.parametrize("which", ["spike_linear", "spike_linear static", "mlp", "attention"])
def test_fused_ops_gradcheck_with_the_smooth_primitive(which, f64):
    smooth = dict(surrogate=ATan(spiking=False), detach_reset=False, v_threshold=0.3)
    x = Tensor(_rand((3, 2, 4, 6), 0, scale=1.5), requires_grad=True)
    if which.startswith("spike_linear"):
        m = SpikeLinear(6, 5, lif=smooth)
        params = [x, *m.parameters_in_order()]
        if which.endswith("static"):
            x0 = Tensor(_rand((2, 4, 6), 1, scale=1.5), requires_grad=True)
            params[0] = x0
            fn = lambda x0, *p: fused_ops.spike_linear(x0, *p, steps=3, **m.lif.options())  # noqa: E731
        else:
            fn = lambda x, *p: fused_ops.spike_linear(x, *p, **m.lif.options())  # noqa: E731
        assert gradcheck(fn, params, name=which, atol=1e-6, rtol=1e-4)
    elif which == "mlp":
        m = SpikingMLP(6, 10, lif=smooth)
        up, down = m.up.parameters_in_order(), m.down.parameters_in_order()
        fn = lambda x, *p: fused_ops.spiking_mlp(x, p[:4], p[4:], **m.up.lif.options())  # noqa: E731
        assert gradcheck(fn, [x, *up, *down], name=which)
    else:
        q, k, v = (Tensor(_rand((2, 2, 4, 6), s), requires_grad=True) for s in (1, 2, 3))
        mask = backend.current().asarray(np.array([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=np.float64))
        fn = lambda q, k, v: SpikingAttentionFunction.apply(q, k, v, mask, heads=2, scale=0.125)  # noqa: E731
        assert gradcheck(fn, [q, k, v], name=which)


def test_a_planted_mistake_in_each_fused_backward_is_caught(monkeypatch):
    """Negative controls: the comparison above fails when a fused backward drops one term."""
    def make():
        m = SpikeLinear(12, 20)
        m.lif.name = "lif"
        return m

    plain = _run(make, False, (4, 3, 5, 12))
    real = fused_ops.layer_norm_backward_rows

    def no_variance_term(g, xhat, rstd, weight, dx):  # LayerNorm's backward without its variance term
        return real(g, xhat * 0.0, rstd, weight, dx)

    monkeypatch.setattr(fused_ops, "layer_norm_backward_rows", no_variance_term)
    with pytest.raises(AssertionError, match="gradient"):
        _assert_same(_run(make, True, (4, 3, 5, 12)), plain, 1e-6)
    monkeypatch.undo()
    _assert_same(_run(make, True, (4, 3, 5, 12)), plain, 1e-6)  # and passes again without it

    T, B, L, D = 2, 2, 4, 8
    q, k, v = (Tensor(_rand((T, B, L, D), s, spikes=True), requires_grad=True) for s in (1, 2, 3))
    mask = backend.current().asarray(np.array([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=np.float32))
    monkeypatch.setattr(SpikingAttentionFunction, "backward", staticmethod(_attention_backward_without_mask))
    SpikingAttentionFunction.apply(q, k, v, mask, heads=2).backward(_rand((T, B, L, D), 4))
    wrong = backend.to_numpy(k.grad)
    monkeypatch.undo()
    k.grad = None
    SpikingAttentionFunction.apply(q, k, v, mask, heads=2).backward(_rand((T, B, L, D), 4))
    assert not np.allclose(wrong, backend.to_numpy(k.grad))  # the padded keys' gradient differs


_real_attention_backward = SpikingAttentionFunction.backward


def _attention_backward_without_mask(ctx, dy):  # forgets the key mask: padded keys get a gradient
    ctx.key_mask = None
    return _real_attention_backward(ctx, dy)


def _graph_bytes(out):
    """Bytes of the distinct arrays the graph behind ``out`` holds (node data and saved arrays)."""
    seen, stack, total = set(), [out], 0

    def count(a):
        nonlocal total
        base = a
        while getattr(base, "base", None) is not None:
            base = base.base
        if id(base) not in seen and hasattr(base, "nbytes"):
            seen.add(id(base))
            total += base.nbytes

    nodes = set()
    while stack:
        t = stack.pop()
        if id(t) in nodes:
            continue
        nodes.add(id(t))
        count(t.data)
        ctx = t._ctx
        if ctx is None:
            continue
        for a in list(ctx.saved) + [getattr(ctx, n).saved[i] for n in ("up", "down") if hasattr(ctx, n)
                                    for i in range(len(getattr(ctx, n).saved))]:
            if hasattr(a, "nbytes"):
                count(a)
        stack.extend(i for i in ctx.inputs if isinstance(i, Tensor))
    return total


def test_the_fused_student_keeps_less_and_the_engine_lets_go():
    cfg = SpikeBertConfig.preset("tiny", vocab_size=50, dim=32, heads=4, max_length=16)
    ids = np.random.default_rng(0).integers(0, 50, (4, 16))
    sizes = {}
    for fused in (True, False):
        backend.seed(0)
        model = _set_fused(SpikeBert(cfg), fused)
        loss = ops.cross_entropy(model(ids).logits, np.array([0, 1, 0, 1]))
        sizes[fused] = _graph_bytes(loss)
        loss.backward()
        assert loss._ctx.saved == () and loss._ctx.inputs is None and loss._ctx.fn.__name__ == "CrossEntropy"
        with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
            loss.backward()
    assert sizes[True] <= 0.8 * sizes[False], sizes

    backend.seed(0)
    model = SpikeBert(cfg)
    loss = ops.cross_entropy(model(ids).logits, np.array([0, 1, 0, 1]))
    loss.backward(retain_graph=True)
    once = {k: backend.to_numpy(p.grad).copy() for k, p in model.named_parameters() if p.grad is not None}
    assert len(once) > 10
    loss.backward()  # kept: a second walk adds the same gradients again
    for k, p in model.named_parameters():
        if k in once:
                np.testing.assert_allclose(backend.to_numpy(p.grad), 2 * once[k], rtol=1e-6, atol=1e-9)


# -- the teacher: one product for Q, K, V and ops.softmax_attention ---------------------------
def _bert_grads(fused, dtype, train):
    from minispike.models.bert import BertConfig, BertForSequenceClassification
    with backend.dtype_scope(dtype):
        backend.seed(0)
        m = BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                                     num_attention_heads=4, intermediate_size=64,
                                                     max_position_embeddings=32))
        _set_fused(m, fused).train(train)
        rng = np.random.default_rng(0)
        ids, mask = rng.integers(0, 100, (4, 12)), np.ones((4, 12), np.int64)
        mask[2:, 8:] = 0
        backend.seed(5)  # the same dropout draws on both paths
        out = m(ids, mask, labels=np.array([0, 1, 1, 0]), output_attentions=True)
        out.loss.backward()
        grads = {k: backend.to_numpy(p.grad) for k, p in m.named_parameters() if p.grad is not None}
        return backend.to_numpy(out.logits.data), backend.to_numpy(out.attentions[0].data), grads


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train (dropout)"])
@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-5), (np.float64, 1e-12)], ids=["float32", "float64"])
def test_bert_attention_op_is_the_composed_attention(train, dtype, rtol, xp):
    (lf, af, gf), (lp, ap, gp) = _bert_grads(True, dtype, train), _bert_grads(False, dtype, train)
    np.testing.assert_allclose(lf, lp, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(af, ap, rtol=rtol, atol=rtol)
    assert gf.keys() == gp.keys() and len(gf) > 30
    scale = max(float(np.abs(g).max()) for g in gp.values())  # the key bias's true gradient is 0: compare on one scale
    for k in gp:
        assert np.abs(gf[k] - gp[k]).max() <= rtol * scale, k


def test_softmax_attention_gradcheck_with_mask_and_a_planted_mistake(f64, monkeypatch):
    from minispike.ops.attention import SoftmaxAttention, softmax_attention
    qkv = Tensor(_rand((2, 5, 3 * 4), 0), requires_grad=True)
    mask = backend.current().asarray(np.array([[0, 0, 0, 0, -1e9], [0, 0, -1e9, -1e9, -1e9]]).reshape(2, 1, 1, 5))
    fn = lambda t: softmax_attention(t, mask, heads=2, scale=0.5)  # noqa: E731
    assert gradcheck(fn, [qkv], name="SoftmaxAttention")
    real = SoftmaxAttention.backward

    def no_scale(ctx, dy):  # forgets the scale on dS
        ctx.scale = 1.0
        return real(ctx, dy)

    monkeypatch.setattr(SoftmaxAttention, "backward", staticmethod(no_scale))
    with pytest.raises(Exception, match="gradcheck failed"):
        gradcheck(fn, [qkv], name="SoftmaxAttention")
