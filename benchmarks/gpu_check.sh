#!/usr/bin/env bash
# minispike on a real GPU, in one prepared run (issue 19):
#
#     bash benchmarks/gpu_check.sh OUTDIR             on a machine with an NVIDIA GPU (sized for ~8 min on an H200)
#     bash benchmarks/gpu_check.sh OUTDIR --dry-run   the same steps on the strict backend, on the CPU, tiny sizes
#
# Steps: install the gpu extra (skipped where CuPy is already importable, or in a dry run); print
# the device and the CuPy / CUDA versions; the test suite with the backend-generic tests on CuPy
# (--backend-under-test cupy; the gpu-marked tests run too); the student benchmark at the cpu
# preset and at the paper preset (768 x 12, T 4, batch 32 x 64); the teacher benchmark; a short
# stage-2 run at the paper preset (a few hundred steps; SST-2 when ../shared/data is beside the
# checkout, else the built-in sentences) with its evaluation, energy report and figures.
#
# OUTDIR receives six files (few, flat: a device run sends back at most 8): gpu_check.log
# (everything printed), env.txt, suite.log, bench.jsonl, results.json (the numbers, gathered) and
# figures_and_logs.tar.gz (the figures, and the runs' config, log and metrics, without weights).
# The dry run spends no GPU minute on a typo: every command, path and option of the real run
# runs, only on the strict backend (NumPy that refuses host round trips, as CuPy does) and small.
set -euo pipefail

usage() { echo "usage: bash benchmarks/gpu_check.sh OUTDIR [--dry-run]" >&2; exit 2; }
[ $# -ge 1 ] || usage
OUT=$1; shift
DRY=0
for a in "$@"; do
    case $a in --dry-run) DRY=1 ;; *) usage ;; esac
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")  # run directories (the paper-size weights stay here)
trap 'rm -rf "$WORK"' EXIT
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg PYTHONUNBUFFERED=1
cd "$ROOT"
T0=$SECONDS
step() { echo; echo "== $1 ($((SECONDS - T0)) s)"; }

if [ $DRY = 1 ]; then
    BACKEND=strict
    STUDENT_SMALL=(--preset tiny --vocab 500 --batch 4 --seq 16 --steps 1 --warmup 1)
    STUDENT_PAPER=(--preset tiny --vocab 500 --batch 4 --seq 16 --steps 1 --warmup 0)
    TEACHER_BENCH=(--tiny --batch 4 --seq 16 --repeats 1)
    TEACHER_SHAPE="hidden=32, layers=2, heads=4"
    SUITE=(-m device -x)                       # the backend-generic tests, on strict
    TEACHER_STEPS=3; STAGE2=(--preset tiny --max-steps 4 --eval-every 2 --batch-size 8 --augment 1)
    LIMIT=300
else
    BACKEND=cupy
    STUDENT_SMALL=(--preset cpu --batch 32 --seq 64 --steps 5 --warmup 2)
    STUDENT_PAPER=(--preset paper --batch 32 --seq 64 --steps 5 --warmup 2)
    TEACHER_BENCH=(--repeats 5)
    TEACHER_SHAPE="hidden=384, layers=6, heads=12"   # all-MiniLM-L6-v2's shape, random weights
    SUITE=(--backend-under-test cupy)
    TEACHER_STEPS=60; STAGE2=(--preset paper --max-steps 300 --eval-every 150 --batch-size 32 --augment 2)
    LIMIT=240
fi

step "1. install the gpu extra"
if [ $DRY = 1 ]; then
    echo "dry run: not installing (the strict backend needs nothing beyond NumPy)"
elif "$PY" -c "import cupy" 2>/dev/null; then
    echo "CuPy is already importable here: not installing the gpu extra over it"
else
    "$PY" -m pip install -q -e "$ROOT[gpu]"
fi

step "2. device, CuPy and CUDA versions"
"$PY" - "$BACKEND" <<'EOF' | tee "$OUT/env.txt"
import json, platform, sys
import numpy
from minispike import backend
info = {"python": platform.python_version(), "numpy": numpy.__version__, "backend": sys.argv[1]}
if sys.argv[1] == "cupy":
    import cupy
    rt = cupy.cuda.runtime
    props = rt.getDeviceProperties(0)
    info.update(device=props["name"].decode(), memory_gib=round(props["totalGlobalMem"] / 2**30, 1),
                compute_capability=f"{props['major']}.{props['minor']}", cupy=cupy.__version__,
                cuda_runtime=rt.runtimeGetVersion(), cuda_driver=rt.driverGetVersion())
else:
    info.update(device="CPU (dry run on the strict backend)")
print(json.dumps(info))
EOF

step "3. the test suite, backend-generic tests on $BACKEND"
set +e
timeout $((LIMIT + 60)) "$PY" -m pytest -p no:cacheprovider "${SUITE[@]}" -rs > "$OUT/suite.log" 2>&1
SUITE_RC=$?
set -e
tail -n 15 "$OUT/suite.log"
echo "suite exit status: $SUITE_RC"

step "4. student benchmark: cpu preset and paper preset"
: > "$OUT/bench.jsonl"
timeout $LIMIT "$PY" benchmarks/bench_student.py "${STUDENT_SMALL[@]}" --backend $BACKEND --json | tee -a "$OUT/bench.jsonl"
timeout $LIMIT "$PY" benchmarks/bench_student.py "${STUDENT_PAPER[@]}" --backend $BACKEND --json | tee -a "$OUT/bench.jsonl"

step "5. teacher benchmark"
timeout $LIMIT "$PY" benchmarks/bench_teacher.py "${TEACHER_BENCH[@]}" --backend $BACKEND \
    | "$PY" -c "import json, sys; print(json.dumps(json.load(sys.stdin)))" | tee -a "$OUT/bench.jsonl"

step "6. stage 2 at the paper preset"
DATA=(--task builtin)
if [ $DRY = 0 ] && [ -f "$ROOT/../shared/data/README.md" ] && [ -d "$ROOT/../shared/data/sst2" ]; then
    DATA=(--task sst2 --data-dir "$ROOT/../shared/data")
fi
echo "data: ${DATA[*]}; teacher: a random BERT ($TEACHER_SHAPE) fine-tuned $TEACHER_STEPS steps here"
"$PY" - "$WORK/plain-teacher" "$DRY" <<'EOF'
import sys
from minispike.pipeline import make_small_teacher
from minispike.text.builtin import builtin_texts
shape = dict(hidden=32, layers=2, heads=4) if sys.argv[2] == "1" else dict(hidden=384, layers=6, heads=12)
print("plain teacher:", make_small_teacher(sys.argv[1], builtin_texts(), **shape))
EOF
timeout $LIMIT "$PY" -m minispike finetune-teacher "${DATA[@]}" --teacher "$WORK/plain-teacher" --out "$WORK/teacher" \
    --max-steps $TEACHER_STEPS --epochs 50 --batch-size 32 --lr 1e-3 --max-length 64 --quiet --backend $BACKEND \
    > "$WORK/teacher.json"
timeout $((LIMIT + 120)) "$PY" -m minispike distill "${DATA[@]}" --teacher "$WORK/teacher" --out "$WORK/stage2" \
    "${STAGE2[@]}" --epochs 100 --max-length 64 --checkpoint-every 100000 --quiet --backend $BACKEND \
    > "$WORK/stage2.json"
cat "$WORK/stage2.json"
timeout $LIMIT "$PY" -m minispike evaluate "$WORK/stage2" --split dev --backend $BACKEND --quiet > "$WORK/evaluate.json"
timeout $LIMIT "$PY" -m minispike energy --student "$WORK/stage2" --teacher "$WORK/teacher" --sentences 64 \
    --out "$WORK/stage2" --backend $BACKEND --quiet > "$WORK/energy.json"
timeout $LIMIT "$PY" -m minispike plot "$WORK/stage2" --out "$WORK/figures" --backend $BACKEND

step "7. gather the results"
"$PY" - "$OUT" "$WORK" "$SUITE_RC" $((SECONDS - T0)) <<'EOF'
import json, os, re, sys
out, work, suite_rc, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
suite_tail = [l for l in open(os.path.join(out, "suite.log")).read().splitlines() if l.strip()]
summary = next((l for l in reversed(suite_tail) if re.search(r"\d+ (passed|failed)", l)), suite_tail[-1:] or "")
read = lambda p: json.load(open(os.path.join(work, p)))
results = {"env": json.loads(open(os.path.join(out, "env.txt")).read()),
           "suite": {"exit_status": suite_rc, "summary": summary},
           "bench": [json.loads(l) for l in open(os.path.join(out, "bench.jsonl")) if l.strip()],
           "teacher": read("teacher.json"), "stage2": read("stage2.json"), "evaluate_dev": read("evaluate.json"),
           "energy": read("energy.json"), "wall_seconds": seconds}
with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(results, f, indent=1, default=str)
print(json.dumps({"suite": results["suite"], "stage2_test_accuracy": results["stage2"].get("test_accuracy"),
                  "energy_ratio": results["energy"].get("ratio"), "wall_seconds": seconds}))
EOF
(cd "$WORK" && find figures teacher stage2 -maxdepth 1 \( -name '*.png' -o -name '*.json' -o -name '*.jsonl' \
    -o -name '*.txt' \) | tar czf "$OUT/figures_and_logs.tar.gz" -T -)
ls -la "$OUT"
[ $SUITE_RC = 0 ] || { echo "gpu_check: the suite failed on $BACKEND (see suite.log)"; exit 1; }
echo "gpu_check: done in $((SECONDS - T0)) s"
