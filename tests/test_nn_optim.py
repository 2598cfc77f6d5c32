"""Modules (names, strict state dicts) and optimisers (each step against a closed form)."""
import math

import numpy as np
import pytest

from minispike import nn, optim
from minispike.nn import StateDictError
from minispike.tensor import Tensor


class Block(nn.Module):
    def __init__(self):
        self.attention = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.layers = nn.ModuleList([nn.Linear(4, 2), nn.Linear(2, 2, bias=False)])
        self.drop = nn.Dropout(0.5)


def test_dotted_parameter_names():
    names = [n for n, _ in Block().named_parameters()]
    assert names == ["attention.weight", "attention.bias", "norm.weight", "norm.bias",
                     "layers.0.weight", "layers.0.bias", "layers.1.weight"]


def test_linear_layout_and_init():
    lin = nn.Linear(300, 200)
    assert lin.weight.shape == (200, 300)  # [out, in]
    assert abs(float(lin.weight.data.std()) - 0.02) < 0.002 and float(abs(lin.bias.data).max()) == 0.0


def test_strict_load_names_every_offending_key():
    m = Block()
    sd = dict(m.state_dict())
    sd.pop("norm.bias")
    sd["extra.weight"] = np.zeros(3)
    sd["attention.weight"] = np.zeros((5, 4))
    with pytest.raises(StateDictError) as e:
        m.load_state_dict(sd)
    msg = str(e.value)
    assert "norm.bias" in msg and "extra.weight" in msg and "attention.weight" in msg and "(5, 4)" in msg


def test_load_roundtrip_and_train_eval():
    a, b = Block(), Block()
    b.load_state_dict(a.state_dict())
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    b.eval()
    assert not b.drop.training and not b.layers[0].training
    b.train()
    assert b.drop.training


def param(values):
    p = nn.Parameter(np.array(values, dtype=np.float64))
    return p


def test_sgd_momentum_closed_form():
    p = param([1.0, -2.0])
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad = np.array([0.5, 1.0])
    opt.step()  # v = g; p = p - lr v
    np.testing.assert_allclose(p.data, [0.95, -2.1])
    p.grad = np.array([0.5, 1.0])
    opt.step()  # v = 0.9 g + g = 1.9 g
    np.testing.assert_allclose(p.data, [0.95 - 0.095, -2.1 - 0.19])


def test_adamw_first_step_closed_form():
    p = param([1.0, -2.0])
    opt = optim.AdamW([p], lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    p.grad = np.array([0.3, -0.7])
    opt.step()
    # step 1: mhat = g, vhat = g^2 -> update = g/|g| = sign(g); decay first: p(1 - lr wd)
    expected = np.array([1.0, -2.0]) * (1 - 0.001) - 0.01 * np.sign([0.3, -0.7]) * (np.abs([0.3, 0.7]) / (np.abs([0.3, 0.7]) + 1e-8))
    np.testing.assert_allclose(p.data, expected, rtol=1e-12)
    p.grad = np.array([0.1, 0.1])
    opt.step()
    m = 0.9 * np.array([0.3, -0.7]) * 0.1 + 0.1 * np.array([0.1, 0.1])
    v = 0.999 * 0.001 * np.array([0.09, 0.49]) + 0.001 * np.array([0.01, 0.01])
    update = (m / (1 - 0.81)) / (np.sqrt(v / (1 - 0.999 ** 2)) + 1e-8)
    np.testing.assert_allclose(p.data, expected * (1 - 0.001) - 0.01 * update, rtol=1e-10)


def test_optimizer_state_roundtrip():
    p = param([1.0, 2.0])
    opt = optim.AdamW([p], lr=0.1)
    p.grad = np.array([1.0, 1.0])
    opt.step()
    state = opt.state_dict()
    q = param(p.data.copy())
    opt2 = optim.AdamW([q], lr=0.1)
    opt2.load_state_dict(state)
    p.grad = q.grad = np.array([0.5, -0.5])
    opt.step()
    opt2.step()
    np.testing.assert_array_equal(p.data, q.data)


def test_cosine_schedule_with_warmup():
    lr = [optim.cosine_schedule(s, 10, 1.0, warmup_steps=2) for s in range(11)]
    assert lr[0] == 0.5 and lr[1] == 1.0 and lr[2] == 1.0
    assert lr[6] == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert lr[10] == pytest.approx(0.0, abs=1e-12)


def test_clip_grad_norm_global():
    a, b = param([0.0]), param([0.0, 0.0])
    a.grad, b.grad = np.array([3.0]), np.array([0.0, 4.0])
    norm = optim.clip_grad_norm([a, b], 1.0)
    assert norm == pytest.approx(5.0)
    np.testing.assert_allclose(np.concatenate([a.grad, b.grad]), [0.6, 0.0, 0.8], rtol=1e-5)


def test_training_reduces_loss():
    from minispike import ops
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((32, 4)).astype(np.float32))
    y = (x.data[:, 0] > 0).astype(np.int64)
    lin = nn.Linear(4, 2)
    opt = optim.AdamW(lin.parameters(), lr=0.1, weight_decay=0.0)
    first = None
    for _ in range(30):
        loss = ops.cross_entropy(lin(x), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 3


def test_adamw_on_blocks_gives_the_one_block_numbers_bit_for_bit():
    """AdamW updates each parameter on blocks of its flat view on every core (minispike.parallel):
    the same elementwise operations, so the same bits as one block; a strided parameter is
    updated whole."""
    from minispike import parallel
    rng = np.random.default_rng(0)
    shapes = [(700, 384), (384,), (3, 5)]
    start = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(3)]
    runs = []
    for threads in (1, 2):
        params = [Tensor(a.copy(), requires_grad=True) for a in start]
        params[2].data = np.asfortranarray(params[2].data)  # not C-contiguous: the whole-array path
        opt = optim.AdamW(params, lr=1e-2, weight_decay=0.1)
        with parallel.threads_scope(threads):
            assert len(parallel.blocks(700, 384)) == (1 if threads == 1 else 2)
            for g in grads:
                for p, gg in zip(params, g):
                    p.grad = gg.copy()
                opt.step()
        runs.append([p.data.copy() for p in params])
    for one, many in zip(*runs):
        assert np.array_equal(one, many)
    assert not np.array_equal(runs[0][0], start[0])  # it did move
