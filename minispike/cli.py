"""The ``minispike`` command line: one sub-command per job, one-line errors, progress bars.

    python -m minispike demo                       the whole pipeline on the built-in data
    python -m minispike download sst2 --data-dir D fetch and verify a task's files
    python -m minispike finetune-teacher --task sst2
    python -m minispike pretrain   --task sst2     stage 1 (unlabelled text of sst2's language)
    python -m minispike distill    --task sst2 --teacher RUN/teacher --init RUN/stage1
    python -m minispike run        --task sst2     all stages, then the energy report
    python -m minispike evaluate   CHECKPOINT --task sst2 --split test
    python -m minispike predict    CHECKPOINT "a gripping , funny film"
    python -m minispike energy     --student S --teacher T --task sst2
    python -m minispike export-official CHECKPOINT student.safetensors   the official PyTorch layout
    python -m minispike import-official student.safetensors DIR --tokenizer TEACHER
    python -m minispike plot       RUN_DIR
    python -m minispike compare    RUN_DIR RUN_DIR ... --out DIR   dev curves of several runs
    python -m minispike notebooks  --out DIR     every numbered example as a Jupyter notebook
    python -m minispike check      ex07          grade an exercise (exercises/ex07_*.py); --all, --reference

Every option can also come from a JSON file (``--config run.json``: keys are option names
with underscores); flags given on the command line win over the file.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import os
import shlex
import sys
import warnings

from . import __version__


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit status 2, no traceback."""


# ----------------------------------------------------------------------------------------
# Expected failures -> one line (the one place that decides; --debug shows the traceback)
# ----------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse whose complaints about the command line are one line (a UserError), not usage text."""

    def error(self, message):
        raise UserError(f"{message} (see {self.prog} --help)")


def expected_errors() -> tuple:
    """The exception types a user's input or machine can cause; their messages name the file,
    line, key or option. Anything else is a bug in minispike and keeps its traceback."""
    from .finetune import TrainingDiverged
    from .io.checkpoint import CheckpointError
    from .io.official import OfficialFormatError
    from .io.safetensors import SafetensorsError
    from .nn.module import StateDictError
    from .pipeline import PipelineError
    from .report import RunReportError
    from .rundir import RunDirError
    from .text.tasks import DataError
    from .text.tokenizer import TokenizerError
    return (UserError, PipelineError, DataError, TokenizerError, CheckpointError, SafetensorsError, StateDictError,
            OfficialFormatError, RunReportError, TrainingDiverged, RunDirError, OSError)


_OS_PROBLEMS = {errno.ENOENT: "not found", errno.EISDIR: "is a directory, expected a file",
                errno.ENOTDIR: "a part of the path is a file, expected a directory",
                errno.EEXIST: "already exists as a file, expected a directory",
                errno.EACCES: "permission denied (a read-only directory?)", errno.EPERM: "operation not permitted",
                errno.EROFS: "read-only file system", errno.ENOSPC: "no space left on the device (the disk is full)",
                errno.EDQUOT: "disk quota exceeded", errno.ENAMETOOLONG: "file name too long"}


def one_line(error: BaseException) -> str:
    """The message of an expected failure as one line: ``path: problem`` for file-system errors."""
    if isinstance(error, OSError) and not type(error).__module__.startswith("minispike"):
        problem = _OS_PROBLEMS.get(error.errno, error.strerror or str(error))
        where = error.filename if error.filename is not None else "file system"
        text = f"{where}: {problem}" + (f" (and {error.filename2})" if error.filename2 else "")
    else:
        text = str(error) or type(error).__name__
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


@contextlib.contextmanager
def _warnings_as_lines():
    """Warnings raised while a command runs print as ``minispike: warning: ...``, one line each."""
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *_, **__: print(f"minispike: warning: {one_line(message)}",
                                                               file=sys.stderr, flush=True)
        yield


# ----------------------------------------------------------------------------------------
# Option groups shared by the training commands
# ----------------------------------------------------------------------------------------
def _add_data(p, task=True, from_checkpoint=False):
    """``from_checkpoint``: --task and --max-length default to what the checkpoint's config.json says."""
    if task:
        p.add_argument("--task", default=None if from_checkpoint else "builtin",
                       help="task name (sst2, sst5, mr, subj, chnsenti, waimai, builtin) or a task spec "
                            "(a task .json, or a CSV/TSV file with text and label columns)"
                            + ("; default: the checkpoint's task" if from_checkpoint else "; default builtin"))
    p.add_argument("--data-dir", default=None,
                   help="directory holding the task folders (default: $MINISPIKE_DATA, else ~/.cache/minispike/data)")
    p.add_argument("--max-length", type=int, default=None if from_checkpoint else 64,
                   help="tokens per sentence after truncation (default: "
                        + ("the checkpoint's)" if from_checkpoint else "64)"))


def _add_run(p, out_default):
    p.add_argument("--out", default=out_default, help=f"run directory to write (default {out_default})")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoints/last "
                   "(with the same settings; see docs/reliability.md)")
    p.add_argument("--overwrite", action="store_true", help="start over in a directory that holds a run: the old run "
                   "is moved aside to OUT.old-<date-time>, nothing is deleted")
    p.add_argument("--quiet", action="store_true", help="no progress bars (log.jsonl still records everything)")
    _add_backend(p)
    p.add_argument("--config", default=None, help="JSON file of option values (command-line flags win)")


def _add_backend(p):
    p.add_argument("--backend", choices=["numpy", "cupy", "strict"], default="numpy",
                   help="array library: numpy (CPU), cupy (an NVIDIA GPU: pip install 'minispike[gpu]') or "
                        "strict (NumPy that refuses host round trips, as CuPy does: for tests; default numpy)")


# Optional extras: a missing one is the user's machine, not a bug: one line with its install command.
EXTRAS = {"cupy": "pip install 'minispike[gpu]'", "cupyx": "pip install 'minispike[gpu]'",
          "matplotlib": "pip install 'minispike[plot]'"}


def missing_extra(error: BaseException) -> str | None:
    """``"<package> is not installed: <install command>"`` when ``error`` (or its cause) is the
    import of an optional extra failing; else None."""
    for e in (error, error.__cause__):
        name = (getattr(e, "name", None) or "").split(".")[0]
        if isinstance(e, ImportError) and name in EXTRAS:
            return f"{name} is not installed: {EXTRAS[name]}"
    return None


def use_backend(name: str):
    """Select the array library for the command; CuPy without a GPU is one line, not a traceback."""
    from . import backend
    xp = backend.use(name)
    if name == "cupy":
        try:
            xp.cuda.runtime.getDeviceCount()
        except Exception as e:  # CUDARuntimeError: no driver, no device
            raise UserError(f"--backend cupy: CuPy is installed but finds no GPU ({one_line(e)})") from None
    return xp


def _add_embedding_init(p):
    p.add_argument("--embedding-init", choices=["random", "teacher"], default="random",
                   help="student word embedding: random N(0, 1) (the paper) or the teacher's compressed by PCA "
                        "(a CPU-budget shortcut, not in the paper; default random)")


def _add_train(p, epochs, lr, batch_size=32, weight_decay=0.01, eval_every=0):
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=float, default=epochs, help=f"passes over the training data (default {epochs})")
    g.add_argument("--lr", type=float, default=lr, help=f"peak learning rate of AdamW (default {lr})")
    g.add_argument("--batch-size", type=int, default=batch_size, help=f"sentences per step (default {batch_size})")
    g.add_argument("--weight-decay", type=float, default=weight_decay, help=f"decoupled weight decay (default {weight_decay})")
    g.add_argument("--warmup-ratio", type=float, default=0.1, help="share of steps with linear warm-up (default 0.1)")
    g.add_argument("--clip-norm", type=float, default=1.0, help="global gradient-norm clip, 0 = off (default 1.0)")
    g.add_argument("--eval-every", type=int, default=eval_every, help="steps between dev evaluations (0 = each epoch)")
    g.add_argument("--checkpoint-every", type=int, default=100, help="steps between resumable checkpoints (default 100)")
    g.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (budgets, smoke runs)")
    g.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order and dropout (default 0)")


def _add_student(p):
    p.add_argument("--preset", default="cpu", help="student size: cpu (256 x 4, T 4), tiny, paper, official (default cpu)")
    p.add_argument("--T", type=int, default=None, help="time steps of the student (default: the preset's)")
    p.add_argument("--depth", type=int, default=None, help="student blocks (default: the preset's)")
    p.add_argument("--dim", type=int, default=None, help="student width (default: the preset's)")


def _train_config(a):
    from .finetune import TrainConfig
    return TrainConfig(epochs=a.epochs, lr=a.lr, batch_size=a.batch_size, weight_decay=a.weight_decay,
                       warmup_ratio=a.warmup_ratio, clip_norm=a.clip_norm, eval_every=a.eval_every,
                       checkpoint_every=a.checkpoint_every, max_steps=a.max_steps, seed=a.seed)


def _stage_config(a):
    from .pipeline import StageConfig
    return StageConfig(task=getattr(a, "task", "builtin"), data_dir=a.data_dir, max_length=a.max_length,
                       quiet=getattr(a, "quiet", False), resume=getattr(a, "resume", False),
                       overwrite=getattr(a, "overwrite", False))


def _overrides(a):
    return {k: getattr(a, k) for k in ("T", "depth", "dim") if getattr(a, k, None) is not None}


# ----------------------------------------------------------------------------------------
# Validation before any work: every numeric option's range, paths, the model's length limit
# ----------------------------------------------------------------------------------------
def _passes(v):
    return v > 0


# option dest -> (test, what is expected); floats must also be finite
OPTION_RANGES = {
    "epochs": (_passes, "a number of passes > 0 (fractions such as 0.5 are allowed)"),
    "teacher_epochs": (_passes, "a number of passes > 0"),
    "stage1_epochs": (_passes, "a number of passes > 0"),
    "max_steps": (lambda v: v >= 1, "a number of steps >= 1"),
    "batch_size": (lambda v: v >= 1, "sentences per step >= 1"),
    "max_length": (lambda v: v >= 2, "at least 2 tokens ([CLS] and [SEP])"),
    "lr": (lambda v: v > 0, "a learning rate > 0"),
    "teacher_lr": (lambda v: v > 0, "a learning rate > 0"),
    "weight_decay": (lambda v: v >= 0, "a weight decay >= 0"),
    "warmup_ratio": (lambda v: 0 <= v < 1, "a share of the steps in [0, 1)"),
    "clip_norm": (lambda v: v >= 0, "a gradient-norm bound >= 0 (0 = no clipping)"),
    "eval_every": (lambda v: v >= 0, "a number of steps >= 0 (0 = at the end of each epoch)"),
    "checkpoint_every": (lambda v: v >= 0, "a number of steps >= 0 (0 = only at the end)"),
    "seed": (lambda v: v >= 0, "a seed >= 0"),
    "T": (lambda v: v >= 1, "a number of time steps >= 1"),
    "depth": (lambda v: v >= 1, "a number of blocks >= 1"),
    "dim": (lambda v: v >= 1, "a width >= 1"),
    "augment": (lambda v: v >= 0, "augmented copies per sentence >= 0 (0 = off)"),
    "max_sentences": (lambda v: v >= 1, "a number of sentences >= 1"),
    "stage1_sentences": (lambda v: v >= 1, "a number of sentences >= 1"),
    "sentences": (lambda v: v >= 1, "a number of sentences >= 1"),
    "heads": (lambda v: v >= 1, "a number of attention heads >= 1"),
    "tau": (lambda v: v >= 1, "a membrane time constant >= 1 (the leak factor 1 - 1/tau must lie in [0, 1))"),
    "v_threshold": (lambda v: v > 0, "a firing threshold > 0"),
    "timeout": (lambda v: v > 0, "a number of seconds > 0"),
}


def _option(dest):
    return "--" + dest.replace("_", "-")


def _refuse(dest, value, expected, source):
    where = f" (set in {source})" if source else ""
    raise UserError(f"{_option(dest)} {value!r}{where}: expected {expected}")


def _length_limit(path):
    """(tokens, config key, student or teacher) of the model in a checkpoint or run directory: the
    longest sentence it can take; None if unknown."""
    if not path:
        return None
    path = os.fspath(path)
    best = os.path.join(path, "checkpoints", "best")
    config_path = os.path.join(best if os.path.isdir(best) else path, "config.json")
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None  # the command's own loading gives the precise error
    config = config.get("model", config) if isinstance(config, dict) else {}
    for key in ("max_position_embeddings", "max_length"):  # a teacher's max_length: its training length
        if isinstance(config.get(key), int) and not isinstance(config.get(key), bool):
            return config[key], key, "student" if config.get("model_type") == "spikebert" else "teacher"
    return None


def _check_paths(args):
    """Directories and files named by options: a file where a directory belongs (and the reverse)
    and an unwritable output directory are refused before any work."""
    writes_file = args.command == "report"
    out = getattr(args, "out", None)
    if out:
        if os.path.isdir(out) and writes_file:
            raise UserError(f"--out {out}: is a directory, expected a file to write the table to")
        if os.path.exists(out) and not os.path.isdir(out) and not writes_file:
            raise UserError(f"--out {out}: is a file, expected a directory (or a path to create one at)")
        parent = os.path.abspath(out if not writes_file else os.path.dirname(os.path.abspath(out)))
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise UserError(f"--out {out}: {parent} is a file, expected a directory")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise UserError(f"--out {out}: cannot write into {parent} (permission denied or read-only); "
                            f"expected a writable directory")
    for dest in ("data_dir", "teacher", "student", "init", "checkpoint"):
        path = getattr(args, dest, None)
        if isinstance(path, str) and os.path.isfile(path):
            what = "a data directory" if dest == "data_dir" else "a checkpoint or run directory"
            option = "CHECKPOINT" if dest == "checkpoint" else _option(dest)
            raise UserError(f"{option} {path}: is a file, expected {what}")
    for path in [getattr(args, "file", None), *(getattr(args, "corpus", None) or ())]:
        if path and not os.path.isfile(path):
            found = "a directory" if os.path.isdir(path) else "nothing"
            raise UserError(f"{path}: found {found}, expected a text file (one sentence per line)")


def validate(args, defaults=None, config_source=None, config_keys=()):
    """Refuse out-of-range options, impossible model shapes and unusable paths before work begins.

    ``defaults``: the sub-command's option defaults (a message says when a refused value is one)."""
    for dest, (test, expected) in OPTION_RANGES.items():
        value = getattr(args, dest, None)
        if value is None or isinstance(value, bool):
            continue
        source = config_source if dest in config_keys else None
        if isinstance(value, float) and not math.isfinite(value):
            _refuse(dest, value, f"a finite number: {expected}", source)
        if not test(value):
            _refuse(dest, value, expected, source)
    preset = getattr(args, "preset", None)
    if preset is not None:
        from .models.spikebert import PRESETS
        if preset not in PRESETS:
            raise UserError(f"--preset {preset!r}: expected one of {', '.join(sorted(PRESETS))}")
        dim, heads = getattr(args, "dim", None) or PRESETS[preset]["dim"], PRESETS[preset]["heads"]
        if dim % heads:
            raise UserError(f"--dim {dim}: expected a multiple of the {heads} attention heads of preset {preset} "
                            f"(the width is split evenly between the heads)")
    _check_paths(args)
    length = getattr(args, "max_length", None)
    if length is not None:  # None: the checkpoint's own length (evaluate, predict, energy)
        default = length == (defaults or {}).get("max_length") and "max_length" not in config_keys
        models = [(getattr(args, d, None), d) for d in ("checkpoint", "student", "teacher")]
        trains = args.command in ("finetune-teacher", "pretrain", "train-direct", "run")
        if trains and not getattr(args, "teacher", None):
            from .models.bert import find_default_teacher
            models.append((find_default_teacher(), "teacher"))
        for path, role in models:
            limit = _length_limit(path)
            if limit and role in ("checkpoint", limit[2]) and length > limit[0]:  # the wrong kind: the command says so
                raise UserError(f"--max-length {length}{' (the default)' if default else ''}: the model in {path} "
                                f"takes at most {limit[0]} tokens "
                                f"({limit[1]} in its config.json); expected {limit[0]} or less")


# ----------------------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------------------
def cmd_gradcheck_demo(args):
    """Check a small network's gradients against finite differences and print the verdict."""
    from . import backend, ops
    from .gradcheck import gradcheck, make_inputs
    with backend.dtype_scope("float64"):
        x, w, b, g, beta = make_inputs((2, 3, 8), (4, 8), (4,), (4,), (4,), seed=args.seed)

        def net(x, w, b, g, beta):
            return ops.softmax(ops.gelu(ops.layer_norm(ops.linear(x, w, b), g, beta)), axis=-1)
        gradcheck(net, [x, w, b, g, beta], name="softmax(gelu(layer_norm(linear(x))))")
    print("gradcheck passed: linear -> layer_norm -> gelu -> softmax, float64, every input checked")
    return 0


def cmd_finetune_teacher(a):
    from .pipeline import finetune_teacher
    m = finetune_teacher(a.out, _stage_config(a), _train_config(a), teacher=a.teacher)
    print(json.dumps(m, indent=2, default=str))
    return 0


def cmd_pretrain(a):
    from .pipeline import pretrain
    m = pretrain(a.out, _stage_config(a), _train_config(a), teacher=a.teacher, preset=a.preset,
                 corpus_files=a.corpus or (), max_sentences=a.max_sentences, student_overrides=_overrides(a),
                 embedding_init=a.embedding_init)
    print(json.dumps(m, indent=2, default=str))
    return 0


def cmd_distill(a):
    from .pipeline import distill
    m = distill(a.out, _stage_config(a), _train_config(a), teacher=a.teacher, student_init=a.init,
                preset=a.preset, augment_copies=a.augment, student_overrides=_overrides(a),
                embedding_init=a.embedding_init, cache_teacher=a.cache_teacher)
    print(json.dumps(m, indent=2, default=str))
    return 0


def cmd_train_direct(a):
    from .pipeline import train_direct
    m = train_direct(a.out, _stage_config(a), _train_config(a), teacher=a.teacher, preset=a.preset,
                     student_overrides=_overrides(a), embedding_init=a.embedding_init)
    print(json.dumps(m, indent=2, default=str))
    return 0


def cmd_run(a):
    from .finetune import TrainConfig
    from .pipeline import RunPlan, run
    plan = RunPlan(
        teacher_train=TrainConfig(epochs=a.teacher_epochs, lr=a.teacher_lr, batch_size=32, seed=a.seed,
                                  max_steps=a.max_steps),
        stage1_train=TrainConfig(epochs=a.stage1_epochs, lr=a.lr, batch_size=a.batch_size, weight_decay=5e-3,
                                 eval_every=200, seed=a.seed, max_steps=a.max_steps),
        stage2_train=TrainConfig(epochs=a.epochs, lr=a.lr, batch_size=a.batch_size, weight_decay=5e-3,
                                 eval_every=a.eval_every, seed=a.seed, max_steps=a.max_steps),
        preset=a.preset, augment_copies=a.augment, stage1_sentences=a.stage1_sentences,
        skip_stage1=a.skip_stage1, direct_baseline=a.direct_baseline, student_overrides=_overrides(a),
        embedding_init=a.embedding_init)
    summary = run(a.out, _stage_config(a), plan, teacher=a.teacher)
    print(story(summary))
    return 0


def cmd_demo(a):
    from .pipeline import demo
    summary = demo(a.out, quiet=a.quiet, fast=a.fast, resume=a.resume)
    print(story(summary))
    return 0


def cmd_evaluate(a):
    from .pipeline import evaluate
    print(json.dumps(evaluate(a.checkpoint, _stage_config(a), a.split), indent=2))
    return 0


def cmd_predict(a):
    from .pipeline import predict
    texts = list(a.texts)
    if a.file:
        with open(a.file, "rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8").strip()
                except UnicodeDecodeError as e:
                    raise UserError(f"--file {a.file}:{number}: undecodable bytes ({raw[e.start:e.start + 4]!r} at "
                                    f"column {e.start + 1}), expected UTF-8 text, one sentence a line") from None
                if line:
                    texts.append(line)
    if not texts:
        raise UserError("give sentences as arguments or --file FILE (one per line)")
    for r in predict(a.checkpoint, texts, a.max_length, a.task):
        print(json.dumps(r, ensure_ascii=False))
    return 0


def cmd_export_official(a):
    from .pipeline import export_official
    print(json.dumps(export_official(a.checkpoint, a.official_file), indent=2))
    return 0


def cmd_import_official(a):
    from .pipeline import import_official
    settings = {k: getattr(a, k) for k in ("tau", "v_threshold") if getattr(a, k) is not None}
    print(json.dumps(import_official(a.official_file, a.out, a.tokenizer, heads=a.heads, T=a.T, max_length=a.max_length,
                                     task=a.task, **settings), indent=2))
    return 0


def cmd_energy(a):
    from .pipeline import energy_report
    result = energy_report(a.student, a.teacher, _stage_config(a), a.out, split=a.split, max_sentences=a.sentences)
    if not a.quiet:  # the table is for the reader (stderr); stdout holds the JSON alone (| jq .ratio)
        print(result["table"], file=sys.stderr, flush=True)
    print(json.dumps({k: v for k, v in result.items() if k != "table"}, indent=2, default=str))
    return 0


def cmd_compare(a):
    from .plot import compare_runs
    labels = a.labels or [os.path.basename(os.path.normpath(r)) for r in a.runs]
    if len(labels) != len(a.runs):
        raise UserError(f"--labels: {len(labels)} labels for {len(a.runs)} runs")
    logs = {}
    for label, run in zip(labels, a.runs):
        path = os.path.join(run, "log.jsonl")
        if not os.path.isfile(path):
            raise UserError(f"{run}: no log.jsonl (not a run directory)")
        logs[label] = path
    try:
        print(compare_runs(logs, a.out, metric=a.metric, title=a.title, filename=a.name))
    except ValueError as e:  # a run without that metric
        raise UserError(str(e)) from None
    return 0


def cmd_report(a):
    from .report import RunReportError, report
    try:
        table = report(a.runs)
    except RunReportError as e:
        raise UserError(str(e)) from None
    print(table)
    if a.out:
        from .io.safetensors import atomic_write
        atomic_write(a.out, lambda f: f.write((table + "\n").encode("utf-8")))  # a full disk leaves no half table
    return 0


def cmd_notebooks(a):
    from .notebooks import write_notebooks
    for path in write_notebooks(a.out, a.examples):
        print(path)
    return 0


def cmd_check(a):
    from .autograder import UnknownExercise, run_check
    try:
        return run_check(a.exercise, directory=a.dir, every=a.all, reference=a.reference)
    except UnknownExercise as e:
        raise UserError(str(e)) from None


def cmd_plot(a):
    from .pipeline import plot_run
    for path in plot_run(a.run_dir, a.out or a.run_dir, task=a.task, data_dir=a.data_dir):
        print(path)
    return 0


def story(summary) -> str:
    """The run told in a few sentences."""
    lines = []
    t = summary.get("teacher", {})
    s2 = summary.get("stage2", {})
    task = summary.get("task")
    stand_in = summary.get("pretrained_teacher") is False  # the demo without the MiniLM package
    if t:
        who = "The stand-in teacher (a small BERT trained from scratch here)" if stand_in else "The BERT teacher"
        confidence = t.get("train_confidence")
        lines.append(f"{who} was fine-tuned on {task}: test accuracy {t['test_accuracy']:.1%} "
                     f"(dev {t['dev_accuracy']:.1%}, {t['wall_seconds']:.0f} s)"
                     + (f"; on its training sentences its mean top probability is {confidence:.2f} "
                        f"(1/{t['num_labels']} = chance): that is what the student distils." if confidence else "."))
    pca = (summary.get("stage1") or s2).get("pca_variance_explained")
    if pca is not None:
        lines.append(f"The student's word embedding started as the teacher's, compressed by PCA to the student's "
                     f"width ({pca:.0%} of its variance kept).")
    s1 = summary.get("stage1")
    if s1:
        lines.append(f"Stage 1 aligned the spiking student with the teacher on {s1['sentences']} unlabelled "
                     f"sentences (held-out feature loss {s1['held_out_loss']:.3f}, {s1['wall_seconds']:.0f} s).")
    if s2:
        lines.append(f"Stage 2 distilled the task into the student ({s2['train_sentences']} training sentences "
                     f"+ {s2['augmented_sentences']} augmented): test accuracy {s2['test_accuracy']:.1%} "
                     f"(dev {s2['dev_accuracy']:.1%}, {s2['wall_seconds']:.0f} s).")
    d = summary.get("direct")
    if d:
        lines.append(f"Trained on labels alone, the same student reaches {d['test_accuracy']:.1%}.")
    e = summary.get("energy")
    if e and "ratio" in e and stand_in:
        lines.append(f"Energy per sentence at 45 nm: student {e['student_mj']:.4f} mJ, stand-in teacher "
                     f"{e['teacher_mj']:.4f} mJ. The stand-in is far smaller than BERT, so this ratio says "
                     f"nothing about SpikeBERT against BERT (docs/results.md has that, with MiniLM).")
    elif e and "ratio" in e:
        lines.append(f"Energy per sentence at 45 nm: student {e['student_mj']:.4f} mJ, teacher "
                     f"{e['teacher_mj']:.4f} mJ: the student needs {e['ratio']:.1%} of the teacher's energy.")
    if "wall_seconds" in summary:
        lines.append(f"Everything took {summary['wall_seconds']:.0f} s.")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------
# The parser
# ----------------------------------------------------------------------------------------
def build_parser():
    parser = _Parser(
        prog="minispike", description="SpikeBERT from scratch: a spiking Transformer distilled from BERT.")
    parser.add_argument("--version", action="version", version=f"minispike {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error (for bug reports)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="the whole pipeline on the built-in data, in a few minutes")
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_backend(p)
    p.add_argument("--fast", action="store_true", help="a smaller, quicker demo (for tests)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted demo (without it, a previous demo "
                   "in --out is moved aside to OUT.old-<date-time>)")
    p.set_defaults(func=cmd_demo)

    from .text.download import add_download_arguments, run_download
    p = sub.add_parser("download", help="fetch a task's files from their public sources, verify sha256")
    add_download_arguments(p)
    p.set_defaults(func=run_download)

    p = sub.add_parser("finetune-teacher", help="fine-tune the BERT teacher on a task")
    _add_data(p)
    _add_run(p, "runs/teacher")
    p.add_argument("--teacher", default=None, help="BERT checkpoint directory (default: installed all-MiniLM-L6-v2)")
    _add_train(p, epochs=3, lr=5e-5)
    p.set_defaults(func=cmd_finetune_teacher)

    p = sub.add_parser("pretrain", help="stage 1: distil the plain teacher's features on unlabelled text")
    _add_data(p)
    _add_run(p, "runs/stage1")
    p.add_argument("--teacher", default=None, help="plain BERT checkpoint directory (default: MiniLM)")
    p.add_argument("--corpus", nargs="*", default=None, help="extra text files, one sentence per line")
    p.add_argument("--max-sentences", type=int, default=None, help="use at most this many corpus sentences")
    _add_embedding_init(p)
    _add_student(p)
    _add_train(p, epochs=1, lr=5e-4, weight_decay=5e-3, eval_every=200)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("distill", help="stage 2: distil the fine-tuned teacher on the task")
    _add_data(p)
    _add_run(p, "runs/stage2")
    p.add_argument("--teacher", required=True, help="fine-tuned teacher: a checkpoint or a finetune-teacher run directory")
    p.add_argument("--init", default=None, help="stage-1 student (checkpoint or run directory); default: random init")
    p.add_argument("--augment", type=int, default=10, help="augmented copies per training sentence (default 10, 0 = off)")
    p.add_argument("--cache-teacher", choices=["off", "float16", "float32"], default="off",
                   help="run the teacher once over the training + augmented sentences before training and keep its "
                        "logits and mapped hidden states (real tokens only) in host memory, in this precision; "
                        "later epochs run the student alone (the size is printed first; default off)")
    _add_embedding_init(p)
    _add_student(p)
    _add_train(p, epochs=3, lr=5e-4, weight_decay=5e-3)
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("train-direct", help="the baseline: the student trained on labels only")
    _add_data(p)
    _add_run(p, "runs/direct")
    p.add_argument("--teacher", default=None, help="only its vocabulary is used (default: MiniLM)")
    _add_embedding_init(p)
    _add_student(p)
    _add_train(p, epochs=3, lr=5e-4, weight_decay=5e-3)
    p.set_defaults(func=cmd_train_direct)

    p = sub.add_parser("run", help="all stages for one task: teacher, stage 1, stage 2, energy")
    _add_data(p)
    _add_run(p, "runs/run")
    p.add_argument("--teacher", default=None, help="plain BERT checkpoint directory (default: MiniLM)")
    p.add_argument("--teacher-epochs", type=float, default=3, help="teacher fine-tuning epochs (default 3)")
    p.add_argument("--teacher-lr", type=float, default=5e-5, help="teacher learning rate (default 5e-5)")
    p.add_argument("--stage1-epochs", type=float, default=1, help="stage-1 epochs over the corpus (default 1)")
    p.add_argument("--stage1-sentences", type=int, default=None, help="cap on stage-1 corpus sentences")
    p.add_argument("--skip-stage1", action="store_true", help="stage 2 from a random student (ablation)")
    p.add_argument("--direct-baseline", action="store_true", help="also train the student on labels alone")
    p.add_argument("--augment", type=int, default=10, help="augmented copies per training sentence (default 10)")
    _add_embedding_init(p)
    _add_student(p)
    _add_train(p, epochs=3, lr=5e-4, weight_decay=5e-3)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("evaluate", help="accuracy of a checkpoint (student or teacher) on a split")
    p.add_argument("checkpoint", help="checkpoint directory or run directory")
    _add_data(p, from_checkpoint=True)
    _add_backend(p)
    p.add_argument("--split", default="test", choices=["train", "dev", "test"])
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="label and probabilities for sentences, from a checkpoint")
    p.add_argument("checkpoint", help="checkpoint directory or run directory")
    p.add_argument("texts", nargs="*", help="sentences to classify")
    p.add_argument("--file", default=None, help="a text file, one sentence per line")
    p.add_argument("--task", default=None,
                   help="name the labels after this task's label names (default: the checkpoint's label names)")
    _add_backend(p)
    p.add_argument("--max-length", type=int, default=None, help="tokens per sentence (default: the checkpoint's)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("energy", help="45 nm energy estimate of student vs teacher, per layer")
    p.add_argument("--student", required=True, help="student checkpoint or run directory")
    p.add_argument("--teacher", required=True, help="fine-tuned teacher checkpoint or run directory")
    _add_data(p, from_checkpoint=True)
    p.add_argument("--split", default="test")
    p.add_argument("--sentences", type=int, default=256, help="sentences to average over (default 256)")
    _add_backend(p)
    p.add_argument("--out", default=None, help="write energy.json (and the table) here")
    p.add_argument("--quiet", action="store_true", help="no table on stderr (stdout holds the JSON either way)")
    p.set_defaults(func=cmd_energy)

    p = sub.add_parser("export-official", help="a student in the official SpikeBERT PyTorch layout (docs/scale-out.md)")
    p.add_argument("checkpoint", help="student checkpoint or run directory")
    p.add_argument("official_file", metavar="FILE", help="file to write: .safetensors (for torch) or .npz")
    p.set_defaults(func=cmd_export_official)

    p = sub.add_parser("import-official", help="an official-layout student file as a minispike checkpoint")
    p.add_argument("official_file", metavar="FILE",
                   help=".safetensors or .npz in the official key names (a 'module.' prefix is stripped)")
    p.add_argument("out", help="checkpoint directory to write")
    p.add_argument("--tokenizer", required=True,
                   help="the vocabulary it was trained with (e.g. the teacher's directory)")
    p.add_argument("--heads", type=int, default=None, help="attention heads (required unless the file says)")
    p.add_argument("--T", type=int, default=None, help="time steps (required unless the file says)")
    p.add_argument("--max-length", type=int, default=None, help="tokens per sentence (required unless the file says)")
    p.add_argument("--task", default=None, help="the task it was trained for: its label names (default: the file's)")
    p.add_argument("--tau", type=float, default=None, help="membrane time constant (default: the file's, else 2.0)")
    p.add_argument("--v-threshold", type=float, default=None, help="firing threshold (default: the file's, else 1.0)")
    p.set_defaults(func=cmd_import_official)

    p = sub.add_parser("plot", help="pictures of a run: training curves, spikes, attention, energy")
    p.add_argument("run_dir", help="a run directory (stage 2 or a full run)")
    p.add_argument("--out", default=None, help="where to write the PNGs (default: the run directory)")
    _add_backend(p)
    p.add_argument("--task", default=None, help="task to draw an example sentence from")
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("compare", help="one picture of several runs' evaluations (e.g. dev accuracy) against step")
    p.add_argument("runs", nargs="+", help="run directories (each with a log.jsonl)")
    p.add_argument("--labels", nargs="+", default=None, help="a legend label per run (default: directory names)")
    p.add_argument("--metric", default="accuracy", help="the evaluated quantity (default accuracy; stage 1: held_out_loss)")
    p.add_argument("--out", default=".", help="where to write the PNG (default: here)")
    p.add_argument("--name", default="compare", help="file name without .png (default compare)")
    p.add_argument("--title", default=None, help="figure title")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("report", help="finished runs as one markdown table; mean +- sd over repeated seeds")
    p.add_argument("runs", nargs="+", help="run directories (each with a metrics.json)")
    p.add_argument("--out", default=None, help="also write the table to this file")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("notebooks", help="write every numbered example as a Jupyter notebook (.ipynb)")
    p.add_argument("--out", required=True, help="folder to write the notebooks into")
    p.add_argument("--examples", default=None, help="the examples folder (default: the checkout's examples/)")
    p.set_defaults(func=cmd_notebooks)

    p = sub.add_parser("check", help="grade an exercise: your functions against minispike's own ops")
    p.add_argument("exercise", nargs="?", default=None,
                   help="an exercise (ex07, ex07_lif_bptt) or the path of your file (its name starts with ex07)")
    p.add_argument("--all", action="store_true", help="grade every exercise file in --dir")
    p.add_argument("--reference", action="store_true",
                   help="grade the library's own implementations instead (they all pass)")
    p.add_argument("--dir", default="exercises", help="where the exercise files are (default ./exercises)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("gradcheck-demo", help="check a small network's gradients by finite differences")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_gradcheck_demo)
    for p in sub.choices.values():  # --debug after the command name too
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the full traceback of an error (for bug reports)")
    return parser


def _expected_type(action):
    """(test, description) of a JSON value that can stand for ``action`` in a --config file."""
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return (lambda v: isinstance(v, bool)), "true or false"
    kind = action.type or str
    number = {int: (int,), float: (int, float)}.get(kind)
    one = ((lambda v: isinstance(v, number) and not isinstance(v, bool)) if number else (lambda v: isinstance(v, str)))
    name = {int: "an integer", float: "a number"}.get(kind, "a string")
    if action.choices:
        one, name = (lambda v, base=one: base(v) and v in action.choices), \
            f"one of {', '.join(map(str, action.choices))}"
    if action.nargs in ("*", "+"):
        return (lambda v: isinstance(v, list) and all(one(x) for x in v)), f"a list of {name.split(' ', 1)[-1]}s"
    return one, name


def _apply_config_file(parser, argv):
    """``--config file.json`` sets defaults of the chosen sub-command; flags still win. Returns
    (args, the file's path or None, the keys it set). Unknown keys and values of the wrong type
    are refused, naming the key."""
    args = parser.parse_args(argv)
    path = getattr(args, "config", None)
    if not path:
        return args, None, ()
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
    except FileNotFoundError:
        raise UserError(f"config file {path} not found") from None
    except IsADirectoryError:
        raise UserError(f"config file {path}: is a directory, expected a JSON file") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: undecodable bytes at byte {e.start}, expected UTF-8 JSON") from None
    if not isinstance(values, dict):
        raise UserError(f"{path}: must hold a JSON object of option values")
    sub = parser._subparsers._group_actions[0].choices[args.command]
    options = {a.dest: a for a in sub._actions if a.option_strings and a.dest not in ("help", "config", "debug")}
    unknown = sorted(k for k in values if k.replace("-", "_") not in options)
    if unknown:
        raise UserError(f"{path}: unknown option(s) for {args.command}: {', '.join(unknown)} "
                        f"(known: {', '.join(sorted(options))})")
    for key, value in values.items():
        action = options[key.replace("-", "_")]
        test, expected = _expected_type(action)
        if not (test(value) or (value is None and action.default is None)):
            raise UserError(f"{path}: key {key!r} is {json.dumps(value)} ({type(value).__name__}); expected "
                            f"{expected}, as {action.option_strings[0]} takes")
    sub.set_defaults(**{k.replace("-", "_"): v for k, v in values.items()})
    return parser.parse_args(argv), path, {k.replace("-", "_") for k in values}


def resume_command(argv):
    """The command that continues an interrupted run: the same one, with --resume, without --overwrite."""
    rest = [a for a in argv if a != "--overwrite"]
    return "python -m minispike " + shlex.join(rest + ([] if "--resume" in rest else ["--resume"]))


def main(argv=None):
    """Run one command; every expected failure ends as one line on stderr and exit status 2."""
    argv = sys.argv[1:] if argv is None else [os.fspath(a) for a in argv]
    parser = build_parser()
    debug = "--debug" in argv
    command, args = "minispike", None
    try:
        args, config_path, config_keys = _apply_config_file(parser, argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 0
        command = f"minispike {args.command}"
        sub = parser._subparsers._group_actions[0].choices[args.command]
        validate(args, {a.dest: a.default for a in sub._actions}, config_path, config_keys)
        if getattr(args, "backend", "numpy") != "numpy":
            use_backend(args.backend)
        with _warnings_as_lines():
            return args.func(args)
    except KeyboardInterrupt as e:  # TrainingInterrupted: saved after the step; else the second Ctrl-C
        print(f"{command}: {e or 'stopped at once; the newest checkpoint on disk is kept'}"
              + (f"; continue with: {resume_command(argv)}" if hasattr(args, "resume") else ""),
              file=sys.stderr)
        return 128 + getattr(e, "signal", 2)
    except Exception as e:
        extra = None if debug else missing_extra(e)
        if extra:
            print(f"{command}: error: {extra}", file=sys.stderr)
            return 2
        if debug or not isinstance(e, expected_errors()):
            raise  # a bug in minispike (or --debug): the traceback is the report
        print(f"{command}: error: {one_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

