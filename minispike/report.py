"""Finished runs as one markdown table: the raw material of docs/results.md.

    report(run_dirs) -> str

A run directory holds ``metrics.json`` (written once, at the end), ``log.jsonl`` (one record
per training step or evaluation) and ``config.json``. Each run becomes a row: task, stage,
where the student started, steps, wall time, every evaluation in order (dev accuracy in %, or
stage 1's held-out loss), the best of them, and the test accuracy.

Runs that differ only in their seed (same stage, task, start, teacher, loss weights, model
and training settings) form a group; a group of n >= 2 runs gets a line with the mean and the
sample standard deviation of its test accuracies a_1 ... a_n:

    mean = (1/n) sum_i a_i            sd = sqrt( sum_i (a_i - mean)^2 / (n - 1) )

Host-side bookkeeping on a few numbers: plain Python, no arrays.
"""
from __future__ import annotations

import json
import math
import os

from .io.checkpoint import CheckpointError, read_json
from .rundir import CHANGEABLE, flat_settings, read_log

__all__ = ["RunReportError", "read_run", "report"]

# what a run's metrics.json must agree on to be a repeat of another (besides the config)
SAME_RUN_KEYS = ("stage", "task", "student_init", "embedding_init", "teacher", "weights")


class RunReportError(ValueError):
    """A directory that is not a finished run, or a file in it that cannot be read."""


def _read_json(path, what):
    try:
        return read_json(path, what)
    except CheckpointError as e:
        raise RunReportError(str(e)) from None


def read_run(run_dir):
    """``{"dir", "metrics", "config", "evals"}`` of one finished run; evals in log order."""
    metrics_path = os.path.join(run_dir, "metrics.json")
    if not os.path.isfile(metrics_path):
        what = "still running or stopped" if os.path.isfile(os.path.join(run_dir, "log.jsonl")) else "not a run directory"
        raise RunReportError(f"{run_dir}: no metrics.json ({what})")
    config_path = os.path.join(run_dir, "config.json")
    config = _read_json(config_path, "config.json") if os.path.isfile(config_path) else {}
    evals = []
    log_path = os.path.join(run_dir, "log.jsonl")
    if os.path.isfile(log_path):
        try:
            evals = [r for r in read_log(log_path) if r.get("event") == "eval"]
        except ValueError as e:
            raise RunReportError(str(e)) from None
    return {"dir": run_dir, "metrics": _read_json(metrics_path, "metrics.json"), "config": config, "evals": evals}


def _start(m):
    """Where the student began: a checkpoint, the teacher's PCA words, or random numbers."""
    if m.get("stage") == "teacher":
        return "pre-trained BERT"
    init = m.get("student_init")
    if init:
        return "from " + "/".join(os.path.normpath(init).split(os.sep)[-2:])
    return "PCA words" if m.get("embedding_init") == "teacher" else "random"


def _curve(run):
    """Every evaluation of the run, as written in the tables: accuracy in %, a loss as is."""
    values = []
    for r in run["evals"]:
        if "accuracy" in r:
            values.append(f"{100 * r['accuracy']:.1f}")
        elif "held_out_loss" in r:
            values.append(f"{r['held_out_loss']:.3f}")
    return ", ".join(values)


def _pct(x):
    return "" if x is None else f"{100 * x:.2f}"


def _group_key(run):
    """What repeats of one run share: everything but the seed and the settings that may change
    on --resume (how often to evaluate or checkpoint, quiet, ...: they do not change the result)."""
    m = run["metrics"]
    config = {k: v for k, v in flat_settings(run["config"]).items() if k != "train.seed" and k not in CHANGEABLE}
    copies = round(m["augmented_sentences"] / m["train_sentences"]) if m.get("train_sentences") else None
    return json.dumps([{k: m.get(k) for k in SAME_RUN_KEYS}, copies, config], sort_keys=True, default=str)


def _spread(values):
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, sd


def report(run_dirs) -> str:
    """A markdown table of the runs, then one mean +- sd line per group of repeated runs."""
    runs = [read_run(d) for d in run_dirs]
    rows = ["| run | task | stage | start | steps | wall (min) | evaluations | best dev | test |",
            "|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        m = run["metrics"]
        best = (f"{m['held_out_loss']:.3f} (loss)" if "held_out_loss" in m and "dev_accuracy" not in m
                else _pct(m.get("dev_accuracy")))
        wall = m.get("wall_seconds")
        rows.append(f"| {os.path.normpath(run['dir'])} | {m.get('task', '')} | {m.get('stage', '')} | {_start(m)} | "
                    f"{m.get('steps', '')} | {'' if wall is None else f'{wall / 60:.1f}'} | {_curve(run)} | {best} | "
                    f"{_pct(m.get('test_accuracy'))} |")
    groups = {}
    for run in runs:
        if run["metrics"].get("test_accuracy") is not None:
            groups.setdefault(_group_key(run), []).append(run)
    lines = []
    for members in groups.values():
        if len(members) < 2:
            continue
        mean, sd = _spread([100 * r["metrics"]["test_accuracy"] for r in members])
        m = members[0]["metrics"]
        seeds = ", ".join(str(r["config"].get("train", {}).get("seed", "?")) for r in members)
        lines.append(f"{m.get('task')} {m.get('stage')} ({_start(m)}): test {mean:.2f} +- {sd:.2f} "
                     f"over {len(members)} runs (seeds {seeds})")
    return "\n".join(rows + ([""] + lines if lines else []))
