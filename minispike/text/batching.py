"""Tokenise-once caching and length-bucketed, resumable mini-batches (host NumPy arrays).

Bucketing: every epoch e draws a permutation from ``default_rng([seed, e])``, cuts it into pools of
``batch_size * bucket_size`` examples, sorts each pool by length (stable), cuts the pool into
batches and shuffles the order of the batches.  Each batch is padded only to its own longest
sequence, so padding stays small while the order stays random between pools:

    ids   (B, L_b) int64, pad_id after each sequence;  L_b = max length in the batch
    mask  (B, L_b) int64, 1 = real token, 0 = padding
    labels (B,) int64, index (B,) int64 (row numbers into the dataset), extras[name] (B, ...)

Without ``shuffle`` the order is a global stable sort by length (least padding, for evaluation);
predictions go back to dataset order through ``index``.  The order depends only on
(seed, epoch, lengths), so ``state_dict()`` = {epoch, position} resumes exactly.

Cache: ``encode_cached`` stores the token ids of a list of texts in ``<cache_dir>/<name>-<key>.npz``
with key = sha256(tokenizer fingerprint, max_length, every text).  A change to either the texts
or the tokenizer changes the key; older files of the same name are removed. A cache that cannot be
written (read-only directory, full disk) is skipped with a warning: it only costs speed.
"""
from __future__ import annotations

import hashlib
import os
import re
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .tokenizer import pad_sequences


# ----------------------------------------------------------------------------------------
# tokenise once, cache as npz
# ----------------------------------------------------------------------------------------
class Encoded:
    """Variable-length token-id sequences stored flat: ``ids[offsets[i]:offsets[i+1]]`` is sequence i."""

    def __init__(self, flat: np.ndarray, offsets: np.ndarray):
        self.flat = np.asarray(flat, dtype=np.int32)          # (sum of lengths,)
        self.offsets = np.asarray(offsets, dtype=np.int64)    # (N + 1,)

    @classmethod
    def from_sequences(cls, seqs: Sequence[np.ndarray]) -> "Encoded":
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.concatenate([np.asarray(s, dtype=np.int32) for s in seqs]) if len(seqs) else np.zeros(0, np.int32)
        return cls(flat, offsets)

    def __len__(self):
        return len(self.offsets) - 1

    def __getitem__(self, i) -> np.ndarray:
        return self.flat[self.offsets[i]: self.offsets[i + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequences(self) -> list[np.ndarray]:
        return [self[i] for i in range(len(self))]


def default_token_cache_dir() -> Path:
    """``$MINISPIKE_CACHE/tokens``, else ``$XDG_CACHE_HOME/minispike/tokens`` (``~/.cache/minispike/tokens``)."""
    env = os.environ.get("MINISPIKE_CACHE")
    if env:
        return Path(env).expanduser() / "tokens"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "minispike" / "tokens"


def cache_key(texts: Sequence[str], tokenizer, max_length: int) -> str:
    h = hashlib.sha256()
    h.update(f"minispike-tokens-v1\0{tokenizer.fingerprint()}\0{int(max_length)}\0{len(texts)}\0".encode())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def encode_cached(texts: Sequence[str], tokenizer, max_length: int, cache_dir=None, name: str = "texts",
                  use_cache: bool = True) -> Encoded:
    """Token ids of ``texts`` (``[CLS] ... [SEP]``, <= max_length), read from / written to the npz cache."""
    texts = list(texts)
    if not use_cache:
        return Encoded.from_sequences(tokenizer.encode_ids(texts, max_length))
    key = cache_key(texts, tokenizer, max_length)
    d = Path(cache_dir) if cache_dir is not None else default_token_cache_dir()
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:80] or "texts"
    path = d / f"{safe}-{key[:24]}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:  # arrays only: a cache file never runs code
                if str(z["key"]) == key:
                    return Encoded(z["flat"], z["offsets"])
        except Exception:  # a corrupt cache file is rebuilt, never trusted
            pass
    enc = Encoded.from_sequences(tokenizer.encode_ids(texts, max_length))
    tmp = d / f".{safe}-{key[:24]}.tmp-{os.getpid()}.npz"
    try:
        d.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.savez(f, flat=enc.flat, offsets=enc.offsets, key=np.array(key))
        os.replace(tmp, path)
    except OSError as e:  # a read-only or full cache only costs speed: say so and go on
        warnings.warn(f"{path}: token cache not written ({e.strerror}); continuing without it", stacklevel=2)
        return enc
    finally:
        if tmp.exists():
            tmp.unlink()
    for old in d.glob(f"{safe}-*.npz"):        # invalidated entries of the same name
        if old != path and re.fullmatch(re.escape(safe) + r"-[0-9a-f]{24}\.npz", old.name):
            try:
                old.unlink()
            except OSError:
                pass
    return enc


def encode_task(task, split: str, tokenizer, max_length: int, data_dir=None, cache_dir=None,
                skip_bad: bool = False, use_cache: bool = True):
    """Load a task split and tokenise it through the cache: returns (Encoded, labels int64 (N,), TaskData)."""
    from .tasks import load_task
    data = load_task(task, split, data_dir=data_dir, skip_bad=skip_bad)
    enc = encode_cached(data.texts, tokenizer, max_length, cache_dir=cache_dir,
                        name=f"{data.task.name}-{split}-L{max_length}", use_cache=use_cache)
    return enc, data.labels, data


# ----------------------------------------------------------------------------------------
# the batcher
# ----------------------------------------------------------------------------------------
class Batcher:
    """Length-bucketed, seeded, resumable batches of host arrays.

    ``data`` is an :class:`Encoded`, a list of 1-d id arrays, or a padded pair ``(ids, mask)``
    of shape (N, L).  ``labels`` (N,) may be None (unlabelled text).  ``extras`` maps a name to an
    array whose first axis is N (e.g. teacher soft labels); its rows are gathered by index.
    ``to_device``: None (host NumPy), True (``minispike.backend.asarray`` on the current backend) or
    a callable applied to every array.
    Iterating yields the rest of the current epoch and then moves to the next one.
    """

    def __init__(self, data, labels=None, batch_size: int = 32, bucket: bool = True, shuffle: bool = True,
                 seed: int = 0, pad_id: int = 0, extras: dict | None = None, drop_last: bool = False,
                 bucket_size: int = 50, to_device: bool | Callable | None = None):
        if isinstance(data, tuple) and len(data) == 2 and np.ndim(data[0]) == 2:
            ids, mask = (np.asarray(a) for a in data)
            lens = mask.astype(bool).sum(1)
            data = [ids[i, : lens[i]] for i in range(len(ids))]
        self.data = data if isinstance(data, Encoded) else Encoded.from_sequences(list(data))
        n = len(self.data)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        if self.labels is not None and len(self.labels) != n:
            raise ValueError(f"{len(self.labels)} labels for {n} sequences")
        self.extras = {k: np.asarray(v) for k, v in (extras or {}).items()}
        for k, v in self.extras.items():
            if len(v) != n:
                raise ValueError(f"extras[{k!r}] has {len(v)} rows for {n} sequences")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size, self.bucket, self.shuffle, self.seed = int(batch_size), bool(bucket), bool(shuffle), int(seed)
        self.pad_id, self.drop_last, self.bucket_size = int(pad_id), bool(drop_last), int(bucket_size)
        if to_device is True:
            from .. import backend
            to_device = backend.asarray
        self.to_device = to_device
        self.epoch = 0
        self.position = 0
        self._plan_cache = None

    def __len__(self):
        n = len(self.data)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def plan(self, epoch: int) -> list[np.ndarray]:
        """The index arrays of every batch of ``epoch``, in order."""
        if self._plan_cache and self._plan_cache[0] == epoch:
            return self._plan_cache[1]
        n, bs = len(self.data), self.batch_size
        lengths = self.data.lengths
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        if self.bucket:
            if self.shuffle:
                pool = bs * max(1, self.bucket_size)
                chunks = [order[i:i + pool] for i in range(0, n, pool)]
            else:
                chunks = [order]
            order = np.concatenate([c[np.argsort(lengths[c], kind="stable")] for c in chunks]) if n else order
        batches = [order[i:i + bs] for i in range(0, n, bs)]
        if self.drop_last and batches and len(batches[-1]) < bs:
            batches.pop()
        if self.shuffle and self.bucket:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        self._plan_cache = (epoch, batches)
        return batches

    def make_batch(self, idx: np.ndarray) -> dict:
        ids, mask = pad_sequences([self.data[i] for i in idx], self.pad_id)
        out = {"ids": ids, "mask": mask, "index": np.asarray(idx, dtype=np.int64)}
        if self.labels is not None:
            out["labels"] = self.labels[idx]
        for k, v in self.extras.items():
            out[k] = v[idx]
        if self.to_device is not None:
            out = {k: (v if k == "index" else self.to_device(v)) for k, v in out.items()}
        return out

    def __iter__(self):
        batches = self.plan(self.epoch)
        while self.position < len(batches):
            idx = batches[self.position]
            self.position += 1          # counted as consumed once handed out: a checkpoint resumes after it
            yield self.make_batch(idx)
        self.epoch += 1
        self.position = 0

    def padding_fraction(self, epoch: int | None = None) -> float:
        """Share of padded positions over an epoch's batches (0 = no padding)."""
        lengths = self.data.lengths
        tot = pad = 0
        for idx in self.plan(self.epoch if epoch is None else epoch):
            m = int(lengths[idx].max())
            tot += m * len(idx)
            pad += int((m - lengths[idx]).sum())
        return pad / tot if tot else 0.0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "batch_size": self.batch_size,
                "n": len(self.data), "bucket": self.bucket, "shuffle": self.shuffle, "drop_last": self.drop_last,
                "bucket_size": self.bucket_size}

    def load_state_dict(self, state: dict) -> None:
        for k in ("seed", "batch_size", "n", "bucket", "shuffle", "drop_last", "bucket_size"):
            mine = self.state_dict()[k]
            if k in state and state[k] != mine:
                raise ValueError(f"Batcher.load_state_dict: {k} is {state[k]!r} in the state, {mine!r} here")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
