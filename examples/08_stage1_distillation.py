# %% [markdown]
# # 08 - Stage 1 of SpikeBERT's distillation, in miniature: the student's blocks imitate BERT
#
# **What you will learn:** how the spiking student learns from BERT without any labels: which
# student block imitates which teacher layer (the layer map), the feature and embedding
# losses, and the training loop written out step by step (teacher forward, student forward,
# loss, BPTT, clipping, AdamW).
#
# **What you should know first:** examples 05 (training a spiking network) and 07 (the
# teacher's hidden states); mean squared error.
#
# **Time:** fast (`--fast`) about 3 s, full about 5 s of CPU time on one core (30 or 80
# steps); measured on a 2-core machine shared with other jobs, where the wall-clock time was 6
# to 10 times longer (examples/README.md)
#
# Stage 1 needs no labels. A plain BERT (the teacher) reads unlabelled sentences; the spiking
# student reads the same token ids and is trained so that its internal representations match
# the teacher's (minispike/distill.py):
#
#     layer map   student block i  ->  teacher layer j(i) = ceil((i + 1) Lt / Ls)          layer_map
#     features    L_feat = sum_i MSE( LN(W_i mean_t X_i + b_i),  h_j(i) )                   feature_loss
#                 (the block output X_i is spikes over T; its mean over T is a firing rate per
#                  feature; a per-block Linear + LN "transform" maps it to the teacher's width)
#     embedding   L_emb  = MSE( P e_student, E_teacher[ids] )                               embedding_loss
#     stage 1     L = 1.0 L_feat + 1.0 L_emb                                 LossWeights.stage1()
#     (padding positions are left out of every MSE)
#
# In miniature: a tiny random BERT (hidden 64, 4 layers) stands in for the pretrained teacher
# (example 11 uses all-MiniLM-L6-v2), a SpikeBERT student 32 wide with 2 blocks and T = 4, and
# the 292 built-in sentences.
#
# Options: `--steps N` (cell by cell: `MINISPIKE_STEPS`).
# Read next: docs/distillation.md, minispike/distill.py.

# %%
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(globals().get("__file__", "here")).resolve().parent))  # examples/ (a notebook: its folder)
import _shared  # noqa: E402  (the plumbing every example shares; puts the checkout on sys.path)

import numpy as np  # noqa: E402

from minispike import backend, optim  # noqa: E402
from minispike.distill import LossWeights, distill_loss, feature_loss, layer_map, teacher_targets  # noqa: E402
from minispike.models.bert import BertConfig, BertModel  # noqa: E402
from minispike.models.spikebert import SpikeBert, SpikeBertConfig  # noqa: E402
from minispike.tensor import no_grad  # noqa: E402
from minispike.text import Batcher, builtin_texts, builtin_tokenizer  # noqa: E402

args = _shared.options("08 - Stage 1 of SpikeBERT's distillation, in miniature.",
                       ("--steps", {"type": int, "default": None,
                                    "help": "training steps (default 80, --fast 30; env MINISPIKE_STEPS)"}),
                       fast_help="fewer steps (for the tests)")
OUT = Path(args.out)
FIGURES = ["08_stage1_distillation.png"]  # what this example writes into OUT
steps = args.steps or (30 if args.fast else 80)
backend.seed(0)

# %% [markdown]
# ## 1. Data: unlabelled sentences, one tokenizer for both models

# %%
texts = builtin_texts()
tok = builtin_tokenizer(vocab_size=600)
ids_list = tok.encode_ids(texts, max_length=32)
held, train = ids_list[:32], ids_list[32:]  # a held-out slice to measure on
batches = Batcher(train, None, batch_size=16, seed=0, pad_id=tok.pad_id, to_device=True)
held_batch = Batcher(held, None, batch_size=32, shuffle=False, pad_id=tok.pad_id, to_device=True).make_batch(
    np.arange(32))
print(f"data: {len(texts)} unlabelled sentences, vocabulary {tok.vocab_size}; "
      f"{len(train)} to train on, 32 held out")

# %% [markdown]
# ## 2. The pair, and which student block imitates which teacher layer

# %%
teacher = BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=64, num_hidden_layers=4,
                               num_attention_heads=4, intermediate_size=128, max_position_embeddings=64))
teacher.eval()  # frozen: no dropout, never updated
cfg = SpikeBertConfig.preset("tiny", vocab_size=tok.vocab_size, dim=32, depth=2, heads=4, T=4,
                             max_length=32, teacher_dim=64)
student = SpikeBert(cfg)
pairs = layer_map(cfg.depth, teacher.config.num_hidden_layers)
print(f"teacher: BERT hidden 64, 4 layers ({teacher.num_parameters():,} parameters)")
print(f"student: SpikeBERT dim {cfg.dim}, {cfg.depth} blocks, T = {cfg.T} ({student.num_parameters():,} parameters, "
      f"taps 32 -> 64 wide)")
print(f"layer map (student block -> teacher hidden state; 0 = embeddings): {pairs}")
w = LossWeights.stage1()
print(f"loss weights: features {w.features}, embedding {w.embedding} (kl {w.kl}, ce {w.ce}: no labels in stage 1)")


def held_out():
    """Feature and embedding loss on the held-out sentences, and each mapped layer's MSE."""
    ids, mask = held_batch["ids"], held_batch["mask"]
    with no_grad():
        targets = teacher_targets(teacher, ids, mask, with_logits=False)
        out = student(ids, mask)
        _, parts = distill_loss(out, targets, mask, w)
        fmask = mask.astype(out.logits.dtype)
        per_layer = [float(feature_loss(out.taps, targets.hidden, fmask, [p]).item()) for p in pairs]
    return parts, per_layer


before, before_layers = held_out()
print(f"held out before: features {before['loss_features']:.4f}, embedding {before['loss_embedding']:.4f}")

# %% [markdown]
# ## 3. The loop, every step written out (no helper hides a step)
#
#     targets = teacher_targets(teacher, ids, mask)       # teacher forward, no graph
#     out     = student(ids, mask)                        # spikes over T, taps, embedding
#     loss    = distill_loss(out, targets, mask, w)       # the weighted sum above
#     opt.zero_grad(); loss.backward()                    # BPTT through every LIF
#     clip_grad_norm(params, 1.0); opt.step()             # AdamW

# %%
params = student.parameters()
opt = optim.AdamW(params, lr=3e-3, weight_decay=5e-3)
history = []
student.train()
t0 = time.perf_counter()
print(f"{'step':>5} {'lr':>8} {'loss':>8} {'features':>9} {'embedding':>10} {'grad norm':>10}")
step = 0
while step < steps:
    for batch in batches:
        if step >= steps:
            break
        ids, mask = batch["ids"], batch["mask"]
        opt.lr = optim.cosine_schedule(step, steps, 3e-3, warmup_steps=steps // 10)
        targets = teacher_targets(teacher, ids, mask, with_logits=False)  # no graph
        out = student(ids, mask)                                           # (T, B, L, D) spikes inside
        loss, parts = distill_loss(out, targets, mask, w)
        opt.zero_grad()
        loss.backward()                                                    # BPTT through every LIF
        norm = optim.clip_grad_norm(params, 1.0)
        opt.step()
        history.append((step, loss.item(), parts["loss_features"], parts["loss_embedding"]))
        if step % max(1, steps // 10) == 0 or step == steps - 1:
            print(f"{step:>5} {opt.lr:>8.2e} {loss.item():>8.4f} {parts['loss_features']:>9.4f} "
                  f"{parts['loss_embedding']:>10.4f} {float(norm):>10.3f}")
        step += 1
history = np.array(history)
print(f"{steps} steps in {time.perf_counter() - t0:.1f} s")

# %% [markdown]
# ## 4. Did the student move towards the teacher? Measured on sentences it never trained on

# %%
after, after_layers = held_out()
student.eval()
print("held-out sentences, before -> after:")
print(f"  feature loss    {before['loss_features']:.4f} -> {after['loss_features']:.4f}")
print(f"  embedding loss  {before['loss_embedding']:.4f} -> {after['loss_embedding']:.4f}")
for (i, j), b, a in zip(pairs, before_layers, after_layers):
    print(f"  block {i} -> teacher layer {j}: MSE {b:.4f} -> {a:.4f}")
assert after["loss_features"] < before["loss_features"], "stage 1 did not reduce the feature loss"
print("the student's blocks now sit closer to the teacher's layers: stage 2 (example 09) starts from here.")

# %% [markdown]
# ## 5. The picture: the training losses

# %%
plt = _shared.pyplot()
if plt is not None:
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(history[:, 0], history[:, 1], label="total (stage 1)")
    ax.plot(history[:, 0], history[:, 2], label="features: sum of mapped-layer MSE")
    ax.plot(history[:, 0], history[:, 3], label="embedding MSE")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (training batch)")
    ax.set_title("Stage 1 in miniature: the student imitates the teacher's layers")
    ax.legend()
    _shared.save_figure(fig, OUT, "08_stage1_distillation")
