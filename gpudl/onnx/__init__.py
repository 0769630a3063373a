"""ONNX interop: ``export`` a gpudl model, ``load`` an ONNX file as a trainable gpudl model,
and ``backend``, an ``onnx.backend.base.Backend`` that runs ONNX graphs on gpudl's ops.

Importing this package does not import ``onnx``: each entry loads it when first called, and
says how to install it when it is missing (``pip install 'gpudl[onnx]'``).
"""
from __future__ import annotations

import importlib

__all__ = ["export", "load", "backend"]


def export(model, path, opset=17, **kwargs):
    """Write ``model`` (Sequential or functional Model, built) to ``path`` as ONNX ``opset``
    (13 to 21); the batch dimension stays dynamic. See ``gpudl.onnx.exporter``."""
    from .exporter import export as _export
    return _export(model, path, opset=opset, **kwargs)


def load(path):
    """An ONNX file as a gpudl ``Model``: recognised chains become gpudl layers (Dense, Conv2D,
    LSTM, ...), other nodes run on gpudl's ops; the result predicts, trains and saves."""
    from .importer import load as _load
    return _load(path)


def __getattr__(name):
    if name == "backend":
        return importlib.import_module(".backend", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
