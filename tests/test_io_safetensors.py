"""minispike.io: strict safetensors reading/writing and atomic checkpoint directories."""
import json
import os
import struct

import numpy as np
import pytest

from minispike.io import (CheckpointError, SafetensorsError, StateMismatchError, check_state, load_checkpoint,
                          load_file, read_header, save_checkpoint, save_file)
from minispike.io.safetensors import _bf16_to_f32, _f32_to_bf16, atomic_write

st_numpy = pytest.importorskip("safetensors.numpy", reason="the safetensors package is a dependency")


def _tensors():
    rng = np.random.default_rng(0)
    return {"a.weight": rng.standard_normal((3, 4)).astype(np.float32),
            "b": np.arange(5, dtype=np.int64),
            "c": rng.standard_normal((2, 2)),
            "h": rng.standard_normal(7).astype(np.float16),
            "flag": np.array([True, False]),
            "empty": np.zeros((0, 3), np.float32)}


def test_roundtrip_and_interop_with_the_reference_library(tmp_path):
    t = _tensors()
    ours = tmp_path / "ours.safetensors"
    save_file(t, ours, metadata={"format": "np"})
    theirs = st_numpy.load_file(str(ours))  # the reference reader accepts our files
    assert set(theirs) == set(t)
    for k in t:
        assert theirs[k].dtype == t[k].dtype and np.array_equal(theirs[k], t[k])
    ref = tmp_path / "ref.safetensors"
    st_numpy.save_file(t, str(ref))  # and we read the reference writer's files
    back = load_file(ref)
    for k in t:
        want = t[k].astype(np.float32) if t[k].dtype == np.float16 else t[k]
        assert back[k].dtype == want.dtype and np.array_equal(back[k], want), k
    _, meta, _ = read_header(ours)
    assert meta == {"format": "np"}


def test_half_precision_is_read_into_the_compute_dtype(tmp_path):
    x = np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32)
    p = tmp_path / "half.safetensors"
    save_file({"f16": x, "bf16": x, "f32": x}, p, dtypes={"f16": "F16", "bf16": "BF16"})
    assert {e["dtype"] for e in read_header(p)[0].values()} == {"F16", "BF16", "F32"}
    got = load_file(p)
    assert got["f16"].dtype == np.float32 and np.array_equal(got["f16"], x.astype(np.float16).astype(np.float32))
    assert got["bf16"].dtype == np.float32 and np.abs(got["bf16"] - x).max() <= np.abs(x).max() * 2 ** -8
    got64 = load_file(p, dtype=np.float64)
    assert all(a.dtype == np.float64 for a in got64.values())


def test_bf16_bits_are_exact():
    # bf16 = upper half of a float32: 1.0 = 0x3F80, -2.0 = 0xC000, 0.15625 = 0x3E20
    bits = np.array([0x3F80, 0xC000, 0x3E20, 0x0000], dtype=np.uint16)
    assert _bf16_to_f32(bits).tolist() == [1.0, -2.0, 0.15625, 0.0]
    # round to nearest even on the way down
    assert _f32_to_bf16(np.array([1.0 + 2 ** -8], np.float32))[0] == 0x3F80  # tie -> even
    assert _f32_to_bf16(np.array([1.0 + 3 * 2 ** -8], np.float32))[0] == 0x3F82
    assert np.isnan(_bf16_to_f32(_f32_to_bf16(np.array([np.nan], np.float32))))[0]


def test_a_bf16_file_written_by_hand_reads_correctly(tmp_path):
    """A BF16 file as torch writes it (built from raw bytes, independent of our writer)."""
    bits = np.array([[0x3F80, 0x4000], [0xBF80, 0x4040]], dtype="<u2")  # 1, 2, -1, 3
    header = json.dumps({"w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}).encode()
    p = tmp_path / "bf16.safetensors"
    p.write_bytes(struct.pack("<Q", len(header)) + header + bits.tobytes())
    assert load_file(p)["w"].tolist() == [[1.0, 2.0], [-1.0, 3.0]]


# -- broken files: one clear error naming the file (and the keys) -------------------------
def _good(tmp_path):
    p = tmp_path / "good.safetensors"
    save_file({"x": np.ones((4, 4), np.float32), "y": np.ones(3, np.float32)}, p)
    return p


def test_truncated_data(tmp_path):
    p = _good(tmp_path)
    data = p.read_bytes()
    p.write_bytes(data[:-5])
    with pytest.raises(SafetensorsError, match="truncated file") as e:
        load_file(p)
    assert str(p) in str(e.value) and "'y'" in str(e.value) and e.value.keys == ["y"]


def test_truncated_header(tmp_path):
    p = _good(tmp_path)
    p.write_bytes(p.read_bytes()[:20])
    with pytest.raises(SafetensorsError, match="truncated file") as e:
        load_file(p)
    assert str(p) in str(e.value)


def test_corrupt_header(tmp_path):
    p = _good(tmp_path)
    data = bytearray(p.read_bytes())
    data[10:14] = b"@@@@"  # inside the JSON
    p.write_bytes(bytes(data))
    with pytest.raises(SafetensorsError, match="corrupt header: not valid JSON") as e:
        load_file(p)
    assert str(p) in str(e.value)


@pytest.mark.parametrize("content,what", [
    (b"", "only 0 bytes"),
    (b"PK\x03\x04" + b"\0" * 100, "zip/PyTorch"),
    (b"this is a text file, not tensors at all\n" * 3, "not a safetensors file"),
])
def test_not_safetensors(tmp_path, content, what):
    p = tmp_path / "model.safetensors"
    p.write_bytes(content)
    with pytest.raises(SafetensorsError, match="not a safetensors file") as e:
        load_file(p)
    assert what in str(e.value) and str(p) in str(e.value)


@pytest.mark.parametrize("entry,msg", [
    ({"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}, "needs 16 bytes"),
    ({"dtype": "F32", "shape": [2], "data_offsets": [0]}, "without a valid dtype/shape/data_offsets"),
    ({"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}, "unsupported dtype"),
])
def test_bad_header_entries(tmp_path, entry, msg):
    header = json.dumps({"w": entry}).encode()
    p = tmp_path / "bad.safetensors"
    p.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    with pytest.raises(SafetensorsError, match=msg) as e:
        load_file(p)
    assert "'w'" in str(e.value) and str(p) in str(e.value)


def test_overlapping_offsets_and_trailing_bytes(tmp_path):
    header = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                         "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}).encode()
    p = tmp_path / "overlap.safetensors"
    p.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 12)
    with pytest.raises(SafetensorsError, match="overlaps"):
        load_file(p)
    header = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    p.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 12)
    with pytest.raises(SafetensorsError, match="4 trailing bytes"):
        load_file(p)


def test_missing_requested_key_and_missing_file(tmp_path):
    p = _good(tmp_path)
    assert set(load_file(p, keys=["x"])) == {"x"}
    with pytest.raises(SafetensorsError, match="missing tensors: 'z'"):
        load_file(p, keys=["x", "z"])
    with pytest.raises(SafetensorsError, match="no such file"):
        load_file(tmp_path / "nope.safetensors")


def test_check_state_lists_every_problem_at_once():
    with pytest.raises(StateMismatchError) as e:
        check_state({"a": (2, 3), "b": (4,), "extra": (1,)}, {"a": (2, 3), "b": (5,), "gone": (1,)}, "f.safetensors")
    msg = str(e.value)
    assert msg.startswith("f.safetensors: ")
    assert "missing tensors: 'gone'" in msg and "unexpected tensors: 'extra'" in msg
    assert "'b' is [4] in the file, the model expects [5]" in msg
    assert sorted(e.value.keys) == ["b", "extra", "gone"]
    assert check_state({"a": (1,)}, {"a": (1,), "opt": (2,)}, "f", allow_missing=("opt",)) == ["opt"]


# -- atomic writes ------------------------------------------------------------------------
def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    p = _good(tmp_path)
    before = p.read_bytes()

    def crash(f):
        f.write(b"half of a file")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        atomic_write(p, crash)
    assert p.read_bytes() == before
    assert os.listdir(tmp_path) == ["good.safetensors"]


def test_checkpoint_roundtrip_and_replace(tmp_path):
    d = tmp_path / "ckpt"
    t = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "step": np.array(3)}
    save_checkpoint(d, t, {"hidden_size": 3}, extra={"epoch": 1, "lr": np.float32(0.5)},
                    files={"vocab.txt": "[PAD]\n[UNK]\n", "blob.bin": b"\x00\x01"})
    c = load_checkpoint(d)
    assert c.config == {"hidden_size": 3} and c.extra == {"epoch": 1, "lr": 0.5}
    assert np.array_equal(c.tensors["w"], t["w"]) and c.tensors["step"].dtype == t["step"].dtype
    assert c.files == ["blob.bin", "vocab.txt"] and (d / "vocab.txt").read_text() == "[PAD]\n[UNK]\n"
    save_checkpoint(d, {"w": np.zeros(2, np.float32)}, {"v": 2})  # replaces the whole directory
    c = load_checkpoint(d)
    assert c.config == {"v": 2} and c.extra is None and c.files == []
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]  # no temp or backup left behind


def test_checkpoint_failure_keeps_the_old_one(tmp_path):
    d = tmp_path / "ckpt"
    save_checkpoint(d, {"w": np.ones(2, np.float32)}, {"v": 1})

    def boom(dest):
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(d, {"w": np.zeros(2, np.float32)}, {"v": 2}, files={"vocab.txt": boom})
    assert load_checkpoint(d).config == {"v": 1}
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]


def test_checkpoint_interrupted_between_renames_is_recovered(tmp_path):
    d = tmp_path / "ckpt"
    save_checkpoint(d, {"w": np.ones(2, np.float32)}, {"v": 1})
    os.replace(d, tmp_path / ".ckpt.old-abc123")  # as if the process died after step 1
    with pytest.warns(UserWarning, match="interrupted save"):
        assert load_checkpoint(d).config == {"v": 1}


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nothing")
    other = tmp_path / "mydocs"
    other.mkdir()
    (other / "notes.txt").write_text("precious")
    with pytest.raises(CheckpointError, match="refusing to replace"):
        save_checkpoint(other, {"w": np.ones(1, np.float32)}, {})
    assert (other / "notes.txt").read_text() == "precious"
    d = tmp_path / "ck"
    save_checkpoint(d, {"w": np.ones(1, np.float32)}, {})
    (d / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        load_checkpoint(d)
