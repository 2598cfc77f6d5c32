"""Pictures of what the spiking network does (matplotlib, an optional extra).

Every function draws one figure on matplotlib's Agg canvas (no pyplot, no window, no global
state), writes ``<out_dir>/<name>.png`` (and ``.svg`` with ``svg=True``) of exactly
``figsize x dpi`` pixels, and returns the PNG path:

    spike_raster(spikes, ...)        S[t, l, n] of one sentence: neurons x (token, time step)
    membrane_traces(H, S, ...)       H[t] against V_th; spike (^) and reset (V -> V_reset) moments
    firing_rates(rates, ...)         spikes per neuron per time step, one bar per LIF group
    attention_map(Q, K, ...)         mean over t of Q_h K_h^T for one head (SpikeBERT's Figure 4)
    training_curves(log.jsonl, ...)  loss / accuracy / firing rate / learning rate against step
    compare_runs({label: log}, ...)  one evaluated metric of several runs against step, on one axis
    energy_breakdown(report, ...)    MAC and AC energy per layer (uJ per sample), its counting rule in the title
    compare_maps({title: A}, ...)    matrices side by side on one shared colour scale (or each annotated)
    sentence_figures(model, ids)     the first four for one sentence, from a traced forward pass

Every axis is labelled, every energy figure names the counting rule it was made with, and the
layout is matplotlib's constrained one (no label cut at the figure's edge).

Arrays come from the model's traces (``minispike.spiking.record``); they are copied to the
host with ``backend.to_numpy`` first: plotting is host-side work, so NumPy is used here
(each such line is marked ``# host:``).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np  # host: plotting works on host copies made by backend.to_numpy

from . import backend
from .rundir import read_log  # the one reader of log.jsonl: a torn last line is reported and skipped

__all__ = ["spike_raster", "membrane_traces", "firing_rates", "attention_map", "training_curves",
           "compare_runs", "energy_breakdown", "compare_maps", "sentence_figures", "read_log", "counting_rule"]

DEFAULT_DPI = 100


def _figure(figsize, dpi):
    try:
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("minispike.plot needs matplotlib: pip install 'minispike[plot]' "
                          "(or pip install matplotlib)") from e
    return Figure(figsize=figsize, dpi=dpi, layout="constrained")


def _fit(fig, text, fontsize=12.0, share=1.0):
    """``text`` wrapped so that each line fits ``share`` of the figure's width (no clipped title).

    A line of DejaVu Sans averages about 0.6 em per character; existing line breaks are kept.
    """
    import textwrap
    chars = max(20, int(share * fig.get_figwidth() * 72 / (0.6 * fontsize)))
    return "\n".join(textwrap.fill(line, chars) for line in str(text).split("\n"))


def _save(fig, out_dir, name, dpi, svg):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.savefig(path, dpi=dpi, format="png")  # no bbox_inches="tight": the size is figsize x dpi
    if svg:
        fig.savefig(out / f"{name}.svg", format="svg")
    return path


def _host(x):
    """A host NumPy copy of an array or Tensor (the explicit device -> host move)."""
    if hasattr(x, "requires_grad"):
        x = x.data
    return backend.to_numpy(x)


def _safe(name):
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


def _sentence(a, sample):
    """(T, B, L, N) -> (T, L, N) of one sample; (T, L, N) is taken as is."""
    a = _host(a)
    if a.ndim == 4:
        return a[:, sample]
    if a.ndim == 3:
        return a
    raise ValueError(f"expected a (T, B, L, N) or (T, L, N) trace, got shape {a.shape}")


def _token_axis(ax, L, T, tokens):
    """Mark token boundaries on an axis of L x T time steps and label each token."""
    for l in range(1, L):
        ax.axvline(l * T - 0.5, color="tab:blue", lw=0.6, alpha=0.6)
    labels = list(tokens)[:L] if tokens is not None else [str(l) for l in range(L)]
    ax.set_xticks([l * T + (T - 1) / 2 for l in range(L)])
    ax.set_xticklabels(labels, rotation=60 if L > 8 else 0, fontsize=8 if L > 16 else 9)


# ----------------------------------------------------------------------------------------
# Spikes and membranes
# ----------------------------------------------------------------------------------------
def spike_raster(spikes, out_dir, *, name="layer", sample=0, tokens=None, neurons=64, svg=False,
                 figsize=(10, 5), dpi=DEFAULT_DPI, filename=None):
    """Raster of one layer for one sentence: a dot where neuron ``n`` of token ``l`` fired at step ``t``.

    ``spikes``: (T, B, L, N) or (T, L, N). x: the L tokens, T steps each (token boundaries
    drawn, tokens labelled); y: the first ``neurons`` neurons (an int) or the given indices.
    """
    S = _sentence(spikes, sample)  # (T, L, N)
    T, L, N = S.shape
    idx = list(range(min(int(neurons), N))) if isinstance(neurons, int) else [int(i) for i in neurons]
    grid = S[:, :, idx].transpose(2, 1, 0).reshape(len(idx), L * T)  # (neurons, L*T): token-major time
    fig = _figure(figsize, dpi)
    ax = fig.add_subplot()
    ys, xs = grid.nonzero()
    ax.scatter(xs, ys, s=max(4.0, 400.0 / max(len(idx), 1)), marker="|", color="black", linewidths=1.0)
    ax.set_xlim(-0.5, L * T - 0.5)
    ax.set_ylim(len(idx) - 0.5, -0.5)
    _token_axis(ax, L, T, tokens)
    rate = float(S.mean()) if S.size else 0.0
    ax.set_title(_fit(fig, f"Spike raster: {name} (sample {sample}; {int(S.sum())} spikes, "
                           f"rate {rate:.3f} /neuron/step)"))
    ax.set_xlabel(f"token (each spans T = {T} time steps)")
    ax.set_ylabel(f"neuron index (first {len(idx)} of {N})" if isinstance(neurons, int) else "neuron index")
    return _save(fig, out_dir, filename or f"raster_{_safe(name)}", dpi, svg)


def membrane_traces(membrane, spikes, out_dir, *, threshold=1.0, v_reset=0.0, name="layer", sample=0,
                    token=0, neurons=4, svg=False, figsize=(8, 6), dpi=DEFAULT_DPI, filename=None):
    """Membrane potential of a few neurons of one token over the T steps, against V_th.

    ``membrane`` is H[t], the potential after charging and before firing (the LIF trace);
    a spike (^) is drawn where H[t] >= V_th, then the reset to ``v_reset`` (hard; ``None``:
    soft, H - V_th) as a vertical drop. ``neurons``: how many (the most active first, then a
    silent one) or a list of indices.
    """
    H = _sentence(membrane, sample)[:, token]  # (T, N)
    S = _sentence(spikes, sample)[:, token]  # (T, N)
    T, N = H.shape
    if isinstance(neurons, int):
        order = (-S.sum(axis=0)).argsort(kind="stable")
        k = max(1, min(int(neurons), N))
        idx = [int(i) for i in order[:k]]
        silent = [int(i) for i in order if S[:, i].sum() == 0]
        if silent and k > 1 and silent[0] not in idx:
            idx[-1] = silent[0]
    else:
        idx = [int(i) for i in neurons]
    fig = _figure(figsize, dpi)
    axes = fig.subplots(len(idx), 1, sharex=True, squeeze=False)[:, 0]
    for ax, n in zip(axes, idx):
        v_prev = 0.0 if v_reset is None else float(v_reset)
        xs, ys = [-1.0], [v_prev]
        for t in range(T):
            h, s = float(H[t, n]), bool(S[t, n] > 0)
            xs.append(t)
            ys.append(h)  # charge: V[t-1] -> H[t]
            if s:
                v = (h - threshold) if v_reset is None else float(v_reset)
                xs.append(t)
                ys.append(v)  # reset at the same moment
                ax.plot([t, t], [h, v], color="tab:red", ls=":", lw=1.2)
                ax.plot([t], [h], marker="^", color="tab:red", ms=8, ls="none")
            else:
                v = h
            v_prev = v
        ax.plot(xs, ys, color="tab:blue", lw=1.5, marker="o", ms=3)
        ax.axhline(threshold, color="black", ls="--", lw=1)
        ax.set_ylabel(f"neuron {n} ({int(S[:, n].sum())} sp.)\nV (a.u.)", fontsize=9)
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi + 0.25 * (hi - lo))  # headroom for the markers and the legend
    axes[0].plot([], [], color="black", ls="--", label=f"threshold V_th = {threshold:g}")
    axes[0].plot([], [], marker="^", color="tab:red", ls=":", label="spike, then reset")
    axes[0].legend(loc="upper left", fontsize=8, ncols=2)
    axes[-1].set_xlabel("time step t (t = -1: resting potential)")
    axes[-1].set_xticks(list(range(-1, T)))
    fig.suptitle(_fit(fig, f"Membrane potential: {name}, token {token} of sample {sample}"))
    return _save(fig, out_dir, filename or f"membrane_{_safe(name)}", dpi, svg)


def firing_rates(rates, out_dir, *, title="Firing rate per layer", svg=False, figsize=(8, 6), dpi=DEFAULT_DPI,
                 filename="firing_rates"):
    """One horizontal bar per LIF group: spikes per neuron per time step (``{name: rate}``)."""
    names = list(rates)
    vals = [float(rates[k]) for k in names]
    fig = _figure(figsize, dpi)
    ax = fig.add_subplot()
    y = np.arange(len(names))  # host:
    ax.barh(y, vals, color="tab:orange")
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=7 if len(names) > 20 else 9)
    ax.invert_yaxis()
    for yi, v in zip(y, vals):
        ax.text(v, yi, f" {v:.3f}", va="center", fontsize=7)
    ax.set_xlim(0, max(vals + [0.01]) * 1.2)
    ax.set_xlabel("firing rate (spikes per neuron per time step)")
    ax.set_ylabel("LIF group (forward order)")
    mean = sum(vals) / len(vals) if vals else 0.0
    ax.set_title(_fit(fig, f"{title} (mean {mean:.3f})"))
    return _save(fig, out_dir, filename, dpi, svg)


def attention_map(q, k, out_dir, *, heads, head=0, sample=0, tokens=None, name="attention", svg=False,
                  figsize=(7, 6), dpi=DEFAULT_DPI, filename=None):
    """Spiking attention of one head: ``mean_t Q_h[t] K_h[t]^T`` (L x L), no softmax.

    ``q``, ``k``: (T, B, L, D) or (T, L, D) spikes of the attention's q / k LIF groups; entry
    (i, j) counts the feature positions where query token i and key token j both spiked.
    """
    Q, K = _sentence(q, sample), _sentence(k, sample)  # (T, L, D)
    T, L, D = Q.shape
    dh = D // heads
    qh = Q[:, :, head * dh:(head + 1) * dh]  # (T, L, d_h)
    kh = K[:, :, head * dh:(head + 1) * dh]
    A = (qh @ kh.transpose(0, 2, 1)).mean(axis=0)  # (L, L)
    fig = _figure(figsize, dpi)
    ax = fig.add_subplot()
    im = ax.imshow(A, cmap="viridis", aspect="equal", interpolation="nearest")
    fig.colorbar(im, ax=ax, label="coincident spikes (mean over T)")
    labels = list(tokens)[:L] if tokens is not None else [str(i) for i in range(L)]
    ax.set_xticks(range(L))
    ax.set_xticklabels(labels, rotation=90, fontsize=8)
    ax.set_yticks(range(L))
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel("key token")
    ax.set_ylabel("query token")
    ax.set_title(_fit(fig, f"Spiking attention: {name}, head {head} (Q K^T, d_h = {dh}, T = {T})", share=0.8))
    return _save(fig, out_dir, filename or f"attention_{_safe(name)}_head{head}", dpi, svg)


# ----------------------------------------------------------------------------------------
# Training and energy
# ----------------------------------------------------------------------------------------
X_KEYS = ("step", "global_step", "iteration", "iter", "epoch")
GROUPS = (("loss", ("loss",), "loss"),
          ("accuracy", ("acc", "f1", "mcc"), "accuracy"),
          ("firing rate", ("rate", "firing", "spike"), "spikes per neuron per step"),
          ("learning rate", ("lr", "learning_rate"), "learning rate"))


def _records(log):
    """A log given as a path to log.jsonl (read) or as records already in memory."""
    return read_log(log) if isinstance(log, (str, os.PathLike)) else list(log)


LOSS_WORDS = {"loss", "kl", "mse", "ce", "nll"}
# Run bookkeeping, not curves: clocks, counters and the end-of-run summary (fit's "start"/"end" records).
BOOKKEEPING_WORDS = {"time", "elapsed", "seconds", "wall", "tokens", "samples", "steps", "step", "position",
                     "batches", "best"}
CURVE_EVENTS = ("train", "eval")  # a log with "event" fields: only these records hold curves


def _is_bookkeeping(key):
    """``total_steps``, ``wall_seconds``, ``best_step``, ``batches_per_epoch``, ``time``: not curves."""
    words = set(key.lower().replace(".", "_").replace("/", "_").split("_"))
    return bool(words & BOOKKEEPING_WORDS) or key in X_KEYS


def _group(key):
    low = key.lower()
    if LOSS_WORDS & set(low.replace(".", "_").replace("/", "_").split("_")):
        return "loss", "loss"
    for title, needles, unit in GROUPS:
        if title == "learning rate":
            if low == "lr" or low.endswith("_lr") or "learning_rate" in low:
                return title, unit
        elif any(s in low for s in needles):
            return title, unit
    return "other", "value"


def training_curves(log, out_dir, *, keys=None, x=None, title=None, svg=False, figsize=(9, 8), dpi=DEFAULT_DPI,
                    filename="training_curves"):
    """Every numeric key of a run's log against the step, one panel per kind of quantity.

    ``log``: a path to log.jsonl or a list of dicts. ``x``: the x key (default: the first of
    step / global_step / iteration / iter / epoch present, else the line number). Keys whose
    name holds loss, acc (f1, mcc), rate (firing, spike), lr land in their own panel. Run
    bookkeeping is never drawn (unless named in ``keys``): records whose ``event`` is not
    train / eval (fit's start, resume and end summaries), and keys such as ``total_steps``,
    ``wall_seconds``, ``best_step``, ``time`` (``_is_bookkeeping``).
    """
    records = _records(log)
    if keys is None:
        records = [r for r in records if r.get("event", "train") in CURVE_EVENTS]
    if x is None:
        x = next((k for k in X_KEYS if any(k in r for r in records)), None)
    series = {}
    for i, r in enumerate(records):
        xv = r.get(x, i) if x else i
        if not isinstance(xv, (int, float)) or isinstance(xv, bool):
            continue
        for k, v in r.items():
            if k == x or (keys is not None and k not in keys):
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                continue
            if keys is None and _is_bookkeeping(k):
                continue
            series.setdefault(k, ([], []))
            series[k][0].append(xv)
            series[k][1].append(v)
    panels = {}
    for k in series:
        panels.setdefault(_group(k), []).append(k)
    order = [g for g in [(t, u) for t, _, u in GROUPS] + [("other", "value")] if g in panels]
    fig = _figure(figsize, dpi)
    if not order:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no numeric series in the log", ha="center", va="center")
        ax.set_xlabel(x or "line")
        ax.set_ylabel("value")
        ax.set_title(_fit(fig, title or "Training curves"))
        return _save(fig, out_dir, filename, dpi, svg)
    axes = fig.subplots(len(order), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (group, unit) in zip(axes, order):
        for k in panels[(group, unit)]:
            xs, ys = series[k]
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, label=k)
        if group == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        ax.set_ylabel(f"{group}\n({unit})" if unit != group else group, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    axes[-1].set_xlabel(x or "log line")
    fig.suptitle(_fit(fig, title or "Training curves"))
    return _save(fig, out_dir, filename, dpi, svg)


def compare_runs(logs, out_dir, *, metric="accuracy", title=None, svg=False, figsize=(8, 5), dpi=DEFAULT_DPI,
                 filename="compare"):
    """The evaluations (``"event": "eval"`` records) of several runs: ``metric`` against step.

    ``logs``: {label: path to log.jsonl or list of records}. A run without that metric is an
    error naming the run and the metrics it has.
    """
    fig = _figure(figsize, dpi)
    ax = fig.add_subplot()
    for label, log in logs.items():
        records = _records(log)
        evals = [r for r in records if r.get("event") == "eval" and isinstance(r.get(metric), (int, float))]
        if not evals:
            have = sorted({k for r in records if r.get("event") == "eval" for k in r} - {"event", "step", "time"})
            raise ValueError(f"{label}: no evaluation of {metric!r} in its log (it has {have or 'no evaluations'})")
        ax.plot([r["step"] for r in evals], [r[metric] for r in evals], marker="o", ms=3, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(_fit(fig, title or f"{metric} during training"))
    return _save(fig, out_dir, filename, dpi, svg)


def _report_dict(report):
    if isinstance(report, dict):
        return report
    if hasattr(report, "to_dict"):
        return report.to_dict()
    with open(report, encoding="utf-8") as f:
        return json.load(f)


def counting_rule(report) -> str:
    """The counting rule an energy report was made with, in words (for titles and captions).

    Read from the report's own settings (``spiking``, ``integer_as_spikes``, ``padding``),
    the rules of ``minispike.energy`` (docs/energy.md).
    """
    d = _report_dict(report)
    if not d.get("spiking", True):
        rule = "every product a MAC (no spikes)"
    elif d.get("integer_as_spikes"):
        rule = "spikes and integer counts as ACs (integer_as_spikes), real inputs as MACs"
    else:
        rule = "strict: only 0/1 spike inputs as ACs, every non-binary input (residual sums) as MACs"
    tokens = "real tokens only" if d.get("padding", "trim") == "trim" else "padding counted"
    return f"{rule}; {tokens}"


def energy_breakdown(report, out_dir, *, teacher=None, top=None, svg=False, figsize=(10, 7), dpi=DEFAULT_DPI,
                     filename="energy"):
    """Energy per layer per sample, split into MAC (4.6 pJ each) and AC (0.9 pJ each) parts.

    ``report``: an ``EnergyReport``, its ``to_dict()`` or a path to its JSON. ``teacher``
    (same forms): its total goes into the title with the ratio. ``top``: only the ``top``
    most expensive layers (the rest summed in one bar). The title names the counting rule
    (``counting_rule``): the same student costs several times more under the strict rule
    (docs/results.md).
    """
    d = _report_dict(report)
    e_mac, e_ac = float(d["e_mac_pj"]), float(d["e_ac_pj"])
    rows = [(r["layer"], r["macs"] * e_mac * 1e-6, r["acs"] * e_ac * 1e-6) for r in d["layers"]]  # uJ
    if top is not None and len(rows) > top:
        keep = sorted(rows, key=lambda r: -(r[1] + r[2]))[:top]
        kept = {r[0] for r in keep}
        rest = [r for r in rows if r[0] not in kept]
        rows = [r for r in rows if r[0] in kept] + [(f"{len(rest)} others", sum(r[1] for r in rest),
                                                    sum(r[2] for r in rest))]
    names = [r[0] for r in rows]
    mac = np.array([r[1] for r in rows])  # host:
    ac = np.array([r[2] for r in rows])  # host:
    fig = _figure(figsize, dpi)
    ax = fig.add_subplot()
    y = np.arange(len(rows))  # host:
    ax.barh(y, mac, color="tab:red", label=f"MAC energy ({e_mac:g} pJ each)")
    ax.barh(y, ac, left=mac, color="tab:green", label=f"AC energy ({e_ac:g} pJ each)")
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=7 if len(rows) > 25 else 9)
    ax.invert_yaxis()
    ax.set_xlabel("energy per sample (uJ)")
    ax.set_ylabel("layer (forward order)")
    total = d["totals"]["energy_mj"]
    lines = [f"Energy per layer (45 nm): {d['model']}, {total:.4g} mJ per sample",
             f"counting rule: {counting_rule(d)}"]
    if teacher is not None:
        td = _report_dict(teacher)
        tt = td["totals"]["energy_mj"]
        if tt:
            lines.append(f"{td['model']}: {tt:.4g} mJ ({counting_rule(td)}); ratio {total / tt:.3f}")
    ax.set_title(_fit(fig, "\n".join(lines), fontsize=9, share=0.75), fontsize=9)  # the axes sits right of long labels
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, out_dir, filename, dpi, svg)


def compare_maps(maps, out_dir, *, label, shared=True, xlabel="column", ylabel="row", ticks=None, title=None,
                 svg=False, figsize=None, dpi=DEFAULT_DPI, filename="maps"):
    """Matrices side by side, one panel each (``{panel title: 2-D array}``).

    ``shared=True``: one colour scale for all (the min and max over every map, one colour bar
    labelled ``label``), so equal colours mean equal values across panels. ``shared=False``
    (maps in different units, e.g. softmax probabilities beside spike counts): each panel
    gets its own colour bar, labelled ``label[panel title]`` (a dict) or ``label``, and the
    title says that the scales differ. ``ticks``: labels for rows and columns (tokens).
    """
    arrays = {k: _host(v) for k, v in maps.items()}
    if not arrays:
        raise ValueError("compare_maps: no maps given")
    n = len(arrays)
    fig = _figure(figsize or (4.6 * n + 1.2, 4.6), dpi)
    axes = fig.subplots(1, n, squeeze=False)[0]
    lo = min(float(a.min()) for a in arrays.values())
    hi = max(float(a.max()) for a in arrays.values())
    im = None
    for ax, (name, a) in zip(axes, arrays.items()):
        scale = dict(vmin=lo, vmax=hi) if shared else {}
        im = ax.imshow(a, cmap="viridis", aspect="equal", interpolation="nearest", **scale)
        if not shared:
            fig.colorbar(im, ax=ax, label=label[name] if isinstance(label, dict) else label, shrink=0.8)
        if ticks is not None:
            ax.set_xticks(range(a.shape[1]))
            ax.set_xticklabels(list(ticks)[:a.shape[1]], rotation=90, fontsize=8)
            ax.set_yticks(range(a.shape[0]))
            ax.set_yticklabels(list(ticks)[:a.shape[0]], fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(_fit(fig, name, fontsize=10, share=0.9 / len(arrays)), fontsize=10)
    if shared:
        fig.colorbar(im, ax=list(axes), label=label, shrink=0.8)
    note = "one colour scale for all panels" if shared else "each panel has its own colour scale"
    fig.suptitle(_fit(fig, f"{title} ({note})" if title else note.capitalize()))
    return _save(fig, out_dir, filename, dpi, svg)


# ----------------------------------------------------------------------------------------
# One sentence through a model
# ----------------------------------------------------------------------------------------
def sentence_figures(model, input_ids, out_dir, *, attention_mask=None, tokens=None, layer=None, block=0,
                     head=0, svg=False, dpi=DEFAULT_DPI):
    """Run ``model`` (a SpikeBert) on one sentence with traces on and draw its pictures.

    Writes the spike raster and membrane traces of ``layer`` (a LIF name, default
    ``blocks.<block>.mlp.up.lif``), the firing rate of every LIF group, and the attention map
    of ``head`` in block ``block``. Returns ``{figure: path}``.
    """
    from .spiking.lif import LIF, record
    from .tensor import no_grad

    ids = input_ids.data if hasattr(input_ids, "requires_grad") else input_ids
    ids = ids[:1] if getattr(ids, "ndim", 1) == 2 else ids
    mask = attention_mask[:1] if attention_mask is not None else None
    was = [(m, m.training) for _, m in model.named_modules()]
    model.eval()
    try:
        with no_grad(), record() as rec:
            model(ids, mask)
    finally:
        for m, t in was:
            m.training = t
    if mask is not None:  # draw the real tokens only
        n = int(_host(mask)[0].sum())
    else:
        n = int(ids.shape[-1])
    tokens = list(tokens)[:n] if tokens is not None else None
    layer = layer or f"blocks.{block}.mlp.up.lif"
    if layer not in rec.traces:
        raise KeyError(f"no LIF named {layer!r} ran (named: {', '.join(rec.names())})")
    tr = rec[layer]
    neuron = next((m for _, m in model.named_modules() if isinstance(m, LIF) and m.name == layer), None)
    vth = float(getattr(neuron, "v_threshold", 1.0)) if neuron is not None else 1.0
    vreset = getattr(neuron, "v_reset", 0.0) if neuron is not None else 0.0
    out = {"raster": spike_raster(_host(tr["spikes"])[:, :, :n], out_dir, name=layer, tokens=tokens, svg=svg, dpi=dpi),
           "membrane": membrane_traces(_host(tr["membrane"])[:, :, :n], _host(tr["spikes"])[:, :, :n], out_dir,
                                       threshold=vth, v_reset=vreset, name=layer, svg=svg, dpi=dpi),
           "firing_rates": firing_rates(rec.firing_rates(), out_dir, svg=svg, dpi=dpi)}
    attn = f"blocks.{block}.attn"
    if f"{attn}.q.lif" in rec.traces and f"{attn}.k.lif" in rec.traces:
        heads = model.blocks[block].attn.heads
        out["attention"] = attention_map(_host(rec[f"{attn}.q.lif"]["spikes"])[:, :, :n],
                                         _host(rec[f"{attn}.k.lif"]["spikes"])[:, :, :n], out_dir,
                                         heads=heads, head=head, tokens=tokens, name=attn, svg=svg, dpi=dpi)
    return out
