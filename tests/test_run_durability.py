"""Nothing lost, nothing silent: run directories, locks, exact resume, atomic checkpoints,
signals, torn logs, and a NaN guard that never saves bad weights (docs/reliability.md)."""
import builtins
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minispike import rundir
from minispike.cli import main
from minispike.finetune import TrainConfig, TrainingDiverged, fit, load_weights
from minispike.io import checkpoint as ckpt_io
from minispike.io.checkpoint import load_checkpoint, save_checkpoint
from minispike.nn.module import StateDictError
from minispike.pipeline import StageConfig, finetune_teacher, load_any, make_small_teacher
from minispike.text.builtin import builtin_texts
from test_training_loop import CFG, Toy, evaluate_for, loss_fn_for, make

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--preset", "tiny", "--dim", "16", "--depth", "1", "--max-length", "12", "--quiet"]


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """A one-layer random BERT (plain) and the same fine-tuned for a few steps (for stage 2)."""
    d = tmp_path_factory.mktemp("durability")
    plain = make_small_teacher(d / "plain", builtin_texts(), hidden=16, layers=1, heads=2)
    cfg = StageConfig(task="builtin", max_length=12, quiet=True, cache_dir=str(d / "cache"))
    tuned = finetune_teacher(d / "teacher", cfg, TrainConfig(max_steps=2, batch_size=16), teacher=plain)
    return {"dir": d, "plain": plain, "tuned": tuned["checkpoint"]}


@pytest.fixture
def cache(tmp_path, monkeypatch, teachers):
    monkeypatch.setenv("MINISPIKE_CACHE", str(teachers["dir"] / "cache"))
    return {**os.environ, "MINISPIKE_CACHE": str(teachers["dir"] / "cache")}


def direct(teachers, out, *extra):
    return ["train-direct", "--task", "builtin", "--teacher", teachers["plain"], *SMALL, "--batch-size", "8",
            "--out", str(out), *extra]


def cli(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, err.strip()


def snapshot(d):
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(Path(d).rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------------------
# Run directories are never destroyed
# ----------------------------------------------------------------------------------------
def test_a_directory_that_holds_a_run_is_refused_and_left_untouched(teachers, cache, tmp_path, capsys):
    out = tmp_path / "d"
    assert cli(direct(teachers, out, "--max-steps", "2"), capsys)[0] == 0
    before = snapshot(out)
    code, err = cli(direct(teachers, out, "--max-steps", "2"), capsys)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert str(out) in err and "finished run (config.json, log.jsonl, checkpoints, metrics.json)" in err
    assert "--resume" in err and "--overwrite" in err
    assert snapshot(out) == before


def test_overwrite_moves_the_old_run_aside_and_deletes_nothing(teachers, cache, tmp_path, capsys):
    out = tmp_path / "d"
    assert cli(direct(teachers, out, "--max-steps", "2"), capsys)[0] == 0
    before = snapshot(out)
    code, err = cli(direct(teachers, out, "--max-steps", "3", "--overwrite"), capsys)
    assert code == 0, err
    (aside,) = tmp_path.glob("d.old-*")
    assert f"moved aside to {aside}" in err
    assert snapshot(aside) == before
    assert json.loads((out / "metrics.json").read_text())["steps"] == 3


def test_a_full_run_refuses_before_any_training(teachers, cache, tmp_path, capsys):
    out = tmp_path / "run"
    (out / "stage2").mkdir(parents=True)
    (out / "stage2" / "log.jsonl").write_text("{}\n")
    code, err = cli(["run", "--task", "builtin", "--teacher", teachers["plain"], "--out", out, *SMALL], capsys)
    assert code == 2 and "already holds a run (stage2/)" in err, err
    assert sorted(os.listdir(out)) == ["stage2"]


def test_run_resume_continues_stages_with_a_checkpoint_and_restarts_the_others(tmp_path, monkeypatch):
    """``run --resume`` after a kill in stage 1: the finished teacher continues (a no-op), the
    stage-1 stub without a checkpoint starts afresh (moved aside), stage 2 starts."""
    from minispike import pipeline
    out = tmp_path / "run"
    (out / "teacher" / "checkpoints" / "last").mkdir(parents=True)
    (out / "stage1").mkdir()
    (out / "stage1" / "log.jsonl").write_text("{}\n")
    calls = []

    def stage(name):
        def fake(run_dir, cfg, *a, **kw):
            calls.append((name, os.path.basename(run_dir), cfg.resume, cfg.overwrite))
            return {"checkpoint": str(run_dir)}
        return fake
    for name in ("finetune_teacher", "pretrain", "distill"):
        monkeypatch.setattr(pipeline, name, stage(name))
    monkeypatch.setattr(pipeline, "energy_report", lambda *a, **kw: {})
    pipeline.run(out, StageConfig(resume=True), pipeline.RunPlan(), teacher="t")
    assert calls == [("finetune_teacher", "teacher", True, False), ("pretrain", "stage1", False, True),
                     ("distill", "stage2", False, True)]


def test_resume_without_a_checkpoint_is_refused(teachers, cache, tmp_path, capsys):
    code, err = cli(direct(teachers, tmp_path / "new", "--resume"), capsys)
    assert code == 2 and "nothing to continue" in err and "holds no run" in err, err
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "config.json").write_text("{}")
    (stub / "log.jsonl").write_text("")
    code, err = cli(direct(teachers, stub, "--resume"), capsys)
    assert code == 2 and "no checkpoints/last" in err and "--overwrite" in err, err
    assert not (stub / "checkpoints").exists()


def test_resume_with_changed_settings_names_each_difference(teachers, cache, tmp_path, capsys):
    out = tmp_path / "d"
    assert cli(direct(teachers, out, "--max-steps", "2"), capsys)[0] == 0
    config = (out / "config.json").read_text()
    code, err = cli(direct(teachers, out, "--max-steps", "2", "--resume", "--lr", "0.01", "--batch-size", "4",
                           "--seed", "3", "--dim", "8", "--task", "mr"), capsys)
    assert code == 2 and len(err.splitlines()) == 1, err
    for needle in ["train.lr: 0.0005 -> 0.01", "train.batch_size: 8 -> 4", "train.seed: 0 -> 3",
                   "settings.student_overrides.dim: 16 -> 8", 'settings.stage.task: "builtin" -> "mr"']:
        assert needle in err, err
    assert (out / "config.json").read_text() == config
    # the documented changeable settings are accepted, and config.json records them as they now are
    code, err = cli(direct(teachers, out, "--max-steps", "2", "--resume", "--checkpoint-every", "7",
                           "--eval-every", "5"), capsys)
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["train"]["checkpoint_every"] == 7


def _sleeper():
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])


def test_the_lock_names_a_live_owner_and_takes_over_a_stale_one(tmp_path, capsys):
    run = tmp_path / "r"
    run.mkdir()
    lock = run / rundir.LOCK_NAME
    owner = _sleeper()
    try:
        lock.write_text(f"{owner.pid} {socket.gethostname()} 2026-01-01 00:00:00\n")
        with pytest.raises(rundir.RunDirError, match=f"being written by process {owner.pid} on this host"):
            with rundir.claim(run):
                pass
    finally:
        owner.kill()
        owner.wait()
    lock.write_text("4242 some-other-host 2026-01-01 00:00:00\n")
    with pytest.raises(rundir.RunDirError, match="locked by process 4242 on host some-other-host"):
        with rundir.claim(run):
            pass
    lock.write_text(f"{owner.pid} {socket.gethostname()} 2026-01-01 00:00:00\n")  # that process is gone now
    capsys.readouterr()
    with rundir.claim(run):
        assert lock.read_text().split()[0] == str(os.getpid())
    assert f"a stale lock (of process {owner.pid}, which is no longer running" in capsys.readouterr().err
    assert not lock.exists()  # released at the end of the block ...
    with pytest.raises(ZeroDivisionError):
        with rundir.claim(run):
            1 / 0
    assert not lock.exists()  # ... and on an error


def test_a_run_refused_before_it_writes_leaves_no_directory(tmp_path, capsys):
    """A command that stops before writing anything (a missing teacher, say) leaves no empty
    --out behind; a directory that was there before is left in place, empty or not."""
    new = tmp_path / "new"
    assert main(["distill", "--task", "builtin", "--teacher", str(tmp_path / "none"), "--out", str(new)]) == 2
    assert "not a checkpoint directory" in capsys.readouterr().err and not new.exists()
    with pytest.raises(ZeroDivisionError):
        with rundir.claim(new):
            1 / 0
    assert not new.exists()
    (tmp_path / "old").mkdir()
    with pytest.raises(ZeroDivisionError):
        with rundir.claim(tmp_path / "old"):
            1 / 0
    assert (tmp_path / "old").is_dir()


def test_demo_moves_its_previous_run_aside(tmp_path, monkeypatch, capsys):
    from minispike import pipeline

    def fake_demo(out_dir, quiet, fast, resume):  # what a demo leaves, without the minutes it takes
        Path(out_dir, "teacher", "checkpoints", "last").mkdir(parents=True, exist_ok=True)
        Path(out_dir, "summary.json").write_text(json.dumps({"resume": resume}))
        return {}
    monkeypatch.setattr(pipeline, "_demo", fake_demo)
    out = tmp_path / "demo"
    pipeline.demo(out)
    pipeline.demo(out)
    (aside,) = tmp_path.glob("demo.old-*")
    assert (aside / "summary.json").is_file() and "moved aside" in capsys.readouterr().err
    pipeline.demo(out, resume=True)
    assert json.loads((out / "summary.json").read_text()) == {"resume": True}


# ----------------------------------------------------------------------------------------
# Atomic checkpoints: a kill at every step of a write
# ----------------------------------------------------------------------------------------
class Killed(BaseException):
    """The process 'dies' here: no handler of minispike may run after it (see Injector)."""


class Injector:
    """Counts every file-system step of a save (mkdir, open, write, fsync, replace, rename,
    unlink, rmtree) and 'kills' the process at step ``k``: that step raises ``Killed``, and
    so does every step after it, so no cleanup code can touch the disk afterwards (as after
    a real kill -9). A write at the fatal step writes half of its bytes first (a torn file)."""

    def __init__(self, monkeypatch, k):
        self.k, self.n, self.dead = k, 0, False
        for mod, name in [(os, "replace"), (os, "rename"), (os, "fsync"), (os, "mkdir"), (os, "rmdir"),
                          (os, "unlink"), (shutil, "rmtree"), (os, "open")]:
            monkeypatch.setattr(mod, name, self.wrap(getattr(mod, name)))
        real_open, real_fdopen = builtins.open, os.fdopen
        monkeypatch.setattr(builtins, "open", lambda *a, **kw: self.file(real_open(*a, **kw)))
        monkeypatch.setattr(os, "fdopen", lambda *a, **kw: self.file(real_fdopen(*a, **kw)))

    def step(self):
        if self.dead:
            raise Killed()
        self.n += 1
        if self.n == self.k:
            self.dead = True
            return True
        return False

    def wrap(self, fn):
        def stepped(*a, **kw):
            if self.step():
                raise Killed()
            return fn(*a, **kw)
        return stepped

    def file(self, f):
        injector, write = self, f.write

        def torn_write(data):
            if injector.step():
                write(data[: len(data) // 2])
                f.flush()
                raise Killed()
            return write(data)
        f.write = torn_write
        return f


FAULT_CFG = {**CFG, "epochs": 1, "checkpoint_every": 2, "eval_every": 3}


def _toy_run(run_dir, resume=False, fault=None, monkeypatch=None):
    """The toy problem of test_training_loop (8 steps); ``fault=(save_number, k)`` kills at step
    k of that save."""
    model, data = make()
    saves = {"n": 0}
    real_save = ckpt_io.save_checkpoint

    def save(*a, **kw):
        saves["n"] += 1
        if fault and saves["n"] == fault[0]:
            with monkeypatch.context() as m:
                Injector(m, fault[1])
                return real_save(*a, **kw)
        return real_save(*a, **kw)
    import minispike.finetune as F
    with monkeypatch.context() as m:
        m.setattr(F, "save_checkpoint", save)
        summary = fit(run_dir, model, loss_fn_for(model), data, evaluate_for(model, data), TrainConfig(**FAULT_CFG),
                      model_config={"toy": True}, quiet=True, resume=resume)
    return model, summary


def _records(run_dir):
    return [{k: v for k, v in r.items() if k not in ("time", "wall_seconds")}
            for r in rundir.read_log(Path(run_dir) / "log.jsonl") if r["event"] != "resume"]


@pytest.fixture
def fast_tmp(tmp_path):
    """A directory in memory (/dev/shm) where there is one: the test below makes ~150 runs."""
    if not os.access("/dev/shm", os.W_OK):
        yield tmp_path
        return
    import tempfile
    d = Path(tempfile.mkdtemp(prefix="minispike-test-", dir="/dev/shm"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_a_kill_at_any_step_of_a_checkpoint_write_resumes_exactly(fast_tmp, monkeypatch, capsys):
    """The toy run saves last@2, best@3, last@4, best@6, last@6, last@8: kill the save that
    replaces last@2 by last@4 (save 3) and the one that replaces best@3 by best@6 (save 4) at
    every one of their file-system steps, then resume; the result must be the uninterrupted
    run's, bit for bit (weights, best, log), with no leftovers. (fsync is made a no-op that
    still counts as a step: what it guards against, a power cut, no test can stage.)"""
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    targets = []
    real_save = ckpt_io.save_checkpoint
    monkeypatch.setattr(ckpt_io, "save_checkpoint", lambda d, *a, **kw: targets.append(os.path.basename(d)) or
                        real_save(d, *a, **kw))
    import minispike.finetune as F
    monkeypatch.setattr(F, "save_checkpoint", ckpt_io.save_checkpoint)
    reference, full = _toy_run(fast_tmp / "ref", monkeypatch=monkeypatch)
    assert targets[:4] == ["last", "best", "last", "best"], targets
    monkeypatch.setattr(F, "save_checkpoint", real_save)
    want = {k: v.copy() for k, v in reference.state_dict().items()}
    for save_number in (3, 4):
        k = 0
        while True:
            k += 1
            run = fast_tmp / f"s{save_number}-{k}"
            try:
                _toy_run(run, fault=(save_number, k), monkeypatch=monkeypatch)
            except Killed:
                pass
            else:
                assert k > 10, "the save finished before any fault was injected: nothing was tested"
                break
            (run / rundir.LOCK_NAME).unlink(missing_ok=True)  # a killed process leaves it; tested above
            model, summary = _toy_run(run, resume=True, monkeypatch=monkeypatch)
            for name, v in model.state_dict().items():
                np.testing.assert_array_equal(v, want[name], err_msg=f"save {save_number}, fault {k}: {name}")
            assert summary["best_dev"] == full["best_dev"] and summary["best_step"] == full["best_step"]
            assert _records(run) == _records(fast_tmp / "ref"), f"save {save_number}, fault {k}"
            leftovers = [e for e in os.listdir(run / "checkpoints") if e.startswith(".")]
            assert leftovers == [], f"save {save_number}, fault {k}: {leftovers}"
            best = Toy()
            load_weights(best, run / "checkpoints" / "best")
    capsys.readouterr()


def test_a_checkpoint_moved_aside_by_a_crash_is_put_back_and_orphans_removed(tmp_path, capsys):
    parent = tmp_path / "checkpoints"
    save_checkpoint(parent / "last", {"w": np.ones(2, np.float32)}, {}, extra={"step": 5})
    os.replace(parent / "last", parent / ".last.old-100")  # a kill between the two renames
    (parent / ".last.tmp-abc").mkdir()  # and the new one's temporary directory
    (parent / ".last.tmp-abc" / "model.safetensors").write_bytes(b"half")
    save_checkpoint(parent / "older", {"w": np.zeros(2, np.float32)}, {})
    os.replace(parent / "older", parent / ".last.old-99")  # an older backup: must not win
    with pytest.warns(UserWarning, match="interrupted save"):
        assert load_checkpoint(parent / "last").extra == {"step": 5}  # newest backup, before any repair
    with rundir.claim(tmp_path, resume=True):
        pass
    assert sorted(os.listdir(parent)) == ["last"]
    assert load_checkpoint(parent / "last").extra == {"step": 5}
    assert "put back" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------
# A torn last line of log.jsonl
# ----------------------------------------------------------------------------------------
def test_a_torn_last_log_line_is_reported_and_skipped_by_resume_plot_compare_report(tmp_path, monkeypatch, capsys):
    model, data = make()
    crash = {"n": 0}
    inner = loss_fn_for(model)

    def crashing(batch):
        crash["n"] += 1
        if crash["n"] == 13:
            raise KeyboardInterrupt  # a kill at step 12, after the step-10 checkpoint ...
        return inner(batch)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        fit(run, model, crashing, data, evaluate_for(model, data), TrainConfig(**CFG), model_config={}, quiet=True)
    with open(run / "log.jsonl", "a") as f:
        f.write('{"event": "train", "step": 12, "lo')  # ... in the middle of writing a log line
    n = len((run / "log.jsonl").read_text().splitlines())
    assert len(rundir.read_log(run / "log.jsonl")) == n - 1
    assert f"log.jsonl:{n}: the last line is cut short" in capsys.readouterr().err
    code, err = cli(["compare", run, "--out", tmp_path, "--metric", "accuracy"], capsys)
    assert code == 0 and "cut short" in err, err
    model, data = make()
    fit(run, model, loss_fn_for(model), data, evaluate_for(model, data), TrainConfig(**CFG), model_config={},
        quiet=True, resume=True)
    assert "cut short" in capsys.readouterr().err
    (run / "metrics.json").write_text("{}")
    with open(run / "log.jsonl", "a") as f:
        f.write('{"event": "ev')
    code, err = cli(["report", run], capsys)
    assert "cut short" in err and "not a JSON line" not in err, err
    (run / "log.jsonl").write_text('{"event": "start"}\n{"torn\n{"event": "end"}\n')  # not the last line: corrupt
    with pytest.raises(rundir.RunDirError, match=r"log.jsonl:2: not a JSON line"):
        rundir.read_log(run / "log.jsonl")


# ----------------------------------------------------------------------------------------
# A NaN guard that never saves bad weights
# ----------------------------------------------------------------------------------------
def _all_checkpoints_finite(run):
    for d in (run / "checkpoints").iterdir() if (run / "checkpoints").exists() else ():
        for name, a in load_checkpoint(d).tensors.items():
            assert np.isfinite(a).all(), f"{d.name}: {name}"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow and NaN warnings are expected here
def test_non_finite_gradients_stop_before_the_update(tmp_path):
    """A finite loss whose gradient is NaN (0 * d sqrt(w)/dw at 0): the old loop applied it."""
    from minispike import ops
    model, data = make()
    inner = loss_fn_for(model)
    calls = {"n": 0}

    def poisoned(batch):
        calls["n"] += 1
        loss, m = inner(batch)
        if calls["n"] == 7:
            loss = loss + ops.sum(ops.pow(model.out.weight * 0.0, 0.5)) * 0.0  # d/dw: 0 * inf
        return loss, m
    cfg = TrainConfig(**{**CFG, "checkpoint_every": 1, "eval_every": 1})
    expected = r"at step 6 .*gradient norm is nan.*first non-finite tensor: out\.weight"
    with pytest.raises(TrainingDiverged, match=expected):
        fit(tmp_path, model, poisoned, data, evaluate_for(model, data), cfg, model_config={}, quiet=True)
    assert np.isfinite(model.out.weight.data).all()  # nothing of the step was applied
    assert load_checkpoint(tmp_path / "checkpoints" / "last").extra["step"] == 6
    _all_checkpoints_finite(tmp_path)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow and NaN warnings are expected here
def test_a_huge_learning_rate_never_reaches_a_checkpoint(tmp_path):
    """lr 1e39 overflows float32 weights in the first update while loss and gradients are
    finite; the weights are checked before the save, so no checkpoint holds an inf."""
    model, data = make()
    cfg = TrainConfig(**{**CFG, "lr": 1e39, "warmup_ratio": 0.0, "checkpoint_every": 1, "eval_every": 1})
    with pytest.raises(TrainingDiverged) as e:
        fit(tmp_path, model, loss_fn_for(model), data, evaluate_for(model, data), cfg, model_config={}, quiet=True)
    assert "at step 1" in str(e.value) and "first non-finite tensor: hidden.weight" in str(e.value), e.value
    assert not (tmp_path / "checkpoints" / "last").exists()
    _all_checkpoints_finite(tmp_path)
    assert "No checkpoint was written" in str(e.value)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow and NaN warnings are expected here
def test_the_diverged_message_names_checkpoints_that_load_and_evaluate(teachers, cache, tmp_path, capsys):
    out = tmp_path / "d"
    code, err = cli(direct(teachers, out, "--max-steps", "30", "--lr", "1e37", "--warmup-ratio", "0.5",
                           "--checkpoint-every", "1", "--eval-every", "1"), capsys)
    assert code == 2 and "training diverged at step" in err and len(err.splitlines()) == 1, err
    assert "load: " in err, err
    _all_checkpoints_finite(out)
    named = [w.split(" (step")[0] for w in err.split("load: ")[1].split(". ")[0].split(", ")]
    assert named == [str(out / "checkpoints" / "best"), str(out / "checkpoints" / "last")], named
    for path in named:
        assert cli(["evaluate", path, "--task", "builtin", "--quiet"], capsys)[0] == 0


# ----------------------------------------------------------------------------------------
# Loading refuses non-finite and wrongly typed tensors
# ----------------------------------------------------------------------------------------
def _poisoned_copy(src, dst, name, value):
    shutil.copytree(src, dst)
    c = load_checkpoint(dst)
    c.tensors[name] = value(c.tensors[name])
    save_checkpoint(dst, c.tensors, c.config, extra=c.extra,
                    files={f: Path(src, f) for f in c.files})
    return dst


def test_loading_refuses_nan_and_integer_weights(teachers, cache, tmp_path, capsys):
    out = tmp_path / "d"
    assert cli(direct(teachers, out, "--max-steps", "2", "--checkpoint-every", "1"), capsys)[0] == 0
    best = out / "checkpoints" / "best"
    name = "classifier.weight"

    def nan(a):
        a = a.copy()
        a.flat[3] = np.nan
        return a
    bad = _poisoned_copy(best, tmp_path / "nan", name, nan)
    ints = _poisoned_copy(best, tmp_path / "int", name, lambda a: a.astype(np.int64))
    for args in (["evaluate", bad, "--task", "builtin"], ["predict", bad, "good film"],
                 ["energy", "--student", bad, "--teacher", teachers["tuned"], "--task", "builtin"],
                 ["distill", "--task", "builtin", "--teacher", teachers["tuned"], "--init", bad, *SMALL,
                  "--out", tmp_path / "s2", "--max-steps", "1"]):
        code, err = cli(args, capsys)
        assert code == 2 and f"tensor {name} (1 of" in err and "NaN" in err, (args, err)
    code, err = cli(["evaluate", ints, "--task", "builtin"], capsys)
    assert code == 2 and f"{name} (int64)" in err and "refusing to cast" in err, err
    with pytest.raises(StateDictError, match="bool"):
        model = load_any(best)[0]
        model.load_state_dict({**model.state_dict(), name: np.ones(model.classifier.weight.shape, bool)})
    _poisoned_copy(out / "checkpoints" / "last", tmp_path / "last", "optimizer.m." + name, nan)
    shutil.rmtree(out / "checkpoints" / "last")
    shutil.copytree(tmp_path / "last", out / "checkpoints" / "last")
    code, err = cli(direct(teachers, out, "--max-steps", "2", "--checkpoint-every", "1", "--resume"), capsys)
    assert code == 2 and f"optimizer.m.{name} (1 of" in err and "refusing to resume" in err, err


def _signalling_run(run_dir, signals_at_call_3):
    """The toy run; its loss function sends this process the given signals at call 3."""
    model, data = make()
    inner, calls = loss_fn_for(model), {"n": 0}

    def loss_fn(batch):
        calls["n"] += 1
        if calls["n"] == 3:
            for s in signals_at_call_3:
                os.kill(os.getpid(), s)
        return inner(batch)
    return fit(run_dir, model, loss_fn, data, evaluate_for(model, data), TrainConfig(**CFG), model_config={},
               quiet=True)


def test_sigterm_finishes_the_step_and_saves_a_resumable_checkpoint(tmp_path, capsys):
    from minispike.finetune import TrainingInterrupted
    with pytest.raises(TrainingInterrupted, match="SIGTERM after step 3") as e:
        _signalling_run(tmp_path, [signal.SIGTERM])
    assert e.value.signal == signal.SIGTERM
    assert load_checkpoint(tmp_path / "checkpoints" / "last").extra["step"] == 3  # none was due before step 5
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone with the loop
    assert "stopping after this step" in capsys.readouterr().err


def test_a_second_ctrl_c_stops_at_once_without_saving(tmp_path, capsys):
    from minispike.finetune import TrainingInterrupted
    with pytest.raises(KeyboardInterrupt) as e:
        _signalling_run(tmp_path, [signal.SIGINT, signal.SIGINT])
    assert not isinstance(e.value, TrainingInterrupted)
    assert not (tmp_path / "checkpoints" / "last").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ----------------------------------------------------------------------------------------
# Kill -9 and Ctrl-C in a real process, then --resume: bit-identical to an uninterrupted run
# ----------------------------------------------------------------------------------------
def _same_run(a, b):
    """Final weights, metrics and log of two run directories are the same (times, paths and
    the resume bookkeeping aside)."""
    wa, wb = load_checkpoint(a / "checkpoints" / "last").tensors, load_checkpoint(b / "checkpoints" / "last").tensors
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)
    skip = ("wall_seconds", "checkpoint")
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert {k: v for k, v in ma.items() if k not in skip} == {k: v for k, v in mb.items() if k not in skip}
    ra, rb = _records(a), _records(b)
    assert [r for r in ra if r["event"] != "interrupted"] == [r for r in rb if r["event"] != "interrupted"]


def _start(args, env):
    return subprocess.Popen([sys.executable, "-m", "minispike", *map(str, args)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for(path, proc, timeout=120):
    deadline = time.time() + timeout
    while not path.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    return proc.poll() is None


STAGES = {
    "stage1": lambda t: ["pretrain", "--task", "builtin", "--teacher", t["plain"], "--max-sentences", "120",
                         "--eval-every", "7"],
    "stage2": lambda t: ["distill", "--task", "builtin", "--teacher", t["tuned"], "--augment", "1",
                         "--eval-every", "9"],
}


def _run(args, env):
    """``python -m minispike ARGS`` in a fresh process: every run that is compared bit for bit
    runs in one (a long-lived process, such as pytest's, can round differently in BLAS)."""
    done = subprocess.run([sys.executable, "-m", "minispike", *map(str, args)], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stderr


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """stage -> the run directory of an uninterrupted run (made once; how often a run saves its
    checkpoint changes nothing else, so one reference serves every test of that stage)."""
    made, root = {}, tmp_path_factory.mktemp("uninterrupted")

    def reference(stage, args, env):
        if stage not in made:
            _run(args + ["--checkpoint-every", "5", "--out", root / stage], env)
            made[stage] = root / stage
        return made[stage]
    return reference


def _args(stage, teachers):
    return STAGES[stage](teachers) + SMALL + ["--batch-size", "4", "--max-steps", "30"]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_kill_9_then_resume_equals_an_uninterrupted_run(stage, teachers, cache, uninterrupted, tmp_path, capsys):
    full = uninterrupted(stage, _args(stage, teachers), cache)
    args = _args(stage, teachers) + ["--checkpoint-every", "5"]
    proc = _start(args + ["--out", tmp_path / "cut"], cache)
    alive = _wait_for(tmp_path / "cut" / "checkpoints" / "last" / "state.json", proc)
    if alive:  # meanwhile, a second process is refused, naming the owner
        code, err = cli(args + ["--out", tmp_path / "cut", "--resume"], capsys)
        assert code == 2 and f"being written by process {proc.pid}" in err, err
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert alive, "the run finished before it could be killed: the test proved nothing"
    err = _run(args + ["--out", tmp_path / "cut", "--resume"], cache)
    assert f"stale lock (of process {proc.pid}" in err, err
    _same_run(full, tmp_path / "cut")


def test_ctrl_c_saves_a_checkpoint_and_tells_the_exact_resume_command(
        teachers, cache, uninterrupted, tmp_path, capsys):
    full = uninterrupted("stage2", _args("stage2", teachers), cache)
    args = _args("stage2", teachers) + ["--checkpoint-every", "50"]
    proc = _start(args + ["--out", tmp_path / "cut"], cache)
    alive = _wait_for(tmp_path / "cut" / "checkpoints" / "best" / "state.json", proc)  # the eval at step 9
    if alive:
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert alive, "the run finished before it could be interrupted: the test proved nothing"
    assert proc.returncode == 130, err
    assert "stopping after this step" in err
    state = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last").extra  # none was due before step 30
    assert 9 <= state["step"] < 30, state
    command = err.strip().splitlines()[-1].split("continue with: ")[1]
    assert command.startswith("python -m minispike distill ") and command.endswith(" --resume")
    _run(shlex.split(command)[3:], cache)  # the command as printed
    _same_run(full, tmp_path / "cut")
    assert not (tmp_path / "cut" / rundir.LOCK_NAME).exists()
