"""Task loaders (real files when ../shared/data exists, generated malformed files always),
the hashed split (stable, stratified, disjoint), and the task registry."""
import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

import minispike.text as T
from conftest import SHARED_DATA, needs_data
from minispike.text import DataError, Task, load_task

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("restore_registry")

EXPECTED = {  # task -> split -> count (README table; hashed splits as documented in docs/data.md)
    "sst2": {"train": 6920, "dev": 872, "test": 1821},
    "sst5": {"train": 8544, "dev": 1101, "test": 2210},
    "mr": {"train": 8530, "dev": 1066, "test": 1066},
    "subj": {"train": 8000, "dev": 1000, "test": 1000},
    "chnsenti": {"train": 6213, "dev": 776, "test": 776},
    "waimai": {"train": 9589, "dev": 1199, "test": 1199},
}
ROWS = {"mr": 10662, "subj": 10000, "chnsenti": 7766, "waimai": 11987}
SPLIT_DIGEST = {  # sha256 over sorted "split\tlabel\ttext" lines: the split must never drift
    "mr": "e2863dc4cbeb8c432f1e92adac105638df273e43c0df02d403600c271b0a4fc3",
    "subj": "b478da702df463aa79e6626e1bef6f8b57085d799bdf2d116709220add033ebc",
    "chnsenti": "377f6b05530f572f4e19e8d5b3cb67cac74739aa0c17ae1a965fb6db166b39a4",
    "waimai": "5d219ecfe3ba89ece1e81ab0b7b974f6146e6ec26d2d7a8591697b42e72eb470",
    # the built-in sentences are ours: update this digest (and docs/data.md) when they are edited
    "builtin": "8feb1fa169f03ca0072886f5f347f106dbbd387746ff2fbdf967f67a15ae1e48",
}


def split_digest(name, data_dir=None):
    rows = []
    for s in T.SPLITS:
        rows += [f"{s}\t{e.label}\t{e.text}" for e in load_task(name, s, data_dir=data_dir)]
    return hashlib.sha256("\n".join(sorted(rows)).encode()).hexdigest()


# ----------------------------------------------------------------------------------------
# real files
# ----------------------------------------------------------------------------------------
@needs_data
@pytest.mark.parametrize("name", list(EXPECTED))
def test_real_counts_and_balance(name):
    task = T.get_task(name)
    seen = {}
    for split, n in EXPECTED[name].items():
        d = load_task(name, split, data_dir=SHARED_DATA)
        assert len(d) == n, (name, split, d.report)
        counts = d.label_counts()
        assert len(counts) == task.num_classes and min(counts.values()) > 0
        assert set(d.labels.tolist()) <= set(range(task.num_classes))
        seen[split] = set(d.texts)
    if task.hashed_split:
        assert not (seen["train"] & seen["dev"]) and not (seen["train"] & seen["test"])
        assert not (seen["dev"] & seen["test"])
        rep = load_task(name, "all", data_dir=SHARED_DATA).report
        assert rep.rows == ROWS[name]
        assert split_digest(name, SHARED_DATA) == SPLIT_DIGEST[name]


@needs_data
def test_real_balance_is_stratified():
    for name in ("mr", "subj", "chnsenti", "waimai"):
        full = load_task(name, "all", data_dir=SHARED_DATA).label_counts()
        for split, frac in (("train", 0.8), ("dev", 0.1), ("test", 0.1)):
            c = load_task(name, split, data_dir=SHARED_DATA).label_counts()
            for k in full:
                assert abs(c[k] - frac * full[k]) <= 3, (name, split, k, c[k], full[k])


@needs_data
def test_real_mr_subj_latin1_and_chnsenti_empty_review():
    mr = load_task("mr", "all", data_dir=SHARED_DATA)
    assert any("é" in t for t in mr.texts)                 # decoded as Latin-1, not mangled
    assert mr.report.skipped == []
    ch = load_task("chnsenti", "all", data_dir=SHARED_DATA)
    assert ch.report.rows == 7766 and len(ch) == 7765
    assert ch.report.skipped_counts == {"empty text": 1}
    reason, where, _ = ch.report.skipped[0]
    assert where.endswith("all.csv:6376")
    assert "empty text" in ch.report.summary() and "all.csv:6376" in ch.report.summary()


@needs_data
def test_data_dir_from_environment(monkeypatch):
    monkeypatch.setenv("MINISPIKE_DATA", str(SHARED_DATA))
    assert len(load_task("sst2", "dev")) == 872


def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("MINISPIKE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert T.resolve_data_dir() == tmp_path / "xdg" / "minispike" / "data"
    monkeypatch.setenv("MINISPIKE_DATA", str(tmp_path / "env"))
    assert T.resolve_data_dir() == tmp_path / "env"
    assert T.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    with pytest.raises(DataError, match=r"sst2.*not found.*download sst2"):
        load_task("sst2", "train")


# ----------------------------------------------------------------------------------------
# generated files: every kind of malformed input
# ----------------------------------------------------------------------------------------
def _task(tmp_path, name, content: bytes, fmt="label_space", encoding="utf-8", classes=2, **kw):
    sub = "x.csv" if fmt == "csv" else "x.txt"
    (tmp_path / name).mkdir(exist_ok=True)
    (tmp_path / name / sub).write_bytes(content)
    t = Task(name, "en", tuple(f"c{i}" for i in range(classes)), {"train": f"{name}/{sub}"}, format=fmt,
             encoding=encoding, **kw)
    return T.register_task(t, replace=True)


@pytest.mark.parametrize("line, reason", [
    (b"7 an unknown label", "unknown label"),
    (b"hello", "no label"),
    (b" 1 leading space hides the label", "no label"),
    (b"1 caf\xe9 is latin-1 in a utf-8 file", "undecodable bytes"),
])
def test_malformed_label_space(tmp_path, line, reason):
    _task(tmp_path, "gen", b"1 fine line\n0 another fine one\n" + line + b"\n1 last\n")
    with pytest.raises(DataError) as e:
        load_task("gen", "train", data_dir=tmp_path)
    msg = str(e.value)
    assert "x.txt:3" in msg and reason.split()[0] in msg
    assert (line[:6].decode("latin-1").strip() in msg) or reason == "undecodable bytes"
    d = load_task("gen", "train", data_dir=tmp_path, skip_bad=True)
    assert len(d) == 3 and d.report.skipped_counts == {reason: 1}
    assert d.report.skipped[0][1].endswith("x.txt:3")


def test_label_space_blank_empty_crlf(tmp_path):
    _task(tmp_path, "gen", b"1 a b c\r\n\r\n0 \r\n1\n0 d e   \n")
    d = load_task("gen", "train", data_dir=tmp_path)
    assert d.texts == ["a b c", "d e"] and d.labels.tolist() == [1, 0]
    assert d.report.rows == 5
    assert d.report.skipped_counts == {"blank line": 1, "empty text": 2}


def test_latin1_task(tmp_path):
    _task(tmp_path, "lat", b"1 caf\xe9 cr\xe8me\n", encoding="latin-1")
    assert load_task("lat", "train", data_dir=tmp_path).texts == ["café crème"]


@pytest.mark.parametrize("row, reason, err", [
    (b'1,"a,b",extra', "wrong column count", "expected 2 columns"),
    (b",no label", "no label", "empty label"),
    (b"x,unknown", "unknown label", "unknown label 'x'"),
    (b"1,\xff\xfe bad bytes", "undecodable bytes", "cannot decode"),
])
def test_malformed_csv(tmp_path, row, reason, err):
    _task(tmp_path, "gcsv", b'label,review\n1,"quoted, with comma"\n0,"multi\nline"\n' + row + b"\n1,ok\n",
          fmt="csv")
    with pytest.raises(DataError) as e:
        load_task("gcsv", "train", data_dir=tmp_path)
    assert "x.csv:5" in str(e.value) and err in str(e.value)
    d = load_task("gcsv", "train", data_dir=tmp_path, skip_bad=True)
    assert d.texts == ["quoted, with comma", "multi\nline", "ok"]
    assert d.report.skipped_counts == {reason: 1} and d.report.skipped[0][1].endswith("x.csv:5")


def test_csv_header_bom_empty_review_and_quote(tmp_path):
    _task(tmp_path, "gcsv", "\ufefflabel,review\n1,好\n0,\n0,\"\"\n".encode("utf-8"), fmt="csv")
    d = load_task("gcsv", "train", data_dir=tmp_path)
    assert d.texts == ["好"] and d.report.skipped_counts == {"empty text": 2}
    _task(tmp_path, "gcsv", b"lbl,review\n1,x\n", fmt="csv")
    with pytest.raises(DataError, match=r"x.csv:1: header .* lacks column"):
        load_task("gcsv", "train", data_dir=tmp_path)
    _task(tmp_path, "gcsv", b'label,review\n1,"never closed\n', fmt="csv")
    with pytest.raises(DataError, match=r"x.csv:2: malformed csv row"):
        load_task("gcsv", "train", data_dir=tmp_path)


def test_unknown_task_and_split(tmp_path):
    with pytest.raises(DataError, match="unknown task 'nope'.*sst2"):
        load_task("nope", "train")
    with pytest.raises(DataError, match="unknown split"):
        load_task("sst2", "validation", data_dir=tmp_path)


# ----------------------------------------------------------------------------------------
# the hashed split
# ----------------------------------------------------------------------------------------
def _toy(n=400, dup=10):
    rng = random.Random(1)
    texts = [f"sentence number {i} " + "x" * rng.randrange(5) for i in range(n)]
    labels = [i % 3 for i in range(n)]
    texts += texts[:dup]                   # exact duplicates, same labels
    labels += labels[:dup]
    texts += ["conflict a", "conflict a", "conflict b", "conflict b"]
    labels += [0, 1, 1, 2]
    return texts, labels


def test_hashed_split_order_independent_stratified_disjoint():
    texts, labels = _toy()
    a = dict(zip(texts, T.hashed_split(texts, labels)))
    perm = list(range(len(texts)))
    random.Random(5).shuffle(perm)
    b = dict(zip([texts[i] for i in perm], T.hashed_split([texts[i] for i in perm], [labels[i] for i in perm])))
    assert a == b
    # each text has one split (duplicates together); per label 80/10/10
    for y in range(3):
        uniq = {t for t, l in zip(texts, labels) if l == y and not t.startswith("conflict")}
        c = {s: sum(1 for t in uniq if a[t] == s) for s in T.SPLITS}
        assert abs(c["dev"] - 0.1 * len(uniq)) <= 1 and abs(c["test"] - 0.1 * len(uniq)) <= 1
    assert T.hashed_split(texts, labels, seed="other") != T.hashed_split(texts, labels)


def test_split_file_reordering_gives_same_split(tmp_path):
    lines = (T.get_task("builtin").paths()["all"]).read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:]
    random.Random(3).shuffle(rows)
    f = tmp_path / "shuffled.tsv"
    f.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    t = T.register_table_task(f, label_names=("negative", "positive"), name="shuffled_builtin", replace=True)
    for s in T.SPLITS:
        assert sorted(load_task(t, s).texts) == sorted(load_task("builtin", s).texts)
    assert split_digest("builtin") == SPLIT_DIGEST["builtin"]


def test_split_independent_of_pythonhashseed():
    code = ("import hashlib, minispike.text as T\n"
            "rows = sorted(f'{s}\\t{t}' for s in T.SPLITS for t in T.load_task('builtin', s).texts)\n"
            "print(hashlib.sha256('\\n'.join(rows).encode()).hexdigest())\n")
    outs = set()
    for seed in ("0", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(ROOT))
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert r.returncode == 0, r.stderr
        outs.add(r.stdout.strip())
    rows = sorted(f"{s}\t{t}" for s in T.SPLITS for t in load_task("builtin", s).texts)
    outs.add(hashlib.sha256("\n".join(rows).encode()).hexdigest())
    assert len(outs) == 1


@needs_data
def test_real_split_independent_of_row_order(tmp_path):
    lines = (SHARED_DATA / "mr" / "all.txt").read_bytes().split(b"\n")[:-1]
    random.Random(7).shuffle(lines)
    (tmp_path / "mr").mkdir()
    (tmp_path / "mr" / "all.txt").write_bytes(b"\n".join(lines) + b"\n")
    assert split_digest("mr", tmp_path) == SPLIT_DIGEST["mr"]


# ----------------------------------------------------------------------------------------
# registry and user tables
# ----------------------------------------------------------------------------------------
def test_builtin_task_needs_no_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("MINISPIKE_DATA", str(tmp_path / "empty"))
    sizes = {s: len(load_task("builtin", s)) for s in T.SPLITS}
    assert sizes == {"train": 232, "dev": 30, "test": 30}
    assert load_task("builtin", "train").label_counts() == {"negative": 116, "positive": 116}


def test_registry_fields():
    for name in ("sst2", "sst5", "mr", "subj", "chnsenti", "waimai", "builtin"):
        t = T.TASKS[name]
        assert t.num_classes == len(t.label_names) >= 2 and t.language in ("en", "zh")
    assert T.TASKS["sst5"].num_classes == 5 and T.TASKS["mr"].encoding == "latin-1"
    assert T.TASKS["waimai"].hashed_split and not T.TASKS["sst2"].hashed_split
    assert [t.name for t in T.list_tasks("zh")] == ["chnsenti", "waimai"]
    with pytest.raises(DataError, match="already registered"):
        T.register_task(name="sst2", language="en", files={"all": "x.txt"})


def test_user_csv_spec_and_json(tmp_path):
    f = tmp_path / "mine.csv"
    f.write_text("id,sentence,y\n" + "".join(f"{i},text {i},{'pos' if i % 2 else 'neg'}\n" for i in range(50)),
                 encoding="utf-8")
    d = load_task(f"{f}#text=sentence,label=y", "train")
    assert d.task.label_names == ("neg", "pos") and d.task.name == "mine"
    total = sum(len(load_task(d.task, s)) for s in T.SPLITS)
    assert total == 50
    g = tmp_path / "mine.tsv"
    g.write_text("label\ttext\n" + "".join(f"{i % 3}\tline {i}\n" for i in range(30)), encoding="utf-8")
    assert load_task(str(g), "all").task.label_names == ("0", "1", "2")
    spec = {"name": "trec_like", "language": "en", "label_names": ["a", "b"], "files": {"train": "t.txt"}}
    (tmp_path / "t.txt").write_text("0 x\n1 y\nb z\n", encoding="utf-8")
    (tmp_path / "task.json").write_text(json.dumps(spec), encoding="utf-8")
    d = load_task(str(tmp_path / "task.json"), "train")
    assert d.labels.tolist() == [0, 1, 1] and d.task.splits == ("train",)
    with pytest.raises(DataError, match="has no 'dev' split"):
        load_task("trec_like", "dev")
