"""Augmentation (Tang et al. 2019) and the stage-1 unlabelled corpus."""

import numpy as np
import pytest

import minispike.text as T
from minispike.text import augment, build_corpus, load_task

from conftest import SHARED_DATA, needs_data  # noqa: E402
SENTS = load_task("builtin", "train").texts[:40]


def test_deterministic_originals_first_no_duplicates():
    a = augment(SENTS, n=5, seed=0)
    b = augment(SENTS, n=5, seed=0)
    assert a.sentences == b.sentences and (a.parents == b.parents).all()
    assert a.sentences[:40] == SENTS and a.n_original == 40
    assert len(set(a.sentences)) == len(a.sentences)
    assert a.n_added == len(a.added) and 0.9 * 200 <= a.n_added <= 200
    assert all(a.parents[i] == i for i in range(40))
    assert augment(SENTS, n=5, seed=1).sentences != a.sentences
    assert any("[MASK]" in s for s in a.added)
    assert a.counts["mask"] > 0 and a.counts["replace"] > 0 and a.counts["ngram"] > 0
    assert "40 original" in a.summary()


def test_order_independent_per_sentence():
    a = augment(SENTS[:10], n=4, seed=0, corpus=SENTS)
    b = augment(list(reversed(SENTS[:10])), n=4, seed=0, corpus=SENTS)
    per = lambda r: {r.sentences[int(p)]: sorted(s for s, q in zip(r.sentences, r.parents) if q == p)
                     for p in set(r.parents.tolist())}
    assert per(a) == per(b)


def test_each_operation_alone():
    words = SENTS[0].split()
    m = augment([SENTS[0]], n=3, p_mask=1.0, p_pos=0.0, p_ng=0.0, seed=0)
    assert m.added == [" ".join(["[MASK]"] * len(words))]          # everything masked: one distinct copy
    ng = augment([SENTS[0]], n=5, p_mask=0.0, p_pos=0.0, p_ng=1.0, ngram=(2, 3), seed=0)
    for s in ng.added:
        assert 2 <= len(s.split()) <= 3 and s in SENTS[0]
    zero = augment(SENTS[:3], n=5, p_mask=0, p_pos=0, p_ng=0)
    assert zero.n_added == 0 and zero.n_dropped_duplicates > 0
    with pytest.raises(ValueError):
        augment(SENTS, p_mask=0.7, p_pos=0.5)


def test_embedding_neighbours_replacement():
    vocab = ["[PAD]", "[UNK]", "good", "great", "fine", "bad", "awful", "##s", "film", "movie", "the"]
    E = np.zeros((len(vocab), 3), np.float32)
    E[2:5] = [[1, 0, 0], [0.9, 0.1, 0], [0.8, 0.2, 0]]
    E[5:7] = [[-1, 0, 0], [-0.9, 0, 0.1]]
    E[7] = [1, 0, 0]                                                  # a word piece: never proposed
    E[8:10] = [[0, 1, 0], [0, 0.95, 0.05]]
    E[10] = [0, 0, 1]
    r = augment(["good", "bad", "film"], n=5, p_mask=0, p_pos=1.0, p_ng=0, topk=1, embeddings=E, vocab=vocab)
    assert r.added == ["great", "awful", "movie"]               # the single nearest whole word
    r = augment(["good"], n=5, p_mask=0, p_pos=1.0, p_ng=0, topk=2, embeddings=E, vocab=vocab)
    assert sorted(r.added) == ["fine", "great"]                      # never the word piece "##s"
    with pytest.raises(ValueError, match="vocab"):
        augment(["x"], embeddings=E)


def test_chinese_characters():
    zh = ["酒店很好服务周到", "外卖很快味道不错", "酒店很差服务不好"]
    r = augment(zh, n=4, seed=0, language="zh", p_mask=0.2)
    assert all(" " not in s for s in r.added) and any("[MASK]" in s for s in r.added)
    assert r.sentences[:3] == zh


def test_corpus_builtin_fallback_and_files(tmp_path, monkeypatch):
    monkeypatch.setenv("MINISPIKE_DATA", str(tmp_path / "nothing"))
    extra = tmp_path / "mine.txt"
    extra.write_text("my own sentence\n\nanother one\n" + SENTS[0] + "\n", encoding="utf-8")
    held = set(load_task("builtin", "dev").texts) | set(load_task("builtin", "test").texts)
    dev_line = sorted(held)[0]
    extra2 = tmp_path / "leak.txt"
    extra2.write_text(dev_line + "\n", encoding="utf-8")
    c = build_corpus("en", extra_files=[extra, extra2], augmented=["an augmented one"])
    assert c.sources == {"builtin/train": 232, "augmented": 1, str(extra): 2, str(extra2): 0}
    assert len(c) == 235 and c.duplicates_dropped == 1 and c.eval_overlap_dropped == 1
    assert not held & set(c.sentences) and "my own sentence" in c.sentences
    assert c.n_tokens == sum(len(s.split()) for s in c.sentences)
    assert set(c.missing_tasks) == {"sst2", "sst5", "mr", "subj"} and "sentences" in c.summary()
    tok = T.builtin_tokenizer()
    assert build_corpus("en", tokenizer=tok).token_unit == "word pieces"
    (tmp_path / "bad.txt").write_bytes(b"ok\n\xff\n")
    with pytest.raises(T.DataError, match=r"bad.txt:2"):
        build_corpus("en", extra_files=[tmp_path / "bad.txt"])


@needs_data
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_real_corpus_never_holds_eval_text(lang):
    c = build_corpus(lang, data_dir=SHARED_DATA)
    held = set()
    for t in T.list_tasks(lang):
        if t.name == "builtin":
            continue
        for s in ("dev", "test"):
            held.update(load_task(t, s, data_dir=SHARED_DATA).texts)
    assert not held & set(c.sentences)
    assert len(c) > 15000 and c.n_tokens > 300000 and not c.missing_tasks
    assert set(c.sources) == {f"{t.name}/train" for t in T.list_tasks(lang) if t.name != "builtin"}
