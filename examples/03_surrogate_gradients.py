# %% [markdown]
# # 03 - Why spikes need surrogate gradients
#
# **What you will learn:** why the true gradient of a spike (0 almost everywhere) stops all
# learning; how a surrogate gradient (the derivative g' of a smooth step, used only in the
# backward pass) fixes it; the four surrogates of minispike side by side; and the
# `spiking=False` switch that makes the forward itself smooth.
#
# **What you should know first:** examples 01 (backward) and 02 (the LIF neuron fires when
# H >= V_th).
#
# **Time:** fast (`--fast`) about 2 s, full about 2 s of CPU time on one core (always fast);
# measured on a 2-core machine shared with other jobs, where the wall-clock time was 6 to 10
# times longer (examples/README.md)
#
# A spike is a step: S = Theta(x) with x = H - V_th, Theta(x) = 1 if x >= 0 else 0. Its
# derivative is 0 everywhere except at x = 0, where it is infinite. Backpropagation multiplies
# by that derivative, so every gradient that passes a spike is 0: nothing upstream ever learns.
#
# The fix (Neftci et al. 2019): keep the step in the forward pass, but in the backward pass use
# the derivative g'(x) of a smooth step g. minispike has four (minispike/spiking/surrogate.py):
#
#     ATan         g'(x) = a / (2 (1 + (pi/2 a x)^2))     a = 2   (SpikeBERT, spikingjelly's default)
#     Sigmoid      g'(x) = a s(ax) (1 - s(ax))             a = 4
#     FastSigmoid  g'(x) = 1 / (1 + k|x|)^2                k = 25  (SuperSpike)
#     Rectangular  g'(x) = 1/w on |x| < w/2, else 0        w = 1
#
# Read next: docs/surrogate.md.

# %%
import sys
from pathlib import Path

sys.path.insert(0, str(Path(globals().get("__file__", "here")).resolve().parent))  # examples/ (a notebook: its folder)
import _shared  # noqa: E402  (the plumbing every example shares; puts the checkout on sys.path)

import numpy as np  # noqa: E402

from minispike.spiking.surrogate import ATan, FastSigmoid, Rectangular, Sigmoid, Surrogate  # noqa: E402
from minispike.tensor import Tensor  # noqa: E402

args = _shared.options("03 - Why spikes need surrogate gradients.")
OUT = Path(args.out)
FIGURES = ["03_surrogate_gradients.png"]  # what this example writes into OUT


class TrueStep(Surrogate):
    """The honest derivative of the step: 0 (almost) everywhere."""

    name = "true step"

    def __init__(self):
        super().__init__(alpha=0.0)

    def primitive(self, x):
        return (x >= 0).astype(x.dtype)

    def derivative(self, x):
        return x * 0.0


def teach_to_fire(surrogate, steps=8, lr=0.5, x=1.0, w0=0.3, v_th=1.0):
    """One weight w, one input x: spike S = Theta(w x - V_th); loss (1 - S)^2; plain SGD on w."""
    w = Tensor(np.float32(w0), requires_grad=True)
    print(f"  {'step':>4}  {'w':>7}  {'w x - V_th':>10}  {'spike':>5}  {'loss':>5}  {'dL/dw':>8}")
    for step in range(steps):
        s = surrogate(w * x - v_th)          # Heaviside forward, surrogate backward
        loss = (1.0 - s) ** 2
        w.grad = None
        loss.backward()
        g = float(w.grad) + 0.0  # + 0.0 turns -0.0 into 0.0
        print(f"  {step:>4}  {float(w.data):7.4f}  {float(w.data) * x - v_th:>+10.4f}  {int(s.item()):>5}  "
              f"{loss.item():5.1f}  {g:>+8.4f}")
        w.data = w.data - lr * w.grad        # SGD step
    return float(w.data)


# %% [markdown]
# ## 1. The true derivative of the step: training is stuck
#
# One weight w, one input x = 1: the neuron fires when w x >= V_th = 1. We start at w = 0.3
# and ask gradient descent to make it fire.

# %%
print("Part 1: the true derivative of the step (0). Target: make the neuron fire.")
w_true = teach_to_fire(TrueStep())
print(f"  -> w is still {w_true:.4f}: the gradient through a spike is exactly 0. Training is stuck.")

# a finite difference says the same: nudging w a little changes no spike
h = 1e-3
spike_of_w = lambda w: float(1.0 * w - 1.0 >= 0)  # noqa: E731
print(f"  finite difference (S(w+h) - S(w-h)) / 2h at w = 0.3: {(spike_of_w(0.3 + h) - spike_of_w(0.3 - h)) / (2 * h)}")

# %% [markdown]
# ## 2. The same with the ATan surrogate in the backward pass

# %%
print("Part 2: the same, with the ATan surrogate (a = 2) in the backward pass.")
w_atan = teach_to_fire(ATan())
print(f"  -> w = {w_atan:.4f}: the surrogate gradient pushed w up until w x >= V_th and the neuron fired.")

# %% [markdown]
# ## 3. The surrogates side by side
#
# g'(x) at a few x = H - V_th, and the area under each (g(20) - g(-20): the integral of g').

# %%
surrogates = [ATan(), Sigmoid(), FastSigmoid(), Rectangular()]
xs = np.array([-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0])
print(f"  {'surrogate':<22}" + "".join(f"{x:>8.2f}" for x in xs) + "   area over [-20, 20]")
for sur in surrogates:
    area = float(sur.primitive(np.float64(20.0)) - sur.primitive(np.float64(-20.0)))  # integral of g' = g(b) - g(a)
    print(f"  {sur!r:<22}" + "".join(f"{v:>8.4f}" for v in sur.derivative(xs)) + f"   {area:.3f}")
print("  ATan, Sigmoid and Rectangular integrate to 1 (g climbs from 0 to 1, like the step; ATan's")
print("  heavy tails keep 1% of its area beyond |x| = 20); FastSigmoid is SuperSpike's unnormalised")
print("  form: area 2/k = 0.08, so its gradients are small except right at the threshold.")

# %% [markdown]
# ## 4. The spiking switch
#
# The forward is the step, or (`spiking=False`) the smooth g itself: then the whole neuron is
# a smooth function, which is what makes finite-difference checks possible (example 04).

# %%
x = Tensor(np.array([-0.3, 0.0, 0.3], dtype=np.float32))
print("The spiking switch: the forward is the step, or (spiking=False) the smooth g itself:")
print(f"  ATan()(x)                 = {ATan()(x).numpy()}   (spikes)")
print(f"  ATan(spiking=False)(x)    = {np.round(ATan(spiking=False)(x).numpy(), 4)}   (g(x) = atan(pi x)/pi + 1/2)")

# %% [markdown]
# ## 5. The picture: the smooth steps g and their derivatives g'

# %%
plt = _shared.pyplot()
if plt is not None:
    xg = np.linspace(-2, 2, 801)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    a1.step(xg, (xg >= 0).astype(float), where="post", color="k", lw=2, label="Heaviside (forward)")
    for sur in surrogates:
        a1.plot(xg, sur.primitive(xg), label=f"{type(sur).__name__}: g(x)")
        a2.plot(xg, sur.derivative(xg), label=f"{type(sur).__name__}: g'(x)")
    a2.axhline(0, color="k", lw=2, label="true derivative of the step")
    a1.set_title("Smooth steps g(x) (spiking=False forward)")
    a1.set_ylabel("g(x)")
    a2.set_title("Surrogate gradients g'(x) (used backward)")
    a2.set_ylabel("g'(x)")
    for a in (a1, a2):
        a.set_xlabel("x = H - V_th")
        a.legend(fontsize=8)
    _shared.save_figure(fig, OUT, "03_surrogate_gradients")
