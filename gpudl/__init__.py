"""gpudl: Hung-yi Lee's deep-learning tutorial as a real library, on NumPy or CuPy.

Importing gpudl touches no GPU, network or disk: CuPy and Numba load only when the CuPy
backend is asked for.
"""
from . import (augment, backend, callbacks, data, datasets, functional, initializers, layers, losses, metrics,
               onnx, optimizers, regularizers, serialization, training)
from .autograd import Function, Parameter, Tensor, enable_grad, from_dlpack, no_grad
from .backend import get_backend, set_backend, set_deterministic, to_numpy
from .errors import BackendUnavailableError, DatasetError, GpudlError, GradcheckError, ModelFileError
from .models import Input, Model, Sequential, load_model
from .serialization import register_serializable
from .random import set_seed

__version__ = "0.1.0"

__all__ = [
    "Tensor", "Parameter", "Function", "from_dlpack", "no_grad", "enable_grad", "set_backend", "get_backend", "set_deterministic",
    "to_numpy", "set_seed", "backend", "functional", "layers", "optimizers", "regularizers",
    "initializers", "BackendUnavailableError", "ModelFileError", "DatasetError", "GpudlError",
    "GradcheckError", "Sequential", "load_model", "callbacks", "datasets", "augment", "losses", "metrics",
    "data", "training", "onnx", "Input", "Model", "register_serializable", "serialization",
]

#: Lecture III and the heavier parts load on first use (``gpudl.word2vec.Word2Vec``, ``gpudl.rl``)
#: so that ``import gpudl`` stays light
_LAZY = ("word2vec", "rl", "gan", "generative", "recipes", "distributed", "peers", "demos")


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'gpudl' has no attribute {name!r}")
