"""The shared training loop: it learns, it resumes exactly, it stops cleanly on NaN."""
import json
import os

import numpy as np
import pytest

from minispike import nn, ops
from minispike.finetune import TrainConfig, TrainingDiverged, fit, load_weights
from minispike.io.checkpoint import load_checkpoint
from minispike.text.batching import Batcher
from minispike.tensor import Tensor


def ToyData(n=64, batch=8, seed=0):
    """A linearly separable problem, served by the real Batcher (features ride as extras)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    data = Batcher([np.array([1])] * n, labels=y, batch_size=batch, seed=seed, extras={"x": x})
    data.x, data.y = x, y
    return data


class Toy(nn.Module):
    def __init__(self):
        self.hidden = nn.Linear(4, 8)
        self.drop = nn.Dropout(0.2)  # so the RNG state matters for resuming
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        return self.out(self.drop(ops.tanh(self.hidden(Tensor(x)))))


def make(seed=0):
    from minispike import backend
    backend.seed(seed)
    return Toy(), ToyData()


def loss_fn_for(model):
    def loss_fn(batch):
        logits = model(batch["x"])
        return ops.cross_entropy(logits, batch["labels"]), {}
    return loss_fn


def evaluate_for(model, data):
    def evaluate():
        pred = model(data.x).data.argmax(-1)
        return {"accuracy": float((pred == data.y).mean())}
    return evaluate


CFG = dict(epochs=3, lr=0.05, warmup_ratio=0.1, checkpoint_every=5, eval_every=0, weight_decay=0.0)


def test_fit_learns_and_writes_a_run_directory(tmp_path):
    model, data = make()
    summary = fit(tmp_path, model, loss_fn_for(model), data, evaluate_for(model, data), TrainConfig(**CFG),
                  model_config={"toy": True}, quiet=True)
    assert summary["best_dev"] >= 0.9 and summary["steps"] == 24
    assert {"config.json", "log.jsonl", "checkpoints"} <= set(os.listdir(tmp_path))
    events = [json.loads(line)["event"] for line in open(tmp_path / "log.jsonl")]
    assert events[0] == "start" and events[-1] == "end" and events.count("eval") == 3
    fresh = Toy()
    load_weights(fresh, tmp_path / "checkpoints" / "best")
    assert evaluate_for(fresh.eval(), data)() == {"accuracy": summary["best_dev"]}


class Crash(Exception):
    pass


def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path):
    model, data = make()
    full = fit(tmp_path / "a", model, loss_fn_for(model), data, evaluate_for(model, data),
               TrainConfig(**CFG), model_config={}, quiet=True)
    reference = {k: v.copy() for k, v in model.state_dict().items()}

    model, data = make()
    calls = {"n": 0}
    inner = loss_fn_for(model)

    def crashing(batch):
        calls["n"] += 1
        if calls["n"] == 13:  # mid-epoch 2, three steps after the step-10 checkpoint
            raise Crash()
        return inner(batch)
    with pytest.raises(Crash):
        fit(tmp_path / "b", model, crashing, data, evaluate_for(model, data), TrainConfig(**CFG),
            model_config={}, quiet=True)
    assert load_checkpoint(tmp_path / "b" / "checkpoints" / "last").extra["step"] == 10

    model, data = make(seed=123)  # a different init: everything must come from the checkpoint
    resumed = fit(tmp_path / "b", model, loss_fn_for(model), data, evaluate_for(model, data),
                  TrainConfig(**CFG), model_config={}, quiet=True, resume=True)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, reference[k], err_msg=k)
    assert resumed["best_dev"] == full["best_dev"] and resumed["steps"] == full["steps"]


def test_nan_loss_stops_with_the_step_and_keeps_the_last_checkpoint(tmp_path):
    model, data = make()
    inner = loss_fn_for(model)
    calls = {"n": 0}

    def poisoned(batch):
        calls["n"] += 1
        loss, m = inner(batch)
        return (loss * float("nan"), m) if calls["n"] == 8 else (loss, m)
    with pytest.raises(TrainingDiverged, match="at step 7"):
        fit(tmp_path, model, poisoned, data, evaluate_for(model, data), TrainConfig(**CFG),
            model_config={}, quiet=True)
    last = load_checkpoint(tmp_path / "checkpoints" / "last")
    assert last.extra["step"] == 5
    assert all(np.isfinite(v).all() for v in last.tensors.values())
