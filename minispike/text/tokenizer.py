"""BERT WordPiece tokenizer (a thin wrapper around the HF ``tokenizers`` library) and vocabulary tools.

Pipeline (BERT uncased):  text -> BertNormalizer (clean control chars, put spaces around every CJK
character, lower-case and strip accents when ``do_lower_case``) -> BertPreTokenizer (split on
whitespace and punctuation) -> WordPiece (greedy longest-match-first; continuation pieces carry
the ``##`` prefix; a word that cannot be covered becomes ``[UNK]``) -> ``[CLS] tokens [SEP]``.

``encode_batch`` truncates to ``max_length`` (keeping ``[CLS]`` and ``[SEP]``) and pads to the
longest sequence of the batch (or ``pad_to``):

    ids  (B, L) int64, [PAD] = pad_id after the sequence
    mask (B, L) int64, 1 on real tokens (including [CLS]/[SEP]), 0 on padding

``extend_vocab`` appends unseen CJK characters (and optionally other single characters that map to
[UNK]) to the END of the vocabulary, so every existing id keeps its meaning; the model's embedding
table then needs ``vocab_size - old_size`` new rows.

    unk_rate = (# word-level pieces equal to [UNK]) / (# pieces), [CLS]/[SEP] excluded
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from tokenizers import Tokenizer as _HFTokenizer
from tokenizers import models, normalizers, pre_tokenizers, processors, decoders

from ..io.checkpoint import read_json
from ..io.safetensors import atomic_write

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class TokenizerError(ValueError):
    """Tokenizer files that cannot be read (broken tokenizer.json, undecodable vocab.txt, missing
    special tokens); the message names the file and what was found."""


def is_cjk_char(ch: str) -> bool:
    """The CJK ranges BERT's BasicTokenizer isolates (``_is_chinese_char``)."""
    cp = ord(ch)
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def read_vocab(path) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            toks = [line.rstrip("\n").rstrip("\r") for line in f]
    except UnicodeDecodeError as e:
        raise TokenizerError(f"{path}: undecodable bytes at byte {e.start}, expected UTF-8 text, "
                             f"one token a line") from None
    while toks and toks[-1] == "":
        toks.pop()
    return toks


class Tokenizer:
    """BERT WordPiece tokenizer over a Python vocabulary list (id = position in the list)."""

    def __init__(self, vocab: Sequence[str], do_lower_case: bool = True, strip_accents=None,
                 tokenize_chinese_chars: bool = True, model_max_length: int = 512,
                 unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"):
        self.vocab = list(vocab)
        self.do_lower_case = bool(do_lower_case)
        self.strip_accents = strip_accents
        self.tokenize_chinese_chars = bool(tokenize_chinese_chars)
        self.model_max_length = int(model_max_length)
        self.special = {"unk": unk_token, "pad": pad_token, "cls": cls_token, "sep": sep_token, "mask": mask_token}
        self._build()

    # -- construction -----------------------------------------------------------------------
    def _build(self):
        index = {}
        for i, t in enumerate(self.vocab):
            index.setdefault(t, i)   # a duplicated line keeps its first id, as BERT's load_vocab
        missing = [t for t in self.special.values() if t not in index]
        if missing:
            raise ValueError(f"vocabulary lacks special token(s) {missing}")
        self.token_to_id = index
        tok = _HFTokenizer(models.WordPiece(index, unk_token=self.special["unk"], continuing_subword_prefix="##",
                                            max_input_chars_per_word=100))
        tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=self.tokenize_chinese_chars,
                                                    strip_accents=self.strip_accents, lowercase=self.do_lower_case)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        cls, sep = self.special["cls"], self.special["sep"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1",
            special_tokens=[(cls, index[cls]), (sep, index[sep])])
        tok.decoder = decoders.WordPiece(prefix="##")
        tok.add_special_tokens(list(dict.fromkeys(self.special.values())))
        self._tok = tok

    @classmethod
    def from_pretrained(cls, path) -> "Tokenizer":
        """Load from a directory holding ``vocab.txt`` and/or ``tokenizer.json`` (+ ``tokenizer_config.json``).

        The vocabulary comes from tokenizer.json when present (its WordPiece model), else vocab.txt;
        lower-casing follows ``do_lower_case`` in tokenizer_config.json (default true), or the
        tokenizer.json normalizer.
        """
        path = Path(path)
        cfg = {}
        if (path / "tokenizer_config.json").is_file():
            cfg = read_json(path / "tokenizer_config.json", "tokenizer_config.json")
        for key, kind in (("do_lower_case", bool), ("tokenize_chinese_chars", bool),
                          ("model_max_length", (int, float))):
            if cfg.get(key) is not None and not isinstance(cfg[key], kind):
                raise TokenizerError(f"{path / 'tokenizer_config.json'}: key {key!r} is {cfg[key]!r}, expected "
                                     f"{'true or false' if kind is bool else 'a number'}")
        kw = {"do_lower_case": cfg.get("do_lower_case", True), "strip_accents": cfg.get("strip_accents"),
              "tokenize_chinese_chars": cfg.get("tokenize_chinese_chars", True),
              "model_max_length": min(int(cfg.get("model_max_length", 512) or 512), 10**6)}
        for k in ("unk_token", "pad_token", "cls_token", "sep_token", "mask_token"):
            if isinstance(cfg.get(k), str):
                kw[k] = cfg[k]
        if (path / "tokenizer.json").is_file():
            where = path / "tokenizer.json"
            tj = read_json(where, "tokenizer.json")
            model = tj.get("model")
            if not isinstance(model, dict) or model.get("type") != "WordPiece":
                found = model.get("type") if isinstance(model, dict) else model
                raise TokenizerError(f"{where}: key 'model' holds model type {found!r}, expected a WordPiece model")
            v = model.get("vocab")
            if not (isinstance(v, dict) and v and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0
                                                      for i in v.values())):
                raise TokenizerError(f"{where}: key 'model.vocab' is not an object mapping tokens to ids >= 0")
            vocab = [None] * (max(v.values()) + 1)
            for t, i in v.items():
                vocab[i] = t
            if any(t is None for t in vocab):
                raise TokenizerError(f"{where}: vocabulary ids are not contiguous (expected 0 .. {len(v) - 1})")
            norm = tj.get("normalizer") or {}
            if norm.get("type") == "BertNormalizer" and "do_lower_case" not in cfg:
                kw["do_lower_case"] = norm.get("lowercase", True)
                kw["strip_accents"] = norm.get("strip_accents")
        elif (path / "vocab.txt").is_file():
            vocab = read_vocab(path / "vocab.txt")
        else:
            raise TokenizerError(f"{path}: neither tokenizer.json nor vocab.txt found")
        try:
            return cls(vocab, **kw)
        except ValueError as e:  # e.g. special tokens missing from the vocabulary
            raise TokenizerError(f"{path}: {e}") from None

    @classmethod
    def build_wordpiece(cls, texts: Iterable[str], vocab_size: int = 2000, min_count: int = 1,
                        do_lower_case: bool = True) -> "Tokenizer":
        """A small vocabulary for tests and the built-in demo, with no download.

        Special tokens, then every character seen (as a word and as ``##c``), then whole words by
        descending frequency (ties alphabetical) until ``vocab_size``.  Deterministic.
        """
        base = cls(list(SPECIAL_TOKENS), do_lower_case=do_lower_case)
        words, chars = Counter(), set()
        for t in texts:
            for w in base.pre_tokenize(t):
                words[w] += 1
                chars.update(w)
        vocab = list(SPECIAL_TOKENS)
        seen = set(vocab)
        for c in sorted(chars):
            for piece in (c, "##" + c):
                if piece not in seen:
                    vocab.append(piece)
                    seen.add(piece)
        for w, n in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])):
            if len(vocab) >= vocab_size or n < min_count:
                break
            if w not in seen:
                vocab.append(w)
                seen.add(w)
        return cls(vocab, do_lower_case=do_lower_case)

    def save_pretrained(self, path) -> None:
        """Write ``vocab.txt``, ``tokenizer.json`` and ``tokenizer_config.json`` to ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        _atomic_write(path / "vocab.txt", "".join(t + "\n" for t in self.vocab))
        _atomic_write(path / "tokenizer.json", self._tok.to_str(pretty=True))
        cfg = {"do_lower_case": self.do_lower_case, "strip_accents": self.strip_accents,
               "tokenize_chinese_chars": self.tokenize_chinese_chars, "model_max_length": self.model_max_length,
               "tokenizer_class": "BertTokenizer",
               **{f"{k}_token": v for k, v in self.special.items()}}
        _atomic_write(path / "tokenizer_config.json", json.dumps(cfg, indent=2) + "\n")

    # -- properties ---------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __len__(self):
        return len(self.vocab)

    pad_id = property(lambda self: self.token_to_id[self.special["pad"]])
    unk_id = property(lambda self: self.token_to_id[self.special["unk"]])
    cls_id = property(lambda self: self.token_to_id[self.special["cls"]])
    sep_id = property(lambda self: self.token_to_id[self.special["sep"]])
    mask_id = property(lambda self: self.token_to_id[self.special["mask"]])
    mask_token = property(lambda self: self.special["mask"])

    def fingerprint(self) -> str:
        """sha256 of everything that decides the ids: vocabulary, casing, CJK handling, special tokens."""
        h = hashlib.sha256()
        h.update(json.dumps([self.do_lower_case, self.strip_accents, self.tokenize_chinese_chars,
                             sorted(self.special.items())]).encode())
        h.update("\n".join(self.vocab).encode("utf-8"))
        return h.hexdigest()

    # -- encoding -----------------------------------------------------------------------------
    def normalize(self, text: str) -> str:
        return self._tok.normalizer.normalize_str(text)

    def pre_tokenize(self, text: str) -> list[str]:
        """Normalised words (what WordPiece sees): CJK characters come out one per word."""
        return [w for w, _ in self._tok.pre_tokenizer.pre_tokenize_str(self.normalize(text))]

    def tokenize(self, text: str) -> list[str]:
        return self._tok.encode(text, add_special_tokens=False).tokens

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """Ids of ``[CLS] text [SEP]``, truncated to ``max_length`` (keeping [SEP])."""
        return self.encode_ids([text], max_length)[0].tolist()

    def encode_ids(self, texts: Sequence[str], max_length: int | None = None) -> list[np.ndarray]:
        """Unpadded int32 id arrays, one per text, each ``[CLS] ... [SEP]`` of length <= max_length."""
        max_length = int(max_length or self.model_max_length)
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2 ([CLS] and [SEP]), got {max_length}")
        encs = self._tok.encode_batch(list(texts), add_special_tokens=False)
        cls, sep = self.cls_id, self.sep_id
        out = []
        for e in encs:
            body = e.ids[: max_length - 2]
            a = np.empty(len(body) + 2, dtype=np.int32)
            a[0], a[-1] = cls, sep
            a[1:-1] = body
            out.append(a)
        return out

    def encode_batch(self, texts: Sequence[str], max_length: int | None = None, pad_to: int | None = None):
        """(ids, mask): int64 arrays (B, L), L = longest sequence in the batch (<= max_length) or ``pad_to``."""
        seqs = self.encode_ids(texts, max_length)
        return pad_sequences(seqs, self.pad_id, pad_to)

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def convert_ids_to_tokens(self, ids) -> list[str]:
        return [self.vocab[int(i)] for i in ids]

    # -- vocabulary extension -----------------------------------------------------------------
    def unk_rate(self, texts: Iterable[str]) -> float:
        """Fraction of word pieces that are [UNK] (special tokens excluded)."""
        n = unk = 0
        uid = self.unk_id
        for e in self._tok.encode_batch(list(texts), add_special_tokens=False):
            n += len(e.ids)
            unk += sum(1 for i in e.ids if i == uid)
        return unk / n if n else 0.0

    def unknown_chars(self, texts: Iterable[str], include_other: bool = False) -> Counter:
        """Counter of the single-character words that map to [UNK]: CJK characters not in the vocab,
        plus (``include_other``) any other single character that WordPiece cannot cover."""
        c = Counter()
        for t in texts:
            for w in self.pre_tokenize(t):
                if len(w) != 1 or w in self.token_to_id:
                    continue
                if is_cjk_char(w) or include_other:
                    c[w] += 1
        return c

    def extend_vocab(self, texts: Iterable[str], include_other: bool = False, min_count: int = 1,
                     max_new: int | None = None) -> list[str]:
        """Append unseen CJK characters (by descending frequency, ties by code point) as whole-word tokens
        at the end of the vocabulary; returns the added tokens.  Existing ids are unchanged."""
        counts = self.unknown_chars(texts, include_other=include_other)
        new = [ch for ch, n in sorted(counts.items(), key=lambda kv: (-kv[1], ord(kv[0]))) if n >= min_count]
        if max_new is not None:
            new = new[:max_new]
        if new:
            self.vocab.extend(new)
            self._build()
        return new

    def __repr__(self):
        return (f"Tokenizer(vocab_size={self.vocab_size}, do_lower_case={self.do_lower_case}, "
                f"fingerprint={self.fingerprint()[:12]})")


def pad_sequences(seqs: Sequence[np.ndarray], pad_id: int, pad_to: int | None = None):
    """Right-pad 1-d id arrays to (B, L): returns (ids int64, mask int64)."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    L = int(lengths.max()) if len(seqs) else 0
    if pad_to is not None:
        if pad_to < L:
            raise ValueError(f"pad_to={pad_to} is shorter than the longest sequence ({L})")
        L = int(pad_to)
    ids = np.full((len(seqs), L), pad_id, dtype=np.int64)          # (B, L)
    mask = np.zeros((len(seqs), L), dtype=np.int64)                # (B, L)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return ids, mask


def _atomic_write(path: Path, text: str):
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
