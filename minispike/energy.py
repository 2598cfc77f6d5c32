"""Energy at 45 nm, counted from an actual forward pass (SpikeBERT's second headline).

Every product of the network is counted where it happens, from the values that really
flow into it (``count_ops`` wraps the ``forward`` of every ``nn.Linear`` and every
attention module while the model runs, then puts them back):

    E = E_MAC * MACs + E_AC * ACs        E_MAC = 4.6 pJ, E_AC = 0.9 pJ (Horowitz 2014, 45 nm, 32-bit float)

A product ``y = x W`` with ``x`` of ``n`` elements and a fan-out of ``f`` (each element of
``x`` meets ``f`` weights) has ``dense = n f`` multiply-accumulates. Its input class is
read off the measured values, and decides the cost:

    x binary (every value 0 or 1)       ACs  = f * sum(x) = dense * r,     r = mean(x) (the firing rate)
                                              a spike adds a weight row: no multiply; summed over all
                                              T time steps and tokens (= per step MACs x r_t, summed)
    x non-negative integers (counts)    MACs = dense                      (default: a count is a number)
                                        ACs  = f * sum(x)                 (integer_as_spikes=True: n spikes)
    x real-valued                       MACs = dense
    non-spiking model (the teacher)     MACs = dense                      whatever the input

The products, with their fan-out:

    Linear       y = x W^T + b, x (rows, in), W (out, in)      f = out      dense = rows in out
    SSA  Q K^T   per head, Q (T, L, d_h) spikes                f = L keys   dense = T L L d_h
    SSA  A V     A = Q K^T holds integer counts 0..d_h          f = d_h      dense = T L L d_h
    BERT Q K^T, P V  (softmax probabilities P: real-valued)    MACs         dense = L L d_h each

Not counted (stated, not forgotten): the embedding lookup (a memory read), the spike
encoder and every LIF (compare-and-reset per neuron), LayerNorm, biases, the attention
scale, residual additions, GELU / softmax / tanh, the masked-mean pooling: each O(L D)
against the O(L D^2) products. The student's distillation taps (``transforms``,
``embedding_proj``) run only in training and are excluded by default.

Padding: ``padding="trim"`` (default) runs every sample alone at its real length, so only
real tokens are counted; ``padding="count"`` runs the batch as given and counts every
position (what fixed-length hardware pays; the paper's setting, length 128).
docs/energy.md gives the rules, the reasons, and where they depart from the paper.
"""
from __future__ import annotations

import contextlib
import inspect
import json
import os
from dataclasses import dataclass, field

from .nn import Linear, Module
from .tensor import Tensor, no_grad

__all__ = ["E_MAC_PJ", "E_AC_PJ", "LayerCost", "EnergyReport", "Comparison", "OpCounter",
           "count_ops", "estimate_energy", "compare", "bert_macs", "DEFAULT_EXCLUDE"]

E_MAC_PJ = 4.6  # pJ per 32-bit float multiply-accumulate at 45 nm (3.7 mult + 0.9 add)
E_AC_PJ = 0.9  # pJ per 32-bit float accumulate at 45 nm
DEFAULT_EXCLUDE = ("transforms", "embedding_proj")  # training-only taps of the student

# The rule written next to each class of input (these strings go into the table and JSON).
RULES = {
    "binary": "binary spikes in: AC = dense x rate (a spike adds a weight row, no multiply)",
    "integer": "integer counts in (not spikes): MAC (a count multiplies a weight)",
    "integer-ac": "integer counts in, as n spikes each: AC = dense x mean (integer_as_spikes)",
    "float": "real-valued input: MAC",
    "dense": "non-spiking model: every product is a MAC",
}


def _raw(x):
    return x.data if isinstance(x, Tensor) else x


def _classify(a):
    """'binary' (all values 0 or 1), 'integer' (non-negative integers) or 'float'."""
    if a.size == 0:
        return "binary"
    if bool(((a == 0) | (a == 1)).all()):
        return "binary"
    if bool((a >= 0).all()) and bool((a == a.round()).all()):
        return "integer"
    return "float"


# ----------------------------------------------------------------------------------------
# Per-layer costs and the report
# ----------------------------------------------------------------------------------------
@dataclass
class LayerCost:
    """Totals of one product site over every call (all samples): ``dense`` (MACs if every
    input were real-valued), ``macs`` and ``acs`` (what is charged), ``input_sum`` /
    ``input_size`` (so ``rate = input_sum / input_size``, the firing rate of a spike input)."""

    name: str
    op: str  # "linear" | "QK^T" | "AV" | "PV"
    shape: str = ""
    inputs: list = field(default_factory=list)  # input classes seen ("binary", "integer", "float")
    rule: str = ""
    dense: float = 0.0
    macs: float = 0.0
    acs: float = 0.0
    input_sum: float = 0.0
    input_size: float = 0.0
    calls: int = 0

    @property
    def rate(self):
        """Mean input value: the firing rate for a spike input (spikes per neuron per step)."""
        return self.input_sum / self.input_size if self.input_size else 0.0

    def energy_pj(self, e_mac=E_MAC_PJ, e_ac=E_AC_PJ):
        return e_mac * self.macs + e_ac * self.acs

    def add(self, a, fanout, spiking, integer_as_spikes, repeat=1):
        """Charge one input array ``a`` whose every element meets ``fanout`` weights
        (``repeat`` times: an input computed once but standing for T identical time steps)."""
        kind = _classify(a)
        total, n = float(a.sum(dtype="float64")) * repeat, int(a.size) * repeat  # exact integer sums
        dense = float(n) * fanout
        if not spiking:
            key = "dense"
            self.macs += dense
        elif kind == "binary" or (kind == "integer" and integer_as_spikes):
            key = "binary" if kind == "binary" else "integer-ac"
            self.acs += fanout * total
        else:
            key = kind
            self.macs += dense
        if kind not in self.inputs:
            self.inputs.append(kind)
        rules = [r for r in self.rule.split(" | ") if r]
        if RULES[key] not in rules:
            self.rule = " | ".join(rules + [RULES[key]])
        self.dense += dense
        self.input_sum += total
        self.input_size += n
        self.calls += 1

    def add_dense(self, n, fanout, spiking=True):
        """Charge ``n`` real-valued input elements known only by their number (as MACs)."""
        key = "float" if spiking else "dense"
        self.macs += float(n) * fanout
        self.dense += float(n) * fanout
        if "float" not in self.inputs:
            self.inputs.append("float")
        if RULES[key] not in self.rule:
            self.rule = " | ".join([r for r in self.rule.split(" | ") if r] + [RULES[key]])
        self.calls += 1

    def to_dict(self, per=1.0, e_mac=E_MAC_PJ, e_ac=E_AC_PJ):
        return {"layer": self.name, "op": self.op, "shape": self.shape, "input": "+".join(self.inputs),
                "rate": self.rate, "dense_ops": self.dense / per, "macs": self.macs / per,
                "acs": self.acs / per, "energy_uj": self.energy_pj(e_mac, e_ac) / per * 1e-6,
                "rule": self.rule, "calls": self.calls}

    @classmethod
    def from_dict(cls, d, per=1.0):
        return cls(name=d["layer"], op=d["op"], shape=d.get("shape", ""),
                   inputs=[s for s in d.get("input", "").split("+") if s], rule=d.get("rule", ""),
                   dense=d["dense_ops"] * per, macs=d["macs"] * per, acs=d["acs"] * per,
                   input_sum=d["rate"], input_size=1.0, calls=d.get("calls", 0))  # the rate survives, not its parts


@dataclass
class EnergyReport:
    """Operation counts and energy of one model on some samples; figures are per sample.

    ``layers`` (per-sample dicts, forward order), ``total_macs``, ``total_acs``,
    ``total_mj_per_sample``, ``table()`` (text), ``to_json()`` / ``from_json()``.
    """

    model: str
    spiking: bool
    costs: list  # [LayerCost], totals over all samples
    n_samples: int
    tokens: float = 0.0  # token positions counted, all samples
    e_mac_pj: float = E_MAC_PJ
    e_ac_pj: float = E_AC_PJ
    padding: str = "trim"
    integer_as_spikes: bool = False
    T: int | None = None
    neuron_rates: dict = field(default_factory=dict)  # firing rate of every named LIF

    # -- figures per sample ----------------------------------------------------------------
    @property
    def layers(self) -> list:
        per = max(self.n_samples, 1)
        return [c.to_dict(per, self.e_mac_pj, self.e_ac_pj) for c in self.costs]

    @property
    def tokens_per_sample(self) -> float:
        return self.tokens / max(self.n_samples, 1)

    @property
    def total_dense_ops(self) -> float:
        return sum(c.dense for c in self.costs) / max(self.n_samples, 1)

    @property
    def total_macs(self) -> float:
        return sum(c.macs for c in self.costs) / max(self.n_samples, 1)

    @property
    def total_acs(self) -> float:
        return sum(c.acs for c in self.costs) / max(self.n_samples, 1)

    @property
    def total_pj_per_sample(self) -> float:
        return self.e_mac_pj * self.total_macs + self.e_ac_pj * self.total_acs

    @property
    def total_mj_per_sample(self) -> float:
        return self.total_pj_per_sample * 1e-9

    def __getitem__(self, name) -> dict:
        """The per-sample row of layer ``name``."""
        for row in self.layers:
            if row["layer"] == name:
                return row
        raise KeyError(f"no layer {name!r} in the energy report (layers: {[c.name for c in self.costs]})")

    # -- text ------------------------------------------------------------------------------
    def header(self) -> str:
        t = f", T = {self.T}" if self.T else ""
        return (f"{self.model} ({'spiking' if self.spiking else 'non-spiking'}{t}): "
                f"{self.n_samples} sample(s), {self.tokens_per_sample:.1f} tokens/sample (padding={self.padding}), "
                f"45 nm: E_MAC {self.e_mac_pj:g} pJ, E_AC {self.e_ac_pj:g} pJ")

    def table(self, rules=False) -> str:
        """The per-layer table, per sample: ``rules=True`` adds each row's rule."""
        rows = self.layers
        w = max([len("layer")] + [len(r["layer"]) for r in rows] + [len("total")])
        head = (f"{'layer':<{w}}  {'op':<6} {'input':<14} {'rate':>6}  {'dense ops':>15} "
                f"{'MACs':>15} {'ACs':>15} {'energy uJ':>11}")
        lines = [self.header(), head, "-" * len(head)]
        for r in rows:
            spikes = any(k in ("binary", "integer") for k in r["input"].split("+"))
            rate = f"{r['rate']:.3f}" if spikes else "-"  # a firing rate only where spikes / counts come in
            line = (f"{r['layer']:<{w}}  {r['op']:<6} {r['input']:<14} {rate:>6}  {_n(r['dense_ops']):>15} "
                    f"{_n(r['macs']):>15} {_n(r['acs']):>15} {r['energy_uj']:>11.4g}")
            lines.append(line + (f"   {r['rule']}" if rules else ""))
        lines.append("-" * len(head))
        lines.append(f"{'total':<{w}}  {'':<6} {'':<14} {'':>6}  {_n(self.total_dense_ops):>15} "
                     f"{_n(self.total_macs):>15} {_n(self.total_acs):>15} "
                     f"{self.total_pj_per_sample * 1e-6:>11.4g}")
        lines.append(f"energy per sample: {self.total_mj_per_sample:.6g} mJ")
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    # -- JSON ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"model": self.model, "spiking": self.spiking, "n_samples": self.n_samples,
                "tokens_per_sample": self.tokens_per_sample, "T": self.T, "padding": self.padding,
                "integer_as_spikes": self.integer_as_spikes, "e_mac_pj": self.e_mac_pj,
                "e_ac_pj": self.e_ac_pj, "units": "per sample; energy_uj in microjoules",
                "totals": {"dense_ops": self.total_dense_ops, "macs": self.total_macs, "acs": self.total_acs,
                           "energy_mj": self.total_mj_per_sample},
                "layers": self.layers, "neuron_rates": dict(self.neuron_rates)}

    def to_json(self, path=None, indent=2) -> str:
        """The report as JSON text; written to ``path`` too when given."""
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            tmp = f"{os.fspath(path)}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text + "\n")
            os.replace(tmp, path)
        return text

    @classmethod
    def from_dict(cls, d) -> "EnergyReport":
        n = int(d["n_samples"])
        costs = [LayerCost.from_dict(row, per=n) for row in d["layers"]]
        return cls(model=d["model"], spiking=bool(d["spiking"]), costs=costs, n_samples=n,
                   tokens=float(d.get("tokens_per_sample", 0.0)) * n, e_mac_pj=float(d["e_mac_pj"]),
                   e_ac_pj=float(d["e_ac_pj"]), padding=d.get("padding", "trim"),
                   integer_as_spikes=bool(d.get("integer_as_spikes", False)), T=d.get("T"),
                   neuron_rates=dict(d.get("neuron_rates", {})))

    @classmethod
    def from_json(cls, text_or_path) -> "EnergyReport":
        """From JSON text or a path to a JSON file written by ``to_json``."""
        s = os.fspath(text_or_path) if isinstance(text_or_path, os.PathLike) else text_or_path
        if not s.lstrip().startswith("{"):
            with open(s, encoding="utf-8") as f:
                s = f.read()
        return cls.from_dict(json.loads(s))


def _n(x) -> str:
    """An operation count: exact with separators (1 decimal when an average is fractional)."""
    return f"{x:,.0f}" if abs(x - round(x)) < 1e-6 else f"{x:,.1f}"


@dataclass
class Comparison:
    """Student against teacher, per sample."""

    student_mj: float
    teacher_mj: float
    student: str = "student"
    teacher: str = "teacher"
    notes: list = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """student energy / teacher energy (the paper: 0.2782 on average)."""
        return self.student_mj / self.teacher_mj if self.teacher_mj else float("inf")

    def text(self) -> str:
        lines = [f"student {self.student}: {self.student_mj:.6g} mJ/sample",
                 f"teacher {self.teacher}: {self.teacher_mj:.6g} mJ/sample",
                 f"student / teacher = {self.ratio:.4f} ({100 * self.ratio:.2f}% of the teacher's energy)"]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])

    __str__ = text

    def to_dict(self) -> dict:
        return {"student": self.student, "teacher": self.teacher, "student_mj": self.student_mj,
                "teacher_mj": self.teacher_mj, "ratio": self.ratio, "notes": list(self.notes)}


def compare(student: EnergyReport, teacher: EnergyReport) -> Comparison:
    """``student.total_mj_per_sample / teacher.total_mj_per_sample``, with notes on anything
    that makes the two figures unlike (other constants, other tokens per sample, padding)."""
    notes = []
    if (student.e_mac_pj, student.e_ac_pj) != (teacher.e_mac_pj, teacher.e_ac_pj):
        notes.append(f"different energy constants: student E_MAC {student.e_mac_pj}, E_AC {student.e_ac_pj} pJ; "
                     f"teacher E_MAC {teacher.e_mac_pj}, E_AC {teacher.e_ac_pj} pJ")
    if abs(student.tokens_per_sample - teacher.tokens_per_sample) > 1e-9:
        notes.append(f"different tokens per sample: student {student.tokens_per_sample:.2f}, "
                     f"teacher {teacher.tokens_per_sample:.2f} (tokenizers or padding differ)")
    if student.padding != teacher.padding:
        notes.append(f"padding counted differently: student {student.padding}, teacher {teacher.padding}")
    return Comparison(student.total_mj_per_sample, teacher.total_mj_per_sample,
                      student.model, teacher.model, notes)


# ----------------------------------------------------------------------------------------
# Counting: wrap forwards, charge every product
# ----------------------------------------------------------------------------------------
def _spiking_attention(m):
    """SSA (minispike.spiking.attention): children q, k, v producing (T, B, L, D) spikes, ``heads``."""
    return all(isinstance(getattr(m, a, None), Module) for a in ("q", "k", "v")) and isinstance(
        getattr(m, "heads", None), int)


def _softmax_attention(m):
    """BERT's self-attention: Linear children query, key, value and ``num_attention_heads``."""
    return all(isinstance(getattr(m, a, None), Module) for a in ("query", "key", "value")) and isinstance(
        getattr(m, "num_attention_heads", None), int)


class OpCounter:
    """Collects ``LayerCost`` rows while ``count_ops`` is active (see ``count_ops``)."""

    def __init__(self, spiking=True, integer_as_spikes=False):
        self.spiking, self.integer_as_spikes = bool(spiking), bool(integer_as_spikes)
        self.costs: dict[str, LayerCost] = {}
        self._stash: dict[int, object] = {}  # id(child module) -> its last output array
        self._repeat: dict[int, int] = {}  # id(Linear) -> T while it runs once for T identical steps

    def cost(self, name, op, shape="") -> LayerCost:
        c = self.costs.get(name)
        if c is None:
            c = self.costs[name] = LayerCost(name, op, shape)
        return c

    def charge(self, name, op, shape, a, fanout, repeat=1):
        self.cost(name, op, shape).add(a, fanout, self.spiking, self.integer_as_spikes, repeat)

    # -- the attention products ----------------------------------------------------------------
    def spiking_attention(self, name, m, key_mask):
        """``A = Q K^T`` per head (Q: binary spikes -> ACs), then ``A V`` (A: integer counts)."""
        Q, K = self._stash.pop(id(m.q), None), self._stash.pop(id(m.k), None)
        self._stash.pop(id(m.v), None)
        if Q is None or K is None:
            raise RuntimeError(f"energy: the attention {name!r} ran without its q/k outputs being seen")
        T, B, L, D = Q.shape  # (T, B, L, D)
        h = m.heads
        dh = D // h
        qh = Q.reshape(T, B, L, h, dh).transpose(0, 1, 3, 2, 4)  # (T, B, h, L, d_h)
        kh = K.reshape(T, B, L, h, dh).transpose(0, 1, 3, 2, 4)
        if key_mask is not None:  # the keys the product really sees (padded keys zeroed)
            kh = kh * _raw(key_mask).reshape(1, B, 1, L, 1).astype(kh.dtype)
        # Q K^T: each element of Q meets L keys. Q is spikes: a spike adds the L key values.
        self.charge(f"{name}.QK^T", "QK^T", f"{h}x(L x {dh}) @ ({dh} x L)", qh, L)
        # A V: A holds coincidence counts in 0..d_h: not spikes (unless they happen to be 0/1).
        for b in range(B):  # one sample at a time bounds the (T, h, L, L) array
            A = qh[:, b] @ kh[:, b].transpose(0, 1, 3, 2)  # (T, h, L, L)
            self.charge(f"{name}.AV", "AV", f"{h}x(L x L) @ (L x {dh})", A, dh)

    def softmax_attention(self, name, m, out):
        """BERT: ``Q K^T`` and ``P V``; every operand real-valued."""
        Q = self._stash.pop(id(m.query), None)
        self._stash.pop(id(m.key), None)
        self._stash.pop(id(m.value), None)
        if Q is None:
            raise RuntimeError(f"energy: the attention {name!r} ran without its query output being seen")
        H = m.num_attention_heads
        D = Q.shape[-1]  # Q: (B, L, D) or rows flattened (B L, D)
        dh = D // H
        P = _raw(out[1]) if isinstance(out, tuple) and len(out) > 1 else None  # (B, H, L, L) probabilities
        if P is not None and getattr(P, "ndim", 0) == 4:
            B, L = P.shape[0], P.shape[-1]
        elif Q.ndim == 3:
            B, L = Q.shape[0], Q.shape[1]
        else:
            raise RuntimeError(f"energy: cannot tell the sequence length in attention {name!r} "
                               f"(query output {tuple(Q.shape)}, no (B, H, L, L) probabilities returned)")
        self.charge(f"{name}.QK^T", "QK^T", f"{H}x(L x {dh}) @ ({dh} x L)", Q, L)
        if P is not None and tuple(P.shape) == (B, H, L, L):
            self.charge(f"{name}.PV", "PV", f"{H}x(L x L) @ (L x {dh})", P, dh)
        else:  # probabilities not returned: charge by shape (softmax output: real-valued)
            self.cost(f"{name}.PV", "PV", f"{H}x(L x L) @ (L x {dh})").add_dense(B * H * L * L, dh, self.spiking)


def _params(fn):
    try:
        return inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}


def _patch(module, wrapper, undo):
    """Replace ``module.forward`` by ``wrapper(original, *args, **kwargs)`` (undone in reverse)."""
    had = "forward" in vars(module)
    old = vars(module).get("forward")
    original = module.forward

    def forward(*args, **kwargs):
        return wrapper(original, *args, **kwargs)

    module.forward = forward
    undo.append((module, had, old))


@contextlib.contextmanager
def count_ops(model, *, spiking=True, integer_as_spikes=False, exclude=DEFAULT_EXCLUDE, static_once=False):
    """``with count_ops(model) as counter: model(ids, mask)`` -> ``counter.costs`` by layer name.

    Wraps the ``forward`` of every ``nn.Linear`` (charged from its input), every spiking
    self-attention (``Q K^T`` and ``A V`` from the spikes its q / k children produce) and
    every BERT self-attention (``Q K^T``, ``P V``) found by ``model.named_modules()``;
    module paths with a part named in ``exclude`` are skipped. A spiking linear unit called
    with ``static`` (one input repeated over T, computed once by minispike) is charged T
    times, as the network runs it at every step (``static_once=True``: once).
    Fused ops (``SpikeLinear.fused`` and the like) run as their plain compositions meanwhile
    (the same numbers), so that every Linear is seen with its input. The original methods and
    flags are restored on exit, also after an error.
    """
    counter = OpCounter(spiking=spiking, integer_as_spikes=integer_as_spikes)
    undo, fused = [], []

    def excluded(path):
        parts = path.split(".")
        return any(e in parts for e in exclude or ())

    def linear(name, mod):
        def wrapper(orig, x, *a, **k):
            out = orig(x, *a, **k)
            counter.charge(name, "linear", f"{mod.in_features}->{mod.out_features}", _raw(x), mod.out_features,
                           repeat=counter._repeat.get(id(mod), 1))
            return out
        return wrapper

    def spike_linear(mod):
        # SpikeLinear(x, static): with ``static`` (B, L, D_in), the input x is that one array
        # repeated over T and minispike runs ``fc`` once; the network (and the paper) runs it
        # at every step, so its charge is multiplied by T (unless static_once).
        def wrapper(orig, x, *a, **k):
            static = a[0] if a else k.get("static")
            if static is None or static_once:
                return orig(x, *a, **k)
            counter._repeat[id(mod.fc)] = int(x.shape[0])  # (T, B, L, D_in)
            try:
                return orig(x, *a, **k)
            finally:
                counter._repeat.pop(id(mod.fc), None)
        return wrapper

    def stash(mod):
        def wrapper(orig, *a, **k):
            out = orig(*a, **k)
            counter._stash[id(mod)] = _raw(out[0] if isinstance(out, tuple) else out)
            return out
        return wrapper

    def ssa(name, mod):
        def wrapper(orig, x, *a, **k):
            key_mask = a[0] if a else k.get("key_mask")
            out = orig(x, *a, **k)
            counter.spiking_attention(name, mod, key_mask)
            return out
        return wrapper

    def bert_attn(name, mod):
        def wrapper(orig, *a, **k):
            out = orig(*a, **k)
            counter.softmax_attention(name, mod, out)
            return out
        return wrapper

    try:
        for path, mod in list(model.named_modules()):
            if getattr(mod, "fused", False):  # count the plain composition: its Linear layers are the ones
                fused.append(mod)  # wrapped here, and it gives the fused ops' numbers exactly
                mod.fused = False
            if excluded(path):
                continue
            if isinstance(mod, Linear):
                _patch(mod, linear(path or "linear", mod), undo)
            if isinstance(getattr(mod, "fc", None), Linear) and "static" in _params(type(mod).forward):
                _patch(mod, spike_linear(mod), undo)
            if _spiking_attention(mod):
                for child in (mod.q, mod.k, mod.v):
                    _patch(child, stash(child), undo)
                _patch(mod, ssa(path or "attn", mod), undo)
            elif _softmax_attention(mod):
                for child in (mod.query, mod.key, mod.value):
                    _patch(child, stash(child), undo)
                _patch(mod, bert_attn(path or "attn", mod), undo)
        yield counter
    finally:
        for mod, had, old in reversed(undo):
            if had:
                mod.forward = old
            else:
                del mod.forward
        for mod in fused:
            mod.fused = True
        counter._stash.clear()


# ----------------------------------------------------------------------------------------
# The estimate
# ----------------------------------------------------------------------------------------
def _has_neurons(model):
    from .spiking.lif import LIF
    return any(isinstance(m, LIF) or getattr(m, "_is_neuron", False) for _, m in model.named_modules())


def _default_forward(model, ids, mask):
    return model(ids, mask)


def _samples(input_ids, attention_mask, padding):
    """Yield ``(ids, mask, tokens)`` runs: each sample trimmed to its real tokens, or the batch."""
    ids = _raw(input_ids)
    mask = _raw(attention_mask)
    if padding == "count" or mask is None:
        B, L = ids.shape[0], ids.shape[1]  # (B, L)
        yield ids, mask, float(B * L), int(B)
        return
    for b in range(ids.shape[0]):
        keep = mask[b] != 0  # (L,) real tokens (any padding side)
        row = ids[b][keep].reshape(1, -1)  # (1, n)
        n = int(row.shape[1])
        if n == 0:
            continue
        yield row, mask[b][keep].reshape(1, -1), float(n), 1


def estimate_energy(model, input_ids, attention_mask=None, spiking=None, *, padding="trim",
                    integer_as_spikes=False, e_mac_pj=E_MAC_PJ, e_ac_pj=E_AC_PJ,
                    exclude=DEFAULT_EXCLUDE, static_once=False, forward=None, name=None) -> EnergyReport:
    """Run ``model`` on a batch with counting on and return the per-sample ``EnergyReport``.

    ``spiking``: charge binary inputs as ACs (``None``: iff the model has LIF neurons; the
    teacher gets ``False``: all MACs). ``padding``: ``"trim"`` counts real tokens only (every
    sample runs alone at its length), ``"count"`` counts every position of the batch as given.
    ``integer_as_spikes``: charge non-negative integer inputs (residual sums, attention
    counts) as that many spikes (ACs) instead of MACs. ``static_once``: charge the first
    layers, whose input (the encoded embedding) is the same at every step, once instead of
    T times. ``forward(model, ids, mask)``: how to
    call the model (default ``model(ids, mask)``). The model runs in eval mode under
    ``no_grad``; its training flags are restored afterwards.
    """
    if padding not in ("trim", "count"):
        raise ValueError(f"padding must be 'trim' or 'count', got {padding!r}")
    spiking = _has_neurons(model) if spiking is None else bool(spiking)
    forward = forward or _default_forward
    modes = [(m, m.training) for _, m in model.named_modules()]
    model.eval()
    n_samples, tokens = 0, 0.0
    rates = {}
    try:
        with contextlib.ExitStack() as stack:
            rec = None
            if spiking:
                from .spiking.lif import record
                rec = stack.enter_context(record(keep=False))
            counter = stack.enter_context(count_ops(model, spiking=spiking, integer_as_spikes=integer_as_spikes,
                                                    exclude=exclude, static_once=static_once))
            stack.enter_context(no_grad())
            for ids, mask, n_tok, n in _samples(input_ids, attention_mask, padding):
                forward(model, ids, mask)
                n_samples += n
                tokens += n_tok
            if rec is not None:
                rates = rec.firing_rates()
    finally:
        for m, mode in modes:
            m.training = mode
    if n_samples == 0:
        raise ValueError("estimate_energy: no sample with a real token (attention_mask is all zero)")
    cfg = getattr(model, "config", None)
    return EnergyReport(model=name or type(model).__name__, spiking=spiking, costs=list(counter.costs.values()),
                        n_samples=n_samples, tokens=tokens, e_mac_pj=float(e_mac_pj), e_ac_pj=float(e_ac_pj),
                        padding=padding, integer_as_spikes=bool(integer_as_spikes),
                        T=getattr(cfg, "T", None) if spiking else None, neuron_rates=rates)


# ----------------------------------------------------------------------------------------
# Closed form for BERT (a cross-check of the counted teacher, and the paper's scale)
# ----------------------------------------------------------------------------------------
def bert_macs(length, hidden=768, layers=12, intermediate=3072, num_labels=2, pooler=True) -> dict:
    """MACs of one BERT forward on ``length`` tokens, by part.

        per layer:  Q, K, V, O   4 L D^2       FFN  2 L D I       Q K^T, P V   2 L^2 D
        pooler D^2 (the [CLS] row only), classifier D C
    """
    L, D, I = int(length), int(hidden), int(intermediate)
    parts = {"linear": layers * L * (4 * D * D + 2 * D * I), "attention": layers * 2 * L * L * D,
             "pooler": D * D if pooler else 0, "classifier": D * num_labels if num_labels else 0}
    parts["total"] = sum(parts.values())
    return parts
