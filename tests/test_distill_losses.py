"""The distillation losses against hand computations; the layer map; masking of padding."""
from types import SimpleNamespace

import numpy as np
import pytest


from minispike.distill import LossWeights, TeacherTargets, distill_loss, layer_map
from minispike.gradcheck import gradcheck
from minispike.tensor import Tensor


def test_layer_map_even_spacing():
    assert layer_map(4, 6) == [(0, 2), (1, 3), (2, 5), (3, 6)]
    assert layer_map(6, 12) == [(0, 2), (1, 4), (2, 6), (3, 8), (4, 10), (5, 12)]  # every 2 layers
    assert layer_map(2, 2) == [(0, 1), (1, 2)]
    assert layer_map(4, 6, ignore_front=2) == [(2, 5), (3, 6)]


def _setup(seed=0, B=2, L=3, Dt=4, C=3):
    rng = np.random.default_rng(seed)
    mask = np.array([[1, 1, 0], [1, 1, 1]])
    taps = [rng.standard_normal((B, L, Dt)) for _ in range(2)]
    hidden = [rng.standard_normal((B, L, Dt)) for _ in range(5)]  # h0..h4: teacher of 4 layers
    emb_s, emb_t = rng.standard_normal((B, L, Dt)), rng.standard_normal((B, L, Dt))
    zs, zt = rng.standard_normal((B, C)), rng.standard_normal((B, C))
    return mask, taps, hidden, emb_s, emb_t, zs, zt


def _hand(mask, taps, hidden, emb_s, emb_t, zs, zt, labels, w):
    keep = mask[..., None].astype(float)
    n = keep.sum() * taps[0].shape[-1]
    feat = sum(((taps[i] - hidden[j]) ** 2 * keep).sum() / n for i, j in layer_map(2, 4))
    emb = ((emb_s - emb_t) ** 2 * keep).sum() / n
    tau = w.temperature
    p = np.exp(zt / tau) / np.exp(zt / tau).sum(1, keepdims=True)
    logq = zs / tau - np.log(np.exp(zs / tau).sum(1, keepdims=True))
    kl = tau ** 2 * (p * (np.log(p) - logq)).sum() / zs.shape[0]
    logp_s = zs - np.log(np.exp(zs).sum(1, keepdims=True))
    ce = -logp_s[np.arange(len(labels)), labels].mean()
    return w.kl * kl + w.ce * ce + w.features * feat + w.embedding * emb


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_stage2_loss_matches_hand_computation(tau, f64):
    mask, taps, hidden, emb_s, emb_t, zs, zt = _setup()
    labels = np.array([2, 0])
    w = LossWeights.stage2(temperature=tau)
    out = SimpleNamespace(taps=[Tensor(t) for t in taps], embedding=Tensor(emb_s), logits=Tensor(zs))
    loss, parts = distill_loss(out, TeacherTargets(hidden, emb_t, zt), mask, w, labels=labels)
    assert loss.item() == pytest.approx(_hand(mask, taps, hidden, emb_s, emb_t, zs, zt, labels, w), rel=1e-12)
    assert set(parts) == {"loss_features", "loss_embedding", "loss_kl", "loss_ce"}


def test_stage1_has_no_logit_terms(f64):
    mask, taps, hidden, emb_s, emb_t, zs, zt = _setup()
    w = LossWeights.stage1()
    out = SimpleNamespace(taps=[Tensor(t) for t in taps], embedding=Tensor(emb_s), logits=Tensor(zs))
    loss, parts = distill_loss(out, TeacherTargets(hidden, emb_t, None), mask, w)
    assert set(parts) == {"loss_features", "loss_embedding"}
    keep = mask[..., None]
    n = keep.sum() * 4
    feat = sum(((taps[i] - hidden[j]) ** 2 * keep).sum() / n for i, j in layer_map(2, 4))
    assert loss.item() == pytest.approx(feat + ((emb_s - emb_t) ** 2 * keep).sum() / n, rel=1e-12)


def test_padding_positions_do_not_count(f64):
    mask, taps, hidden, emb_s, emb_t, zs, zt = _setup()
    w = LossWeights.stage1()
    out = SimpleNamespace(taps=[Tensor(t) for t in taps], embedding=Tensor(emb_s), logits=Tensor(zs))
    a, _ = distill_loss(out, TeacherTargets(hidden, emb_t, None), mask, w)
    taps2 = [t.copy() for t in taps]
    for t in taps2:
        t[0, 2] = 1e3  # garbage at the padded position
    out2 = SimpleNamespace(taps=[Tensor(t) for t in taps2], embedding=Tensor(emb_s), logits=Tensor(zs))
    b, _ = distill_loss(out2, TeacherTargets(hidden, emb_t, None), mask, w)
    assert a.item() == b.item()


def test_ce_only_on_rows_with_a_gold_label(f64):
    mask, taps, hidden, emb_s, emb_t, zs, zt = _setup()
    w = LossWeights.stage2(kl=0.0, features=0.0, embedding=0.0, ce=1.0)
    out = SimpleNamespace(taps=[], embedding=None, logits=Tensor(zs))
    loss, _ = distill_loss(out, TeacherTargets(hidden, emb_t, zt), mask, w,
                           labels=np.array([1, 0]), has_label=np.array([False, True]))
    logp = zs[1] - np.log(np.exp(zs[1]).sum())
    assert loss.item() == pytest.approx(-logp[0], rel=1e-12)


def test_distill_loss_gradcheck(f64):
    mask, taps, hidden, emb_s, emb_t, zs, zt = _setup(1)
    w = LossWeights.stage2(temperature=2.0)
    labels = np.array([1, 2])
    ts = [Tensor(t, requires_grad=True) for t in taps] + [Tensor(emb_s, requires_grad=True), Tensor(zs, requires_grad=True)]

    def fn(t0, t1, e, z):
        out = SimpleNamespace(taps=[t0, t1], embedding=e, logits=z)
        return distill_loss(out, TeacherTargets(hidden, emb_t, zt), mask, w, labels=labels)[0]
    gradcheck(fn, ts, name="distill_loss")


def test_all_zero_weights_refused():
    with pytest.raises(ValueError, match="nothing to train"):
        distill_loss(SimpleNamespace(taps=[], embedding=None, logits=Tensor(np.zeros((1, 2)))),
                     TeacherTargets([], None, None), np.ones((1, 1)), LossWeights(0, 0, 0, 0))




# -- the optional PCA start of the student's word embedding ---------------------------------
def _student(dim, teacher_dim, vocab=40, **kw):
    from minispike.models.spikebert import SpikeBert, SpikeBertConfig
    return SpikeBert(SpikeBertConfig.preset("tiny", vocab_size=vocab, dim=dim, heads=4, teacher_dim=teacher_dim, **kw))


def _teacher_words(xp_mod, vocab=40, width=12, seed=0):
    from minispike import backend
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((vocab, width)) * np.linspace(2.0, 0.1, width) + rng.standard_normal(width)
    return backend.asarray(w)


def test_embedding_from_teacher_whitens_and_inverts(xp, f64):
    from minispike import backend
    from minispike.distill import embedding_from_teacher
    from minispike.tensor import Tensor
    words = _teacher_words(xp)
    student = _student(dim=8, teacher_dim=12)
    explained = embedding_from_teacher(student, words)
    e = backend.to_numpy(student.embedding.weight.data)
    w = backend.to_numpy(words)
    np.testing.assert_allclose(e.mean(0), 0, atol=1e-10)
    np.testing.assert_allclose(e.std(0), student.config.embedding_std, rtol=1e-10)  # each column whitened
    np.testing.assert_allclose(e.T @ e / len(e), np.eye(8), atol=1e-10)  # decorrelated
    # the explained share is that of the 8 leading eigenvalues of the covariance, by hand
    lam = np.sort(np.linalg.eigvalsh(np.cov(w.T, bias=True)))[::-1]
    assert explained == pytest.approx(lam[:8].sum() / lam.sum(), rel=1e-10)
    # the projection maps the codes back: the residual is exactly the discarded variance
    back = backend.to_numpy(student.embedding_proj(Tensor(student.embedding.weight.data)).data)
    assert ((back - w) ** 2).sum(1).mean() == pytest.approx(lam[8:].sum(), rel=1e-8)


def test_embedding_from_teacher_full_rank_is_exact(f64):
    from minispike import backend
    from minispike.distill import embedding_from_teacher
    from minispike.tensor import Tensor
    words = _teacher_words(np, width=8)
    student = _student(dim=8, teacher_dim=8, embedding_proj=True)
    assert embedding_from_teacher(student, words) == pytest.approx(1.0)
    back = student.embedding_proj(Tensor(student.embedding.weight.data)).data
    np.testing.assert_allclose(backend.to_numpy(back), backend.to_numpy(words), atol=1e-10)


def test_embedding_from_teacher_wider_student_keeps_extra_columns(f64):
    from minispike.distill import embedding_from_teacher
    words = _teacher_words(np, width=4)
    student = _student(dim=8, teacher_dim=4)
    before = student.embedding.weight.data.copy()
    embedding_from_teacher(student, words)
    after = student.embedding.weight.data
    np.testing.assert_array_equal(after[:, 4:], before[:, 4:])
    assert not np.allclose(after[:, :4], before[:, :4])


def test_embedding_from_teacher_refuses_another_vocabulary_or_no_projection():
    from minispike.distill import embedding_from_teacher
    with pytest.raises(ValueError, match="teacher has 30 words, the student 40"):
        embedding_from_teacher(_student(dim=8, teacher_dim=12), _teacher_words(np, vocab=30))
    with pytest.raises(ValueError, match="embedding_proj=True"):
        embedding_from_teacher(_student(dim=8, teacher_dim=8), _teacher_words(np, width=8))
