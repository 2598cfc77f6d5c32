"""The one training loop that teacher fine-tuning, stage 1 and stage 2 share.

They differ only in the model pair and the loss, so each passes a ``loss_fn(batch) ->
(loss Tensor, metrics dict)`` and an ``evaluate() -> metrics dict``. The loop does the rest:

    for each step:   loss = loss_fn(batch)
                     grads = backward(loss);  g = global gradient norm; clip to it
                     loss or g NaN/inf: stop before the update, name the step and tensor
                     lr = cosine schedule with linear warm-up
                     AdamW step (decoupled weight decay)
    every eval:      metrics = evaluate()  (dev split only) -> log.jsonl; best -> checkpoints/best
    every N steps:   checkpoints/last  (weights, optimizer moments, step, data position, RNG,
                     how many log records precede it)
    before each save: every tensor must be finite (else stop: no checkpoint holds a NaN)
    SIGINT/SIGTERM:  finish the step, save checkpoints/last, stop (TrainingInterrupted);
                     a second signal stops at once

The run directory (``rundir``: config.json, log.jsonl, checkpoints/{last,best},
metrics.json, a lock) is held for the whole loop. ``resume=True`` continues from
``checkpoints/last`` exactly: the same optimizer state, schedule position, random
generator, data order, and the log cut back to what it held at that checkpoint; settings
that differ from config.json are refused (``rundir.CHANGEABLE`` may change, and are
recorded).
"""
from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field

from . import backend, optim, rundir
from .io.checkpoint import OPTIMIZER_PREFIX, load_checkpoint, read_json, save_checkpoint, write_json
from .io.safetensors import atomic_write
from .nn.module import first_non_finite
from .progress import Progress

__all__ = ["TrainConfig", "TrainingDiverged", "TrainingInterrupted", "fit", "RunLog", "load_weights"]


@dataclass
class TrainConfig:
    """Optimisation settings shared by every stage (defaults: teacher fine-tuning)."""

    epochs: float = 3
    batch_size: int = 32
    lr: float = 5e-5
    weight_decay: float = 0.01
    betas: tuple = (0.9, 0.999)
    warmup_ratio: float = 0.1
    min_lr_ratio: float = 0.0
    clip_norm: float = 1.0
    eval_every: int = 0  # steps between evaluations; 0 = at the end of each epoch
    checkpoint_every: int = 100  # steps between checkpoints/last
    seed: int = 0
    max_steps: int | None = None  # stop early (smoke runs, budgets)
    select_metric: str = "accuracy"  # higher is better; the best dev value is kept
    extra: dict = field(default_factory=dict)

    def to_dict(self):
        return asdict(self)


class TrainingDiverged(RuntimeError):
    """The loss, the gradients or the weights became NaN or infinite; nothing of that step
    was applied or saved, and the checkpoints on disk are left as they were (all finite)."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: the step was finished and ``checkpoints/last`` saved; ``--resume``
    continues exactly. ``signal``: the signal's number; ``checkpoint``: the directory saved."""

    def __init__(self, message, signum, checkpoint):
        super().__init__(message)
        self.signal, self.checkpoint = signum, checkpoint

    def __str__(self):
        return str(self.args[0])


class RunLog:
    """Append-only JSON-lines log of a run (``log.jsonl``), one object per event.

    ``records`` counts the lines written; a checkpoint stores it, so that a resumed run cuts
    the log back to exactly what it held at that checkpoint (``truncate_to``)."""

    def __init__(self, run_dir):
        self.path = os.path.join(run_dir, "log.jsonl")
        self.records = 0

    def write(self, **record):
        record.setdefault("time", round(time.time(), 3))
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=float) + "\n")
        self.records += 1

    def read(self):
        return rundir.read_log(self.path) if os.path.exists(self.path) else []

    def start(self):
        """A fresh run: a fresh, empty log."""
        atomic_write(self.path, lambda f: None)
        self.records = 0

    def truncate_to(self, count):
        """On resume: keep the first ``count`` records (those before the checkpoint; a torn
        last line is dropped with them), atomically."""
        kept = self.read()[:count]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        atomic_write(self.path, lambda f: f.write(text.encode("utf-8")))
        self.records = len(kept)


class _StopOnSignal:
    """While active, SIGINT/SIGTERM ask the loop to stop after the current step (``signum``);
    a second one raises KeyboardInterrupt at once. Only in the main thread (where Python
    delivers signals); elsewhere a no-op."""

    SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s)

    def __init__(self):
        self.signum, self.previous = None, {}

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        rundir.note(f"{signal.Signals(signum).name}: stopping after this step and saving a checkpoint "
                    "to --resume from (press Ctrl-C again to stop at once, without saving)")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)


def _optimizer_tensors(opt, names):
    out = {}
    for kind, buffers in opt.state_dict()["buffers"].items():
        for name, a in zip(names, buffers):
            if a is not None:
                out[f"{OPTIMIZER_PREFIX}{kind}.{name}"] = a
    return out


def _restore_optimizer(opt, names, tensors, state):
    buffers = {}
    for kind in opt.state_dict()["buffers"]:
        buffers[kind] = [tensors.get(f"{OPTIMIZER_PREFIX}{kind}.{n}") for n in names]
    opt.load_state_dict({"step_count": state["optimizer_step"], "lr": state["lr"], "buffers": buffers})


def load_weights(model, directory, source=None):
    """Load a checkpoint directory's tensors into ``model`` (strict: every key and shape)."""
    ckpt = load_checkpoint(directory)
    model.load_state_dict(ckpt.weights, source=source or os.path.join(directory, "model.safetensors"))
    return ckpt


def fit(run_dir, model, loss_fn, data, evaluate, cfg: TrainConfig, *, model_config: dict,
        resume=False, quiet=False, desc="train", writer=None):
    """Train ``model`` on ``data`` with ``loss_fn``; keep the best dev checkpoint.

    ``data`` is a ``text.batching.Batcher`` (or anything with ``len()`` batches per epoch,
    ``epoch`` and ``position`` attributes, and iteration over the rest of the current epoch);
    each batch's ``mask`` counts the tokens. ``writer``: a callable(dir)
    that adds files to every checkpoint (the tokenizer's ``save_pretrained``). ``evaluate()`` returns
    the dev metrics: ``cfg.select_metric`` (higher is better) picks the best checkpoint, and its
    ``"dev_loss"``, when given, breaks ties (lower wins: on a small dev set many evaluations share one
    accuracy, and the earliest of them is often a near-uniform model). Returns a dict with the
    best dev metrics, the step they were reached at and the wall time.
    """
    with rundir.claim(run_dir, resume=resume) as claimed, _StopOnSignal() as stop:
        return _fit(claimed, model, loss_fn, data, evaluate, cfg, model_config, resume, quiet, desc, writer, stop)


def _fit(claimed, model, loss_fn, data, evaluate, cfg, model_config, resume, quiet, desc, writer, stop):
    run_dir = claimed.path
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    last_dir, best_dir = os.path.join(ckpt_dir, "last"), os.path.join(ckpt_dir, "best")
    log = RunLog(run_dir)
    names = [n for n, _ in model.named_parameters()]
    params = [p for _, p in model.named_parameters()]
    opt = optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)

    batches_per_epoch = len(data)
    total_steps = int(math.ceil(cfg.epochs * batches_per_epoch))
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    warmup = int(cfg.warmup_ratio * total_steps)

    config = {"train": cfg.to_dict(), "model": model_config}
    if claimed.settings is not None:
        config["settings"] = claimed.settings
    step, epoch, position, best, best_step, elapsed = 0, 0, 0, -math.inf, None, 0.0
    best_loss = math.inf  # the dev loss at the best checkpoint: breaks ties of the selection metric
    last_eval = saved_at = None  # the steps of the newest evaluation and checkpoints/last
    backend.seed(cfg.seed)
    if resume:
        config_path = os.path.join(run_dir, "config.json")
        stored = read_json(config_path, "config.json") if os.path.isfile(config_path) else {}
        rundir.refuse_changed(run_dir, stored, rundir.normalise(config))
        ckpt = load_checkpoint(last_dir)
        bad = first_non_finite(ckpt.tensors)
        if bad:
            raise rundir.RunDirError(f"{ckpt.path}: tensor {bad} holds NaN or infinite values; refusing to resume")
        state = ckpt.extra or {}
        model.load_state_dict(ckpt.weights, source=ckpt.path)
        _restore_optimizer(opt, names, ckpt.tensors, state)
        step, epoch, position = state["step"], state["epoch"], state["position"]
        best, best_step, elapsed = state["best"], state["best_step"], state["elapsed"]
        best_loss = state.get("best_loss", math.inf)
        last_eval, saved_at = state.get("last_eval"), step
        backend.get_rng().bit_generator.state = state["rng"]
        count = state.get("log_records")
        if count is None:  # a checkpoint of an older minispike: the records up to its step
            count = sum(1 for r in log.read() if r.get("step", 0) <= step)
        log.truncate_to(count)
        write_json(config_path, {**stored, **config})  # the changeable settings as they are now
        log.write(event="resume", step=step, epoch=epoch, position=position)
    else:  # a fresh run (claim made sure the directory holds no other run)
        log.start()
        write_json(os.path.join(run_dir, "config.json"), config)
        log.write(event="start", step=0, total_steps=total_steps, batches_per_epoch=batches_per_epoch)

    def diverged(what, tensor=None):
        log.write(event="diverged", step=step, reason=what, tensor=tensor)
        kept = [f"{d} (step {load_checkpoint(d, load_tensors=False).extra['step']})"
                for d in (best_dir, last_dir) if os.path.isdir(d)]
        raise TrainingDiverged(
            f"training diverged at step {step} (epoch {epoch + 1}, batch {position}): {what}"
            + (f"; first non-finite tensor: {tensor}" if tensor else "")
            + "; nothing of it was applied or saved. "
            + (f"The checkpoints on disk hold finite weights and load: {', '.join(kept)}. " if kept else
               "No checkpoint was written before it. ")
            + "Start again with a lower --lr (or a --clip-norm) and --overwrite, or in another --out")

    def checked(tensors, what):
        bad = first_non_finite(tensors)
        if bad:
            diverged(f"the {what} to be saved are not finite", bad)
        return tensors

    def save_last():
        nonlocal saved_at
        state = {"step": step, "epoch": epoch, "position": position, "best": best, "best_loss": best_loss,
                 "best_step": best_step, "elapsed": elapsed + time.perf_counter() - t0,
                 "optimizer_step": opt.step_count, "lr": opt.lr, "rng": backend.get_rng().bit_generator.state,
                 "last_eval": last_eval, "log_records": log.records}
        tensors = dict(model.state_dict())
        tensors.update(_optimizer_tensors(opt, names))
        save_checkpoint(last_dir, checked(tensors, "weights and optimizer moments"), model_config, extra=state,
                        writer=writer)
        saved_at = step

    def run_eval():
        nonlocal best, best_loss, best_step, last_eval
        last_eval = step
        model.eval()
        metrics = evaluate()
        model.train()
        log.write(event="eval", step=step, epoch=epoch, **metrics)
        value = metrics.get(cfg.select_metric, -math.inf)
        loss = metrics.get("dev_loss", math.inf)  # ties (e.g. equal accuracy on a small dev set): lower loss wins
        if value > best or (value == best and loss < best_loss):
            best, best_loss, best_step = value, loss, step
            save_checkpoint(best_dir, checked(model.state_dict(), "weights"), model_config,
                            extra={"step": step, "dev": metrics}, writer=writer)
        return metrics

    t0 = time.perf_counter()
    model.train()
    while step < total_steps:
        n = len(data)
        data.epoch, data.position = epoch, position
        with Progress(min(n - position, total_steps - step), f"{desc} epoch {epoch + 1}", quiet=quiet) as bar:
            for batch in data:
                if step >= total_steps:
                    break
                opt.lr = optim.cosine_schedule(step, total_steps, cfg.lr, warmup, cfg.min_lr_ratio)
                loss, metrics = loss_fn(batch)
                opt.zero_grad()
                loss.backward()
                grad_norm = optim.clip_grad_norm(params, cfg.clip_norm or math.inf)  # 0 = no clipping
                value, norm = _to_host(loss.data, grad_norm)  # the step's one device sync
                if not math.isfinite(value):
                    diverged(f"the loss is {value}", first_non_finite(model.state_dict()))
                if not math.isfinite(norm):
                    diverged(f"the gradient norm is {norm}",
                             first_non_finite({k: p.grad for k, p in zip(names, params) if p.grad is not None}))
                opt.step()
                step += 1
                position += 1
                tokens = int(batch["mask"].sum())
                logged = step % 10 == 0 or step == 1
                if logged:  # loss terms stay on the device until here: one sync each
                    metrics = {k: float(v) for k, v in metrics.items()}
                bar.update(1, tokens=tokens, loss=value, **{k: v for k, v in metrics.items() if isinstance(v, float)})
                if logged:
                    log.write(event="train", step=step, epoch=epoch, loss=value, lr=opt.lr, grad_norm=norm, **metrics)
                if cfg.eval_every and step % cfg.eval_every == 0:
                    run_eval()
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    save_last()
                if stop.signum is not None:
                    if saved_at != step:
                        save_last()
                    name = signal.Signals(stop.signum).name
                    log.write(event="interrupted", step=step, signal=name)
                    raise TrainingInterrupted(f"{name} after step {step}: saved {last_dir}, from which --resume "
                                              "continues exactly",
                                              stop.signum, last_dir)
        if position >= n:
            if not cfg.eval_every:
                run_eval()
            epoch, position = epoch + 1, 0
    if last_eval != step:
        run_eval()
    if saved_at != step:
        save_last()
    wall = elapsed + time.perf_counter() - t0
    summary = {"best_dev": best, "best_step": best_step, "steps": step, "wall_seconds": round(wall, 1)}
    log.write(event="end", step=step, **summary)
    return summary


def _to_host(loss, norm):
    """(loss, gradient norm) as Python floats, in one device-to-host copy."""
    xp = backend.get_array_module(loss)
    pair = xp.stack([xp.asarray(loss, dtype=xp.float64).reshape(()), xp.asarray(norm, dtype=xp.float64).reshape(())])
    value, norm = backend.to_numpy(pair).tolist()
    return value, norm
