"""An exported student loads, with strict key matching, into a PyTorch module of the official layout.

The module is built here from the official key names and shapes (shared/reference/README.md;
no code of the official repository is copied), and its layout is checked first against the
reference file the official code wrote. Then ``python -m minispike export-official`` writes a
student, ``torch.nn.Module.load_state_dict(strict=True)`` takes it, every tensor equals the
student's, and a state saved from ``torch.nn.DataParallel`` (``module.`` prefix) comes back
through ``import-official`` unchanged.
"""
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (CI's interop venv has it: see .ci/run)")
safetensors_torch = pytest.importorskip("safetensors.torch", reason="safetensors is not installed")

from minispike import backend, cli  # noqa: E402
from minispike.models.spikebert import SpikeBert, SpikeBertConfig  # noqa: E402
from minispike.text.tokenizer import Tokenizer  # noqa: E402

pytestmark = pytest.mark.interop
nn = torch.nn
REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "official_student_tiny.npz"


class OfficialAttention(nn.Module):
    def __init__(self, dim):
        super().__init__()
        for name in ("q", "k", "v", "last"):
            setattr(self, f"{name}_m", nn.Linear(dim, dim))
            setattr(self, f"{name}_ln", nn.LayerNorm(dim))


class OfficialMLP(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.ln1 = nn.Linear(dim, hidden), nn.LayerNorm(hidden)
        self.fc2, self.ln2 = nn.Linear(hidden, dim), nn.LayerNorm(dim)


class OfficialBlock(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.attn, self.mlp = OfficialAttention(dim), OfficialMLP(dim, hidden)


class OfficialTransform(nn.Module):
    def __init__(self, dim, teacher_dim):
        super().__init__()
        self.fc, self.ln = nn.Linear(dim, teacher_dim), nn.LayerNorm(teacher_dim)


class OfficialStudent(nn.Module):
    """The official student's parameter layout (names and shapes), without its forward."""

    def __init__(self, vocab, dim, depth, hidden, teacher_dim, classes):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(OfficialBlock(dim, hidden) for _ in range(depth))
        self.last_ln = nn.LayerNorm(dim)
        self.transforms = nn.ModuleList(OfficialTransform(dim, teacher_dim) for _ in range(depth))
        self.classifier = nn.Linear(dim, classes)


# minispike's module paths -> the official ones, written out here from the reference's key list
# (shared/reference/README.md), independently of minispike's own table in io/official.py.
OFFICIAL_PATHS = [("embedding.", "emb."), ("final_ln.", "last_ln.")] + [
    (f".{ours}.", f".{theirs}.") for ours, theirs in (
        ("attn.q.fc", "attn.q_m"), ("attn.q.ln", "attn.q_ln"), ("attn.k.fc", "attn.k_m"), ("attn.k.ln", "attn.k_ln"),
        ("attn.v.fc", "attn.v_m"), ("attn.v.ln", "attn.v_ln"), ("attn.out.fc", "attn.last_m"),
        ("attn.out.ln", "attn.last_ln"), ("mlp.up.fc", "mlp.fc1"), ("mlp.up.ln", "mlp.ln1"),
        ("mlp.down.fc", "mlp.fc2"), ("mlp.down.ln", "mlp.ln2"))]


def official_name(name):
    """A minispike parameter name in the official layout."""
    for ours, theirs in OFFICIAL_PATHS:
        if ours.startswith("."):  # inside a block
            name = name.replace(ours, theirs)
        elif name.startswith(ours):  # a top-level module
            name = theirs + name[len(ours):]
    return name


def _shapes(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_the_torch_module_has_the_reference_files_layout():
    if not REFERENCE.is_file():
        pytest.skip(f"the official reference {REFERENCE} is not present")
    with np.load(REFERENCE) as z:
        reference = {k[len("param/"):]: tuple(z[k].shape) for k in z.files if k.startswith("param/")}
    assert _shapes(OfficialStudent(vocab=50, dim=32, depth=2, hidden=128, teacher_dim=32, classes=2)) == reference


@pytest.fixture
def exported(tmp_path):
    if "export-official" not in cli.build_parser()._subparsers._group_actions[0].choices:
        pytest.skip("minispike has no export-official command yet")
    backend.seed(0)
    texts = ["a gripping , funny film", "dull and far too long", "moving and quiet"] * 4
    tok = Tokenizer.build_wordpiece(texts, vocab_size=60)
    config = SpikeBertConfig.preset("official", vocab_size=tok.vocab_size, dim=32, depth=3, heads=4,
                                    teacher_dim=32, num_classes=3)  # official taps: the width of the student
    student = SpikeBert(config)
    for p in student.parameters():  # off the init, so that a swapped or transposed tensor shows
        p.data += backend.randn(p.shape, std=0.1)
    student.save_pretrained(tmp_path / "student", tokenizer=tok)
    out = tmp_path / "official.safetensors"
    assert cli.main(["export-official", os.fspath(tmp_path / "student"), os.fspath(out)]) == 0
    return student, out, tok, tmp_path


def test_an_exported_student_loads_strictly_into_the_official_layout(exported):
    student, out, _, _ = exported
    c = student.config
    module = OfficialStudent(c.vocab_size, c.dim, c.depth, 4 * c.dim, c.dim, 3)
    state = safetensors_torch.load_file(out)
    result = module.load_state_dict(state, strict=True)  # raises on any missing, unexpected or misshapen key
    assert not result.missing_keys and not result.unexpected_keys
    theirs = module.state_dict()
    ours = {official_name(k): backend.to_numpy(p.data) for k, p in student.named_parameters()}
    assert set(ours) == set(theirs)
    for name, tensor in theirs.items():
        np.testing.assert_array_equal(tensor.numpy(), ours[name], err_msg=name)


def test_a_data_parallel_state_comes_back_through_import_official(exported):
    student, out, tok, tmp_path = exported
    state = safetensors_torch.load_file(out)
    module = OfficialStudent(student.config.vocab_size, 32, 3, 128, 32, 3)
    module.load_state_dict(state, strict=True)
    wrapped = nn.DataParallel(module)  # the keys gain "module.", as a DDP training run saves them
    dp_file = tmp_path / "dp.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in wrapped.state_dict().items()}, dp_file)
    tok_dir = tmp_path / "student"
    assert cli.main(["import-official", os.fspath(dp_file), os.fspath(tmp_path / "back"), "--tokenizer",
                     os.fspath(tok_dir), "--heads", "4", "--T", "4", "--max-length", "8"]) == 0
    back = SpikeBert.from_pretrained(tmp_path / "back")
    for name, p in student.named_parameters():
        np.testing.assert_array_equal(backend.to_numpy(dict(back.named_parameters())[name].data),
                                      backend.to_numpy(p.data), err_msg=name)
