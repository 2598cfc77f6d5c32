"""Exercise 6: the leaky integrate-and-fire neuron, forward over T time steps.

Read first: docs/lif.md (Dynamics), minispike/spiking/lif.py (LIFFunction.forward),
            examples/02_lif_neuron.py.
Check:      python -m minispike check ex06

A layer of N neurons gets its input for all T steps at once, X shaped (T, N). The
membrane starts at V[-1] = V_reset (0 for the soft reset). For t = 0 .. T-1:

    charge  H[t] = V[t-1] + (X[t] - (V[t-1] - V_reset)) / tau     decay_input=True
            H[t] = V[t-1] - (V[t-1] - V_reset) / tau + X[t]       decay_input=False
    fire    S[t] = Theta(H[t] - V_th)       Theta(0) = 1: a membrane exactly AT V_th fires
    reset   V[t] = H[t] (1 - S[t]) + V_reset S[t]                 hard reset (v_reset a number)
            V[t] = H[t] - V_th S[t]                               soft reset (v_reset=None;
                                                                   V_reset = 0 in the charge)

The leak (V - V_reset) / tau pulls the membrane back toward V_reset: with V_reset = 0 and
decay_input, H = (1 - 1/tau) V + X / tau.

Return H (the membrane after charging, BEFORE the reset: what the backward needs) and the
spikes S (0.0 or 1.0), both (T, N) floats.

The checker compares H and S with minispike's LIFFunction on random inputs (hard reset,
soft reset, decay_input=False, v_reset = -0.5), a membrane exactly at the threshold,
T = 1 and no input. There is no gradient in this exercise (exercise 7 is the backward).
"""
import numpy as np


def lif_forward(x, tau=2.0, v_threshold=1.0, v_reset=0.0, decay_input=True):
    """``(H, S)``, each (T, N), for input ``x`` (T, N); ``v_reset=None`` is the soft reset."""
    raise NotImplementedError("lif_forward is yours to write: a loop over t of charge, fire, reset")
