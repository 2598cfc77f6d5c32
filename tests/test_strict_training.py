"""Training on the strict (CuPy-like) backend, at tiny sizes: every path a GPU run takes
(fit with resume, both distillation stages, AdamW with clipping, checkpoints, energy, the
pipeline), that it gives exactly the NumPy run's numbers, and how often a step waits for
the device."""
import json

import numpy as np
import pytest

from minispike import backend, ops, optim
from minispike.distill import LossWeights
from minispike.finetune import TrainConfig, fit
from minispike.models.bert import BertConfig, BertForSequenceClassification
from minispike.models.spikebert import SpikeBert, SpikeBertConfig
from minispike.pipeline import (StageConfig, _student_loss, distill, energy_report, evaluate, finetune_teacher,
                                make_small_teacher, predict, pretrain, train_direct)
from minispike.text.batching import Batcher
from minispike.text.builtin import builtin_texts

TINY = {"dim": 32, "depth": 2, "heads": 4}


@pytest.fixture(scope="module")
def plain_teacher(tmp_path_factory):
    return make_small_teacher(tmp_path_factory.mktemp("strict") / "plain", builtin_texts(), hidden=32, layers=2,
                              heads=4)


def on_device(model):
    return all(backend.get_array_module(p.data) is backend.STRICT for p in model.parameters())


def test_the_pipeline_runs_on_the_strict_backend(strict, plain_teacher, tmp_path):
    cfg = StageConfig(task="builtin", max_length=16, quiet=True, cache_dir=str(tmp_path / "cache"))
    short = dict(batch_size=16, max_steps=3, checkpoint_every=2)
    teacher = finetune_teacher(tmp_path / "teacher", cfg, TrainConfig(lr=2e-3, **short), teacher=plain_teacher)
    s1 = pretrain(tmp_path / "s1", cfg, TrainConfig(lr=2e-3, eval_every=2, **short), teacher=plain_teacher,
                  preset="tiny", student_overrides=TINY, max_sentences=64)
    s2 = distill(tmp_path / "s2", cfg, TrainConfig(lr=2e-3, **short), teacher=teacher["checkpoint"],
                 student_init=s1["checkpoint"], preset="tiny", augment_copies=1, student_overrides=TINY)
    assert s2["augmented_sentences"] > 0 and s2["steps"] == 3
    for run in ("teacher", "s1", "s2"):
        train = [r for r in map(json.loads, open(tmp_path / run / "log.jsonl")) if r["event"] == "train"]
        assert train and all(isinstance(v, float) for r in train for k, v in r.items() if k.startswith("loss"))
    student = SpikeBert.from_pretrained(s2["checkpoint"])  # checkpoint load: the weights land on the device
    assert on_device(student)
    assert evaluate(tmp_path / "s2", cfg, "test")["accuracy"] == s2["test_accuracy"]
    assert len(predict(tmp_path / "s2", ["a warm film", "a cold room"])) == 2
    energy = energy_report(s2["checkpoint"], teacher["checkpoint"], cfg, max_sentences=8)
    assert 0 < energy["ratio"] < energy["ratio_strict"]


class Crash(Exception):
    pass


def run_fit(out, crash_at=None, resume=False):
    """A tiny student, 6 steps of labels-only AdamW with clipping on every step; optionally
    killed at the start of step ``crash_at`` (after the checkpoint of step 4)."""
    backend.seed(0)
    model = SpikeBert(SpikeBertConfig.preset("tiny", vocab_size=30, max_length=8, **TINY))
    rng = np.random.default_rng(0)
    data = Batcher([rng.integers(1, 30, n) for n in (5, 7, 3, 8, 6, 4, 8, 2)], rng.integers(0, 2, 8),
                   batch_size=2, seed=0)
    steps = []

    def loss_fn(batch):
        steps.append(len(steps))
        if len(steps) == crash_at:
            raise Crash
        loss = ops.cross_entropy(model(backend.asarray(batch["ids"]), backend.asarray(batch["mask"])).logits,
                                 backend.asarray(batch["labels"]))
        return loss, {"loss_ce": loss.data}

    cfg = TrainConfig(lr=3e-3, clip_norm=0.05, max_steps=6, checkpoint_every=4)
    fit(out, model, loss_fn, data, lambda: {}, cfg, model_config={}, resume=resume, quiet=True)
    return {n: backend.to_numpy(p.data) for n, p in model.named_parameters()}, model


def test_strict_training_resumes_and_equals_numpy_exactly(tmp_path):
    """AdamW with clipping, checkpoints and resume on the strict backend: bit for bit the NumPy run."""
    reference, _ = run_fit(tmp_path / "numpy")
    backend.use("strict")
    full, model = run_fit(tmp_path / "full")
    assert on_device(model)
    with pytest.raises(Crash):
        run_fit(tmp_path / "cut", crash_at=6)
    resumed, _ = run_fit(tmp_path / "cut", resume=True)
    for name in reference:
        np.testing.assert_array_equal(full[name], reference[name], err_msg=name)
        np.testing.assert_array_equal(resumed[name], reference[name], err_msg=name)
    norms = [r["grad_norm"] for r in map(json.loads, open(tmp_path / "full" / "log.jsonl")) if r["event"] == "train"]
    assert norms and min(norms) > 0.05  # clipping acted


def test_clip_grad_norm_on_the_device(strict):
    from minispike.nn import Parameter
    a, b = Parameter(strict.asarray(np.zeros(1))), Parameter(strict.asarray(np.zeros(2)))
    a.grad, b.grad = strict.asarray(np.array([3.0])), strict.asarray(np.array([0.0, 4.0]))
    with backend.count_syncs() as c:
        norm = optim.clip_grad_norm([a, b], 1.0)
    assert c.count == 0 and float(norm) == 5.0
    np.testing.assert_allclose(backend.to_numpy(strict.concatenate([a.grad, b.grad])), [0.6, 0.0, 0.8], rtol=1e-6)
    kept = strict.asarray(np.array([0.3]))
    a.grad, b.grad = kept, strict.asarray(np.array([0.0, 0.4]))
    optim.clip_grad_norm([a, b], 1.0)
    assert float(a.grad[0]) == 0.3  # under the limit: untouched, exactly


def test_one_training_step_of_the_cpu_preset_waits_for_the_device_once(strict, tmp_path):
    """Stage 2 on the cpu preset (B 2): an unlogged step syncs once (loss and gradient norm
    together); a logged step adds one per loss term. Before: 131 per step (119 in clip_grad_norm,
    5 masked MSEs, 4 loss terms, BERT's mask check, nonzero on the labelled rows, the loss)."""
    backend.seed(0)
    teacher = BertForSequenceClassification(BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2,
                                                       num_attention_heads=4, intermediate_size=64,
                                                       max_position_embeddings=16, num_labels=2))
    student = SpikeBert(SpikeBertConfig.preset("cpu", vocab_size=40, teacher_dim=32, max_length=8))
    rng = np.random.default_rng(0)
    sentences = [rng.integers(1, 40, n) for n in (5, 6, 4, 6, 5, 3, 6, 6)]
    data = Batcher(sentences, np.array([0, 1, -1, 1, 0, -1, 1, 0]), batch_size=2, seed=0)  # -1: no gold label
    loss_fn = _student_loss(student, teacher.eval(), LossWeights.stage2(), with_logits=True)
    starts = []

    def step_loss(batch):
        starts.append(counter.count)  # syncs so far, at the start of each step
        return loss_fn(batch)

    with backend.count_syncs() as counter:
        fit(tmp_path, student, step_loss, data, lambda: {}, TrainConfig(max_steps=3, checkpoint_every=0),
            model_config={})
    logged, unlogged = starts[1] - starts[0], starts[2] - starts[1]  # step 1 is logged, step 2 is not
    assert unlogged == 1, counter.sites
    assert logged == 1 + 4, counter.sites  # + features, embedding, KL, CE
