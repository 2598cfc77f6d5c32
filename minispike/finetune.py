"""The one training loop that teacher fine-tuning, stage 1 and stage 2 share.

They differ only in the model pair and the loss, so each passes a ``loss_fn(batch) ->
(loss Tensor, metrics dict)`` and an ``evaluate() -> metrics dict``. The loop does the rest:

    for each step:   loss = loss_fn(batch)                     (NaN/inf: stop, name the step)
                     grads = backward(loss);  clip to a global norm
                     lr = cosine schedule with linear warm-up
                     AdamW step (decoupled weight decay)
    every eval:      metrics = evaluate()  (dev split only) -> log.jsonl; best -> checkpoints/best
    every N steps:   checkpoints/last  (weights, optimizer moments, step, data position, RNG)

A run directory holds ``config.json``, ``log.jsonl``, ``checkpoints/{last,best}`` and
``metrics.json``. ``resume=True`` continues from ``checkpoints/last`` exactly: the same
optimizer state, schedule position, random generator and data order.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field

from . import backend, optim
from .io.checkpoint import load_checkpoint, save_checkpoint, write_json
from .progress import Progress

__all__ = ["TrainConfig", "TrainingDiverged", "fit", "RunLog", "load_weights"]


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
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


class RunLog:
    """Append-only JSON-lines log of a run (``log.jsonl``), one object per event."""

    def __init__(self, run_dir):
        self.path = os.path.join(run_dir, "log.jsonl")

    def write(self, **record):
        record.setdefault("time", round(time.time(), 3))
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=float) + "\n")

    def read(self):
        if not os.path.exists(self.path):
            return []
        with open(self.path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def truncate_after(self, step):
        """On resume: forget entries logged after the checkpoint's step (they will be redone)."""
        kept = [r for r in self.read() if r.get("step", 0) <= step]
        with open(self.path, "w", encoding="utf-8") as f:
            for r in kept:
                f.write(json.dumps(r) + "\n")


def _optimizer_tensors(opt, names):
    out = {}
    for kind, buffers in opt.state_dict()["buffers"].items():
        for name, a in zip(names, buffers):
            if a is not None:
                out[f"optimizer.{kind}.{name}"] = a
    return out


def _restore_optimizer(opt, names, tensors, state):
    buffers = {}
    for kind in opt.state_dict()["buffers"]:
        buffers[kind] = [tensors.get(f"optimizer.{kind}.{n}") for n in names]
    opt.load_state_dict({"step_count": state["optimizer_step"], "lr": state["lr"], "buffers": buffers})


def load_weights(model, directory, source=None):
    """Load a checkpoint directory's tensors into ``model`` (strict: every key and shape)."""
    ckpt = load_checkpoint(directory)
    weights = {k: v for k, v in ckpt.tensors.items() if not k.startswith("optimizer.")}
    model.load_state_dict(weights, source=source or os.path.join(directory, "model.safetensors"))
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
    os.makedirs(run_dir, exist_ok=True)
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

    step, epoch, position, best, best_step, elapsed = 0, 0, 0, -math.inf, None, 0.0
    best_loss = math.inf  # the dev loss at the best checkpoint: breaks ties of the selection metric
    backend.seed(cfg.seed)
    if resume and os.path.isdir(last_dir):
        ckpt = load_checkpoint(last_dir)
        state = ckpt.extra or {}
        model.load_state_dict({k: v for k, v in ckpt.tensors.items() if not k.startswith("optimizer.")},
                              source=last_dir)
        _restore_optimizer(opt, names, ckpt.tensors, state)
        step, epoch, position = state["step"], state["epoch"], state["position"]
        best, best_step, elapsed = state["best"], state["best_step"], state["elapsed"]
        best_loss = state.get("best_loss", math.inf)
        backend.get_rng().bit_generator.state = state["rng"]
        log.truncate_after(step)
        log.write(event="resume", step=step, epoch=epoch, position=position)
    else:  # a fresh run: a fresh log (the checkpoints are replaced too)
        open(log.path, "w").close()
        write_json(os.path.join(run_dir, "config.json"), {"train": cfg.to_dict(), "model": model_config})
        log.write(event="start", step=0, total_steps=total_steps, batches_per_epoch=batches_per_epoch)

    def save_last():
        state = {"step": step, "epoch": epoch, "position": position, "best": best, "best_loss": best_loss, "best_step": best_step,
                 "elapsed": elapsed + time.perf_counter() - t0, "optimizer_step": opt.step_count,
                 "lr": opt.lr, "rng": backend.get_rng().bit_generator.state}
        tensors = dict(model.state_dict())
        tensors.update(_optimizer_tensors(opt, names))
        save_checkpoint(last_dir, tensors, model_config, extra=state, writer=writer)

    last_eval = None

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
            save_checkpoint(best_dir, model.state_dict(), model_config,
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
                value = float(loss.item())
                if not math.isfinite(value):
                    log.write(event="diverged", step=step, loss=str(value))
                    raise TrainingDiverged(
                        f"the loss became {value} at step {step} (epoch {epoch + 1}, batch {position}); "
                        f"the last good checkpoint is {last_dir if os.path.isdir(last_dir) else 'not written yet'}")
                opt.zero_grad()
                loss.backward()
                grad_norm = optim.clip_grad_norm(params, cfg.clip_norm) if cfg.clip_norm else None
                opt.step()
                step += 1
                position += 1
                tokens = int(batch["mask"].sum())
                logged = step % 10 == 0 or step == 1
                if logged:  # loss terms and the norm stay on the device until here: one sync each
                    metrics = {k: float(v) for k, v in metrics.items()}
                bar.update(1, tokens=tokens, loss=value, **{k: v for k, v in metrics.items() if isinstance(v, float)})
                if logged:
                    log.write(event="train", step=step, epoch=epoch, loss=value, lr=opt.lr,
                              grad_norm=None if grad_norm is None else float(grad_norm), **metrics)
                if cfg.eval_every and step % cfg.eval_every == 0:
                    run_eval()
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    save_last()
        if position >= n:
            if not cfg.eval_every:
                run_eval()
            epoch, position = epoch + 1, 0
    if last_eval != step:
        run_eval()
    save_last()
    wall = elapsed + time.perf_counter() - t0
    summary = {"best_dev": best, "best_step": best_step, "steps": step, "wall_seconds": round(wall, 1)}
    log.write(event="end", step=step, **summary)
    return summary
