"""Exercise 7: backpropagation through time in a LIF neuron, the whole reversed loop.

Read first: docs/lif.md (Explicit BPTT, terms (1) to (5)), minispike/spiking/lif.py
            (LIFFunction.backward), examples/04_bptt_by_hand.py. Do exercises 5 and 6 first.
Check:      python -m minispike check ex07

The forward (exercise 6) saved H (T, N), the membranes before firing, and emitted the
spikes S (T, N). The loss reaches the neuron only through its spikes: dS = dL/dS (T, N).
Write g'[t] = surrogate.derivative(H[t] - V_th) (the surrogate stands in for dS/dH), and
carry dV = dL/dV[t] backward, starting from dV[T-1] = 0. For t = T-1 .. 0:

    dH[t] = dS[t] g'[t]                          (1) through the spike
          + dV[t] dV[t]/dH[t]                    (2) through the reset's kept membrane
          + dV[t] dV[t]/dS[t] g'[t]              (3) through the reset's spike
                                                     (left out when detach_reset=True)
    dV[t-1] = dH[t] (1 - 1/tau)                  (4) through the leak
    dX[t]   = dH[t] / tau    (decay_input=True)  (5) through the input
            = dH[t]          (decay_input=False)

    hard reset V = H (1 - S) + V_reset S:   dV/dH = 1 - S,   dV/dS = V_reset - H
    soft reset V = H - V_th S:              dV/dH = 1,       dV/dS = -V_th

detach_reset=True (the official setting) treats the S inside the reset as a constant:
term (3) is dropped on purpose, so the backward is no longer the exact derivative of the
forward. Write the reset's factors as numbers, (1 - S[t]) and (V_reset - H[t]): the
checker also runs your loop with a smooth S in (0, 1) (the surrogate's primitive instead
of the step), where finite differences can check it.

Inputs: H, S, dS (T, N) floats; tau, v_threshold floats; v_reset a float or None (soft
reset); decay_input, detach_reset booleans; surrogate an object whose
``surrogate.derivative(x)`` returns g'(x) (the ATan of exercise 5, alpha = 2).
Return dX (T, N).

The checker compares dX with minispike's LIFFunction.backward for hard and soft resets,
with and without decay_input and detach_reset, a membrane exactly at the threshold and
T = 1; then runs finite differences through the smooth forward (detach_reset=False).
"""
import numpy as np


def lif_bptt(H, S, dS, tau, v_threshold, v_reset, decay_input, detach_reset, surrogate):
    """dL/dX (T, N): the reversed loop of terms (1) to (5)."""
    raise NotImplementedError("lif_bptt is yours to write: loop t from T-1 down to 0 (see the docstring)")
