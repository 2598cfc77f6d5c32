# %% [markdown]
# # 04 - Backpropagation through time (BPTT), by hand, for a 4-step LIF neuron
#
# **What you will learn:** the reversed time loop that trains spiking networks, one term per
# column: through the spike, through the membrane the reset keeps, through the reset's spike,
# through the leak to the step before, and into the input; what the hard reset does to the
# gradient from the future; what `detach_reset` drops and why implementations drop it. Every
# number is checked against minispike's own LIF backward, and (smooth forward) against finite
# differences.
#
# **What you should know first:** examples 02 (charge, fire, reset) and 03 (surrogate
# gradients: g' stands in for the spike's derivative).
#
# **Time:** fast (`--fast`) about 2 s, full about 2 s of CPU time on one core (always fast);
# measured on a 2-core machine shared with other jobs, where the wall-clock time was 6 to 10
# times longer (examples/README.md)
#
# The forward (example 02), for t = 0 .. 3, with V[-1] = 0, **tau = 3**, V_th = 1, hard reset to 0:
#
#     H[t] = V[t-1] + (X[t] - V[t-1]) / tau          charge
#     S[t] = Theta(H[t] - V_th)                       fire    (backward: g'(H[t] - V_th), example 03)
#     V[t] = H[t] (1 - S[t]) + V_reset S[t]           reset
#
# tau = 3 keeps the two factors of the charge apart: the input enters with 1/tau = 0.333, the
# old membrane with 1 - 1/tau = 0.667 (with tau = 2 both are 0.5 and two columns below would
# look identical).
#
# A loss L = sum_t u[t] S[t] sends dS[t] = u[t] to the spikes. Every H[t] reaches L along
# two roads: through its own spike, and through V[t] into the next step. So the backward runs
# the time loop in reverse, carrying dV (the gradient waiting at the membrane):
#
#     dV = 0                                                   nothing comes back from after the last step
#     for t = 3, 2, 1, 0:
#         dH[t] = dS[t] g'[t]                                  (1) through the spike
#               + dV (1 - S[t])                                (2) through the membrane the reset keeps
#               + dV (V_reset - H[t]) g'[t]                    (3) through the reset's spike (0 if detach_reset)
#         dX[t] = dH[t] / tau                                  (5) through the input
#         dV    = dH[t] (1 - 1/tau)                            (4) through the leak, to step t-1
#
# Read next: minispike/spiking/lif.py (`LIFFunction.backward`), docs/lif.md.

# %%
import sys
from pathlib import Path

sys.path.insert(0, str(Path(globals().get("__file__", "here")).resolve().parent))  # examples/ (a notebook: its folder)
import _shared  # noqa: E402  (the plumbing every example shares; puts the checkout on sys.path)

import numpy as np  # noqa: E402

from minispike import backend  # noqa: E402
from minispike.gradcheck import gradcheck  # noqa: E402
from minispike.spiking import ATan, lif, unrolled_lif  # noqa: E402
from minispike.tensor import Tensor  # noqa: E402

args = _shared.options("04 - Backpropagation through time (BPTT), by hand, for a 4-step LIF neuron.")
OUT = Path(args.out)
FIGURES = ["04_bptt_by_hand.png"]  # what this example writes into OUT

backend.set_default_dtype(np.float64)  # float64: the hand loop, the library and finite differences agree to 1e-12
TAU, V_TH, V_RESET = 3.0, 1.0, 0.0
X0 = np.array([1.8, 2.4, 1.5, 2.7])  # input current, 4 steps: the neuron fires at t = 1 and t = 3
U = np.array([0.5, -1.0, 2.0, 1.0])  # dL/dS[t]: the loss is L = sum_t U[t] S[t]
T = len(X0)


def forward(X, sur):
    """The forward loop, by hand (float64 NumPy): the charged membranes H and the spikes S."""
    v, H, S = V_RESET, [], []
    for t in range(len(X)):
        h = v + (X[t] - v) / TAU
        s = float(sur.step(np.float64(h - V_TH)))  # spike (or g(h - V_th) when not spiking)
        v = h * (1 - s) + V_RESET * s
        H.append(h)
        S.append(s)
    return np.array(H), np.array(S)


def bptt_by_hand(H, S, dS, sur, detach_reset, verbose=True):
    """The reversed loop, one column per term; returns dL/dX."""
    dX = np.zeros(len(H))
    dV = 0.0  # dL/dV[t], arriving from step t+1
    if verbose:
        print(f"  {'t':>2} {'S[t]':>4} {'g_prime':>8} {'dV future':>10} {'(1) spike':>10} {'(2) kept V':>11} "
              f"{'(3) reset':>10} {'dH[t]':>9} {'(5) dX[t]':>10} {'(4) dV[t-1]':>12}")
    for t in reversed(range(len(H))):
        g = float(sur.derivative(np.float64(H[t] - V_TH)))
        dV_future = dV
        through_spike = dS[t] * g
        through_kept = dV * (1 - S[t]) + 0.0  # + 0.0: no -0.0
        through_reset = 0.0 if detach_reset else dV * (V_RESET - H[t]) * g + 0.0
        dH = through_spike + through_kept + through_reset
        dX[t] = dH / TAU
        dV = dH * (1 - 1 / TAU)
        if verbose:
            print(f"  {t:>2} {int(S[t] > 0.5) if sur.spiking else S[t]:>4.2g} {g:8.4f} {dV_future:>+10.5f} "
                  f"{through_spike:>+10.5f} {through_kept:>+11.5f} {through_reset:>+10.5f} {dH:>+9.5f} "
                  f"{dX[t]:>+10.5f} {dV:>+12.5f}")
    return dX


def library_grad(fn, X, sur, detach_reset):
    """dL/dX from the library: ``lif`` (LIFFunction.backward) or ``unrolled_lif`` (the generic engine)."""
    x = Tensor(X.copy(), requires_grad=True)
    S = fn(x.reshape(T, 1), tau=TAU, v_threshold=V_TH, v_reset=V_RESET, surrogate=sur, detach_reset=detach_reset)
    (S.reshape(T) * Tensor(U)).sum().backward()
    return x.grad.ravel()


# %% [markdown]
# ## A. Real spikes, `detach_reset=True` (SpikeBERT's setting)
#
# Read the table from the bottom (t = 3) up. Look at t = 1: the neuron fires (S = 1) while the
# gradient waiting from the future, "dV future", is not zero; yet column (2) is 0 there. The
# hard reset sets V[1] = 0 whatever H[1] was, so nothing of H[1] survives into step 2: the
# road back through time is cut at every spike. Only the spike's own road (1) is left, and
# from there the leak (4) carries the gradient on to t = 0.
#
# The hand loop is checked against `LIFFunction.backward` (the same loop, for any shape) and
# `unrolled_lif` (the neuron built from primitive ops, differentiated by the generic engine).

# %%
sur = ATan()
H, S = forward(X0, sur)
print(f"A. spikes, ATan surrogate, detach_reset=True, tau = {TAU:g}.  X = {X0.tolist()},  dL/dS = {U.tolist()}")
print(f"   forward: H = {np.round(H, 4).tolist()}, S = {S.tolist()}")
dX_hand = bptt_by_hand(H, S, U, sur, detach_reset=True)
dX_fn = library_grad(lif, X0, sur, True)
dX_unrolled = library_grad(unrolled_lif, X0, sur, True)
print(f"   dL/dX by hand            {np.round(dX_hand, 6).tolist()}")
print(f"   LIFFunction.backward     {np.round(dX_fn, 6).tolist()}")
print(f"   unrolled_lif (generic)   {np.round(dX_unrolled, 6).tolist()}")
assert np.allclose(dX_hand, dX_fn, atol=1e-12) and np.allclose(dX_hand, dX_unrolled, atol=1e-12)
print("   all three agree.")
fired = [t for t in range(T - 1) if S[t] > 0]
print(f"   the hard reset cut the road back through time at t = {fired}: the neuron fired, so column (2) is 0")
print("   there although dV future is not.")
print(f"   dL/dX[3] = u[3] g'[3] / tau only: nothing comes back from after the last step; "
      f"(5) = dH / {TAU:g}, (4) = dH * {1 - 1 / TAU:.4f}.")

# %% [markdown]
# ## A'. The same spikes, `detach_reset=False`: the reset's own road
#
# The reset V = H (1 - S) + V_reset S also depends on H through S. Without detaching, the
# backward follows that road too: column (3), dV (V_reset - H[t]) g'[t]. It is not zero at
# any step with a gradient waiting from the future (g' > 0 everywhere for ATan), and at a spike
# (t = 1) it is the only way the future reaches H. Its factor V_reset - H[t] is negative: a
# spike hands the future a lower membrane (V_reset), so when the future asks for a higher
# membrane (dV > 0), this road says "fire less now".
#
# `detach_reset=True` treats the S inside the reset as a constant and drops column (3),
# nothing else. Implementations offer it (spikingjelly's option; the official SpikeBERT code
# sets it) because the term leans on the surrogate twice (g' already stands in for a derivative
# that does not exist), scaled by V_reset - H[t], which is largest in size just where the
# neuron fired: a source of noisy, self-cancelling gradient. Zenke & Vogels (2021) found
# surrogate-gradient networks train as well or better with the reset detached; it also saves
# work at every step. The price: the result is no longer the gradient of any function, so
# finite differences cannot check it (part B needs `detach_reset=False`).

# %%
print("A'. the same spikes, detach_reset=False: column (3), the reset's own road, is back")
dX_full = bptt_by_hand(H, S, U, sur, detach_reset=False)
dX_full_fn = library_grad(lif, X0, sur, False)
dX_full_unrolled = library_grad(unrolled_lif, X0, sur, False)
print(f"   dL/dX by hand            {np.round(dX_full, 6).tolist()}")
print(f"   LIFFunction.backward     {np.round(dX_full_fn, 6).tolist()}")
print(f"   unrolled_lif (generic)   {np.round(dX_full_unrolled, 6).tolist()}")
assert np.allclose(dX_full, dX_full_fn, atol=1e-12) and np.allclose(dX_full, dX_full_unrolled, atol=1e-12)
print(f"   all three agree; detach_reset changes dL/dX by {np.round(dX_full - dX_hand, 6).tolist()} "
      f"(only the reset road (3) differs).")

# %% [markdown]
# ## B. A smooth forward: finite differences can check every road
#
# With `spiking=False` the forward uses the smooth step g itself (S = g(H - V_th), between 0
# and 1), so L is a smooth function of X and finite differences can referee it. With
# `detach_reset=False` the backward follows every road the forward takes (finite differences
# cannot "detach" anything).

# %%
sur_smooth = ATan(spiking=False)
H_s, S_s = forward(X0, sur_smooth)
print("B. spiking=False (S = g(H - V_th), smooth), detach_reset=False.")
print(f"   forward: H = {np.round(H_s, 4).tolist()}, S = {np.round(S_s, 4).tolist()}")
dX_smooth = bptt_by_hand(H_s, S_s, U, sur_smooth, detach_reset=False)
dX_smooth_fn = library_grad(lif, X0, sur_smooth, False)
h = 1e-6
fd = np.zeros(T)
for t in range(T):
    x_plus, x_minus = X0.copy(), X0.copy()
    x_plus[t] += h
    x_minus[t] -= h
    fd[t] = ((U * forward(x_plus, sur_smooth)[1]).sum() - (U * forward(x_minus, sur_smooth)[1]).sum()) / (2 * h)
print(f"   dL/dX by hand            {np.round(dX_smooth, 6).tolist()}")
print(f"   LIFFunction.backward     {np.round(dX_smooth_fn, 6).tolist()}")
print(f"   finite differences       {np.round(fd, 6).tolist()}   (h = {h:g})")
print(f"   max |by hand - finite difference| = {np.abs(dX_smooth - fd).max():.1e}")
assert np.allclose(dX_smooth, dX_smooth_fn, atol=1e-12) and np.allclose(dX_smooth, fd, atol=1e-7)

# the engine's own check, on a batch of neurons with a random upstream gradient
rng = np.random.default_rng(0)
x_batch = Tensor(rng.uniform(0.5, 2.5, size=(T, 5)), requires_grad=True)
gradcheck(lambda x: lif(x, tau=TAU, surrogate=ATan(spiking=False), detach_reset=False), [x_batch], name="LIF T=4")
print("   gradcheck(LIF, spiking=False, detach_reset=False) on 5 neurons: passed")

dX_smooth_detached = bptt_by_hand(H_s, S_s, U, sur_smooth, detach_reset=True, verbose=False)
print(f"   with detach_reset=True the reset road is cut: dL/dX = {np.round(dX_smooth_detached, 6).tolist()} "
      f"(differs from the true gradient by {np.abs(dX_smooth_detached - dX_smooth).max():.4f})")

# %% [markdown]
# ## The picture
#
# L as a function of X[0] with the other inputs fixed: with spikes it is a staircase (its true
# gradient is 0 or infinite), with the smooth forward a curve whose slope the hand loop gives.

# %%
plt = _shared.pyplot()
if plt is not None:
    xs = np.linspace(0.0, 4.0, 401)
    L_spk, L_smooth, slope = [], [], []
    for x0 in xs:
        X = X0.copy()
        X[0] = x0
        L_spk.append((U * forward(X, ATan())[1]).sum())
        Hx, Sx = forward(X, sur_smooth)
        L_smooth.append((U * Sx).sum())
        slope.append(bptt_by_hand(Hx, Sx, U, sur_smooth, detach_reset=False, verbose=False)[0])
    fd_slope = np.gradient(np.array(L_smooth), xs)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    a1.plot(xs, L_spk, label="spiking: L is a staircase in X[0]")
    a1.plot(xs, L_smooth, label="spiking=False: smooth L")
    a1.set_xlabel("X[0]")
    a1.set_ylabel("L = sum u[t] S[t]")
    a1.legend(fontsize=8)
    a2.plot(xs, slope, label="dL/dX[0] by the hand BPTT loop (smooth)")
    a2.plot(xs[1:-1], fd_slope[1:-1], "--", label="finite difference of the smooth L")
    a2.set_xlabel("X[0]")
    a2.set_ylabel("dL/dX[0]")
    a2.legend(fontsize=8)
    fig.suptitle(f"BPTT through a {T}-step LIF neuron (tau = {TAU:g})")
    _shared.save_figure(fig, OUT, "04_bptt_by_hand")
