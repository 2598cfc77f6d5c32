"""The SpikeBERT student: presets, names, whole-model gradcheck, padding invariance, training."""
import numpy as np
import pytest

from minispike import backend, ops
from minispike.gradcheck import gradcheck
from minispike.models.spikebert import PRESETS, SpikeBert, SpikeBertConfig
from minispike.nn import LayerNorm
from minispike.optim import AdamW
from minispike.spiking import get_surrogate, record
from minispike.tensor import no_grad


def test_presets():
    cpu = SpikeBertConfig.preset("cpu")
    assert (cpu.dim, cpu.depth, cpu.heads, cpu.T, cpu.max_length) == (256, 4, 8, 4, 64)
    paper = SpikeBertConfig.preset("paper")
    assert (paper.dim, paper.depth, paper.heads, paper.T, paper.max_length) == (768, 12, 12, 4, 128)
    tiny = SpikeBertConfig.preset("tiny", num_classes=3)
    assert tiny.num_classes == 3 and tiny.name == "tiny"
    assert SpikeBertConfig.from_dict(tiny.to_dict()) == tiny
    with pytest.raises(ValueError, match="unknown SpikeBert preset"):
        SpikeBertConfig.preset("huge")
    with pytest.raises(ValueError, match="not divisible"):
        SpikeBertConfig(dim=10, heads=3)
    with pytest.raises(ValueError, match="unknown keys"):
        SpikeBertConfig.from_dict({"width": 3})


# The official student's numerics (shared/reference/README.md; the paper gives tau 2, V_th 1,
# T 4, and no more): every preset inherits them, only the sizes differ.
OFFICIAL_NUMERICS = dict(tau=2.0, v_threshold=1.0, attn_threshold=0.5, v_reset=0.0, detach_reset=True,
                         decay_input=True, surrogate="atan", scale=0.125, ln_eps=1e-5, spike_input=True,
                         embedding_std=1.0, init_std=0.02, mlp_ratio=4)
SIZES = {"vocab_size", "dim", "depth", "heads", "T", "max_length", "num_classes", "teacher_dim", "name"}


@pytest.mark.parametrize("name", ["cpu", "paper", "tiny", "official"])
def test_every_preset_has_the_official_numerics(name):
    cfg = SpikeBertConfig.preset(name)
    assert {k: getattr(cfg, k) for k in OFFICIAL_NUMERICS} == OFFICIAL_NUMERICS
    assert get_surrogate(cfg.surrogate, cfg.surrogate_alpha).alpha == 2.0  # ATan alpha 2
    assert cfg.T == 4 and cfg.mask_padding  # T 4 (the paper); padding is masked (no padding: no change)
    assert set(PRESETS[name]) - SIZES <= set(OFFICIAL_NUMERICS) | {"surrogate_alpha", "embedding_proj"}
    if name == "paper":
        return  # 110 M parameters: its modules are those of the smaller presets, wider
    model = SpikeBert(SpikeBertConfig.preset(name, vocab_size=20))
    for path, neuron in model.neurons():  # the settings reach every neuron, LayerNorm and attention
        threshold = 0.5 if path.endswith("attn_lif") else 1.0
        assert (neuron.tau, neuron.v_threshold, neuron.v_reset, neuron.detach_reset, neuron.decay_input) == \
            (2.0, threshold, 0.0, True, True), path
        assert type(neuron.surrogate).__name__ == "ATan" and neuron.surrogate.alpha == 2.0, path
    assert {m.eps for _, m in model.named_modules() if isinstance(m, LayerNorm)} == {1e-5}
    assert {m.attn.scale for m in model.blocks} == {0.125}
    assert model.encoder is not None  # Heaviside(embedding) as the input spikes


def test_outputs_names_and_init():
    model = SpikeBert(SpikeBertConfig.preset("tiny", teacher_dim=48))
    names = dict(model.named_parameters())
    assert "blocks.1.attn.q.fc.weight" in names and "blocks.0.mlp.down.ln.bias" in names
    assert names["transforms.0.fc.weight"].shape == (48, 32) and names["embedding_proj.weight"].shape == (48, 32)
    w = names["blocks.0.mlp.up.fc.weight"].numpy()
    assert w.shape == (128, 32) and abs(w.std() - 0.02) < 0.003 and not names["classifier.bias"].numpy().any()
    assert names["blocks.0.attn.q.ln.weight"].numpy().tolist() == [1.0] * 32
    assert [n for n, _ in model.neurons()][:4] == ["blocks.0.attn.q.lif", "blocks.0.attn.k.lif",
                                                   "blocks.0.attn.v.lif", "blocks.0.attn.attn_lif"]
    ids = np.random.default_rng(0).integers(0, 100, (3, 9))
    out = model(ids)
    assert out.logits.shape == (3, 2) and out.logits_per_step.shape == (3, 4, 2)
    assert len(out.taps) == 2 and out.taps[0].shape == (3, 9, 48) and out.hidden[1].shape == (3, 9, 32)
    assert out.embedding.shape == (3, 9, 48) and out.logits.dtype == np.float32
    np.testing.assert_allclose(out.logits.numpy(), out.logits_per_step.numpy().mean(1), rtol=1e-6)
    with pytest.raises(ValueError, match="exceeds max_length"):
        model(np.zeros((1, 17), dtype=np.int64))


def test_whole_student_gradcheck(xp, f64):
    cfg = SpikeBertConfig.preset("tiny", vocab_size=11, dim=8, heads=2, depth=1, T=2, embedding_std=0.5,
                                 teacher_dim=6, detach_reset=False)
    model = SpikeBert(cfg).set_spiking(False)
    ids = backend.current().asarray(np.array([[1, 4, 7, 2], [3, 3, 9, 0]]))
    mask = backend.current().asarray(np.array([[1.0, 1, 1, 0], [1, 1, 1, 1]]))
    u = np.random.default_rng(0).standard_normal(6)
    p = dict(model.named_parameters())
    checked = [p[n] for n in ("embedding.weight", "blocks.0.attn.k.fc.weight", "blocks.0.attn.out.ln.weight",
                              "blocks.0.mlp.up.fc.bias", "final_ln.bias", "classifier.weight",
                              "transforms.0.fc.weight", "embedding_proj.weight")]

    def fn(*params):
        out = model(ids, mask)
        xp_ = out.logits.xp
        return (out.logits.sum() + (out.taps[0] * xp_.asarray(u)).sum() + out.embedding.sum() * 0.1
                ).reshape(1)

    assert gradcheck(fn, checked, name="SpikeBert", atol=1e-7, rtol=1e-5, max_coords=10)


def test_spike_input_off_feeds_real_values(f64):
    model = SpikeBert(SpikeBertConfig.preset("tiny", spike_input=False))
    assert model.encoder is None
    assert model(np.array([[1, 2, 3]])).logits.shape == (1, 2)


def test_padding_content_and_length_do_not_change_logits():
    model = SpikeBert(SpikeBertConfig.preset("tiny", max_length=24))
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 100, (4, 10))
    lengths = [10, 7, 3, 9]
    base = np.zeros((4, 10), dtype=np.float32)
    for b, n in enumerate(lengths):
        base[b, :n] = 1
    with no_grad():
        ref = model(ids * base.astype(np.int64), base).logits_per_step.numpy()
        other = ids.copy()
        other[base == 0] = rng.integers(1, 100, int((base == 0).sum()))  # different padding content
        a = model(other, base).logits_per_step.numpy()
        longer = np.concatenate([other, rng.integers(1, 100, (4, 14))], axis=1)  # more padding
        mask = np.concatenate([base, np.zeros((4, 14), np.float32)], axis=1)
        b = model(longer, mask).logits_per_step.numpy()
        single = model(ids[2:3, :3]).logits_per_step.numpy()  # the sentence alone, unpadded
    np.testing.assert_allclose(a, ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(b, ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(single, ref[2:3], rtol=0, atol=1e-5)


def test_tiny_student_overfits_with_spikes_flowing():
    backend.seed(0)
    model = SpikeBert(SpikeBertConfig.preset("tiny"))
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 100, (8, 12))
    mask = np.ones((8, 12), dtype=np.float32)
    for b, n in enumerate([12, 9, 5, 12, 7, 10, 6, 11]):
        mask[b, n:] = 0
        ids[b, n:] = 0
    labels = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    opt = AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    for step in range(150):
        model.zero_grad()
        out = model(ids, mask)
        loss = ops.cross_entropy(out.logits, labels)
        loss.backward()
        opt.step()
        if (out.logits.numpy().argmax(1) == labels).all() and loss.item() < 0.3:
            break
    with record() as rec, no_grad():
        out = model(ids, mask)
    assert (out.logits.numpy().argmax(1) == labels).all(), f"did not fit: loss {loss.item():.3f} after {step} steps"
    rates = rec.firing_rates()
    assert set(rates) == {"encoder"} | {n for n, _ in model.neurons()}
    silent_or_saturated = {n: r for n, r in rates.items() if not 0.0 < r < 1.0}
    assert not silent_or_saturated, f"silent or saturated layers: {silent_or_saturated}"
