"""``load_model``: a model file (gpudl's checksummed atomic format) back to a trained model."""
from __future__ import annotations

import warnings

import numpy as np

from .. import backend
from .. import optimizers as optim
from .. import serialization
from ..errors import ModelFileError
from .functional import FORMAT, FORMAT_VERSION, Model
from .sequential import Sequential

__all__ = ["load_model", "model_from_record"]

_MODELS = {"Model": Model, "Sequential": Sequential}


def model_from_record(record, custom_objects=None, path="model"):
    """The model a ``{"class", "config"}`` record describes (Model, Sequential or a registered one)."""
    if not isinstance(record, dict) or "class" not in record:
        raise ModelFileError(f"{path}: expected a model record {{'class': ..., 'config': ...}}, got {record!r}")
    name = record["class"]
    cls = serialization.get_registered_object(name, custom_objects) or _MODELS.get(name)
    if cls is None or not (isinstance(cls, type) and issubclass(cls, Model)):
        raise ModelFileError(f"{path}: expected a Sequential or Model (or a registered model class), got "
                             f"{name!r}")
    if record.get("input_shape") is not None:  # a subclassed model: rebuilt, then built on its input shape
        model = cls.from_config(record["config"])
        model.build(tuple(record["input_shape"]))
        return model
    return cls.from_config(record["config"], custom_objects)


def load_model(path, custom_objects=None, compile=True):
    """Rebuild a saved model (architecture, weights, optimizer, training position); raises
    ModelFileError. ``custom_objects`` maps names to user classes or functions not registered
    with ``gpudl.register_serializable``; ``compile=False`` skips the optimizer and loss."""
    from .. import io
    meta, arrays = io.load_file(path)
    try:
        if meta.get("format") != FORMAT:
            raise ModelFileError(f"{path}: expected a {FORMAT!r} file, got format {meta.get('format')!r}")
        if meta.get("version") != FORMAT_VERSION:
            raise ModelFileError(f"{path}: expected model format version {FORMAT_VERSION}, got {meta.get('version')!r}")
        mcfg = meta["model"]
        model = model_from_record(mcfg, custom_objects, path)
        if not model.built:
            model.build()
        params = model.params()
        n_params = sum(1 for k in arrays if k.startswith("param/"))
        if n_params != len(params):
            raise ModelFileError(f"{path}: the architecture has {len(params)} parameters, the file holds {n_params}")
        if meta.get("dtype", "float32") not in ("float16", "float32", "float64"):
            raise ModelFileError(f"{path}: expected a float16/float32/float64 model dtype, got {meta.get('dtype')!r}")
        dtype = np.dtype(meta.get("dtype", "float32"))
        for i, p in enumerate(params):
            w = arrays.get(f"param/{i}")
            if w is None or tuple(w.shape) != p.shape:
                raise ModelFileError(f"{path}: parameter {i} ({p.name}) expected shape {p.shape}, "
                                     f"got {None if w is None else tuple(w.shape)}")
            p.data = backend.to_backend(w.astype(dtype, copy=False), backend.backend_of(p.data))
        comp = meta.get("compile") if compile else None
        if comp:
            oc = comp["optimizer"]
            opt = optim.from_config(oc["class"], oc["config"], custom_objects)
            try:
                model.compile(opt, *model.compile_from_config(comp, custom_objects))
            except ValueError as exc:
                # a user's loss or metric this process cannot rebuild: keep weights, optimizer
                # and position (a resume needs them); the caller compiles with the objects again
                warnings.warn(f"{path}: the model's loss/metrics could not be rebuilt ({exc}); it loads "
                              "uncompiled: call compile() with them", RuntimeWarning, stacklevel=2)
                model.optimizer = opt
            state = {k[len("opt/"):]: v for k, v in arrays.items() if k.startswith("opt/")}
            model.optimizer.set_state(params, state, int(oc.get("iterations", 0)))
        # fit() on the loaded model continues the saved random stream and position (exact resume)
        model.training_state.load_state_dict(meta.get("training") or {}, checkpoint=meta.get("checkpoint"))
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"{path}: invalid model description in the file: {type(exc).__name__}: {exc}") from None
    return model
