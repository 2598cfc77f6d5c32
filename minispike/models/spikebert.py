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
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .. import backend, ops
from ..nn import Embedding, LayerNorm, Linear, Module, ModuleList
from ..spiking.attention import SpikingMLP, SpikingSelfAttention
from ..spiking.lif import LIF, _active_recorders, name_neurons, set_token_mask
from ..spiking.surrogate import Heaviside, get_surrogate
from ..tensor import Tensor

__all__ = ["SpikeBertConfig", "SpikeBert", "SpikeBertOutput", "SpikeBlock", "Transform", "SpikeEncoder"]


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
    name: str = field(default="custom", compare=False)

    PRESETS = {}  # filled below

    def __post_init__(self):
        if self.dim % self.heads:
            raise ValueError(f"SpikeBertConfig: dim {self.dim} is not divisible by heads {self.heads}")
        if self.T < 1 or self.depth < 1:
            raise ValueError(f"SpikeBertConfig: T and depth must be >= 1 (got T={self.T}, depth={self.depth})")
        get_surrogate(self.surrogate)  # validates the name

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
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SpikeBertConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"SpikeBertConfig: unknown keys {unknown}")
        return cls(**d)


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
