"""Fast paths against their plain references: the stage-2 teacher cache and the thread pool.

* ``TeacherCache``: a few training steps with the teacher's targets looked up give the same
  losses as computing them per batch (float32: to 1e-6; float16: within its rounding).
* ``minispike.parallel``: LIF, LayerNorm, softmax and GELU split over threads give exactly
  the spikes, and to 1e-6 the values and gradients, of the one-block plain path.
"""
import numpy as np
import pytest

from minispike import backend, ops
from minispike.distill import LossWeights, TeacherCache, layer_map
from minispike.models.bert import BertConfig, BertForSequenceClassification
from minispike.models.spikebert import SpikeBert, SpikeBertConfig
from minispike.optim import AdamW
from minispike.pipeline import _student_loss
from minispike.text.batching import Batcher


def _tiny_pair(seed=0):
    backend.seed(seed)
    teacher = BertForSequenceClassification(BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=3,
                                                       num_attention_heads=2, intermediate_size=32,
                                                       max_position_embeddings=32))
    teacher.eval()
    student = SpikeBert(SpikeBertConfig.preset("tiny", vocab_size=60, dim=16, heads=2, teacher_dim=16, max_length=16))
    return teacher, student


def _losses(cache_dtype, steps=4):
    """Loss terms of ``steps`` training steps, teacher per batch (None) or cached."""
    teacher, student = _tiny_pair()
    rng = np.random.default_rng(3)
    seqs = [rng.integers(1, 60, size=int(n)) for n in rng.integers(2, 15, size=24)]
    labels = np.where(np.arange(24) % 3 == 0, -1, np.arange(24) % 2)  # every third row unlabelled (augmented)
    data = Batcher(seqs, labels, batch_size=8, seed=1)
    w = LossWeights.stage2()
    cache = None
    if cache_dtype:
        layers = [j for _, j in layer_map(student.config.depth, teacher.config.num_hidden_layers)]
        cache = TeacherCache(teacher, data.data, layers, dtype=cache_dtype, batch_size=5)
    loss_fn = _student_loss(student, teacher, w, with_logits=True, cache=cache)
    opt = AdamW(student.parameters(), lr=1e-2)
    out = []
    for step, batch in zip(range(steps), iter(data)):
        student.zero_grad()
        loss, parts = loss_fn(batch)
        loss.backward()
        opt.step()
        out.append({k: float(v) for k, v in parts.items()})
    return out


def test_the_teacher_cache_gives_the_uncached_losses():
    plain, f32, f16 = _losses(None), _losses("float32"), _losses("float16")
    assert len(plain) == 3 and set(plain[0]) == {"loss_features", "loss_embedding", "loss_kl", "loss_ce"}
    for p, c in zip(plain, f32):
        for k in p:
            assert c[k] == pytest.approx(p[k], rel=1e-6, abs=1e-7), k
    # float16 (the first step, before the updates carry the difference on): the logits are kept
    # in float32, the hidden states rounded by at most 2^-11 relatively, so the feature loss moves
    # by about 1e-3 of itself and the other terms not at all
    p, c = plain[0], f16[0]
    assert c["loss_features"] == pytest.approx(p["loss_features"], rel=2e-3)
    assert c["loss_features"] != p["loss_features"]  # the rounding is there (the float16 path is the one taken)
    for k in ("loss_embedding", "loss_kl", "loss_ce"):
        assert c[k] == pytest.approx(p[k], rel=1e-6, abs=1e-7), k


def test_the_cache_keeps_only_real_tokens_and_says_its_size():
    teacher, student = _tiny_pair()
    seqs = [np.arange(1, n + 1) for n in (3, 7, 5)]
    layers = [1, 3]
    data = Batcher(seqs, None, batch_size=2)
    cache = TeacherCache(teacher, data.data, layers, dtype="float16")
    assert cache.hidden[1].shape == (15, 16) and cache.hidden[1].dtype == np.float16
    planned = TeacherCache.planned_bytes(data.data.lengths, len(layers), 16, 2, "float16")
    assert planned == sum(h.nbytes for h in cache.hidden.values()) + cache.logits.nbytes


# -- minispike.parallel: the blocked ops against one block (the plain path) ---------------
from minispike import parallel  # noqa: E402
from minispike.spiking.lif import LIFFunction  # noqa: E402
from minispike.spiking.surrogate import ATan  # noqa: E402
from minispike.tensor import Tensor  # noqa: E402


def _run_op(op, inputs, threads, seed=5):
    """Forward values and the gradients of every input for a random upstream gradient."""
    with parallel.threads_scope(threads):
        ts = [Tensor(backend.asarray(x.copy()), requires_grad=True) for x in inputs]
        y = op(*ts)
        g = backend.asarray(np.random.default_rng(seed).standard_normal(y.shape).astype(inputs[0].dtype))
        (y * Tensor(g)).sum().backward()
        return backend.to_numpy(y.data), [backend.to_numpy(t.grad) for t in ts]


def _rand(*shape, scale=1.0, seed=0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


OPS = {
    "lif": (lambda x: LIFFunction.apply(x, None, 2.0, 1.0, v_reset=0.0, surrogate=ATan()),
            lambda: [_rand(4, 8, 16, 160, scale=1.5)]),
    "lif_soft_reset_learnable": (lambda x, tau, vth: LIFFunction.apply(x, None, tau, vth, v_reset=None,
                                                                       surrogate=ATan(), detach_reset=False),
                                 lambda: [_rand(4, 8, 16, 160, scale=1.5), np.float32(2.5) * np.ones((), np.float32),
                                          np.ones((), np.float32)]),
    "layer_norm": (lambda x, w, b: ops.layer_norm(x, w, b, eps=1e-5),
                   lambda: [_rand(4, 8, 16, 64), _rand(64, seed=1) + 1, _rand(64, seed=2)]),
    "softmax": (lambda x: ops.softmax(x, axis=-1), lambda: [_rand(8, 4, 32, 32, scale=3)]),
    "softmax_axis_1": (lambda x: ops.softmax(x, axis=1), lambda: [_rand(8, 32, 4, 32, scale=3)]),
    "gelu": (ops.gelu, lambda: [_rand(8, 64, 96, scale=2)]),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_blocked_ops_equal_the_one_block_path(name):
    op, make = OPS[name]
    inputs = make()
    assert len(parallel.blocks(inputs[0].size // inputs[0].shape[-1], inputs[0].shape[-1])) > 1 or name == "gelu"
    y1, g1 = _run_op(op, inputs, threads=1)
    y4, g4 = _run_op(op, inputs, threads=4)
    if name.startswith("lif"):
        assert set(np.unique(y1)) == {0.0, 1.0}
    np.testing.assert_array_equal(y4, y1)  # the same operations on the same numbers: bit for bit (spikes too)
    np.testing.assert_array_equal(g4[0], g1[0])  # so is the input's gradient
    for a, b in zip(g4[1:], g1[1:]):  # parameters: sums over rows, added up block by block, in another order
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * float(np.abs(b).max()))


def test_the_blocks_cover_every_row_once():
    with parallel.threads_scope(3):
        parts = parallel.blocks(10, per_row=parallel.MIN_BLOCK)
        assert [(p.start, p.stop) for p in parts] == [(0, 3), (3, 6), (6, 10)]
        assert parallel.blocks(10, per_row=1) == [slice(0, 10)]  # too small to be worth a thread


def test_blocked_ops_run_on_the_strict_backend():
    """The block functions call xp only: the strict backend (CuPy's stand-in) runs them, blocks cut."""
    op, make = OPS["layer_norm"]
    inputs = make()
    y1, g1 = _run_op(op, inputs, threads=4)
    backend.use("strict")
    try:
        ys, gs = _run_op(op, inputs, threads=4)
    finally:
        backend.use("numpy")
    np.testing.assert_array_equal(ys, y1)
    for a, b in zip(gs, g1):
        np.testing.assert_array_equal(a, b)
