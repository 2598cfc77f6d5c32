"""SpikeBERT's student: a Spikformer for text, trained by distillation from BERT.

For token ids (B, L), mask m (B, L; 1 = real token), T time steps:

    E    = Embedding(ids)                                    (B, L, D)   (no position embedding)
    X_0  = Theta(E) repeated over T   (spike_input=True)     (T, B, L, D) (ATan surrogate backward)
         = E repeated over T          (spike_input=False)
    X_i  = X_{i-1} + SSA_i(X_{i-1}; m)                        spiking self-attention, residual
    X_i  = X_i + MLP_i(X_i)                                   spiking MLP, residual
    tap_i = LN_i(W_i mean_t(X_i) + b_i)                       (B, L, D_teacher) for feature distillation
    Z    = LN_final(X_depth)                                  over features
    P_t  = sum_l m_l Z[t, :, l] / sum_l m_l                   masked mean over tokens (B, D)
    logits_t = W_c P_t + b_c,    logits = mean_t logits_t     (B, C)

``SpikeBertConfig.preset("official")`` reproduces the official code's computation exactly
(tests/test_official_reference.py); ``paper``, ``cpu`` and ``tiny`` are sizes.

Files, as the BERT classes and transformers have them:

    model.save_pretrained(dir, tokenizer=tok)      config.json + model.safetensors + tokenizer files
    SpikeBert.from_pretrained(dir)                 the same model, in eval mode
    model.save_official(path)                      the official PyTorch layout (.safetensors / .npz)
    SpikeBert.from_official(path, heads=..., ...)  and back (minispike.io.official knows the names)
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field

from .. import backend, ops
from ..io import official
from ..io.checkpoint import (CONFIG_NAME, WEIGHTS_NAME, CheckpointError, check_config_types, load_checkpoint,
                             save_checkpoint)
from ..nn import Embedding, LayerNorm, Linear, Module, ModuleList
from ..spiking.attention import SpikingMLP, SpikingSelfAttention
from ..spiking.lif import LIF, _active_recorders, name_neurons, set_token_mask
from ..spiking.surrogate import Heaviside, get_surrogate
from ..tensor import Tensor
from .pretrained import tokenizer_files

__all__ = ["SpikeBertConfig", "SpikeBert", "SpikeBertOutput", "SpikeBlock", "Transform", "SpikeEncoder", "MODEL_TYPE"]

MODEL_TYPE = "spikebert"  # config.json's model_type of a student checkpoint


@dataclass
class SpikeBertConfig:
    """Every number that shapes the student. ``preset(name)`` gives a named configuration."""

    vocab_size: int = 30522
    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: int = 4
    T: int = 4
    max_length: int = 128
    num_classes: int = 2
    teacher_dim: int | None = None  # width of the distillation taps (None: = dim)
    # neurons
    tau: float = 2.0
    v_threshold: float = 1.0
    attn_threshold: float = 0.5  # the attention LIF's threshold (official: v_threshold / 2)
    v_reset: float | None = 0.0  # None: soft reset (subtract V_th)
    detach_reset: bool = True
    decay_input: bool = True
    surrogate: str = "atan"
    surrogate_alpha: float | None = None  # None: the surrogate's own default (ATan: 2)
    # layers
    scale: float = 0.125
    ln_eps: float = 1e-5  # PyTorch's default, as the official student (BERT uses 1e-12)
    spike_input: bool = True  # Heaviside on the embedding (official); False feeds real values
    embedding_std: float = 1.0  # nn.Embedding's default N(0, 1) in the official code
    init_std: float = 0.02  # Linear weights N(0, init_std), biases 0
    embedding_proj: bool | None = None  # Linear from dim to teacher_dim for the embedding loss (None: iff widths differ)
    mask_padding: bool = True  # honour attention_mask in attention and pooling
    # the task it is trained for (config.json: id2label, label2id, task; see models/pretrained.py)
    task: str | None = None
    id2label: dict | None = None  # {"0": "negative", ...}: the name of each class
    name: str = field(default="custom", compare=False)

    PRESETS = {}  # filled below

    # field -> (test, what the model needs); the neuron constants as the LIF dynamics require
    RANGES = {
        "vocab_size": (lambda v: v >= 1, ">= 1"), "dim": (lambda v: v >= 1, ">= 1"),
        "heads": (lambda v: v >= 1, ">= 1"),
        "mlp_ratio": (lambda v: v >= 1, ">= 1"), "max_length": (lambda v: v >= 2, ">= 2 ([CLS] and [SEP])"),
        "num_classes": (lambda v: v >= 2, ">= 2"),
        "tau": (lambda v: v >= 1, ">= 1 (the leak factor 1 - 1/tau must lie in [0, 1))"),
        "v_threshold": (lambda v: v > 0, "> 0 (a neuron fires when its membrane reaches it)"),
        "attn_threshold": (lambda v: v > 0, "> 0"), "ln_eps": (lambda v: v > 0, "> 0"),
        "scale": (lambda v: v > 0, "> 0"), "init_std": (lambda v: v >= 0, ">= 0"),
        "embedding_std": (lambda v: v >= 0, ">= 0"),
        "teacher_dim": (lambda v: v is None or v >= 1, ">= 1"),
        "surrogate_alpha": (lambda v: v is None or v > 0, "> 0"),
    }

    def __post_init__(self):
        check_config_types(self)
        for key, (test, expected) in self.RANGES.items():
            value = getattr(self, key)
            if not (test(value) and (not isinstance(value, float) or math.isfinite(value))):
                raise ValueError(f"SpikeBertConfig: key {key!r} is {value!r}; expected {expected}")
        if self.dim % self.heads:
            raise ValueError(f"SpikeBertConfig: dim {self.dim} is not divisible by heads {self.heads}")
        if self.T < 1 or self.depth < 1:
            raise ValueError(f"SpikeBertConfig: T and depth must be >= 1 (got T={self.T}, depth={self.depth})")
        get_surrogate(self.surrogate)  # validates the name
        if self.id2label is not None:
            self.id2label = {str(k): str(v) for k, v in self.id2label.items()}
            if sorted(self.id2label, key=int) != [str(i) for i in range(self.num_classes)]:
                raise ValueError(f"SpikeBertConfig: id2label has keys {sorted(self.id2label)} for "
                                 f"{self.num_classes} classes (expected '0' .. '{self.num_classes - 1}')")

    @property
    def teacher_width(self) -> int:
        return self.teacher_dim or self.dim

    @property
    def has_embedding_proj(self) -> bool:
        return (self.teacher_width != self.dim) if self.embedding_proj is None else bool(self.embedding_proj)

    @classmethod
    def preset(cls, name: str, **overrides) -> "SpikeBertConfig":
        """``paper`` (768 x 12, T 4), ``cpu`` (256 x 4, 8 heads, T 4, length 64), ``tiny``, ``official``."""
        if name not in PRESETS:
            raise ValueError(f"unknown SpikeBert preset {name!r}: choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], "name": name, **overrides})

    def to_dict(self) -> dict:
        """config.json's content: every field, ``model_type`` and (with labels) ``label2id``."""
        d = {"model_type": MODEL_TYPE, "architectures": ["SpikeBert"], **dataclasses.asdict(self)}
        if self.id2label is not None:
            d["label2id"] = {v: int(k) for k, v in self.id2label.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SpikeBertConfig":
        d = dict(d)
        model_type = d.pop("model_type", MODEL_TYPE)
        if model_type != MODEL_TYPE:
            raise ValueError(f"SpikeBertConfig: model_type is {model_type!r}, expected {MODEL_TYPE!r}")
        d.pop("architectures", None)
        label2id = d.pop("label2id", None)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"SpikeBertConfig: unknown keys {unknown}")
        cfg = cls(**d)
        if label2id is not None and label2id != {v: int(k) for k, v in (cfg.id2label or {}).items()}:
            raise ValueError(f"SpikeBertConfig: label2id {label2id} is not the inverse of id2label {cfg.id2label}")
        return cfg

    def official_export_problems(self) -> list:
        """Why the official model could not hold this student (empty: it can).

        The official ``new_spikformer`` has taps as wide as the student (``transforms`` are
        dim -> dim), no embedding projection, an MLP 4 x dim wide, and these settings fixed in
        its code: hard reset to 0, decay_input, detach_reset, ATan(2), LayerNorm eps 1e-5,
        spikes in, attention threshold V_th / 2."""
        problems = []
        if self.has_embedding_proj:
            problems.append("it has an embedding projection (embedding_proj.weight)")
        if self.teacher_width != self.dim:
            problems.append(f"its taps are {self.teacher_width} wide, the student {self.dim} (official: equal)")
        fixed = [("mlp_ratio", self.mlp_ratio, 4), ("v_reset", self.v_reset, 0.0),
                 ("decay_input", self.decay_input, True), ("detach_reset", self.detach_reset, True),
                 ("surrogate", self.surrogate, "atan"), ("surrogate_alpha", self.surrogate_alpha or 2.0, 2.0),
                 ("ln_eps", self.ln_eps, 1e-5), ("spike_input", self.spike_input, True),
                 ("attn_threshold", self.attn_threshold, self.v_threshold / 2)]
        problems += [f"{k} is {v!r} (official: {want!r})" for k, v, want in fixed if v != want]
        return problems

    @classmethod
    def from_official(cls, sizes: dict, heads: int, T: int, max_length: int, **settings) -> "SpikeBertConfig":
        """The official numerics, sized by ``io.official.official_sizes`` of a file."""
        hidden = sizes["hidden"]
        if hidden % sizes["dim"]:
            raise ValueError(f"MLP width {hidden} is not a multiple of the width {sizes['dim']}")
        v_threshold = settings.pop("v_threshold", PRESETS["official"]["v_threshold"])
        return cls.preset("official", vocab_size=sizes["vocab_size"], dim=sizes["dim"], depth=sizes["depth"],
                          heads=heads, T=T, max_length=max_length, num_classes=sizes.get("num_classes", 2),
                          mlp_ratio=hidden // sizes["dim"], teacher_dim=sizes.get("teacher_dim", sizes["dim"]),
                          v_threshold=v_threshold, attn_threshold=v_threshold / 2, **settings)


PRESETS = {
    # the paper's stage-2 student: 768 wide, 12 blocks, 12 heads, T 4, tau 2, length 128
    "paper": dict(dim=768, depth=12, heads=12, T=4, max_length=128, tau=2.0),
    # trains real tasks on 2 CPU cores (benchmarks/bench_student.py)
    "cpu": dict(dim=256, depth=4, heads=8, T=4, max_length=64, tau=2.0),
    # for tests
    "tiny": dict(vocab_size=100, dim=32, depth=2, heads=4, T=4, max_length=16, tau=2.0),
    # the official code's computation, every setting pinned (shared/reference/README.md)
    "official": dict(vocab_size=50, dim=32, depth=2, heads=4, T=4, max_length=8, num_classes=2,
                     tau=2.0, v_threshold=1.0, attn_threshold=0.5, v_reset=0.0, detach_reset=True,
                     decay_input=True, surrogate="atan", surrogate_alpha=2.0, scale=0.125, ln_eps=1e-5,
                     spike_input=True, embedding_std=1.0, init_std=0.02, embedding_proj=False,
                     mlp_ratio=4),
}
SpikeBertConfig.PRESETS = PRESETS


@dataclass
class SpikeBertOutput:
    """What ``SpikeBert.forward`` returns.

    logits (B, C) averaged over T; logits_per_step (B, T, C) (the official layout);
    taps: per block, ``transforms[i](mean_t X_i)`` (B, L, teacher width); hidden: per block,
    ``mean_t X_i`` (B, L, D); embedding: the word embedding (B, L, D), or its projection to
    the teacher width when the model has ``embedding_proj``.
    """

    logits: Tensor
    logits_per_step: Tensor
    taps: list
    hidden: list
    embedding: Tensor


class SpikeEncoder(Module):
    """``Theta(E)`` once, shared by all T steps (the official repeat-then-ATan, computed once)."""

    _is_neuron = True

    def __init__(self, surrogate, T):
        self.surrogate, self.T, self.name = surrogate, T, "encoder"

    def extra_repr(self):
        return f"T={self.T}, surrogate={self.surrogate!r}"

    def forward(self, e):  # (B, L, D) -> (T, B, L, D) and the (B, L, D) spikes it repeats
        s = Heaviside.apply(e, surrogate=self.surrogate)
        out = ops.expand(s.reshape(1, *s.shape), (self.T, *s.shape))  # a broadcast view over T
        for rec in _active_recorders():
            rec.add(self.name, out.data, None)
        return out, s


class SpikeBlock(Module):
    """``x = x + SSA(x); x = x + MLP(x)`` on (T, B, L, D)."""

    def __init__(self, cfg: SpikeBertConfig, lif: dict):
        self.attn = SpikingSelfAttention(cfg.dim, cfg.heads, scale=cfg.scale, attn_threshold=cfg.attn_threshold,
                                         ln_eps=cfg.ln_eps, lif=lif)
        self.mlp = SpikingMLP(cfg.dim, cfg.mlp_ratio * cfg.dim, ln_eps=cfg.ln_eps, lif=lif)

    def forward(self, x, key_mask=None, static=None):
        x = x + self.attn(x, key_mask, static)
        return x + self.mlp(x)


class Transform(Module):
    """The distillation tap: ``LN(W x + b)`` from the student width to the teacher width."""

    def __init__(self, d_in, d_out, ln_eps):
        self.fc = Linear(d_in, d_out)
        self.ln = LayerNorm(d_out, eps=ln_eps)

    def forward(self, x):
        return self.ln(self.fc(x))


class SpikeBert(Module):
    """The spiking student. ``forward(input_ids, attention_mask=None) -> SpikeBertOutput``."""

    def __init__(self, config: SpikeBertConfig | str = "tiny"):
        cfg = SpikeBertConfig.preset(config) if isinstance(config, str) else config
        self.config = cfg
        surrogate = get_surrogate(cfg.surrogate, cfg.surrogate_alpha)
        lif = dict(tau=cfg.tau, v_threshold=cfg.v_threshold, v_reset=cfg.v_reset, surrogate=surrogate,
                   detach_reset=cfg.detach_reset, decay_input=cfg.decay_input)
        dt = cfg.teacher_width
        self.embedding = Embedding(cfg.vocab_size, cfg.dim, std=cfg.embedding_std)
        self.encoder = SpikeEncoder(surrogate, cfg.T) if cfg.spike_input else None
        self.blocks = ModuleList([SpikeBlock(cfg, lif) for _ in range(cfg.depth)])
        self.transforms = ModuleList([Transform(cfg.dim, dt, cfg.ln_eps) for _ in range(cfg.depth)])
        self.embedding_proj = Linear(cfg.dim, dt) if cfg.has_embedding_proj else None
        self.final_ln = LayerNorm(cfg.dim, eps=cfg.ln_eps)
        self.classifier = Linear(cfg.dim, cfg.num_classes)
        if cfg.init_std != 0.02:
            for name, p in self.named_parameters():
                if name.endswith("weight") and p.ndim == 2 and not name.startswith("embedding."):
                    p.data = backend.randn(p.shape, cfg.init_std, xp=p.xp, dtype=p.dtype)
        name_neurons(self)

    # -- switches ---------------------------------------------------------------------------
    def neurons(self):
        """(name, LIF) for every LIF group, in forward order."""
        return [(n, m) for n, m in self.named_modules() if isinstance(m, LIF)]

    def set_spiking(self, spiking: bool = True):
        """``False``: every step becomes its smooth primitive (for finite-difference checks)."""
        for _, m in self.named_modules():
            sur = getattr(m, "surrogate", None)
            if sur is not None:
                sur.spiking = bool(spiking)
        return self

    # -- checkpoint directories (as transformers) ---------------------------------------------
    def save_pretrained(self, directory, tokenizer=None, extra=None):
        """Write ``config.json`` + ``model.safetensors`` (+ tokenizer files) atomically.

        ``tokenizer``: minispike's Tokenizer, a ``tokenizers.Tokenizer``, or a directory / file
        whose vocabulary files are copied (as ``BertModel.save_pretrained``)."""
        files, writer = tokenizer_files(tokenizer)
        return save_checkpoint(directory, self.state_dict(), self.config.to_dict(), extra=extra, files=files,
                               writer=writer, metadata={"format": "pt"})

    @classmethod
    def from_pretrained(cls, directory, dtype=None) -> "SpikeBert":
        """The student a checkpoint directory holds (strict: every key and shape), in eval mode.

        A training checkpoint (``checkpoints/last``) loads too: its optimizer tensors are skipped."""
        directory = os.fspath(directory)
        ckpt = load_checkpoint(directory)
        model_type = ckpt.config.get("model_type")
        if model_type != MODEL_TYPE:
            what = "a BERT teacher" if model_type == "bert" else f"model_type {model_type!r}"
            raise CheckpointError(f"{directory}: {CONFIG_NAME} describes {what}, not a SpikeBert student "
                                  f"(model_type {MODEL_TYPE!r})")
        try:
            cfg = SpikeBertConfig.from_dict(ckpt.config)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{os.path.join(directory, CONFIG_NAME)}: {e}") from None
        with backend.dtype_scope(dtype or backend.default_dtype()):
            model = cls(cfg)
        model.load_state_dict(ckpt.weights, source=os.path.join(directory, WEIGHTS_NAME))
        return model.eval()

    # -- the official layout (names and shapes: minispike.io.official) ------------------------
    def official_state(self) -> dict:
        """Host arrays of every parameter under its official name; refuses a student the
        official model cannot hold, saying why and which students export."""
        problems = self.config.official_export_problems()
        if problems:
            raise official.OfficialFormatError(
                "the official SpikeBERT model cannot hold this student: " + "; ".join(problems) +
                ". The 'official' preset exports, and so does any student whose --dim equals the teacher's "
                "width (e.g. --dim 384 with MiniLM), with the neuron settings of the presets")
        return {official.to_official_name(n): backend.to_numpy(p.data) for n, p in self.named_parameters()}

    def official_metadata(self) -> dict:
        """What the official file cannot say by its shapes: heads, T, length, neuron constants, labels."""
        c = self.config
        return {"heads": c.heads, "T": c.T, "max_length": c.max_length, "tau": c.tau, "v_threshold": c.v_threshold,
                "scale": c.scale, "mask_padding": c.mask_padding, "task": c.task, "id2label": c.id2label}

    def save_official(self, path):
        """Write the official layout to ``.safetensors`` or ``.npz``, the settings in its metadata."""
        return official.write_official(self.official_state(), path, metadata=self.official_metadata())

    def load_official_state(self, state: dict, source="official state"):
        """Copy an official-layout state (official name -> array) into this model, strictly."""
        own = dict(self.named_parameters())
        official.check_official_state(state, {official.to_official_name(n): p.shape for n, p in own.items()}, source)
        self.load_state_dict({official.from_official_name(k): v for k, v in state.items()}, source=source)
        return self

    @classmethod
    def from_official(cls, source, heads=None, T=None, max_length=None, prefix=None, **settings) -> "SpikeBert":
        """A student (official numerics, eval mode) from an official-layout file or state dict.

        The shapes give width, depth, vocabulary, classes; ``heads``, ``T`` and ``max_length``
        come from the file's metadata (a file minispike wrote) or must be given: they are never
        guessed (a 4-head file read as 8 heads computes something else). Given and written
        values must agree. ``settings``: other config fields (e.g. ``tau``, ``task``, ``id2label``)."""
        if isinstance(source, dict):
            state, meta, where = source, {}, "official state"
        else:
            where = os.fspath(source)
            state, meta = official.read_official(where, prefix=prefix), official.read_official_metadata(where)
        given = dict(settings, heads=heads, T=T, max_length=max_length)
        values = {}
        for key in set(meta) | set(given):
            said, asked = meta.get(key), given.get(key)
            if said is not None and asked is not None and said != asked:
                raise official.OfficialFormatError(f"{where}: the file says {key} {said!r}, the caller {asked!r}")
            if said is not None or asked is not None:
                values[key] = asked if asked is not None else said
        absent = [k for k in ("heads", "T", "max_length") if k not in values]
        if absent:
            flags = ", ".join("--" + k.replace("_", "-") for k in absent)
            raise official.OfficialFormatError(
                f"{where}: the file does not say {', '.join(absent)} (an official file has only tensors): "
                f"give {', '.join(f'{k}=' for k in absent)} (CLI: {flags})")
        heads, T, max_length = values.pop("heads"), values.pop("T"), values.pop("max_length")
        try:
            cfg = SpikeBertConfig.from_official(official.official_sizes(state, where), heads, T, max_length, **values)
        except (TypeError, ValueError) as e:
            raise official.OfficialFormatError(f"{where}: {e}") from None
        return cls(cfg).load_official_state(state, source=where).eval()

    # -- forward ----------------------------------------------------------------------------
    def forward(self, input_ids, attention_mask=None) -> SpikeBertOutput:
        cfg = self.config
        ids = input_ids.data if isinstance(input_ids, Tensor) else input_ids
        B, L = ids.shape
        if L > cfg.max_length:
            raise ValueError(f"SpikeBert: sequence length {L} exceeds max_length {cfg.max_length}")
        e = self.embedding(ids)  # (B, L, D)
        if self.encoder is not None:
            x, static = self.encoder(e)  # (T, B, L, D) spikes, one broadcast view of static (B, L, D)
        else:
            x, static = ops.expand(e.reshape(1, B, L, cfg.dim), (cfg.T, B, L, cfg.dim)), e
        mask, xp = None, e.xp
        if attention_mask is not None and cfg.mask_padding:
            m = attention_mask.data if isinstance(attention_mask, Tensor) else attention_mask
            mask = xp.asarray(m).astype(e.dtype)  # (B, L) 1 = real token
        set_token_mask(mask)
        taps, hidden = [], []
        for blk, tr in zip(self.blocks, self.transforms):
            x = blk(x, mask, static)  # (T, B, L, D)
            static = None  # only the first block sees the same input at every step
            h = x.mean(axis=0)  # (B, L, D)
            hidden.append(h)
            taps.append(tr(h))
        z = self.final_ln(x)  # (T, B, L, D)
        if mask is None:
            pooled = z.mean(axis=2)  # (T, B, D)
        else:
            w = mask / xp.maximum(mask.sum(axis=1, keepdims=True), 1.0)  # (B, L): masked-mean weights
            pooled = ops.matmul(w.reshape(1, B, 1, L), z).reshape(cfg.T, B, cfg.dim)  # (T, B, D)
        logits_t = self.classifier(pooled.reshape(-1, cfg.dim)).reshape(cfg.T, B, -1)  # (T, B, C)
        logits = logits_t.mean(axis=0)  # (B, C)
        emb = self.embedding_proj(e) if self.embedding_proj is not None else e
        return SpikeBertOutput(logits=logits, logits_per_step=logits_t.transpose(1, 0, 2), taps=taps,
                               hidden=hidden, embedding=emb)
