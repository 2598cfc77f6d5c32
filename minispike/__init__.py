"""minispike: SpikeBERT, the spiking Transformer distilled from BERT, on NumPy/CuPy.

Start reading at ``minispike/tensor.py`` (the autograd engine), then ``minispike/ops``,
``minispike/spiking`` (surrogates, LIF with explicit BPTT, spiking self-attention) and
``minispike/models``. docs/overview.md maps the rest.

    model = minispike.load("runs/sst2/stage2/checkpoints/best")   # the student or the teacher it holds
"""
from . import process  # noqa: F401  (first: OpenBLAS's setting must be in place before NumPy loads)

process.apply()  # freed arrays stay for the next step; idle BLAS threads yield (MINISPIKE_KEEP_MEMORY=0 etc.: off)

from . import backend  # noqa: E402,F401
from .backend import use, get_array_module  # noqa: E402,F401
from .tensor import Tensor, Function, no_grad  # noqa: E402,F401

__version__ = "0.1.0"

from .models import load  # noqa: E402,F401  (after the engine: the models are built on it)
