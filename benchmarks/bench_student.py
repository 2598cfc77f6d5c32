"""Benchmark: one training step of the SpikeBERT student (cpu preset), alone or against the official code.

    python benchmarks/bench_student.py [--preset cpu] [--batch 32] [--seq 64] [--steps 5] [--warmup 1]
    python benchmarks/bench_student.py --preset paper --backend cupy --json    # on a GPU
    python benchmarks/bench_student.py --peer /work/peer/SpikeBERT --peer-python /work/venv-peer/bin/python

Times forward + cross-entropy + backward + AdamW step on random token ids (full length, no
padding), and reports tokens/s (batch x seq per step) and the peak resident memory of the
process (ru_maxrss).

``--peer DIR`` (a checkout of Lvchangze/SpikeBERT, patched as benchmarks/README.md says) runs
the official PyTorch + spikingjelly student of the same shape in the same invocation: each
round starts one fresh subprocess per side (so each peak RSS is that side's alone), the order
alternating (minispike first in even rounds, the official code first in odd ones), and prints
the per-round tokens/s, the median of the per-round ratios and both peak memories.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
from timing import peak_rss_mb, time_calls  # noqa: E402  (benchmarks/timing.py, shared with bench_teacher)

# the cpu preset's shape, for the official code (minispike reads SpikeBertConfig.preset)
PEER_SHAPES = {"cpu": dict(dim=256, depths=4, heads=8, T=4, tau=2.0),
               "tiny": dict(dim=32, depths=2, heads=4, T=4, tau=2.0)}
PEER_PATCH_HINT = ("benchmarks/README.md: in model/new_spikformer.py, mlp.forward's first reshape(T, B, L, D) "
                   "must be reshape(T, B, L, -1)")


def device_memory(backend):
    """CuPy's memory pool after the run: the most device memory it held (it keeps what it took)."""
    xp = backend.current()
    if not hasattr(xp, "get_default_memory_pool"):
        return {}
    return {"device_pool_peak_mb": round(xp.get_default_memory_pool().total_bytes() / 2**20, 1)}


def run_minispike(args):
    import minispike  # first: its process settings (minispike.process) apply only before NumPy loads
    import numpy as np

    from minispike import backend, ops
    from minispike.models.spikebert import SpikeBert, SpikeBertConfig
    from minispike.optim import AdamW

    backend.use(args.backend)
    backend.seed(0)
    cfg = SpikeBertConfig.preset(args.preset, vocab_size=args.vocab, max_length=max(args.seq, 1))
    model = SpikeBert(cfg)
    opt = AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=5e-3)
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
        opt.step()

    def synchronize():
        if hasattr(xp, "cuda"):
            xp.cuda.get_current_stream().synchronize()

    times = time_calls(step, args.warmup, args.steps, synchronize)
    return dict(side="minispike", dim=cfg.dim, depth=cfg.depth, heads=cfg.heads, T=cfg.T, times=times,
                threads=os.cpu_count(), backend=args.backend, process=minispike.process.state(),
                **device_memory(backend))


def run_peer(args):  # pragma: no cover - needs torch and a checkout of the official code
    """The official student (model/new_spikformer.py, its vendored spikingjelly) trained the way
    its train_spikformer.py does: logits = mean over T of the classifier, cross entropy, AdamW,
    ``functional.reset_net`` after the step (float32, no AMP: the CPU has none to speak of)."""
    sys.path.insert(0, os.path.abspath(args.peer))
    import contextlib
    import io

    import torch
    import torch.nn.functional as F
    with contextlib.redirect_stdout(io.StringIO()):  # new_spikformer.py prints torch.__version__
        from model.new_spikformer import new_spikformer
    from spikingjelly.activation_based import functional

    shape = PEER_SHAPES[args.preset]
    torch.manual_seed(0)
    model = new_spikformer(depths=shape["depths"], length=args.seq, tau=shape["tau"], common_thr=1.0,
                           dim=shape["dim"], T=shape["T"], vocab_size=args.vocab, num_classes=2,
                           heads=shape["heads"], mode="distill")
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=5e-3)
    ids = torch.randint(0, args.vocab, (args.batch, args.seq))
    labels = torch.randint(0, 2, (args.batch,))

    def step():
        _, outputs = model(ids)  # (B, T, C)
        loss = F.cross_entropy(outputs.mean(1), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        functional.reset_net(model)

    try:
        times = time_calls(step, args.warmup, args.steps)
    except RuntimeError as e:
        if "shape" in str(e) and "invalid for input of size" in str(e):
            raise SystemExit(f"bench_student.py: the official code in {args.peer} is unpatched ({e}); "
                             f"{PEER_PATCH_HINT}")
        raise
    return dict(side="official", dim=shape["dim"], depth=shape["depths"], heads=shape["heads"], T=shape["T"],
                times=times, threads=torch.get_num_threads(), torch=torch.__version__,
                spikingjelly=os.path.dirname(sys.modules["spikingjelly"].__file__))


def summarise(res, args):
    times = res.pop("times")
    tokens = args.batch * args.seq
    mean = sum(times) / len(times)
    return {"preset": args.preset, **res, "batch": args.batch, "seq": args.seq,
            "step_s_mean": round(mean, 4), "step_s_best": round(min(times), 4),
            "tokens_per_s": round(tokens / mean, 1), "peak_rss_mb": round(peak_rss_mb(), 1)}


def one_side(side, args, python):
    """One fresh process timing one side; its last stdout line is the JSON result."""
    cmd = [python, os.path.abspath(__file__), "--side", side, "--preset", args.preset, "--batch", str(args.batch),
           "--seq", str(args.seq), "--steps", str(args.steps), "--warmup", str(args.warmup), "--vocab", str(args.vocab),
           "--peer", args.peer, "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"bench_student.py: the {side} side failed: {(p.stderr or p.stdout).strip().splitlines()[-1]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def paired(args):
    """Alternate the two sides for ``args.rounds`` rounds; the median of the per-round ratios."""
    if args.preset not in PEER_SHAPES:
        raise SystemExit(f"bench_student.py: --peer runs the presets {sorted(PEER_SHAPES)}, not {args.preset!r}")
    if not os.path.isfile(os.path.join(args.peer, "model", "new_spikformer.py")):
        raise SystemExit(f"bench_student.py: --peer {args.peer}: no model/new_spikformer.py there "
                         "(a checkout of Lvchangze/SpikeBERT expected; benchmarks/README.md)")
    pythons = {"minispike": sys.executable, "official": args.peer_python}
    rounds = []
    for r in range(args.rounds):
        order = ["minispike", "official"] if r % 2 == 0 else ["official", "minispike"]
        got = {side: one_side(side, args, pythons[side]) for side in order}
        ratio = got["minispike"]["tokens_per_s"] / got["official"]["tokens_per_s"]
        rounds.append({"round": r, "order": order, "minispike_tok_s": got["minispike"]["tokens_per_s"],
                       "official_tok_s": got["official"]["tokens_per_s"], "ratio": round(ratio, 3),
                       "minispike_peak_rss_mb": got["minispike"]["peak_rss_mb"],
                       "official_peak_rss_mb": got["official"]["peak_rss_mb"]})
        if not args.json:
            print(f"round {r} ({' then '.join(order)}): minispike {got['minispike']['tokens_per_s']:,.0f} tokens/s, "
                  f"official {got['official']['tokens_per_s']:,.0f} tokens/s: {ratio:.2f}x; peak RSS "
                  f"{got['minispike']['peak_rss_mb']:,.0f} MB vs {got['official']['peak_rss_mb']:,.0f} MB", flush=True)
    peak_ms = max(r["minispike_peak_rss_mb"] for r in rounds)
    peak_off = max(r["official_peak_rss_mb"] for r in rounds)
    res = {"preset": args.preset, "batch": args.batch, "seq": args.seq, "steps": args.steps, "warmup": args.warmup,
           "rounds": rounds, "median_ratio": round(statistics.median(r["ratio"] for r in rounds), 3),
           "minispike_peak_rss_mb": peak_ms, "official_peak_rss_mb": peak_off,
           "memory_fraction": round(peak_ms / peak_off, 3), "load_average": os.getloadavg()}
    if args.json:
        print(json.dumps(res))
    else:
        print(f"median ratio minispike / official: {res['median_ratio']:.2f}x over {args.rounds} rounds; "
              f"peak RSS {peak_ms:,.0f} MB vs {peak_off:,.0f} MB ({100 * res['memory_fraction']:.0f}%); "
              f"load average {res['load_average'][0]:.2f}")
    return res


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
    ap.add_argument("--peer", default=None, help="a checkout of Lvchangze/SpikeBERT: time it too, alternating")
    ap.add_argument("--peer-python", default=os.environ.get("MINISPIKE_PEER_PYTHON", sys.executable),
                    help="the Python with torch for the official side (default $MINISPIKE_PEER_PYTHON)")
    ap.add_argument("--rounds", type=int, default=3, help="with --peer: alternations (at least 3 for a median)")
    ap.add_argument("--side", choices=["minispike", "official"], default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.peer and args.side is None:
        return paired(args)
    res = summarise(run_peer(args) if args.side == "official" else run_minispike(args), args)
    if args.json:
        print(json.dumps(res))
    else:
        name = "official new_spikformer" if args.side == "official" else "SpikeBert"
        print(f"{name}[{args.preset}] dim {res['dim']} depth {res['depth']} heads {res['heads']} T {res['T']}, "
              f"batch {args.batch} x seq {args.seq}: step {res['step_s_mean']:.3f} s (best {res['step_s_best']:.3f}), "
              f"{res['tokens_per_s']:,.0f} tokens/s, peak RSS {res['peak_rss_mb']:,.0f} MB")
    return res


if __name__ == "__main__":
    main()
