"""Batcher (buckets, padding, determinism, exact resume, extras, device) and the token cache."""
import numpy as np
import pytest

from minispike import backend
from minispike.text import Batcher, Encoded, Tokenizer, builtin_texts, encode_cached, encode_task


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.build_wordpiece(builtin_texts(), vocab_size=1000)


def _seqs(n=203, seed=0):
    rng = np.random.default_rng(seed)
    return [np.concatenate([[2], rng.integers(5, 50, size=int(rng.integers(1, 40))), [3]]) for _ in range(n)]


def test_epoch_covers_everything_once_and_padding():
    seqs = _seqs()
    labels = np.arange(len(seqs)) % 2
    b = Batcher(seqs, labels, batch_size=16, seed=1)
    seen = []
    for batch in b:
        ids, mask, idx = batch["ids"], batch["mask"], batch["index"]
        assert ids.dtype == np.int64 and ids.shape == mask.shape and ids.shape[1] == mask.sum(1).max()
        for row, m, i in zip(ids, mask, idx):
            n = len(seqs[i])
            assert (row[:n] == seqs[i]).all() and (row[n:] == 0).all() and m.sum() == n
        assert (batch["labels"] == labels[idx]).all()
        seen.extend(idx.tolist())
    assert sorted(seen) == list(range(len(seqs))) and len(b) == 13 and b.epoch == 1


def test_buckets_reduce_padding_and_order_is_seeded():
    seqs = _seqs(1000)
    bucketed = Batcher(seqs, batch_size=32, seed=0, bucket_size=10)
    plain = Batcher(seqs, batch_size=32, seed=0, bucket=False)
    assert bucketed.padding_fraction() < 0.5 * plain.padding_fraction()
    a = [x.tolist() for x in Batcher(seqs, batch_size=32, seed=0).plan(0)]
    assert a == [x.tolist() for x in Batcher(seqs, batch_size=32, seed=0).plan(0)]
    assert a != [x.tolist() for x in Batcher(seqs, batch_size=32, seed=1).plan(0)]
    assert a != [x.tolist() for x in Batcher(seqs, batch_size=32, seed=0).plan(1)]
    evalb = Batcher(seqs, batch_size=32, shuffle=False)          # global length sort, stable
    order = np.concatenate(evalb.plan(0))
    assert (np.diff(evalb.data.lengths[order]) >= 0).all()


def test_exact_resume():
    seqs = _seqs(300)
    ref = Batcher(seqs, np.zeros(300), batch_size=8, seed=3)
    full = [batch["index"].tolist() for _ in range(2) for batch in ref]
    b = Batcher(seqs, np.zeros(300), batch_size=8, seed=3)
    got = []
    it = iter(b)
    for _ in range(50):                                          # part of epoch 1 (38 batches) and epoch 2
        try:
            got.append(next(it)["index"].tolist())
        except StopIteration:
            it = iter(b)
            got.append(next(it)["index"].tolist())
    state = b.state_dict()
    assert state["epoch"] == 1 and state["position"] == 12
    c = Batcher(seqs, np.zeros(300), batch_size=8, seed=3)
    c.load_state_dict(state)
    got += [batch["index"].tolist() for batch in c]
    assert got == full
    with pytest.raises(ValueError, match="batch_size"):
        Batcher(seqs, batch_size=4, seed=3).load_state_dict(state)


def test_padded_input_extras_drop_last_and_device():
    ids = np.array([[2, 7, 3, 0], [2, 3, 0, 0], [2, 8, 9, 3]])
    mask = (ids != 0).astype(np.int64)
    soft = np.array([[0.1, 0.9], [0.5, 0.5], [0.8, 0.2]], dtype=np.float32)
    b = Batcher((ids, mask), np.array([1, 0, 1]), batch_size=2, extras={"soft": soft}, drop_last=True, seed=0)
    batches = list(b)
    assert len(b) == 1 and len(batches) == 1
    x = batches[0]
    assert (x["soft"] == soft[x["index"]]).all()
    backend.use("strict")
    d = next(iter(Batcher((ids, mask), None, batch_size=3, to_device=True)))
    assert type(d["ids"]).__name__ == "StrictArray" and "labels" not in d
    assert isinstance(d["index"], np.ndarray)
    with pytest.raises(ValueError, match="labels"):
        Batcher((ids, mask), [1, 0], batch_size=2)


def test_token_cache_hit_and_invalidation(tmp_path, tok, monkeypatch):
    texts = builtin_texts()[:50]
    enc = encode_cached(texts, tok, 32, cache_dir=tmp_path, name="demo")
    files = list(tmp_path.glob("demo-*.npz"))
    assert len(files) == 1 and len(enc) == 50
    assert [s.tolist() for s in enc.sequences()] == [s.tolist() for s in tok.encode_ids(texts, 32)]
    monkeypatch.setattr(tok, "encode_ids", lambda *a, **k: pytest.fail("cache miss"))
    again = encode_cached(texts, tok, 32, cache_dir=tmp_path, name="demo")
    assert (again.flat == enc.flat).all() and (again.offsets == enc.offsets).all()
    monkeypatch.undo()
    encode_cached(texts[:-1] + ["changed text"], tok, 32, cache_dir=tmp_path, name="demo")
    new_files = list(tmp_path.glob("demo-*.npz"))
    assert len(new_files) == 1 and new_files != files             # texts changed: rebuilt, stale entry gone
    other = Tokenizer.build_wordpiece(builtin_texts(), vocab_size=900)
    e2 = encode_cached(texts, other, 32, cache_dir=tmp_path, name="demo")
    assert list(tmp_path.glob("demo-*.npz")) != new_files and len(e2) == 50
    files[0].write_bytes(b"garbage")                               # a corrupt entry is rebuilt
    assert len(encode_cached(texts, tok, 32, cache_dir=tmp_path, name="demo")) == 50


def test_encode_task_through_cache(tmp_path, tok):
    enc, labels, data = encode_task("builtin", "train", tok, 24, cache_dir=tmp_path)
    assert len(enc) == len(labels) == len(data) == 232 and enc.lengths.max() <= 24
    assert list(tmp_path.glob("builtin-train-L24-*.npz"))
    b = Batcher(enc, labels, batch_size=32, pad_id=tok.pad_id, seed=0)
    assert sum(len(x["labels"]) for x in b) == 232
    assert isinstance(Encoded.from_sequences([]), Encoded)
