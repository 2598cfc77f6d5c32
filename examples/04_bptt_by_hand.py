"""04 - Backpropagation through time (BPTT), by hand, for a 3-step LIF neuron.

Forward (example 02), for t = 0, 1, 2, with V[-1] = 0, tau = 2, V_th = 1, hard reset to 0:

    H[t] = V[t-1] + (X[t] - V[t-1]) / tau          charge
    S[t] = Theta(H[t] - V_th)                       fire    (backward: g'(H[t] - V_th), example 03)
    V[t] = H[t] (1 - S[t]) + V_reset S[t]           reset

A loss L = sum_t u[t] S[t] sends dS[t] = u[t] to the spikes. Every H[t] reaches L along two
roads: through its own spike, and through V[t] into the next step. So the backward runs
the time loop in reverse, carrying dV (the gradient waiting at the membrane):

    dV = 0                                                   nothing comes back from after the last step
    for t = 2, 1, 0:
        dH[t] = dS[t] g'[t]                                  through the spike
              + dV (1 - S[t])                                through the reset's kept membrane
              + dV (V_reset - H[t]) g'[t]                    through the reset's spike (0 if detach_reset)
        dX[t] = dH[t] / tau                                  through the input
        dV    = dH[t] (1 - 1/tau)                            through the leak, to step t-1

That loop is written out below and compared with
  A. the engine's ``LIFFunction.backward`` (the same loop, for any shape) and ``unrolled_lif``
     (the neuron built from primitive ops, differentiated by the generic engine), with real
     spikes and SpikeBERT's detach_reset=True;
  B. finite differences, with spiking=False (the forward uses the smooth step g itself, so L is
     a smooth function of X) and detach_reset=False (so the backward follows every road the
     forward takes: finite differences cannot "detach" anything).

Run:  python examples/04_bptt_by_hand.py [--out examples/out]
Read next: minispike/spiking/lif.py (LIFFunction.backward), docs/lif.md.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # examples/, for _shared (any cwd)
import _shared  # noqa: E402  (the plumbing every example shares; puts the checkout on sys.path)

import numpy as np  # noqa: E402

from minispike import backend  # noqa: E402
from minispike.gradcheck import gradcheck  # noqa: E402
from minispike.spiking import ATan, lif, unrolled_lif  # noqa: E402
from minispike.tensor import Tensor  # noqa: E402

TAU, V_TH, V_RESET = 2.0, 1.0, 0.0
X0 = np.array([1.2, 0.9, 1.6])  # input current, 3 steps
U = np.array([0.5, -1.0, 2.0])  # dL/dS[t]: the loss is L = sum_t U[t] S[t]


def forward(X, sur):
    """The forward loop, by hand (float64 NumPy)."""
    v, H, S = V_RESET, [], []
    for t in range(len(X)):
        h = v + (X[t] - v) / TAU
        s = float(sur.step(np.float64(h - V_TH)))  # spike (or g(h - V_th) when not spiking)
        v = h * (1 - s) + V_RESET * s
        H.append(h)
        S.append(s)
    return np.array(H), np.array(S)


def bptt_by_hand(H, S, dS, sur, detach_reset, verbose=True):
    """The reversed loop, one line per term."""
    T = len(H)
    dX = np.zeros(T)
    dV = 0.0  # dL/dV[t] arriving from step t+1
    if verbose:
        print(f"  {'t':>2} {'g_prime':>8} {'spike road':>11} {'kept V road':>12} {'reset road':>11} "
              f"{'dH[t]':>9} {'dX[t]':>9} {'dV[t-1]':>9}")
    for t in reversed(range(T)):
        g = float(sur.derivative(np.float64(H[t] - V_TH)))
        through_spike = dS[t] * g
        through_kept = dV * (1 - S[t])
        through_reset = 0.0 if detach_reset else dV * (V_RESET - H[t]) * g + 0.0  # + 0.0: no -0.0
        dH = through_spike + through_kept + through_reset
        dX[t] = dH / TAU
        dV = dH * (1 - 1 / TAU)
        if verbose:
            print(f"  {t:>2} {g:8.4f} {through_spike:>+11.5f} {through_kept:>+12.5f} {through_reset:>+11.5f} "
                  f"{dH:>+9.5f} {dX[t]:>+9.5f} {dV:>+9.5f}")
    return dX


def engine_grad(fn, X, sur, detach_reset):
    x = Tensor(X.copy(), requires_grad=True)
    S = fn(x.reshape(3, 1), tau=TAU, v_threshold=V_TH, v_reset=V_RESET, surrogate=sur, detach_reset=detach_reset)
    (S.reshape(3) * Tensor(U)).sum().backward()
    return x.grad


def main(argv=None):
    args = _shared.parse_args(__doc__, argv)
    backend.set_default_dtype(np.float64)

    # ---- A. real spikes, detach_reset=True (SpikeBERT) --------------------------------
    sur = ATan()
    H, S = forward(X0, sur)
    print(f"A. spikes, ATan surrogate, detach_reset=True.  X = {X0.tolist()},  dL/dS = {U.tolist()}")
    print(f"   forward: H = {np.round(H, 4).tolist()}, S = {S.tolist()}")
    dX_hand = bptt_by_hand(H, S, U, sur, detach_reset=True)
    dX_fn = engine_grad(lif, X0, sur, True)
    dX_unrolled = engine_grad(unrolled_lif, X0, sur, True)
    print(f"   dL/dX by hand            {np.round(dX_hand, 6).tolist()}")
    print(f"   LIFFunction.backward     {np.round(dX_fn.ravel(), 6).tolist()}")
    print(f"   unrolled_lif (generic)   {np.round(dX_unrolled.ravel(), 6).tolist()}")
    assert np.allclose(dX_hand, dX_fn.ravel(), atol=1e-12) and np.allclose(dX_hand, dX_unrolled.ravel(), atol=1e-12)
    print("   all three agree.  Note dL/dX[2] = u[2] g'[2] / tau only: nothing comes back from after the end;")
    print("   and with tau = 2, 1/tau = 1 - 1/tau = 0.5, so the columns dX[t] and dV[t-1] coincide here.")

    # ---- B. smooth forward, detach_reset=False: finite differences can check it --------
    sur = ATan(spiking=False)
    H, S = forward(X0, sur)
    print("\nB. spiking=False (S = g(H - V_th), smooth), detach_reset=False.")
    print(f"   forward: H = {np.round(H, 4).tolist()}, S = {np.round(S, 4).tolist()}")
    dX_hand = bptt_by_hand(H, S, U, sur, detach_reset=False)
    dX_fn = engine_grad(lif, X0, sur, False).ravel()
    h = 1e-6
    fd = np.zeros(3)
    for t in range(3):
        xp_, xm_ = X0.copy(), X0.copy()
        xp_[t] += h
        xm_[t] -= h
        fd[t] = ((U * forward(xp_, sur)[1]).sum() - (U * forward(xm_, sur)[1]).sum()) / (2 * h)
    print(f"   dL/dX by hand            {np.round(dX_hand, 6).tolist()}")
    print(f"   LIFFunction.backward     {np.round(dX_fn, 6).tolist()}")
    print(f"   finite differences       {np.round(fd, 6).tolist()}   (h = {h:g})")
    print(f"   max |by hand - finite difference| = {np.abs(dX_hand - fd).max():.1e}")
    assert np.allclose(dX_hand, dX_fn, atol=1e-12) and np.allclose(dX_hand, fd, atol=1e-7)

    # the engine's own check, on a batch of neurons with a random upstream gradient
    rng = np.random.default_rng(0)
    x = Tensor(rng.uniform(0.5, 2.5, size=(3, 5)), requires_grad=True)
    gradcheck(lambda x: lif(x, surrogate=ATan(spiking=False), detach_reset=False), [x], name="LIF T=3")
    print("   gradcheck(LIF, spiking=False, detach_reset=False) on 5 neurons: passed")

    # what detach_reset drops: the reset road alone
    drop = bptt_by_hand(H, S, U, sur, detach_reset=True, verbose=False)
    print(f"   with detach_reset=True the reset road is cut: dL/dX = {np.round(drop, 6).tolist()} "
          f"(differs from the full gradient by {np.abs(drop - dX_hand).max():.4f})")

    save_picture(Path(args.out), sur)


def save_picture(out, sur):
    plt = _shared.pyplot()
    if plt is None:
        return
    # L(X[0]) with the other inputs fixed: spiking (a staircase) vs smooth, and the smooth slope
    xs = np.linspace(0.0, 3.0, 301)
    L_spk, L_smooth, slope = [], [], []
    for x0 in xs:
        X = X0.copy()
        X[0] = x0
        L_spk.append((U * forward(X, ATan())[1]).sum())
        H, S = forward(X, sur)
        L_smooth.append((U * S).sum())
        slope.append(bptt_by_hand(H, S, U, sur, detach_reset=False, verbose=False)[0])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    a1.plot(xs, L_spk, label="spiking: L is a staircase in X[0]")
    a1.plot(xs, L_smooth, label="spiking=False: smooth L")
    a1.set_xlabel("X[0]")
    a1.set_ylabel("L = sum u[t] S[t]")
    a1.legend(fontsize=8)
    a2.plot(xs, slope, label="dL/dX[0] by the hand BPTT loop (smooth)")
    a2.plot(xs[1:-1], np.diff(L_smooth)[1:] / 2 / (xs[1] - xs[0]) + np.diff(L_smooth)[:-1] / 2 / (xs[1] - xs[0]),
            "--", label="finite difference of the smooth L")
    a2.set_xlabel("X[0]")
    a2.legend(fontsize=8)
    fig.suptitle("BPTT through a 3-step LIF neuron")
    _shared.save_figure(fig, out, "04_bptt_by_hand")


if __name__ == "__main__":
    main()
