"""The model API a transformers user expects, and checkpoints that carry their task.

save_pretrained / from_pretrained for the student (eval mode, equal logits), ``minispike.load``
for both kinds, eval mode from every ``from_pretrained``, the module tree as ``repr``,
spikingjelly's ``surrogate_function=`` keyword, the label fields in every checkpoint that a
stage writes, evaluate / predict / energy taking task and length from the checkpoint, and the
refusals: another number of classes, a student where a teacher belongs and the reverse.
"""
import json
import shutil

import numpy as np
import pytest

import minispike
from minispike import backend, ops
from minispike.cli import main
from minispike.finetune import TrainConfig, fit
from minispike.models.bert import BertConfig, BertForSequenceClassification, BertModel
from minispike.models.spikebert import SpikeBert, SpikeBertConfig
from minispike.pipeline import (PipelineError, StageConfig, distill, energy_report, evaluate, finetune_teacher,
                                make_small_teacher, predict, pretrain, train_direct)
from minispike.spiking.lif import LIF
from minispike.spiking.surrogate import ATan
from minispike.text.batching import Batcher
from minispike.text.builtin import builtin_texts, builtin_tokenizer

LABELS = {"0": "negative", "1": "positive"}  # the built-in task's label names
STUDENT = {"dim": 16, "depth": 1, "heads": 2}
IDS = np.array([[2, 5, 7, 9, 3], [2, 11, 3, 0, 0]])
MASK = (IDS != 0).astype(np.int64)


def student(**overrides):
    backend.seed(0)
    return SpikeBert(SpikeBertConfig.preset("tiny", **{"id2label": LABELS, "task": "builtin", **overrides}))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny runs of every stage that writes a checkpoint (two steps each, max length 12)."""
    d = tmp_path_factory.mktemp("model_api")
    plain = make_small_teacher(d / "plain", builtin_texts(), hidden=16, layers=1, heads=2)
    cfg = StageConfig(task="builtin", max_length=12, quiet=True, cache_dir=str(d / "cache"))
    steps = TrainConfig(epochs=1, lr=1e-3, batch_size=32, max_steps=2, checkpoint_every=1)
    finetune_teacher(d / "teacher", cfg, steps, teacher=plain)
    pretrain(d / "stage1", cfg, steps, teacher=plain, preset="tiny", max_sentences=64, student_overrides=STUDENT)
    distill(d / "stage2", cfg, steps, teacher=d / "teacher", preset="tiny", augment_copies=0,
            student_overrides=STUDENT)
    train_direct(d / "direct", cfg, steps, teacher=plain, preset="tiny", student_overrides=STUDENT)
    return d


# -- save_pretrained / from_pretrained / load --------------------------------------------------
def test_student_round_trip_gives_equal_logits_in_eval_mode(tmp_path):
    model = student()
    model.save_pretrained(tmp_path / "s", tokenizer=builtin_tokenizer(vocab_size=100))
    assert {"config.json", "model.safetensors", "vocab.txt"} <= {p.name for p in (tmp_path / "s").iterdir()}
    back = SpikeBert.from_pretrained(tmp_path / "s")
    assert not any(m.training for _, m in back.named_modules())
    assert back.config == model.config
    np.testing.assert_array_equal(back(IDS, MASK).logits.numpy(), model.eval()(IDS, MASK).logits.numpy())
    config = json.loads((tmp_path / "s" / "config.json").read_text())
    assert config["model_type"] == "spikebert" and config["id2label"] == LABELS
    assert config["label2id"] == {"negative": 0, "positive": 1} and config["task"] == "builtin"


def test_load_returns_the_kind_the_directory_holds(tmp_path):
    student().save_pretrained(tmp_path / "student")
    cfg = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    BertForSequenceClassification(cfg).save_pretrained(tmp_path / "teacher")
    BertModel(BertConfig(**{**cfg.__dict__, "extra": {}})).save_pretrained(tmp_path / "plain")
    kinds = {name: minispike.load(tmp_path / name) for name in ("student", "teacher", "plain")}
    assert [type(m) for m in kinds.values()] == [SpikeBert, BertForSequenceClassification, BertModel]
    assert not any(m.training for model in kinds.values() for _, m in model.named_modules())
    with pytest.raises(minispike.io.CheckpointError, match="a BERT teacher, not a SpikeBert student"):
        SpikeBert.from_pretrained(tmp_path / "teacher")


def test_bert_from_pretrained_is_in_eval_mode(tmp_path):
    cfg = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                     hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.5)
    BertModel(cfg).save_pretrained(tmp_path / "b")
    m = BertModel.from_pretrained(tmp_path / "b")
    assert not m.training and not m.embeddings.dropout.training
    np.testing.assert_array_equal(m(IDS, MASK).last_hidden_state.numpy(), m(IDS, MASK).last_hidden_state.numpy())


def test_training_after_loading_still_uses_dropout(runs, tmp_path):
    """from_pretrained gives eval mode; fit() turns the loaded teacher back to train mode, so
    fine-tuning still uses dropout."""
    m = BertForSequenceClassification.from_pretrained(runs / "teacher" / "checkpoints" / "best")
    assert not m.bert.embeddings.dropout.training
    seen = []

    def loss_fn(batch):
        seen.append(m.bert.embeddings.dropout.training)
        return ops.cross_entropy(m(batch["ids"], batch["mask"]).logits, batch["labels"]), {}

    data = Batcher(IDS, np.array([0, 1]), batch_size=2, seed=0)
    fit(tmp_path / "run", m, loss_fn, data, lambda: {"accuracy": 0.0}, TrainConfig(epochs=1, max_steps=1),
        model_config=m.config.to_dict("BertForSequenceClassification"), quiet=True)
    assert seen == [True]


# -- repr ----------------------------------------------------------------------------------------
def test_repr_is_the_module_tree_with_shapes_and_counts():
    model = student(depth=3)
    text = repr(model)
    assert text.startswith(f"SpikeBert(  # {model.num_parameters():,} parameters")
    assert "(embedding): Embedding(100, 32)  # weight (100, 32): 3,200" in text
    assert "(0-2): 3 x SpikeBlock(  # " in text and " each" in text  # identical blocks folded
    assert "(fc): Linear(32, 128, bias=True)  # weight (128, 32), bias (128,): 4,224" in text
    assert "(lif): LIF(tau=2.0, v_threshold=1.0, reset=hard to 0" in text
    assert "(encoder): SpikeEncoder(T=4, surrogate=ATan(" in text
    assert text.count("\n") < 60  # folded: not three copies of a block
    assert text.rstrip().endswith(")") and "object at 0x" not in text


# -- LIF's spikingjelly keyword ---------------------------------------------------------------
def test_surrogate_function_is_an_alias_of_surrogate():
    sur = ATan(alpha=3.0)
    assert LIF(surrogate_function=sur).surrogate is sur
    assert LIF(surrogate=sur).surrogate is sur
    with pytest.raises(TypeError, match="not both"):
        LIF(surrogate=ATan(), surrogate_function=ATan())


# -- checkpoints carry their task ---------------------------------------------------------------
@pytest.mark.parametrize("stage", ["teacher", "stage1", "stage2", "direct"])
@pytest.mark.parametrize("which", ["best", "last"])
def test_every_checkpoint_names_its_labels_task_and_length(runs, stage, which):
    config = json.loads((runs / stage / "checkpoints" / which / "config.json").read_text())
    assert config["id2label"] == LABELS and config["label2id"] == {"negative": 0, "positive": 1}
    assert config["task"] == "builtin" and config["max_length"] == 12


def test_evaluate_and_predict_default_to_the_checkpoint(runs, capsys):
    for stage in ("teacher", "stage2"):
        r = evaluate(runs / stage)  # no task, no length: the checkpoint's
        assert (r["task"], r["max_length"], r["examples"]) == ("builtin", 12, 30)
        assert main(["evaluate", str(runs / stage), "--quiet"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["task"] == "builtin" and out["max_length"] == 12 and out["accuracy"] == r["accuracy"]
    assert {r["label"] for r in predict(runs / "stage2", ["a warm film", "cold and dull"])} <= {"negative", "positive"}
    assert main(["predict", str(runs / "teacher"), "a warm film"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["label"] in ("negative", "positive") and set(line["probabilities"]) == {"negative", "positive"}


def test_a_checkpoint_without_its_task_asks_for_it(runs, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(runs / "stage2" / "checkpoints" / "best", old)
    config = json.loads((old / "config.json").read_text())
    del config["task"]
    (old / "config.json").write_text(json.dumps(config))
    with pytest.raises(PipelineError, match="does not name its task.*pass --task"):
        evaluate(old)
    assert evaluate(old, StageConfig(task="builtin", max_length=None))["max_length"] == 12


def test_another_number_of_classes_is_refused(runs, capsys):
    with pytest.raises(PipelineError, match=r"a 2-class checkpoint \(negative, positive\) cannot be evaluated on "
                                            r"task sst5 \(5 classes"):
        evaluate(runs / "stage2", StageConfig(task="sst5", max_length=None))
    assert main(["evaluate", str(runs / "teacher"), "--task", "sst5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "5 classes" in err


def test_a_student_where_a_teacher_belongs_and_the_reverse_are_refused(runs, capsys):
    with pytest.raises(PipelineError, match="holds a BERT teacher, but --student expects a SpikeBert student"):
        energy_report(runs / "teacher", runs / "stage2")
    with pytest.raises(PipelineError, match="holds a SpikeBert student, but --teacher expects a BERT teacher"):
        energy_report(runs / "stage2", runs / "stage2")
    student_dir = str(runs / "stage2" / "checkpoints" / "best")
    commands = [["energy", "--student", str(runs / "teacher"), "--teacher", str(runs / "stage2")],
                ["distill", "--teacher", str(runs / "stage2"), "--out", str(runs / "x1")],
                ["distill", "--teacher", str(runs / "teacher"), "--init", str(runs / "teacher"),
                 "--out", str(runs / "x2"), "--preset", "tiny", "--dim", "16", "--augment", "0"],
                ["finetune-teacher", "--teacher", student_dir, "--out", str(runs / "x3")],
                ["pretrain", "--teacher", student_dir, "--out", str(runs / "x4")],
                ["train-direct", "--teacher", student_dir, "--out", str(runs / "x5")]]
    for argv in commands:  # at the length the checkpoints were trained at, so that only their kind is wrong
        assert main(argv + ["--quiet", "--max-length", "12"] if argv[0] != "energy" else argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and ("SpikeBert student" in err[0] and "BERT" in err[0]), (argv, err)
