"""Benchmark: one training step of the SpikeBERT student (cpu preset) on the CPU or a GPU.

    python benchmarks/bench_student.py [--preset cpu] [--batch 32] [--seq 64] [--steps 5] [--warmup 1]
    python benchmarks/bench_student.py --preset paper --backend cupy --json    # on a GPU

Times forward + cross-entropy + backward + AdamW step on random token ids (full length, no
padding), and reports tokens/s (batch x seq per step) and the peak resident memory of the
process (ru_maxrss). The official PyTorch + spikingjelly code does ~1,050 tokens/s at ~3.9 GB
peak for this configuration on the project's 2-core machines.
"""
import argparse
import json
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from minispike import backend, ops  # noqa: E402
from minispike.models.spikebert import SpikeBert, SpikeBertConfig  # noqa: E402


def device_memory():
    """CuPy's memory pool after the run: the most device memory it held (it keeps what it took)."""
    xp = backend.current()
    if not hasattr(xp, "get_default_memory_pool"):
        return {}
    return {"device_pool_peak_mb": round(xp.get_default_memory_pool().total_bytes() / 2**20, 1)}


def peak_rss_mb():
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return r / 1024 if sys.platform != "darwin" else r / 2**20


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--vocab", type=int, default=30522)
    ap.add_argument("--backend", default="numpy", choices=["numpy", "cupy", "strict"])
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    args = ap.parse_args(argv)

    backend.use(args.backend)
    backend.seed(0)
    cfg = SpikeBertConfig.preset(args.preset, vocab_size=args.vocab, max_length=max(args.seq, 1))
    model = SpikeBert(cfg)
    try:
        from minispike.optim import AdamW
        opt = AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=5e-3)
    except Exception as e:  # pragma: no cover - the optimiser is another module's
        print(f"(no AdamW: {e}; timing without the update)")
        opt = None
    rng = np.random.default_rng(0)
    xp = backend.current()
    ids = xp.asarray(rng.integers(0, cfg.vocab_size, (args.batch, args.seq)))
    labels = xp.asarray(rng.integers(0, cfg.num_classes, (args.batch,)))
    mask = xp.ones((args.batch, args.seq), dtype=xp.float32)

    def step():
        model.zero_grad()
        out = model(ids, mask)
        loss = ops.cross_entropy(out.logits, labels)
        loss.backward()
        if opt is not None:
            opt.step()
        return float(loss.item())

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    tokens = args.batch * args.seq
    best, mean = min(times), sum(times) / len(times)
    res = {"preset": args.preset, "dim": cfg.dim, "depth": cfg.depth, "heads": cfg.heads, "T": cfg.T,
           "batch": args.batch, "seq": args.seq, "step_s_mean": round(mean, 4), "step_s_best": round(best, 4),
           "tokens_per_s": round(tokens / mean, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
           "threads": os.cpu_count(), "backend": args.backend, **device_memory()}
    if args.json:
        print(json.dumps(res))
    else:
        print(f"SpikeBert[{args.preset}] dim {cfg.dim} depth {cfg.depth} heads {cfg.heads} T {cfg.T}, "
              f"batch {args.batch} x seq {args.seq}: step {mean:.3f} s (best {best:.3f}), "
              f"{tokens / mean:,.0f} tokens/s, peak RSS {res['peak_rss_mb']:,.0f} MB")
    return res


if __name__ == "__main__":
    main()
