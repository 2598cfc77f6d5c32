"""Every picture renders on the Agg canvas to a real PNG of the size asked for, and is readable:
every axis labelled, nothing cut at the figure's edge, energy figures naming their counting rule,
maps side by side on one colour scale, bookkeeping not drawn as curves (checked on the Figure objects)."""
import json
import struct

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from minispike import backend, plot  # noqa: E402

DPI = 40


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def check(path, figsize, dpi=DPI):
    assert path.is_file() and path.suffix == ".png"
    assert png_size(path) == (round(figsize[0] * dpi), round(figsize[1] * dpi))


@pytest.fixture
def figures(monkeypatch):
    """Every Figure a plot function saves during the test, in order."""
    saved = []
    real_save = plot._save

    def keep(fig, *args, **kwargs):
        saved.append(fig)
        return real_save(fig, *args, **kwargs)

    monkeypatch.setattr(plot, "_save", keep)
    return saved


def is_colorbar(ax):
    return hasattr(ax, "_colorbar")


def assert_readable(fig):
    """Every axis labelled (a shared x axis by its bottom panel, a colour bar by its label) and
    the drawn figure needing no more room than it has (what bbox_inches="tight" would add)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    for ax in fig.axes:
        if is_colorbar(ax):
            assert ax.get_ylabel() or ax.get_xlabel(), "a colour bar without a label"
            continue
        assert ax.get_ylabel(), f"panel {ax.get_title()!r} has no y label"
        siblings = ax.get_shared_x_axes().get_siblings(ax)
        assert any(a.get_xlabel() for a in siblings), f"panel {ax.get_title()!r} has no x label"
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    tight = fig.get_tightbbox(fig.canvas.get_renderer())  # inches, every drawn artist
    w, h = fig.get_size_inches()
    tol = 1.0 / fig.dpi  # one pixel
    assert tight.x0 >= -tol and tight.y0 >= -tol and tight.x1 <= w + tol and tight.y1 <= h + tol, \
        f"something is cut at the edge: drawn extent {tight} in a {w} x {h} in figure"


def plotted_labels(fig):
    return sorted(line.get_label() for ax in fig.axes for line in ax.get_lines()
                  if not line.get_label().startswith("_"))


def spikes_and_membrane(T=4, B=2, L=5, N=12, seed=0):
    rng = np.random.default_rng(seed)
    H = rng.normal(0.6, 0.5, size=(T, B, L, N))
    return (H >= 1.0).astype(np.float32), H


def test_spike_raster(tmp_path, figures):
    S, _ = spikes_and_membrane()
    path = plot.spike_raster(S, tmp_path, name="blocks.0.mlp.up.lif", tokens="a b c d e".split(), dpi=DPI,
                             figsize=(6, 4), svg=True)
    check(path, (6, 4))
    assert (tmp_path / "raster_blocks.0.mlp.up.lif.svg").read_text().lstrip().startswith("<?xml")
    assert_readable(figures[-1])


def test_membrane_traces_on_the_strict_backend(tmp_path, strict, figures):
    S, H = spikes_and_membrane()
    path = plot.membrane_traces(strict.asarray(H), strict.asarray(S), tmp_path, threshold=1.0, neurons=3,
                                dpi=DPI, figsize=(5, 5))
    check(path, (5, 5))
    soft = plot.membrane_traces(H[:, 0], S[:, 0], tmp_path, v_reset=None, neurons=[0, 1], dpi=DPI,
                                figsize=(5, 4), filename="soft")
    check(soft, (5, 4))
    for fig in figures:
        assert_readable(fig)


def test_firing_rates(tmp_path, figures):
    rates = {f"blocks.{i}.attn.q.lif": 0.05 * i for i in range(6)}
    check(plot.firing_rates(rates, tmp_path, dpi=DPI, figsize=(6, 5)), (6, 5))
    assert_readable(figures[-1])


def test_attention_map(tmp_path, figures):
    S, _ = spikes_and_membrane(N=16)
    path = plot.attention_map(S, S[::-1], tmp_path, heads=4, head=1, tokens="a b c d e".split(), dpi=DPI,
                              figsize=(5, 5))
    check(path, (5, 5))
    assert_readable(figures[-1])


def test_maps_side_by_side_share_one_colour_scale(tmp_path, figures):
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0, 1, (5, 5)), rng.uniform(2, 7, (5, 5))
    check(plot.compare_maps({"first": a, "second": b}, tmp_path, label="coincident spikes", ticks="abcde",
                            xlabel="key token", ylabel="query token", dpi=DPI, figsize=(9, 4)), (9, 4))
    fig = figures[-1]
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert len(images) == 2
    assert all(im.get_clim() == (a.min(), b.max()) for im in images), [im.get_clim() for im in images]
    assert sum(is_colorbar(ax) for ax in fig.axes) == 1
    assert "one colour scale" in fig.get_suptitle().lower()
    assert_readable(fig)
    # different units: each map its own scale, each scale labelled, and the title says so
    plot.compare_maps({"softmax": a, "spiking": b}, tmp_path, label={"softmax": "probability", "spiking": "count"},
                      shared=False, dpi=DPI, filename="own")
    fig = figures[-1]
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert [im.get_clim() for im in images] == [(a.min(), a.max()), (b.min(), b.max())]
    assert sorted(ax.get_ylabel() for ax in fig.axes if is_colorbar(ax)) == ["count", "probability"]
    assert "own colour scale" in fig.get_suptitle().lower()
    assert_readable(fig)


def test_training_curves(tmp_path, figures):
    log = tmp_path / "log.jsonl"
    lines = [{"event": "start", "step": 0, "total_steps": 12, "batches_per_epoch": 4, "time": 1.0}]
    for s in range(12):
        lines.append({"event": "train", "step": s, "epoch": s // 4, "loss": 1 / (s + 1), "kl": 0.5 / (s + 1),
                      "lr": 1e-3, "firing_rate": 0.1, "grad_norm": 1.5, "phase": "train", "time": 2.0 + s})
        if s % 4 == 3:
            lines.append({"event": "eval", "step": s, "eval_accuracy": 0.5 + s / 30, "time": 3.0 + s})
    lines.append({"event": "end", "step": 12, "best_dev": 0.8, "best_step": 11, "steps": 12, "wall_seconds": 9.5,
                  "loss": 0.0})  # a summary record: not a point of the loss curve
    log.write_text("\n".join(json.dumps(r) for r in lines) + "\n\n")
    check(plot.training_curves(log, tmp_path, dpi=DPI, figsize=(6, 7)), (6, 7))
    fig = figures[-1]
    # the curves, and none of the bookkeeping (total_steps, wall_seconds, best_step, time, ...)
    assert plotted_labels(fig) == ["eval_accuracy", "firing_rate", "grad_norm", "kl", "loss", "lr"]
    loss = next(line for ax in fig.axes for line in ax.get_lines() if line.get_label() == "loss")
    assert list(loss.get_xdata()) == list(range(12))
    assert_readable(fig)
    assert plot._group("kl") == ("loss", "loss") and plot._group("eval_accuracy")[0] == "accuracy"
    assert plot._group("firing_rate")[0] == "firing rate" and plot._group("lr")[0] == "learning rate"
    for key in ("total_steps", "wall_seconds", "best_step", "batches_per_epoch", "time", "steps", "best_dev"):
        assert plot._is_bookkeeping(key), key
    for key in ("loss", "loss_kl", "accuracy", "grad_norm", "lr", "firing_rate"):
        assert not plot._is_bookkeeping(key), key
    # asked for by name, bookkeeping is drawn
    plot.training_curves(log, tmp_path, keys=["wall_seconds"], dpi=DPI, filename="asked")
    assert plotted_labels(figures[-1]) == ["wall_seconds"]
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"phase": "start"}\n')
    check(plot.training_curves(empty, tmp_path, dpi=DPI, figsize=(4, 3), filename="empty"), (4, 3))
    assert_readable(figures[-1])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 1}\nnot json\n{"step": 2}\n')  # a torn *last* line is skipped (rundir.read_log)
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        plot.training_curves(bad, tmp_path)


def _run_log(path, accuracies):
    path.mkdir(parents=True, exist_ok=True)
    records = [{"event": "start", "step": 0}]
    for i, a in enumerate(accuracies, 1):
        records += [{"event": "train", "step": 10 * i, "loss": 1.0 / i}, {"event": "eval", "step": 10 * i, "accuracy": a}]
    (path / "log.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path / "log.jsonl"


def test_compare_runs_and_its_command(tmp_path, capsys, figures):
    from minispike.cli import main
    a, b = _run_log(tmp_path / "a", [0.5, 0.6, 0.7]), _run_log(tmp_path / "b", [0.55, 0.8])
    check(plot.compare_runs({"a": a, "b": b}, tmp_path, dpi=DPI, figsize=(5, 4)), (5, 4))
    assert plotted_labels(figures[-1]) == ["a", "b"]
    assert_readable(figures[-1])
    with pytest.raises(ValueError, match="b: no evaluation of 'f1' in its log .it has \\['accuracy'\\]"):
        plot.compare_runs({"b": b}, tmp_path, metric="f1")
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "compare.png").is_file()
    assert main(["compare", str(tmp_path / "a"), "--labels", "x", "y"]) == 2
    assert "2 labels for 1 runs" in capsys.readouterr().err
    assert main(["compare", str(tmp_path)]) == 2
    assert "no log.jsonl" in capsys.readouterr().err


def test_energy_breakdown_names_its_counting_rule(tmp_path, figures):
    from minispike.energy import estimate_energy
    from minispike.models.bert import BertConfig, BertForSequenceClassification
    from minispike.models.spikebert import SpikeBert
    ids = np.array([[3, 4, 5, 6]])
    student = SpikeBert("tiny")
    strict = estimate_energy(student, ids)
    headline = estimate_energy(student, ids, integer_as_spikes=True)
    teacher = estimate_energy(BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=16,
                              num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)), ids)
    check(plot.energy_breakdown(strict, tmp_path, dpi=DPI, figsize=(7, 6)), (7, 6))
    title = figures[-1].axes[0].get_title()
    assert "counting rule: strict" in title and "integer_as_spikes" not in title, title
    assert_readable(figures[-1])
    headline.to_json(tmp_path / "energy.json")
    path = plot.energy_breakdown(tmp_path / "energy.json", tmp_path, teacher=teacher, top=5, dpi=DPI, figsize=(7, 4),
                                 filename="energy_top")
    check(path, (7, 4))
    title = figures[-1].axes[0].get_title()
    assert "counting rule: spikes and integer counts as ACs (integer_as_spikes)" in title, title
    assert "every product a MAC" in title and "ratio" in title, title  # the teacher's rule too
    assert "real tokens only" in title
    assert_readable(figures[-1])


def test_sentence_figures_from_a_model(tmp_path, figures):
    from minispike.models.spikebert import SpikeBert
    backend.seed(1)
    model = SpikeBert("tiny")
    ids = np.array([[5, 6, 7, 8, 0, 0]])
    mask = np.array([[1, 1, 1, 1, 0, 0]])
    out = plot.sentence_figures(model, ids, tmp_path, attention_mask=mask, tokens="it was not bad".split(), dpi=DPI)
    assert set(out) == {"raster", "membrane", "firing_rates", "attention"}
    sizes = {"raster": (10, 5), "membrane": (8, 6), "firing_rates": (8, 6), "attention": (7, 6)}
    for k, p in out.items():
        check(p, sizes[k])
    for fig in figures:
        assert_readable(fig)
    with pytest.raises(KeyError, match="no LIF named"):
        plot.sentence_figures(model, ids, tmp_path, layer="nope")
