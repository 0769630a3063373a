"""Models: ``Model`` over a graph of layers (the functional API), ``Sequential`` (a stack),
and the one serialization module that writes and reads their records."""
from .functional import Input, KerasTensor, Model
from .sequential import Sequential, load_model

__all__ = ["Input", "KerasTensor", "Model", "Sequential", "load_model"]
