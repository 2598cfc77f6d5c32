# %% [markdown]
# # 01 - Autograd by hand: a tiny graph, its gradients by the chain rule, the same by the engine
#
# **What you will learn:** how a gradient flows backwards through a graph, one chain-rule line
# per node; that minispike's engine (`L.backward()`) computes exactly those numbers; and how
# finite differences, `(L(w + h) - L(w - h)) / 2h`, referee both.
#
# **What you should know first:** derivatives and the chain rule; a little NumPy. Nothing about
# spikes yet.
#
# **Time:** fast (`--fast`) about 2 s, full about 2 s of CPU time on one core (the same work:
# this example is always fast); measured on a 2-core machine shared with other jobs, where the
# wall-clock time was 6 to 10 times longer (examples/README.md)
#
# Run it as a script, `python examples/01_autograd_by_hand.py [--out DIR]`, or cell by cell
# (VS Code, PyCharm, Spyder, Jupyter; options then come from `MINISPIKE_OUT`, see examples/README.md).
#
# The graph is one neuron with a squared error:
#
#     z = w * x + b          (a multiply and an add)
#     y = tanh(z)            (a squashing activation)
#     L = (y - target)^2     (the loss we want to shrink)
#
# Read next: docs/autograd.md, minispike/tensor.py.

# %%
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(globals().get("__file__", "here")).resolve().parent))  # examples/ (a notebook: its folder)
import _shared  # noqa: E402  (the plumbing every example shares; puts the checkout on sys.path)

import numpy as np  # noqa: E402

from minispike import backend, ops  # noqa: E402
from minispike.gradcheck import gradcheck  # noqa: E402
from minispike.tensor import Tensor  # noqa: E402

args = _shared.options("01 - Autograd by hand: a tiny graph, its gradients by the chain rule and by the engine.")
OUT = Path(args.out)
FIGURES = ["01_autograd_by_hand.png"]  # what this example writes into OUT

backend.set_default_dtype(np.float64)  # float64 everywhere: finite differences need it
x_val, w_val, b_val, target = 2.0, -0.5, 0.3, 0.5

# %% [markdown]
# ## 1. The forward pass, by hand

# %%
z = w_val * x_val + b_val
y = math.tanh(z)
L = (y - target) ** 2
print("forward (by hand)")
print(f"  z = w*x + b          = {w_val}*{x_val} + {b_val} = {z:+.6f}")
print(f"  y = tanh(z)          = {y:+.6f}")
print(f"  L = (y - {target})^2     = {L:.6f}")

# %% [markdown]
# ## 2. The backward pass, by hand: the chain rule from the loss down
#
# Each line uses the line above it:
#
#     dL/dy = 2 (y - target)
#     dL/dz = dL/dy * (1 - y^2)          tanh'(z) = 1 - tanh(z)^2
#     dL/dw = dL/dz * x
#     dL/db = dL/dz * 1
#     dL/dx = dL/dz * w

# %%
dL_dy = 2 * (y - target)
dL_dz = dL_dy * (1 - y * y)
by_hand = {"w": dL_dz * x_val, "b": dL_dz * 1.0, "x": dL_dz * w_val}
print("backward (by hand, the chain rule from the loss down)")
print(f"  dL/dy = 2 (y - target)      = {dL_dy:+.6f}")
print(f"  dL/dz = dL/dy (1 - y^2)     = {dL_dz:+.6f}")
print(f"  dL/dw = dL/dz * x           = {by_hand['w']:+.6f}")
print(f"  dL/db = dL/dz * 1           = {by_hand['b']:+.6f}")
print(f"  dL/dx = dL/dz * w           = {by_hand['x']:+.6f}")

# %% [markdown]
# ## 3. The same graph in the engine
#
# Every operation on a `Tensor` records a node; `loss.backward()` walks those nodes in reverse,
# each applying its own local derivative (the lines above), and leaves the result in `.grad`.

# %%
x = Tensor(x_val, requires_grad=True, name="x")
w = Tensor(w_val, requires_grad=True, name="w")
b = Tensor(b_val, requires_grad=True, name="b")


def loss_fn(x, w, b):
    return (ops.tanh(w * x + b) - target) ** 2


loss = loss_fn(x, w, b)
print(f"engine: L = {loss.item():.6f}   (the graph's last node: {loss!r})")
loss.backward()  # one reversed walk over the recorded nodes
engine = {"w": float(w.grad), "b": float(b.grad), "x": float(x.grad)}
print("engine gradients vs by hand")
for k in ("w", "b", "x"):
    print(f"  dL/d{k}: engine {engine[k]:+.6f}   by hand {by_hand[k]:+.6f}   "
          f"|diff| = {abs(engine[k] - by_hand[k]):.1e}")
    assert abs(engine[k] - by_hand[k]) < 1e-12

# %% [markdown]
# ## 4. Finite differences: the independent referee

# %%
h = 1e-6
fd_w = (loss_fn(x, Tensor(w_val + h), b).item() - loss_fn(x, Tensor(w_val - h), b).item()) / (2 * h)
print(f"finite difference: (L(w+h) - L(w-h)) / 2h = {fd_w:+.6f}   (h = {h:g})")
gradcheck(loss_fn, [x, w, b], name="tanh neuron")  # every input, a random upstream gradient
print("gradcheck(tanh neuron): passed (engine == finite differences on x, w and b)")

# %% [markdown]
# ## 5. The picture: L as a function of w, and the tangent whose slope is dL/dw

# %%
plt = _shared.pyplot()
if plt is not None:
    ws = np.linspace(-2, 2, 200)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ws, (np.tanh(ws * x_val + b_val) - target) ** 2, label="L(w)")
    tw = np.linspace(w_val - 0.6, w_val + 0.6, 2)
    ax.plot(tw, L + engine["w"] * (tw - w_val), "--", label=f"tangent, slope dL/dw = {engine['w']:.3f}")
    ax.plot([w_val], [L], "o", color="k")
    ax.set_xlabel("w")
    ax.set_ylabel("L")
    ax.set_title("The gradient is the slope of the loss")
    ax.legend()
    _shared.save_figure(fig, OUT, "01_autograd_by_hand")
