"""Model selection: the best dev checkpoint, with ties in the metric broken by the lower dev loss."""
import json

import pytest

from minispike.finetune import TrainConfig, fit
from test_training_loop import loss_fn_for, make

CFG = dict(epochs=3, lr=0.05, warmup_ratio=0.1, checkpoint_every=0, eval_every=4, weight_decay=0.0)


def _scripted(values):
    """An evaluate() that returns the given (accuracy, dev_loss) pairs in order."""
    it = iter(values)

    def evaluate():
        acc, loss = next(it)
        return {"accuracy": acc, "dev_loss": loss}
    return evaluate


def _best_step(tmp_path, values):
    model, data = make()
    summary = fit(tmp_path, model, loss_fn_for(model), data, _scripted(values), TrainConfig(**CFG),
                  model_config={}, quiet=True)
    best = json.loads((tmp_path / "checkpoints" / "best" / "state.json").read_text())
    return summary["best_step"], best["step"]


@pytest.mark.parametrize("values, step", [
    ([(0.5, 0.69), (0.5, 0.60), (0.5, 0.40), (0.5, 0.50), (0.5, 0.45), (0.5, 0.41)], 12),  # equal accuracy: lowest loss
    ([(0.5, 0.30), (0.6, 0.90), (0.6, 0.80), (0.5, 0.10), (0.6, 0.85), (0.4, 0.01)], 12),  # accuracy first, then loss
    ([(0.7, 0.50), (0.7, 0.50), (0.6, 0.10), (0.7, 0.60), (0.7, 0.55), (0.7, 0.52)], 4),   # an equal loss keeps the earlier
])
def test_ties_in_accuracy_go_to_the_lower_dev_loss(tmp_path, values, step):
    assert _best_step(tmp_path, values) == (step, step)  # reported and saved


def test_without_a_dev_loss_the_earliest_best_is_kept(tmp_path):
    model, data = make()
    accs = iter([0.5, 0.7, 0.7, 0.6, 0.7, 0.7])
    summary = fit(tmp_path, model, loss_fn_for(model), data, lambda: {"accuracy": next(accs)},
                  TrainConfig(**CFG), model_config={}, quiet=True)
    assert summary["best_step"] == 8
