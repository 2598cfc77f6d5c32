# %% [markdown]
# # 10 - Energy: where the joules go, layer by layer
#
# **What you will learn:** how SpikeBERT's energy claim is counted: multiply-accumulates
# (MACs) for layers fed real numbers, accumulates (ACs) for layers fed binary spikes, scaled
# by the firing rate; the per-layer table with the rule each row followed, one row checked by
# hand; and why the residual stream (integer counts, not spikes) pays MACs.
#
# **What you should know first:** examples 05 (firing rates) and 06 (spiking attention); what
# a Linear layer computes.
#
# **Time:** fast (`--fast`) about 3 s, full about 3 s of CPU time on one core (4 or 16
# sentences; with all-MiniLM-L6-v2 installed); measured on a 2-core machine shared with other
# jobs, where the wall-clock time was 6 to 10 times longer (examples/README.md)
#
# On 45 nm hardware (Horowitz 2014) a 32-bit float multiply-accumulate costs E_MAC = 4.6 pJ and
# an accumulate E_AC = 0.9 pJ. A layer whose input is binary spikes needs no multiplies: a
# spike just adds a row of weights. So, for a Linear y = x W^T with x of n elements and fan-out
# f (dense = n f):
#
#     input real-valued (the teacher, or a student layer fed a residual sum)   E = 4.6 pJ x dense
#     input binary spikes, firing rate r = mean(x)                             E = 0.9 pJ x dense x r
#
# summed over every time step T (minispike/energy.py counts it from the values that actually
# flow through each layer in a real forward pass; docs/energy.md lists every rule and what is
# left out: LIF updates, LayerNorm, the embedding lookup, ...).
#
# The student is untrained unless `--student` points at a trained checkpoint (example 11
# writes one): firing rates, and so energy, change with training.
#
# Options: `--student DIR`, `--sentences N` (cell by cell: `MINISPIKE_STUDENT`, `MINISPIKE_SENTENCES`).
# Read next: docs/energy.md.

# %%
import logging
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(globals().get("__file__", "here")).resolve().parent))  # examples/ (a notebook: its folder)
import _shared  # noqa: E402  (the plumbing every example shares; puts the checkout on sys.path)

from minispike import backend, energy  # noqa: E402
from minispike.models.bert import BertConfig, BertForSequenceClassification, find_default_teacher  # noqa: E402
from minispike.models.spikebert import SpikeBert, SpikeBertConfig  # noqa: E402
from minispike.text import Tokenizer, builtin_tokenizer, load_builtin  # noqa: E402

args = _shared.options("10 - Energy: where the joules go, layer by layer.",
                       ("--student", {"default": None, "help": "a trained student checkpoint directory "
                                                               "(optional; env MINISPIKE_STUDENT)"}),
                       ("--sentences", {"type": int, "default": None,
                                        "help": "how many test sentences (default 16, --fast 4; env MINISPIKE_SENTENCES)"}),
                       fast_help="fewer sentences (for the tests)")
OUT = Path(args.out)
FIGURES = ["10_energy.png"]  # what this example writes into OUT
n = args.sentences or (4 if args.fast else 16)
backend.seed(0)

# %% [markdown]
# ## 1. The two models, one tokenizer, a few test sentences

# %%
d = find_default_teacher()
if args.student:
    student, tok = SpikeBert.from_pretrained(args.student), Tokenizer.from_pretrained(args.student)
    what_s = f"trained student from {args.student}"
else:
    tok = Tokenizer.from_pretrained(d) if d else builtin_tokenizer(vocab_size=600)
    student = SpikeBert(SpikeBertConfig.preset("cpu", vocab_size=tok.vocab_size, dim=128, depth=2, heads=4))
    what_s = "an untrained SpikeBERT (dim 128, 2 blocks, 4 heads, T = 4)"
if d and tok.vocab_size == 30522:
    logging.getLogger("minispike.bert").setLevel(logging.ERROR)  # "new classifier head" is expected here
    teacher = BertForSequenceClassification.from_pretrained(d, num_labels=2)
    what_t = "all-MiniLM-L6-v2 (hidden 384, 6 layers)"
else:
    teacher = BertForSequenceClassification(BertConfig(vocab_size=tok.vocab_size, hidden_size=128,
                                                       num_hidden_layers=2, num_attention_heads=4,
                                                       intermediate_size=512))
    what_t = "a random BERT as wide and deep as the student (hidden 128, 2 layers)"
texts = load_builtin("test").texts[:n]
ids, mask = tok.encode_batch(texts, max_length=64)
print(f"student: {what_s}\nteacher: {what_t}\n{n} test sentences, {mask.sum() / n:.1f} tokens each on average")

# %% [markdown]
# ## 2. Count: one real forward pass each, every Linear's input inspected

# %%
s = energy.estimate_energy(student, ids, mask, name="SpikeBERT student")
t = energy.estimate_energy(teacher, ids, mask, spiking=False, name="BERT teacher")
print(s.table())

# %% [markdown]
# ## 3. One row by hand

# %%
row = s["blocks.0.mlp.down.fc"]
print("one row by hand: blocks.0.mlp.down.fc, input = the spikes of blocks.0.mlp.up (binary)")
print(f"  dense ops = {row['dense_ops']:,.0f} (T x tokens x in x out), firing rate r = {row['rate']:.4f}")
print(f"  ACs = dense x r = {row['dense_ops'] * row['rate']:,.0f}  -> {row['acs'] * 0.9e-6:.4f} uJ "
      f"(table: {row['energy_uj']:.4f} uJ); as MACs it would be {row['dense_ops'] * 4.6e-6:.4f} uJ")
row = s["blocks.0.attn.q.fc"]
print(f"  blocks.0.attn.q.fc reads the embedding spikes: input '{row['input']}', rule: {row['rule']}")

# %% [markdown]
# ## 4. Where the joules go: by kind of input, and the comparison with the teacher

# %%
labels = {"binary": "AC: binary spikes in", "integer": "MAC: integer counts in (residual sums, A = QK^T)",
          "float": "MAC: real-valued in (the classifier)"}
kinds = defaultdict(float)
for r in s.layers:
    kinds[labels.get(r["input"], r["input"])] += r["energy_uj"]
print("student energy by kind of input:")
for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]):
    print(f"  {k:<50} {v:10.4f} uJ  ({v / (s.total_mj_per_sample * 1e3):5.1%})")
print("  the residual stream x + SSA(x) sums spikes into small integers (0, 1, 2, ...): a layer that reads")
print("  it multiplies, so it pays MACs; energy.estimate_energy(..., integer_as_spikes=True) would charge")
print("  a count of n as n spikes instead. Spikes are cheap only where they stay binary.")
print("\nfiring rates (spikes per neuron per step):")
for name, r in list(s.neuron_rates.items())[:8]:
    print(f"  {name:<28} {r:.3f}")
print(f"\n{t.header()}\n  teacher total: {t.total_macs:,.0f} MACs per sentence = {t.total_mj_per_sample:.4g} mJ")
print(energy.compare(s, t))
print("(different sizes: this ratio says little. The paper: SpikeBERT at 27.82% of BERT's energy on average,")
print(" a 768-wide 12-block student against BERT-base; example 11 compares a trained pair)")

# %% [markdown]
# ## 5. The picture: energy per layer, MAC and AC parts (`minispike.plot.energy_breakdown`)

# %%
if _shared.pyplot() is not None:
    from minispike import plot
    print(f"saved {plot.energy_breakdown(s, OUT, teacher=t, filename='10_energy')}")
