"""Every differentiable op of minispike, as functions on Tensors.

Each op is a ``Function`` (forward and backward side by side) in one of:
``elementwise`` (arithmetic, matmul, activations), ``reduce`` (sum, mean, max),
``shape`` (reshape, transpose, expand, concatenate, stack, indexing, embedding),
``nn`` (linear, softmax, log_softmax, layer_norm, dropout, where, masked_fill),
``attention`` (BERT's softmax attention as one op) and ``losses`` (cross_entropy, kl_div, mse_loss).
"""
from .elementwise import add, sub, mul, div, neg, pow, matmul, exp, log, tanh, sigmoid, relu, gelu  # noqa: F401
from .reduce import sum, mean, max  # noqa: F401
from .shape import reshape, transpose, expand, concatenate, stack, getitem, embedding  # noqa: F401
from .nn import linear, softmax, log_softmax, layer_norm, dropout, where, masked_fill  # noqa: F401
from .attention import softmax_attention  # noqa: F401
from .losses import cross_entropy, kl_div, mse_loss  # noqa: F401
