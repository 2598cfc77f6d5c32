"""Time each of minispike.compiled's kernels against the NumPy op it stands in for, on the teacher's shapes.

    python benchmarks/bench_kernels.py [--repeats 20]

Needs numba (``pip install -e '.[fast]'``). One process; for each op the two paths alternate
(the order swapping each time), and the median of each is printed with their ratio:
GELU on (2048, 1536) for inference and for training (the forward only), LayerNorm on
(2048, 384) for inference, BERT's softmax attention on (32, 64, 3 x 384) with 12 heads and a
padded half-batch. The shapes are MiniLM's in benchmarks/bench_teacher.py (batch 32 x 64).
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import minispike  # noqa: E402  (first: minispike.process's settings apply only before NumPy loads)
import numpy as np  # noqa: E402

from minispike import compiled, no_grad, ops  # noqa: E402
from minispike.tensor import Tensor  # noqa: E402


def cases(rng):
    a = Tensor(rng.standard_normal((2048, 1536)).astype(np.float32))
    x = Tensor(rng.standard_normal((2048, 384)).astype(np.float32))
    w, b = Tensor(rng.standard_normal(384).astype(np.float32)), Tensor(rng.standard_normal(384).astype(np.float32))
    qkv = Tensor(rng.standard_normal((32, 64, 3 * 384)).astype(np.float32))
    mask = np.zeros((32, 1, 1, 64), np.float32)
    mask[16:, ..., 48:] = np.finfo(np.float32).min

    def inference(fn):
        def run():
            with no_grad():
                fn()
        return run

    def training_gelu():
        ops.gelu(Tensor(a.data, requires_grad=True))  # the forward keeps Phi and e^(-a^2/2)

    return {"gelu, inference (2048, 1536)": inference(lambda: ops.gelu(a)),
            "gelu, training forward (2048, 1536)": training_gelu,
            "layer_norm, inference (2048, 384)": inference(lambda: ops.layer_norm(x, w, b)),
            "softmax attention, inference (32, 64, 1152), 12 heads": inference(
                lambda: ops.softmax_attention(qkv, mask, heads=12, scale=1 / 32 ** 0.5))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args(argv)
    if not compiled.enabled():
        raise SystemExit(f"bench_kernels.py: the compiled kernels are {compiled.state()}")
    rows = {}
    for name, fn in cases(np.random.default_rng(0)).items():
        times = {True: [], False: []}
        for on in (True, False):  # warm-up (the first call compiles or loads the kernels)
            with compiled.scope(on):
                fn()
        for i in range(args.repeats):
            for on in ((True, False) if i % 2 == 0 else (False, True)):
                with compiled.scope(on):
                    t = time.perf_counter()
                    fn()
                    times[on].append(time.perf_counter() - t)
        k, n = statistics.median(times[True]) * 1e3, statistics.median(times[False]) * 1e3
        rows[name] = {"compiled_ms": round(k, 2), "numpy_ms": round(n, 2), "speedup": round(n / k, 2)}
        print(f"{name:55s} compiled {k:7.2f} ms   NumPy {n:7.2f} ms   {n / k:5.2f}x", file=sys.stderr)
    print(json.dumps({"compiled": compiled.state(), "repeats": args.repeats, "ops": rows}))
    return rows


if __name__ == "__main__":
    main()
