"""export-official / import-official: the official SpikeBERT key layout, both ways, from the CLI.

A round trip gives the same logits; the exported keys and shapes are the reference's (the
file the official code wrote, shared/reference); a ``module.`` prefix (torch DataParallel /
DistributedDataParallel) is stripped; heads, T and max length come from the file or must be
given, never a default; a student the official model cannot hold is refused in one line.
"""
import json

import numpy as np
import pytest

from minispike import backend
from minispike.cli import main
from minispike.io.official import OfficialFormatError, read_official, read_official_metadata, write_official
from minispike.models.bert import BertConfig, BertForSequenceClassification
from minispike.models.spikebert import SpikeBert, SpikeBertConfig
from minispike.text.builtin import builtin_tokenizer

from conftest import SHARED

REF = SHARED / "reference" / "official_student_tiny.npz"
LABELS = {"0": "negative", "1": "positive"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A student the official model can hold, moved off its initial weights, saved with its tokenizer."""
    d = tmp_path_factory.mktemp("official_export")
    tok = builtin_tokenizer(vocab_size=120)
    backend.seed(1)
    model = SpikeBert(SpikeBertConfig.preset("official", vocab_size=tok.vocab_size, max_length=16, heads=4,
                                             id2label=LABELS, task="builtin"))
    for p in model.parameters():
        p.data += backend.randn(p.shape, std=0.2)
    model.save_pretrained(d / "student", tokenizer=tok)
    ids = np.random.default_rng(0).integers(1, tok.vocab_size, (3, 10))
    ids[2, 6:] = tok.pad_id
    return {"dir": d, "model": model.eval(), "ids": ids, "mask": (ids != tok.pad_id).astype(np.int64)}


def one_line_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_the_exported_keys_and_shapes_are_the_reference_files():
    if not REF.is_file():
        pytest.skip(f"{REF} is not present")
    with np.load(REF) as z:
        reference = {k[len("param/"):]: z[k].shape for k in z.files if k.startswith("param/")}
    state = SpikeBert(SpikeBertConfig.preset("official")).official_state()
    assert {k: v.shape for k, v in state.items()} == reference


@pytest.mark.parametrize("ext", [".safetensors", ".npz"])
def test_export_then_import_gives_the_same_student(trained, ext, capsys):
    d = trained["dir"]
    out = d / f"student{ext}"
    assert main(["export-official", str(d / "student"), str(out)]) == 0
    written = json.loads(capsys.readouterr().out)
    assert written["heads"] == 4 and written["max_length"] == 16 and written["id2label"] == LABELS
    assert set(read_official(out)) == set(trained["model"].official_state())
    back_dir = d / f"back{ext}"
    assert main(["import-official", str(out), str(back_dir), "--tokenizer", str(d / "student")]) == 0
    back = SpikeBert.from_pretrained(back_dir)
    assert (back.config.heads, back.config.T, back.config.max_length) == (4, 4, 16)
    assert back.config.id2label == LABELS and back.config.task == "builtin"
    ids, mask = trained["ids"], trained["mask"]
    np.testing.assert_array_equal(back(ids, mask).logits.numpy(), trained["model"](ids, mask).logits.numpy())


def test_a_data_parallel_prefix_is_stripped(trained, capsys):
    d = trained["dir"]
    state = trained["model"].official_state()
    write_official(state, d / "dp.safetensors", prefix="module.")  # as torch.save(ddp.state_dict()) keys read
    assert read_official_metadata(d / "dp.safetensors") == {}  # nothing but tensors: the flags are needed
    assert main(["import-official", str(d / "dp.safetensors"), str(d / "dp"), "--tokenizer", str(d / "student"),
                 "--heads", "4", "--T", "4", "--max-length", "16", "--task", "builtin"]) == 0
    back = SpikeBert.from_pretrained(d / "dp")
    ids, mask = trained["ids"], trained["mask"]
    np.testing.assert_array_equal(back(ids, mask).logits.numpy(), trained["model"](ids, mask).logits.numpy())
    mixed = {("module." + k if i % 2 else k): v for i, (k, v) in enumerate(state.items())}
    write_official(mixed, d / "mixed.npz")
    with pytest.raises(OfficialFormatError, match="keys start with 'module.'.*expected all or none"):
        read_official(d / "mixed.npz")


def test_heads_T_and_length_are_never_guessed(trained, capsys):
    if not REF.is_file():
        pytest.skip(f"{REF} is not present")
    with pytest.raises(OfficialFormatError, match="does not say heads, T, max_length.*heads=, T=, max_length="):
        SpikeBert.from_official(REF)  # the official code's file: tensors only
    with pytest.raises(OfficialFormatError, match="does not say heads"):
        SpikeBert.from_official(REF, T=4, max_length=8)
    d = trained["dir"]
    assert main(["import-official", str(REF), str(d / "ref"), "--tokenizer", str(d / "student")]) == 2
    assert "--heads, --T, --max-length" in one_line_error(capsys)
    trained["model"].save_official(d / "with-meta.npz")  # says heads 4
    with pytest.raises(OfficialFormatError, match="the file says heads 4, the caller 8"):
        SpikeBert.from_official(d / "with-meta.npz", heads=8)


def test_a_student_the_official_model_cannot_hold_is_refused_in_one_line(trained, tmp_path, capsys):
    tok = builtin_tokenizer(vocab_size=120)
    wide_taps = SpikeBert(SpikeBertConfig.preset("tiny", vocab_size=tok.vocab_size, teacher_dim=48))
    wide_taps.save_pretrained(tmp_path / "cpu-like", tokenizer=tok)
    assert main(["export-official", str(tmp_path / "cpu-like"), str(tmp_path / "x.safetensors")]) == 2
    err = one_line_error(capsys)
    assert "embedding projection (embedding_proj.weight)" in err and "taps are 48 wide, the student 32" in err
    assert "'official' preset exports" in err and not (tmp_path / "x.safetensors").exists()
    soft = SpikeBert(SpikeBertConfig.preset("official", v_reset=None))
    with pytest.raises(OfficialFormatError, match="v_reset is None"):
        soft.official_state()
    cfg = BertConfig(vocab_size=120, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    BertForSequenceClassification(cfg).save_pretrained(tmp_path / "teacher", tokenizer=tok)
    assert main(["export-official", str(tmp_path / "teacher"), str(tmp_path / "t.npz")]) == 2
    assert "holds a BERT teacher, but export-official expects a SpikeBert student" in one_line_error(capsys)
    assert main(["export-official", str(trained["dir"] / "student"), str(tmp_path / "student.pt")]) == 2
    assert ".safetensors or .npz" in one_line_error(capsys)
