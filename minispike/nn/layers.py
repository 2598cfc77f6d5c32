"""The standard layers, as BERT checkpoints name them.

    Linear     y = x W^T + b       W: [out, in] (PyTorch/BERT layout), init N(0, 0.02), b = 0
    LayerNorm  y = (x - mu) / sqrt(var + eps) * weight + bias         weight = 1, bias = 0
    Embedding  y = W[ids]          W: [num, dim], init N(0, 0.02)
    Dropout    y = x * Bernoulli(1 - p) / (1 - p) in training, x in evaluation
"""
from .. import backend, ops
from .module import Module, Parameter


class Linear(Module):
    def __init__(self, in_features, out_features, bias=True, std=0.02):
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(backend.randn((out_features, in_features), std))  # [out, in]
        self.bias = Parameter(backend.current().zeros(out_features, dtype=backend.default_dtype())) if bias else None

    def forward(self, x):
        return ops.linear(x, self.weight, self.bias)

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features}, bias={self.bias is not None})"


class LayerNorm(Module):
    def __init__(self, dim, eps=1e-12):
        xp, dtype = backend.current(), backend.default_dtype()
        self.dim, self.eps = dim, eps
        self.weight = Parameter(xp.ones(dim, dtype=dtype))
        self.bias = Parameter(xp.zeros(dim, dtype=dtype))

    def forward(self, x):
        return ops.layer_norm(x, self.weight, self.bias, eps=self.eps)

    def __repr__(self):
        return f"LayerNorm({self.dim}, eps={self.eps})"


class Embedding(Module):
    def __init__(self, num, dim, std=0.02):
        self.num, self.dim = num, dim
        self.weight = Parameter(backend.randn((num, dim), std))

    def forward(self, ids):
        return ops.embedding(self.weight, ids)

    def __repr__(self):
        return f"Embedding({self.num}, {self.dim})"


class Dropout(Module):
    def __init__(self, p=0.1):
        self.p = p

    def forward(self, x):
        return ops.dropout(x, self.p, self.training)

    def __repr__(self):
        return f"Dropout(p={self.p})"
