"""Models: ``Model`` over a graph of layers (the functional API), ``Sequential`` (a stack),
their files (``load_model``); records are written and read by ``gpudl.serialization``."""
from .functional import Input, InputLayer, KerasTensor, Model
from .saving import load_model
from .sequential import Sequential

__all__ = ["Input", "InputLayer", "KerasTensor", "Model", "Sequential", "load_model"]
