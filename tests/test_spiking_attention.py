"""Spiking self-attention and the spiking MLP: shapes, the Q(K^T V) order, masking, gradchecks."""
import numpy as np
import pytest

from minispike import backend
from minispike.gradcheck import gradcheck
from minispike.models.spikebert import SpikeBertConfig, SpikeBlock
from minispike.spiking import ATan, record
from minispike.spiking.attention import SpikeLinear, SpikingMLP, SpikingSelfAttention
from minispike.tensor import Tensor, no_grad


def spikes(shape, p=0.4, seed=0):
    return Tensor(backend.current().asarray((np.random.default_rng(seed).random(shape) < p).astype(backend.default_dtype())))


def lif_kw(spiking=True):
    return dict(surrogate=ATan(spiking=spiking), detach_reset=spiking)


def test_shapes_and_the_reassociated_product_is_exact(xp):
    T, B, L, D, H = 4, 2, 6, 16, 4
    attn = SpikingSelfAttention(D, H, lif=lif_kw())
    attn.attn_lif.name = "attn"
    x = spikes((T, B, L, D))
    for lin in (attn.q, attn.k, attn.v):
        lin.lif.name = "qkv"
    with record() as rec, no_grad():
        y = attn(x)
    assert y.shape == (T, B, L, D) and y.dtype == np.float32
    # recompute the attention LIF input the official way, (Q K^T) V * 0.125, from the recorded spikes
    q, k, v = (backend.to_numpy(e["spikes"]).reshape(T, B, L, H, D // H).transpose(0, 1, 3, 2, 4)
               for e in rec.traces["qkv"])
    direct = ((q @ k.swapaxes(-1, -2)) @ v * 0.125).transpose(0, 1, 3, 2, 4).reshape(T, B, L, D)
    h = backend.to_numpy(rec["attn"]["membrane"])
    # H[0] = X[0] / tau exactly; the whole input is an exact multiple of 1/8 in float32
    np.testing.assert_array_equal(h[0], direct[0] / 2.0)


def test_padded_keys_do_not_leak(xp):
    T, B, L, D = 3, 2, 7, 16
    attn = SpikingSelfAttention(D, 2, lif=dict(lif_kw(), v_threshold=0.2))  # busy neurons
    attn.attn_lif.name = "attn"
    mask = backend.current().asarray(np.array([[1] * 4 + [0] * 3, [1] * 7], dtype=np.float32))
    x1, x2 = spikes((T, B, L, D), p=0.7, seed=1), spikes((T, B, L, D), p=0.7, seed=2)
    x2 = Tensor(backend.current().concatenate([x1.data[:, :, :4], x2.data[:, :, 4:]], axis=2))
    x2.data[:, 1] = x1.data[:, 1]
    runs = []
    for x, m in ((x1, mask), (x2, mask), (x2, None)):
        with record() as rec, no_grad():
            y = attn(x, m)
        runs.append((backend.to_numpy(y.data), backend.to_numpy(rec["attn"]["membrane"])))
    (a, ha), (b, hb), (_, hleak) = runs
    assert np.abs(ha[:, 0, :4]).max() > 0  # attention does reach the real tokens
    np.testing.assert_array_equal(ha[:, 0, :4], hb[:, 0, :4])  # real tokens untouched by padding content
    np.testing.assert_array_equal(a[:, 0, :4], b[:, 0, :4])
    np.testing.assert_array_equal(a[:, 1], b[:, 1])
    assert not np.array_equal(hleak[:, 0, :4], ha[:, 0, :4])  # without the mask, padding does leak


def test_mlp_shapes():
    mlp = SpikingMLP(8, 32, lif=lif_kw())
    y = mlp(spikes((2, 3, 5, 8)))
    assert y.shape == (2, 3, 5, 8)
    assert mlp.up.fc.weight.shape == (32, 8) and mlp.down.fc.weight.shape == (8, 32)
    with pytest.raises(ValueError, match="not divisible"):
        SpikingSelfAttention(10, 3)


def _check(module, x, params, name, extra=()):
    fn = lambda x, *ps: module(x, *extra)  # noqa: E731
    return gradcheck(fn, [x, *params], name=name, atol=1e-7, rtol=1e-5, max_coords=12)


def _smooth_input(shape, seed=0):
    r = np.random.default_rng(seed)
    return Tensor(backend.current().asarray(r.random(shape)), requires_grad=True)


def test_gradcheck_spike_linear_attention_mlp(xp, f64):
    kw = lif_kw(spiking=False)
    lin = SpikeLinear(4, 6, lif=kw)
    assert _check(lin, _smooth_input((2, 2, 3, 4)), [lin.fc.weight, lin.ln.weight], "SpikeLinear")
    attn = SpikingSelfAttention(8, 2, lif=kw)
    mask = backend.current().asarray(np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]))
    assert _check(attn, _smooth_input((2, 2, 3, 8)), [attn.q.fc.weight, attn.k.ln.bias, attn.v.fc.bias,
                                                      attn.out.fc.weight], "SSA", extra=(mask,))
    mlp = SpikingMLP(4, 8, lif=kw)
    assert _check(mlp, _smooth_input((2, 2, 3, 4)), [mlp.up.fc.weight, mlp.down.ln.weight], "MLP")


def test_gradcheck_block(xp, f64):
    cfg = SpikeBertConfig.preset("tiny", dim=8, heads=2, T=2)
    blk = SpikeBlock(cfg, dict(tau=cfg.tau, v_threshold=1.0, v_reset=0.0, **lif_kw(spiking=False)))
    assert _check(blk, _smooth_input((2, 2, 3, 8)), [blk.attn.q.fc.weight, blk.mlp.down.fc.weight], "SpikeBlock")
