"""Data augmentation for stage 2 of the distillation (Tang et al. 2019, "Distilling Task-Specific
Knowledge from BERT into Simple Neural Networks", section 3.3).

For every training sentence w_1..w_n, one synthetic copy is drawn as follows.  For each word draw
X_i ~ U[0, 1]:

    X_i <  p_mask               -> w_i := [MASK]                                (masking)
    p_mask <= X_i < p_mask+p_pos -> w_i := a word of the same kind as w_i        (POS-guided replacement)
    otherwise                   -> w_i kept

then, with probability p_ng, keep only a random n-gram w_j..w_{j+n-1}, n ~ U{ngram_min..ngram_max}
(n-gram sampling).  This is repeated until N distinct new sentences exist (or ``max_tries``
draws).  Without a POS tagger, "a word of the same kind" is approximated by

    * a nearest neighbour (cosine, top-k) in a word-embedding matrix passed in (the teacher's
      word-piece embeddings + its vocabulary), when the word is a whole token of that vocabulary;
    * else a word seen in the same (left word, right word) context in the corpus;
    * else a corpus word of the same shape class (same 2-letter suffix, both alphabetic);
    * else the word is kept.

English sentences are split on whitespace, Chinese ones into characters (joined back without
spaces).  Each sentence's draws come from ``default_rng([seed, sha256(sentence)])``, so results
do not depend on the order of the input.  Augmented sentences that equal an original or an
earlier augmented one are dropped; originals are all kept, first.  No gold labels: the teacher
labels the augmented text (soft targets).
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .tokenizer import is_cjk_char


def split_words(text: str, language: str = "en") -> list[str]:
    if language == "zh":
        return [ch for ch in text if not ch.isspace()]
    return text.split()


def join_words(words: Sequence[str], language: str = "en") -> str:
    return "".join(words) if language == "zh" else " ".join(words)


_WORDLIKE = re.compile(r"^[^\W\d_]+(?:['-][^\W\d_]+)*$")


def _is_wordlike(w: str) -> bool:
    return bool(_WORDLIKE.match(w)) or (len(w) == 1 and is_cjk_char(w))


class EmbeddingNeighbours:
    """Top-k cosine neighbours of a word among the whole-word tokens of an embedding vocabulary."""

    def __init__(self, embeddings: np.ndarray, vocab: Sequence[str], topk: int = 10, lowercase: bool = True):
        embeddings = np.asarray(embeddings, dtype=np.float32)           # (V, D)
        if embeddings.shape[0] != len(vocab):
            raise ValueError(f"{embeddings.shape[0]} embedding rows for {len(vocab)} vocabulary entries")
        self.topk, self.lowercase = int(topk), lowercase
        self.index = {t: i for i, t in enumerate(vocab)}
        cand = [i for i, t in enumerate(vocab) if _is_wordlike(t)]
        self.cand_ids = np.array(cand, dtype=np.int64)                   # (C,)
        self.cand_tokens = [vocab[i] for i in cand]
        e = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
        self.unit = e                                                    # (V, D)
        self.cand_unit = e[self.cand_ids]                                # (C, D)
        self._cache: dict = {}

    def prefetch(self, words, chunk: int = 512) -> None:
        """Compute the neighbours of many words with one matrix product per chunk."""
        keys = sorted({(w.lower() if self.lowercase else w) for w in words} - set(self._cache))
        keys = [k for k in keys if k in self.index and _is_wordlike(k)]
        for a in range(0, len(keys), chunk):
            part = keys[a:a + chunk]
            sims = self.unit[[self.index[k] for k in part]] @ self.cand_unit.T      # (b, C)
            for key, row in zip(part, sims):
                self._cache[key] = self._top(key, row)

    def _top(self, key, sims):
        k = min(self.topk + 1, len(sims))
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.lexsort((top, -sims[top]))]                        # by similarity, ties by index
        return [self.cand_tokens[j] for j in top if self.cand_tokens[j] != key][: self.topk]

    def __call__(self, word: str) -> list[str]:
        key = word.lower() if self.lowercase else word
        if key in self._cache:
            return self._cache[key]
        i = self.index.get(key)
        out = []
        if i is not None and _is_wordlike(key):
            out = self._top(key, self.cand_unit @ self.unit[i])           # (C,) similarities
        self._cache[key] = out
        return out


class ContextSubstitutes:
    """Words that share a (left, right) context with a given word in a corpus, or its shape class."""

    def __init__(self, sentences: Sequence[Sequence[str]], max_candidates: int = 20):
        ctx = defaultdict(Counter)
        shape = defaultdict(Counter)
        for words in sentences:
            padded = ["<s>"] + list(words) + ["</s>"]
            for i in range(1, len(padded) - 1):
                w = padded[i]
                ctx[(padded[i - 1], padded[i + 1])][w] += 1
                if _is_wordlike(w) and len(w) > 3:
                    shape[w[-2:]][w] += 1
        top = lambda c: [w for w, _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:max_candidates]]
        self.ctx = {k: top(v) for k, v in ctx.items() if len(v) > 1}
        self.shape = {k: top(v) for k, v in shape.items() if len(v) > 1}

    def __call__(self, words: Sequence[str], i: int) -> list[str]:
        w = words[i]
        left = words[i - 1] if i > 0 else "<s>"
        right = words[i + 1] if i + 1 < len(words) else "</s>"
        c = [x for x in self.ctx.get((left, right), ()) if x != w]
        if c:
            return c
        if _is_wordlike(w) and len(w) > 3:
            return [x for x in self.shape.get(w[-2:], ()) if x != w]
        return []


@dataclass
class Augmented:
    """Originals first (all kept, in order), then the new sentences; ``parents[i]`` = source index."""
    sentences: list
    parents: np.ndarray
    n_original: int
    n_added: int
    n_dropped_duplicates: int = 0
    counts: dict = field(default_factory=dict)   # how many word edits of each kind were applied

    @property
    def added(self) -> list[str]:
        return self.sentences[self.n_original:]

    def summary(self) -> str:
        return (f"augmentation: {self.n_original} original + {self.n_added} new sentences "
                f"({self.n_added / max(self.n_original, 1):.1f} per original, "
                f"{self.n_dropped_duplicates} duplicate draws dropped; edits {self.counts})")

    __str__ = summary


def _sentence_rng(seed: int, text: str) -> np.random.Generator:
    h = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng([int(seed), h])


def augment(sentences: Sequence[str], n: int = 10, p_mask: float = 0.1, p_pos: float = 0.1, p_ng: float = 0.25,
            ngram: tuple[int, int] = (1, 5), seed: int = 0, language: str = "en", embeddings=None, vocab=None,
            topk: int = 10, mask_token: str = "[MASK]", max_tries: int | None = None,
            corpus: Sequence[str] | None = None) -> Augmented:
    """N augmented copies per sentence (Tang et al. 2019); see the module docstring.

    ``embeddings`` (V, D) with ``vocab`` (V tokens) enable nearest-neighbour replacement;
    ``corpus`` (default: ``sentences``) feeds the context/shape fallback.  ``max_tries`` bounds the
    draws per sentence (default 4 n).
    """
    if not 0 <= p_mask <= 1 or not 0 <= p_pos <= 1 or p_mask + p_pos > 1 or not 0 <= p_ng <= 1:
        raise ValueError(f"need 0 <= p_mask, p_pos, p_ng <= 1 and p_mask + p_pos <= 1; got {p_mask}, {p_pos}, {p_ng}")
    lo, hi = int(ngram[0]), int(ngram[1])
    if not 1 <= lo <= hi:
        raise ValueError(f"ngram range must satisfy 1 <= min <= max, got {ngram}")
    max_tries = 4 * n if max_tries is None else int(max_tries)
    originals = list(sentences)
    tokenised = [split_words(s, language) for s in originals]
    neighbours = None
    if embeddings is not None:
        if vocab is None:
            raise ValueError("embeddings need their vocab (one token per row)")
        neighbours = EmbeddingNeighbours(embeddings, vocab, topk=topk)
        neighbours.prefetch({w for words in tokenised for w in words})
    context = ContextSubstitutes(tokenised if corpus is None else [split_words(s, language) for s in corpus])
    seen = set(originals)
    out, parents = list(originals), list(range(len(originals)))
    counts = Counter()
    dropped = 0
    for k, (text, words) in enumerate(zip(originals, tokenised)):
        if not words or n <= 0:
            continue
        rng = _sentence_rng(seed, text)
        made = 0
        for _ in range(max_tries):
            if made >= n:
                break
            new = list(words)
            x = rng.random(len(words))
            for i, xi in enumerate(x):
                if xi < p_mask:
                    new[i] = mask_token
                    counts["mask"] += 1
                elif xi < p_mask + p_pos:
                    cands = neighbours(words[i]) if neighbours is not None else []
                    if not cands:
                        cands = context(words, i)
                    if cands:
                        new[i] = cands[int(rng.integers(len(cands)))]
                        counts["replace"] += 1
            if rng.random() < p_ng and len(new) > 1:
                m = int(rng.integers(lo, hi + 1))
                if m < len(new):
                    j = int(rng.integers(0, len(new) - m + 1))
                    new = new[j:j + m]
                    counts["ngram"] += 1
            s = join_words(new, language)
            if s in seen:
                dropped += 1
                continue
            seen.add(s)
            out.append(s)
            parents.append(k)
            made += 1
    return Augmented(out, np.array(parents, dtype=np.int64), len(originals), len(out) - len(originals),
                     dropped, dict(counts))
