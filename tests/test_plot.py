"""Every picture renders on the Agg canvas to a real PNG of the size asked for."""
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


def spikes_and_membrane(T=4, B=2, L=5, N=12, seed=0):
    rng = np.random.default_rng(seed)
    H = rng.normal(0.6, 0.5, size=(T, B, L, N))
    return (H >= 1.0).astype(np.float32), H


def test_spike_raster(tmp_path):
    S, _ = spikes_and_membrane()
    path = plot.spike_raster(S, tmp_path, name="blocks.0.mlp.up.lif", tokens="a b c d e".split(), dpi=DPI,
                             figsize=(6, 4), svg=True)
    check(path, (6, 4))
    assert (tmp_path / "raster_blocks.0.mlp.up.lif.svg").read_text().lstrip().startswith("<?xml")


def test_membrane_traces_on_the_strict_backend(tmp_path, strict):
    S, H = spikes_and_membrane()
    path = plot.membrane_traces(strict.asarray(H), strict.asarray(S), tmp_path, threshold=1.0, neurons=3,
                                dpi=DPI, figsize=(5, 5))
    check(path, (5, 5))
    soft = plot.membrane_traces(H[:, 0], S[:, 0], tmp_path, v_reset=None, neurons=[0, 1], dpi=DPI,
                                figsize=(5, 4), filename="soft")
    check(soft, (5, 4))


def test_firing_rates(tmp_path):
    rates = {f"blocks.{i}.attn.q.lif": 0.05 * i for i in range(6)}
    check(plot.firing_rates(rates, tmp_path, dpi=DPI, figsize=(6, 5)), (6, 5))


def test_attention_map(tmp_path):
    S, _ = spikes_and_membrane(N=16)
    path = plot.attention_map(S, S[::-1], tmp_path, heads=4, head=1, tokens="a b c d e".split(), dpi=DPI,
                              figsize=(5, 5))
    check(path, (5, 5))


def test_training_curves(tmp_path):
    log = tmp_path / "log.jsonl"
    lines = []
    for s in range(12):
        lines.append({"step": s, "loss": 1 / (s + 1), "kl": 0.5 / (s + 1), "lr": 1e-3, "firing_rate": 0.1,
                      "phase": "train"})
        if s % 4 == 3:
            lines.append({"step": s, "eval_accuracy": 0.5 + s / 30})
    log.write_text("\n".join(json.dumps(r) for r in lines) + "\n\n")
    check(plot.training_curves(log, tmp_path, dpi=DPI, figsize=(6, 7)), (6, 7))
    assert plot._group("kl") == ("loss", "loss") and plot._group("eval_accuracy")[0] == "accuracy"
    assert plot._group("firing_rate")[0] == "firing rate" and plot._group("lr")[0] == "learning rate"
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"phase": "start"}\n')
    check(plot.training_curves(empty, tmp_path, dpi=DPI, figsize=(4, 3), filename="empty"), (4, 3))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 1}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        plot.training_curves(bad, tmp_path)


def _run_log(path, accuracies):
    path.mkdir(parents=True, exist_ok=True)
    records = [{"event": "start", "step": 0}]
    for i, a in enumerate(accuracies, 1):
        records += [{"event": "train", "step": 10 * i, "loss": 1.0 / i}, {"event": "eval", "step": 10 * i, "accuracy": a}]
    (path / "log.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path / "log.jsonl"


def test_compare_runs_and_its_command(tmp_path, capsys):
    from minispike.cli import main
    a, b = _run_log(tmp_path / "a", [0.5, 0.6, 0.7]), _run_log(tmp_path / "b", [0.55, 0.8])
    check(plot.compare_runs({"a": a, "b": b}, tmp_path, dpi=DPI, figsize=(5, 4)), (5, 4))
    with pytest.raises(ValueError, match="b: no evaluation of 'f1' in its log .it has \\['accuracy'\\]"):
        plot.compare_runs({"b": b}, tmp_path, metric="f1")
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "compare.png").is_file()
    assert main(["compare", str(tmp_path / "a"), "--labels", "x", "y"]) == 2
    assert "2 labels for 1 runs" in capsys.readouterr().err
    assert main(["compare", str(tmp_path)]) == 2
    assert "no log.jsonl" in capsys.readouterr().err


def test_energy_breakdown_from_a_report_and_its_json(tmp_path):
    from minispike.energy import estimate_energy
    from minispike.models.spikebert import SpikeBert
    rep = estimate_energy(SpikeBert("tiny"), np.array([[3, 4, 5, 6]]))
    check(plot.energy_breakdown(rep, tmp_path, dpi=DPI, figsize=(7, 6)), (7, 6))
    rep.to_json(tmp_path / "energy.json")
    path = plot.energy_breakdown(tmp_path / "energy.json", tmp_path, teacher=rep, top=5, dpi=DPI, figsize=(7, 4),
                                 filename="energy_top")
    check(path, (7, 4))


def test_sentence_figures_from_a_model(tmp_path):
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
    with pytest.raises(KeyError, match="no LIF named"):
        plot.sentence_figures(model, ids, tmp_path, layer="nope")
