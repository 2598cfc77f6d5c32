"""Modules: named parameters, state dicts, and the standard layers."""
from .module import Module, ModuleList, Parameter, StateDictError  # noqa: F401
from .layers import Linear, LayerNorm, Embedding, Dropout  # noqa: F401
