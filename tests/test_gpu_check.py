"""benchmarks/gpu_check.sh, the one prepared GPU run: its shell parses, it refuses bad arguments,
the benchmarks take the options it passes; the whole dry run (strict backend, CPU, tiny sizes)
is the slow test."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_the_script_parses_and_refuses_bad_arguments(tmp_path):
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    for args in ([], [str(tmp_path), "--dry-runn"]):
        p = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=30)
        assert p.returncode == 2 and "usage: bash benchmarks/gpu_check.sh OUTDIR [--dry-run]" in p.stderr


def test_the_benchmarks_take_the_dry_runs_options():
    import bench_student
    import bench_teacher
    s = bench_student.main(["--preset", "tiny", "--vocab", "500", "--batch", "2", "--seq", "8", "--steps", "1",
                            "--warmup", "0", "--backend", "strict", "--json"])
    assert s["backend"] == "strict" and s["tokens_per_s"] > 0 and s["dim"] == 32
    t = bench_teacher.main(["--tiny", "--batch", "2", "--seq", "8", "--repeats", "1", "--backend", "strict"])
    assert t["teacher"] == "tiny random" and t["inference_tok_s"] > 0


@pytest.mark.slow
def test_the_dry_run_passes_and_fills_the_output_directory(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    p = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out"), "--dry-run"], capture_output=True, text=True,
                       env=env, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:]
    names = sorted(os.listdir(tmp_path / "out"))
    assert names == ["bench.jsonl", "env.txt", "figures_and_logs.tar.gz", "gpu_check.log", "results.json",
                     "suite.log"]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["suite"]["exit_status"] == 0 and "passed" in results["suite"]["summary"]
    assert [b["backend"] for b in results["bench"]] == ["strict"] * 3
    assert 0 <= results["stage2"]["test_accuracy"] <= 1 and results["energy"]["ratio"] > 0
