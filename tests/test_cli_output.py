"""What the commands print: results as JSON alone on stdout, messages on stderr, `--backend`
on every command that computes, and one line (with the install command) for a missing extra."""
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from minispike import backend, cli
from minispike.models.bert import BertConfig, BertForSequenceClassification
from minispike.models.spikebert import SpikeBert, SpikeBertConfig
from minispike.text.builtin import builtin_texts
from minispike.text.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
COMPUTING = ["demo", "finetune-teacher", "pretrain", "distill", "train-direct", "run", "evaluate", "predict",
             "energy", "plot"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A tiny teacher and a tiny student (random weights) on a vocabulary of the built-in sentences."""
    d = tmp_path_factory.mktemp("cli-output")
    tok = Tokenizer.build_wordpiece(builtin_texts(), vocab_size=300)
    backend.seed(0)
    teacher = BertForSequenceClassification(BertConfig(
        vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64, num_labels=2))
    teacher.save_pretrained(d / "teacher", tokenizer=tok)
    student = SpikeBert(SpikeBertConfig.preset("tiny", vocab_size=tok.vocab_size, num_classes=2, teacher_dim=16))
    student.save_pretrained(d / "student", tokenizer=tok)
    return d


def test_evaluate_prints_json_alone_on_stdout_through_a_pipe(checkpoints):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-m", "minispike", "evaluate", str(checkpoints / "student"),
                        "--task", "builtin", "--max-length", "16"],
                       capture_output=True, text=True, env=env, cwd=checkpoints, timeout=120)
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)  # the whole of stdout is one JSON document (| jq .accuracy)
    assert 0.0 <= result["accuracy"] <= 1.0 and result["examples"] == 30


def test_energy_prints_the_table_on_stderr_and_the_json_on_stdout(checkpoints, capsys):
    assert cli.main(["energy", "--student", str(checkpoints / "student"), "--teacher", str(checkpoints / "teacher"),
                     "--task", "builtin", "--max-length", "16", "--sentences", "4"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert 0 < result["ratio"] and "table" not in result
    assert "SpikeBERT student" in err  # the table is still there for the reader


def test_predict_prints_one_json_object_a_line(checkpoints, capsys):
    assert cli.main(["predict", str(checkpoints / "student"), "a gripping film", "dull", "--max-length", "16"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["text"] for line in lines] == ["a gripping film", "dull"]


@pytest.mark.parametrize("command", COMPUTING)
def test_every_computing_command_takes_backend(command):
    sub = cli.build_parser()._subparsers._group_actions[0].choices[command]
    action = next((a for a in sub._actions if a.dest == "backend"), None)
    assert action is not None, f"{command} has no --backend"
    assert set(action.choices) == {"numpy", "cupy", "strict"}


def test_evaluate_on_the_strict_backend_gives_numpys_accuracy(checkpoints, capsys):
    args = ["evaluate", str(checkpoints / "student"), "--task", "builtin", "--max-length", "16", "--quiet"]
    assert cli.main(args) == 0
    on_numpy = json.loads(capsys.readouterr().out)
    assert cli.main(args + ["--backend", "strict"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == on_numpy["accuracy"]


def test_missing_cupy_is_one_line_with_the_install_command(checkpoints, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` now fails, as where it is not installed
    assert cli.main(["evaluate", str(checkpoints / "student"), "--task", "builtin", "--backend", "cupy"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "pip install 'minispike[gpu]'" in err, err


def test_cupy_without_a_gpu_is_one_line(checkpoints, capsys, monkeypatch):
    def no_device():
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_device))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    assert cli.main(["evaluate", str(checkpoints / "student"), "--task", "builtin", "--backend", "cupy"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "finds no GPU" in err and "cudaErrorNoDevice" in err, err


def test_missing_matplotlib_is_one_line_with_the_install_command(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text(json.dumps({"event": "eval", "step": 1, "accuracy": 0.5}) + "\n")
    for name in ("matplotlib", "matplotlib.figure"):
        monkeypatch.setitem(sys.modules, name, None)
    assert cli.main(["compare", str(run), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "pip install 'minispike[plot]'" in err, err
