"""`minispike.report`: a table of finished runs, and mean +- sd over runs that differ only in seed."""
import json
import math

import pytest

from minispike.cli import main
from minispike.report import RunReportError, report


def fake_run(path, *, seed=0, test=0.8, lr=5e-4, evals=(0.7, 0.75), init="runs/en/stage1"):
    """A finished stage-2 run directory as the pipeline writes it (only the fields report reads)."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model": {"dim": 8}, "train": {"lr": lr, "seed": seed}}))
    (path / "metrics.json").write_text(json.dumps({
        "stage": "distill", "task": "sst2", "student_init": init, "embedding_init": "random",
        "teacher": "runs/sst2/teacher", "weights": {"kl": 1.0}, "train_sentences": 100,
        "augmented_sentences": 200 + seed, "steps": 40, "wall_seconds": 90.0,
        "dev_accuracy": max(evals), "test_accuracy": test}))
    lines = [{"event": "train", "step": 1, "loss": 1.0}]
    lines += [{"event": "eval", "step": 10 * (i + 1), "accuracy": a} for i, a in enumerate(evals)]
    (path / "log.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    return path


def test_rows_and_the_spread_of_repeated_seeds(tmp_path):
    tests = [0.80, 0.83, 0.81]
    runs = [fake_run(tmp_path / f"s{k}", seed=k, test=t) for k, t in enumerate(tests)]
    other = fake_run(tmp_path / "lr", seed=0, test=0.5, lr=1e-3)  # another lr: not a repeat
    text = report([str(r) for r in runs + [other]])
    rows = [line for line in text.splitlines() if line.startswith("| ") and "sst2" in line]
    assert len(rows) == 4
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[1:] == ["sst2", "distill", "from en/stage1", "40", "1.5", "70.0, 75.0", "75.00", "80.00"]
    mean = sum(100 * t for t in tests) / 3
    sd = math.sqrt(sum((100 * t - mean) ** 2 for t in tests) / 2)  # sample sd, n - 1
    assert f"test {mean:.2f} +- {sd:.2f} over 3 runs (seeds 0, 1, 2)" in text
    assert text.count("+-") == 1  # the lr run stands alone


def test_a_single_run_has_no_spread_line(tmp_path):
    text = report([str(fake_run(tmp_path / "a"))])
    assert "+-" not in text and text.count("\n") == 2


def test_bad_run_directories_are_named(tmp_path):
    with pytest.raises(RunReportError, match="not a run directory"):
        report([str(tmp_path)])
    running = tmp_path / "running"
    running.mkdir()
    (running / "log.jsonl").write_text("")
    with pytest.raises(RunReportError, match="still running or stopped"):
        report([str(running)])
    broken = fake_run(tmp_path / "broken")
    (broken / "metrics.json").write_text("{\n  oops")
    with pytest.raises(RunReportError, match=r"metrics.json: metrics.json is not valid JSON .*line 2"):
        report([str(broken)])


def test_report_command(tmp_path, capsys):
    a, b = fake_run(tmp_path / "a", seed=0), fake_run(tmp_path / "b", seed=1, test=0.9)
    out = tmp_path / "table.md"
    assert main(["report", str(a), str(b), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "over 2 runs (seeds 0, 1)" in printed and out.read_text() == printed
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_repeats_that_differ_only_in_changeable_settings_are_one_group(tmp_path):
    """How often a run evaluated or whether it was quiet (rundir.CHANGEABLE) does not make it another run."""
    runs = [fake_run(tmp_path / f"s{k}", seed=k, test=0.8 + k / 100) for k in range(2)]
    for k, (every, quiet) in enumerate([(50, False), (100, True)]):
        cfg = json.loads((runs[k] / "config.json").read_text())
        cfg["train"]["eval_every"] = every
        cfg["settings"] = {"stage": {"quiet": quiet}}
        (runs[k] / "config.json").write_text(json.dumps(cfg))
    assert "over 2 runs (seeds 0, 1)" in report([str(r) for r in runs])
