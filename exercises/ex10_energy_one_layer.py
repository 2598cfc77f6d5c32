"""Exercise 10: the energy of one linear layer at 45 nm, as minispike/energy.py counts it.

Read first: docs/energy.md, minispike/energy.py (LayerCost.add), examples/10_energy.py.
Check:      python -m minispike check ex10

A linear layer y = x W^T (W: out_features x in_features) fed an input x of n elements
(any shape (..., in_features), e.g. (T, L, in_features): every time step, every token)
makes dense = n * out_features products: each input element meets out_features weights
(its fan-out). What a product costs depends on the input:

    x binary (every value 0 or 1): spikes        ACs  = out_features * sum(x)
                                                       = dense * rate,  rate = mean(x)
                                                 (a spike adds a weight row: no multiply)
    anything else (counts, real numbers)         MACs = dense
    a non-spiking model (spiking=False)          MACs = dense, whatever the input

    energy = E_MAC * MACs + E_AC * ACs     E_MAC = 4.6 pJ, E_AC = 0.9 pJ
                                           (Horowitz 2014, 45 nm, 32-bit float)

(An input of non-negative integers, such as a residual sum of spikes, is charged as MACs:
a count multiplies a weight. minispike can count it as n spikes instead, but not by default.)

Return ``(rate, macs, acs, energy_pj)``: rate = mean(x) (the firing rate for spikes), the
two counts, and the energy in picojoules, all floats.

The checker compares them with minispike's LayerCost on spikes, a silent input, every
neuron firing, integer counts, a real-valued input and the teacher (spiking=False).
There is no gradient in this exercise.
"""
import numpy as np

E_MAC_PJ = 4.6  # pJ per multiply-accumulate
E_AC_PJ = 0.9  # pJ per accumulate


def linear_energy(x, out_features, spiking=True):
    """``(rate, macs, acs, energy_pj)`` of one linear layer fed ``x``."""
    raise NotImplementedError("linear_energy is yours to write: classify x, count, then price the counts")
