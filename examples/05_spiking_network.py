# %% [markdown]
# # 05 - A small spiking network, trained end to end on points you can see
#
# **What you will learn:** how single LIF neurons (examples 02-04) become a network that
# learns: two spiking layers and a readout, trained by BPTT with a surrogate gradient on 2-D
# points; what to watch while it trains (accuracy, the firing rate of each layer, the gradient
# norm reaching each layer); what the number of time steps T and the choice of surrogate do;
# and the dead-neuron problem (a layer that never fires gets no gradient and never learns),
# made visible, with three cures.
#
# **What you should know first:** examples 02 (the LIF neuron), 03 (surrogate gradients) and
# 04 (BPTT); a training loop in PyTorch or NumPy (forward, loss, backward, optimiser step).
#
# **Time:** fast (`--fast`) about 8 s, full about 22 s of CPU time on one core (60 or 300
# steps per training run, 21 runs); measured on a 2-core machine shared with other jobs, where
# the wall-clock time was 6 to 10 times longer (examples/README.md)
#
# The network, for a point p = (p1, p2) and class c (two interleaved half-moons):
#
#     x[t]  = p                         the same point is the input current at every step t (like
#                                       SpikeBERT's word embedding, repeated over T)
#     S1[t] = LIF(LN(W1 x[t] + b1))     layer 1: 2 -> 32 spiking neurons   (minispike's SpikeLinear)
#     S2[t] = LIF(LN(W2 S1[t] + b2))    layer 2: 32 -> 32, its input is spikes
#     z     = mean_t (W3 S2[t] + b3)    the readout averages over time: spike counts decide
#     loss  = CE(z, c)
#
# Read next: minispike/spiking/attention.py (SpikeLinear), docs/lif.md, docs/surrogate.md.

# %%
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(globals().get("__file__", "here")).resolve().parent))  # examples/ (a notebook: its folder)
import _shared  # noqa: E402  (the plumbing every example shares; puts the checkout on sys.path)

import numpy as np  # noqa: E402

from minispike import backend, ops, optim  # noqa: E402
from minispike.nn import Linear, Module  # noqa: E402
from minispike.spiking import LIF, ATan, FastSigmoid, Rectangular, Sigmoid, record  # noqa: E402
from minispike.spiking.attention import SpikeLinear  # noqa: E402
from minispike.tensor import Tensor, no_grad  # noqa: E402

args = _shared.options("05 - A small spiking network, trained end to end on 2-D points.",
                       fast_help="fewer training steps (a few seconds)")
OUT = Path(args.out)
FIGURES = ["05_spiking_network_training.png", "05_spiking_network_sweep.png", "05_spiking_network_dead.png"]
STEPS = 60 if args.fast else 300  # optimiser steps per training run
HIDDEN = 32
backend.seed(0)

# %% [markdown]
# ## 1. The data: two interleaved half-moons
#
# A straight line cannot separate them (a linear classifier gets about 85%): the network
# needs its hidden layers. Coordinates are standardised to mean 0 and spread 1.

# %%
def two_moons(n, noise, rng):
    """n points (n, 2) float and labels (n,) int: two interleaved half circles, with Gaussian noise."""
    c = rng.integers(0, 2, size=n)
    a = rng.uniform(0, np.pi, size=n)
    p = np.stack([np.cos(a), np.sin(a)], axis=1)
    p[c == 1] = np.stack([1 - np.cos(a[c == 1]), 0.5 - np.sin(a[c == 1])], axis=1)
    return p + rng.normal(0, noise, size=p.shape), c


rng = np.random.default_rng(0)
points_train, labels_train = two_moons(400, 0.15, rng)
points_test, labels_test = two_moons(400, 0.15, rng)
mean, std = points_train.mean(axis=0), points_train.std(axis=0)
dtype = backend.default_dtype()
x_train = Tensor(((points_train - mean) / std).astype(dtype))  # (N, 2)
x_test = Tensor(((points_test - mean) / std).astype(dtype))
print(f"data: {len(labels_train)} training and {len(labels_test)} test points, 2 classes "
      f"({labels_train.mean():.0%} of the training points in class 1)")

# %% [markdown]
# ## 2. The network, from minispike's layers
#
# `SpikeLinear` is `LIF(LayerNorm(Linear(x)))`, the unit SpikeBERT is built from. For the
# dead-neuron part below we also need the same layer without the LayerNorm: `LinearLIF`.
# Every layer's LIF is named (`layer1.lif`, ...) so that `record()` can report its spikes.

# %%
class LinearLIF(Module):
    """``LIF(Linear(x))``: a spiking layer without normalisation. (T, B, D_in) -> (T, B, D_out) spikes."""

    def __init__(self, d_in, d_out, lif):
        self.fc = Linear(d_in, d_out)
        self.lif = LIF(**lif)

    def forward(self, x):
        T, B, d = x.shape
        return self.lif(self.fc(x.reshape(T * B, d)).reshape(T, B, -1))


class SpikingNet(Module):
    """Two spiking layers and a linear readout averaged over T. Input (B, 2) points, output (B, 2) logits."""

    def __init__(self, T=4, surrogate=None, v_threshold=1.0, norm=True, hidden=HIDDEN):
        lif = {"surrogate": surrogate or ATan(), "v_threshold": v_threshold}
        layer = SpikeLinear if norm else LinearLIF
        self.T = T
        self.layer1 = layer(2, hidden, lif=lif)
        self.layer2 = layer(hidden, hidden, lif=lif)
        self.readout = Linear(hidden, 2)
        self.layer1.lif.name, self.layer2.lif.name = "layer1", "layer2"

    def forward(self, x):
        B = x.shape[0]
        current = ops.expand(x.reshape(1, B, 2), (self.T, B, 2))  # (T, B, 2): the same point at every step
        s1 = self.layer1(current)  # (T, B, H) spikes
        s2 = self.layer2(s1)       # (T, B, H) spikes
        z = self.readout(s2.reshape(self.T * B, -1)).reshape(self.T, B, 2)
        return z.mean(axis=0)      # (B, 2): the readout averaged over time


def train(net, steps=STEPS, lr=0.02, batch=128, seed=0, verbose=False):
    """AdamW on cross-entropy; a history row per step: accuracy, rate of each layer, |grad| of each layer."""
    opt = optim.AdamW(net.parameters(), lr=lr, weight_decay=0.0)
    order = np.random.default_rng(seed)
    history = []
    for step in range(steps):
        idx = order.choice(len(labels_train), size=batch, replace=False)
        with record() as rec:  # collects the spikes of every named LIF during this forward
            logits = net(x_train[idx])
        loss = ops.cross_entropy(logits, labels_train[idx])
        opt.zero_grad()
        loss.backward()  # BPTT through both LIF layers and every time step
        rates = rec.firing_rates()
        grad1 = float(np.linalg.norm(backend.to_numpy(net.layer1.fc.weight.grad)))
        grad2 = float(np.linalg.norm(backend.to_numpy(net.layer2.fc.weight.grad)))
        opt.step()
        acc = float((backend.to_numpy(logits.data).argmax(-1) == labels_train[idx]).mean())
        history.append((step, loss.item(), acc, rates["layer1"], rates["layer2"], grad1, grad2))
        if verbose and (step % max(1, steps // 6) == 0 or step == steps - 1):
            print(f"  {step:>4} {loss.item():>7.4f} {acc:>6.1%} {rates['layer1']:>9.3f} {rates['layer2']:>9.3f} "
                  f"{grad1:>11.2e} {grad2:>11.2e}")
    return np.array(history)


def accuracy(net, x, labels):
    with no_grad():
        return float((backend.to_numpy(net(x).data).argmax(-1) == labels).mean())


# %% [markdown]
# ## 3. Train it: T = 4, ATan surrogate, LayerNorm before each LIF (SpikeBERT's choices)
#
# Watch three things per step: accuracy on the batch, the firing rate of each layer (spikes
# per neuron per step: 0 means silent, 1 means always on; both carry no information), and the
# gradient norm reaching each layer's weights (0 means that layer learns nothing).

# %%
backend.seed(0)
net = SpikingNet(T=4)
print(f"network: 2 -> {HIDDEN} -> {HIDDEN} spiking -> 2, T = 4, ATan surrogate, "
      f"{net.num_parameters():,} parameters; {STEPS} steps of AdamW, batches of 128")
print(f"  {'step':>4} {'loss':>7} {'acc':>6} {'rate L1':>9} {'rate L2':>9} {'|grad W1|':>11} {'|grad W2|':>11}")
t0 = time.perf_counter()
history = train(net, verbose=True)
test_acc = accuracy(net, x_test, labels_test)
print(f"trained in {time.perf_counter() - t0:.1f} s: test accuracy {test_acc:.1%} "
      f"(train accuracy of the last batch {history[-1, 2]:.1%})")

# %% [markdown]
# ## 4. T and the surrogate: a sweep
#
# Each run starts from the same seed and trains for the same number of steps. With T = 1 a
# neuron can say only 0 or 1 per point; with T steps its spike count takes T + 1 values, so
# the readout can see a finer code (and every step costs T times more). The surrogate sets how
# much gradient flows back through each spike, and for which membranes (FastSigmoid's is
# narrow and small, example 03). Two moons is an easy task: read the table for how far apart
# the settings end up; with 400 test points one point is 0.25%, and a different seed moves
# each entry by a point or two.

# %%
T_VALUES = [1, 2, 4, 8]
SURROGATES = [ATan(), Sigmoid(), FastSigmoid(), Rectangular()]
sweep = {}  # (surrogate, T) -> test accuracy
t0 = time.perf_counter()
for sur in SURROGATES:
    for T in T_VALUES:
        backend.seed(0)
        run = SpikingNet(T=T, surrogate=sur)
        train(run)
        sweep[repr(sur), T] = accuracy(run, x_test, labels_test)
print(f"test accuracy after {STEPS} steps ({time.perf_counter() - t0:.1f} s for {len(sweep)} runs):")
print(f"  {'surrogate':<18}" + "".join(f"{'T = ' + str(T):>9}" for T in T_VALUES))
for sur in SURROGATES:
    print(f"  {sur!r:<18}" + "".join(f"{sweep[repr(sur), T]:>9.1%}" for T in T_VALUES))
print(f"  {'mean':<18}" + "".join(f"{np.mean([sweep[repr(s), T] for s in SURROGATES]):>9.1%}" for T in T_VALUES))

# %% [markdown]
# ## 5. Dead neurons: a layer that never fires never learns
#
# Take away the LayerNorm. minispike's `Linear` starts with small weights (N(0, 0.02)), so the
# current reaching the first layer is about 0.02 in size, and with V_th = 1 no membrane ever
# gets near the threshold: no neuron fires. With the narrow rectangular surrogate (g' = 0
# unless |H - V_th| < 0.5) the gradient through every one of those non-spikes is exactly 0:
# nothing reaches either spiking layer, their weights never move, and the network stays near
# chance (only the readout's bias learns, towards the more frequent class).
# (ATan's g' is never exactly 0, but through a membrane 1 below the threshold it is
# 1 / (1 + pi^2), 11 times smaller than at the threshold: such a layer learns, slowly.)
#
# Three cures, each changing one thing:
# - a lower threshold (V_th = 0.02: within reach of the small currents);
# - a wider surrogate (Rectangular with width 4: g' = 1/4 for |H - V_th| < 2);
# - normalisation before the LIF (LayerNorm rescales the currents to spread 1 whatever the
#   weights' size: SpikeBERT puts a LayerNorm before every LIF for this reason).

# %%
DEAD_RUNS = {
    "dead: no LayerNorm, V_th = 1, Rectangular(w=1)": dict(norm=False, v_threshold=1.0, surrogate=Rectangular(1.0)),
    "cure 1: lower threshold, V_th = 0.02": dict(norm=False, v_threshold=0.02, surrogate=Rectangular(1.0)),
    "cure 2: wider surrogate, Rectangular(w=4)": dict(norm=False, v_threshold=1.0, surrogate=Rectangular(4.0)),
    "cure 3: LayerNorm before each LIF": dict(norm=True, v_threshold=1.0, surrogate=Rectangular(1.0)),
}
dead = {}
print(f"  {'run':<50} {'rate L1':>8} {'rate L2':>8} {'|grad W1| first, last':>22} {'test acc':>9}")
for label, options in DEAD_RUNS.items():
    backend.seed(0)
    run = SpikingNet(T=4, **options)
    h = train(run)
    dead[label] = h
    print(f"  {label:<50} {h[:, 3].mean():>8.3f} {h[:, 4].mean():>8.3f} {h[0, 5]:>10.2e} {h[-1, 5]:>10.2e} "
          f"{accuracy(run, x_test, labels_test):>9.1%}")
dead_history = dead["dead: no LayerNorm, V_th = 1, Rectangular(w=1)"]
assert dead_history[:, 5].max() == 0.0 and dead_history[:, 3].max() == 0.0, "the dead network was expected to be silent"
print("the dead network: no spike in either layer, a gradient of exactly 0 at every step; each cure revives it.")

# %% [markdown]
# ## 6. The pictures
#
# Training: the decision regions the network learnt, and its accuracy, firing rates and
# gradient norms over training. Sweep: test accuracy against T for every surrogate. Dead
# neurons: the gradient norm reaching layer 1, and the accuracy, for the dead run and its cures.

# %%
plt = _shared.pyplot()
if plt is not None:
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    grid = np.linspace(-2.2, 2.2, 120)
    gx, gy = np.meshgrid(grid, grid)
    with no_grad():
        regions = backend.to_numpy(net(Tensor(np.stack([gx.ravel(), gy.ravel()], 1).astype(dtype))).data).argmax(-1)
    ax = axes[0, 0]
    ax.contourf(gx, gy, regions.reshape(gx.shape), levels=[-0.5, 0.5, 1.5], colors=["#c6dbef", "#fdd0a2"])
    xt = backend.to_numpy(x_test.data)
    ax.scatter(xt[:, 0], xt[:, 1], c=labels_test, cmap="coolwarm", s=8)
    ax.set_title(f"decision regions after training (test accuracy {test_acc:.1%})")
    ax.set_xlabel("p1 (standardised)")
    ax.set_ylabel("p2 (standardised)")
    ax = axes[0, 1]
    ax.plot(history[:, 0], history[:, 2], label="batch accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("step")
    ax.set_ylabel("accuracy")
    ax.set_title("accuracy over training")
    ax.legend(fontsize=8)
    ax = axes[1, 0]
    ax.plot(history[:, 0], history[:, 3], label="layer 1")
    ax.plot(history[:, 0], history[:, 4], label="layer 2")
    ax.set_xlabel("step")
    ax.set_ylabel("spikes per neuron per step")
    ax.set_title("firing rate of each layer")
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    ax.semilogy(history[:, 0], history[:, 5], label="|grad W1| (layer 1)")
    ax.semilogy(history[:, 0], history[:, 6], label="|grad W2| (layer 2)")
    ax.set_xlabel("step")
    ax.set_ylabel("gradient norm")
    ax.set_title("gradient reaching each layer")
    ax.legend(fontsize=8)
    fig.suptitle("A 2-layer spiking network on two moons (T = 4, ATan)")
    _shared.save_figure(fig, OUT, "05_spiking_network_training")

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for sur in SURROGATES:
        ax.plot(T_VALUES, [sweep[repr(sur), T] for T in T_VALUES], "o-", label=repr(sur))
    ax.set_xscale("log", base=2)
    ax.set_xticks(T_VALUES)
    ax.set_xticklabels([str(T) for T in T_VALUES])
    ax.set_xlabel("time steps T")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"T and the surrogate ({STEPS} training steps each)")
    ax.legend(fontsize=8)
    _shared.save_figure(fig, OUT, "05_spiking_network_sweep")

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.2))
    for label, h in dead.items():
        a1.plot(h[:, 0], np.maximum(h[:, 5], 1e-12), label=label)  # 0 drawn at 1e-12 on the log axis
        a2.plot(h[:, 0], h[:, 2], label=label)
    a1.set_yscale("log")
    a1.set_xlabel("step")
    a1.set_ylabel("|grad W1| (exact 0 drawn at 1e-12)")
    a1.set_title("gradient reaching layer 1")
    a2.set_ylim(0, 1.02)
    a2.set_xlabel("step")
    a2.set_ylabel("batch accuracy")
    a2.set_title("accuracy: the dead network stays near chance")
    a2.legend(fontsize=7)
    _shared.save_figure(fig, OUT, "05_spiking_network_dead")
