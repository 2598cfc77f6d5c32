"""Spiking layers: surrogate gradients, the LIF neuron (explicit BPTT), spiking self-attention.

    surrogate.py     Heaviside forward, smooth surrogate backward (ATan, Sigmoid, FastSigmoid, Rectangular)
    lif.py           multi-step LIF with one hand-written reversed loop over time; traces
    spike_linear.py  LIF(LayerNorm(Linear(x))) as one op, forward and backward side by side
    attention.py     spiking self-attention (Q K^T V without softmax) and the spiking MLP
"""
from .surrogate import ATan, Sigmoid, FastSigmoid, SuperSpike, Rectangular, Surrogate, heaviside, get_surrogate  # noqa: F401
from .lif import LIF, LIFFunction, lif, unrolled_lif, record, Recorder, name_neurons  # noqa: F401
