# %% [markdown]
# # 02 - The leaky integrate-and-fire (LIF) neuron, one time step at a time
#
# **What you will learn:** the three moves of a LIF neuron at every time step (charge, fire,
# reset), computed by hand and checked against `minispike.spiking.LIF`; and rate coding: a
# stronger constant input makes the neuron fire more often.
#
# **What you should know first:** example 01 (a graph of operations); nothing else about spikes.
#
# **Time:** fast (`--fast`) about 2 s, full about 2 s of CPU time on one core (always fast);
# measured on a 2-core machine shared with other jobs, where the wall-clock time was 6 to 10
# times longer (examples/README.md)
#
# A LIF neuron keeps a membrane potential V. At each time step t it does
#
#     charge   H[t] = V[t-1] + (X[t] - V[t-1]) / tau       leak towards the input X (tau = 2)
#     fire     S[t] = 1 if H[t] >= V_th else 0             a binary spike (V_th = 1)
#     reset    V[t] = 0 if S[t] else H[t]                  hard reset to V_reset = 0
#
# (spikingjelly's `LIFNode` with `decay_input=True`: the leak factor is beta = 1 - 1/tau.)
#
# Read next: minispike/spiking/lif.py, docs/lif.md.

# %%
import sys
from pathlib import Path

sys.path.insert(0, str(Path(globals().get("__file__", "here")).resolve().parent))  # examples/ (a notebook: its folder)
import _shared  # noqa: E402  (the plumbing every example shares; puts the checkout on sys.path)

import numpy as np  # noqa: E402

from minispike.spiking import LIF  # noqa: E402
from minispike.tensor import Tensor  # noqa: E402

args = _shared.options("02 - The leaky integrate-and-fire (LIF) neuron, one time step at a time.")
OUT = Path(args.out)
FIGURES = ["02_lif_neuron.png"]  # what this example writes into OUT

TAU, V_TH, V_RESET = 2.0, 1.0, 0.0

# An input current over T = 12 steps: quiet, a strong push, a weak push, a pulse.
X = np.array([0.0, 1.5, 1.5, 1.5, 1.5, 0.9, 0.9, 0.9, 0.9, 3.0, 0.0, 0.0], dtype=np.float32)
T = len(X)

# %% [markdown]
# ## 1. By hand: charge, fire, reset for every step

# %%
print(f"LIF: tau = {TAU}, V_th = {V_TH}, hard reset to {V_RESET}; input X over T = {T} steps")
print(f"{'t':>2}  {'X[t]':>5}  {'V[t-1]':>7}  {'charge H[t]':>12}  {'fire S[t]':>9}  {'reset V[t]':>10}")
v = V_RESET
H_hand, S_hand, V_hand = [], [], []
for t in range(T):
    h = v + (X[t] - v) / TAU                   # charge: leak towards X
    s = 1.0 if h >= V_TH else 0.0              # fire: Heaviside(H - V_th), Heaviside(0) = 1
    v_new = V_RESET if s else h                # reset: back to V_reset after a spike
    print(f"{t:>2}  {X[t]:>5.2f}  {v:>7.4f}  {h:>12.4f}  {'SPIKE' if s else '.':>9}  {v_new:>10.4f}")
    H_hand.append(h)
    S_hand.append(s)
    V_hand.append(v_new)
    v = v_new
H_hand, S_hand, V_hand = np.array(H_hand), np.array(S_hand), np.array(V_hand)

# %% [markdown]
# ## 2. The same through minispike's `LIF` (input shape (T, neurons))
#
# `trace=True` records the charged membrane H of every step in `neuron.last_trace`.

# %%
neuron = LIF(tau=TAU, v_threshold=V_TH, v_reset=V_RESET, trace=True)
spikes = neuron(Tensor(X.reshape(T, 1)))  # (T, 1)
H_engine = neuron.last_trace["membrane"][:, 0]
S_engine = spikes.numpy()[:, 0]
assert np.allclose(H_engine, H_hand, atol=1e-6) and np.array_equal(S_engine, S_hand)
print(f"minispike.spiking.LIF agrees: spikes {S_engine.astype(int).tolist()}, "
      f"{int(S_engine.sum())} spikes in {T} steps")
print("note: during t = 5..8 the input 0.9 < V_th: H creeps towards 0.9 but never reaches 1 - no spike.")

# %% [markdown]
# ## 3. Rate coding: a constant input, many steps, many neurons at once
#
# Below X = V_th the neuron never fires (H only approaches X); above it, the firing rate grows
# with the input.

# %%
currents = np.array([0.0, 0.5, 0.9, 1.05, 1.1, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0], dtype=np.float32)
steps = 100
s = LIF(tau=TAU, v_threshold=V_TH)(Tensor(np.repeat(currents[None, :], steps, axis=0)))  # (steps, 11)
rates = s.numpy().mean(axis=0)
print(f"firing rate (spikes per step over {steps} steps) for a constant input X:")
for c, r in zip(currents, rates):
    print(f"  X = {c:4.2f}  rate = {r:.2f}  {'#' * int(round(r * 40))}")
print("  (X >= 2 charges H = X / 2 >= V_th from rest in one step: the rate saturates at 1 spike per step)")

# %% [markdown]
# ## 4. The picture: the membrane over time, and the rate against the input

# %%
plt = _shared.pyplot()
if plt is not None:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2, 1]})
    t = np.arange(T)
    a1.step(t, X, where="mid", color="0.6", label="input X[t]")
    a1.plot(t, H_hand, "o-", label="charged H[t]")
    a1.plot(t, V_hand, "s:", label="after reset V[t]")
    a1.axhline(V_TH, color="r", ls="--", lw=1, label="threshold")
    for ti in t[S_hand > 0]:
        a1.axvline(ti, color="k", alpha=0.25, lw=6)
    a1.set_xlabel("time step t")
    a1.set_ylabel("membrane potential")
    a1.set_title("Membrane of one LIF neuron (grey bars: spikes)")
    a1.legend(fontsize=8)
    a2.plot(currents, rates, "o-")
    a2.axvline(V_TH, color="r", ls="--", lw=1)
    a2.set_xlabel("constant input X")
    a2.set_ylabel("spikes per step")
    a2.set_title("Rate coding")
    _shared.save_figure(fig, OUT, "02_lif_neuron")
