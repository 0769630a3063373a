"""Data for models of several inputs or outputs: inside the trainer, ``x`` (and ``y``,
``sample_weight``) is one array, or a tuple of arrays in the model's input (output) order.
Users may pass lists or dicts keyed by input/output name; ``standardize`` turns them into
that form once, at the boundary."""
from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Tensor

__all__ = ["leaves", "map_leaves", "first", "standardize", "is_array_like"]


def is_array_like(a) -> bool:
    return isinstance(a, (np.ndarray, Tensor)) or backend.is_cupy_array(a)


def leaves(x) -> list:
    return list(x) if isinstance(x, tuple) else [x]


def map_leaves(fn, x):
    if isinstance(x, tuple):
        return tuple(fn(a) for a in x)
    return fn(x)


def first(x):
    return x[0] if isinstance(x, tuple) else x


def standardize(data, names, what, as_array):
    """``data`` for ``len(names)`` slots: one array (or None) for one slot; a tuple of arrays
    in ``names`` order from a list/tuple or a dict for several. ``as_array(a, what)`` converts
    and checks each array."""
    n = len(names)
    if data is None:
        return None
    if n == 1:
        if isinstance(data, dict):
            if len(data) != 1 or (names[0] not in data and len(data) != 1):
                raise ValueError(f"{what}: expected one array (or a dict with the key {names[0]!r}), got a dict "
                                 f"with keys {list(data)}")
            data = data.get(names[0], next(iter(data.values())))
        elif isinstance(data, (list, tuple)) and len(data) == 1 and is_array_like(data[0]):
            data = data[0]
        return as_array(data, what)
    if isinstance(data, dict):
        missing = [k for k in names if k not in data]
        extra = [k for k in data if k not in names]
        if missing or extra:
            raise ValueError(f"{what}: expected arrays for {names}, got a dict with keys {list(data)}")
        items = [data[k] for k in names]
    elif isinstance(data, (list, tuple)):
        if len(data) != n:
            raise ValueError(f"{what}: the model has {n} of them ({', '.join(names)}): expected a list of {n} "
                             f"arrays or a dict by name, got a {type(data).__name__} of {len(data)}")
        items = list(data)
    else:
        raise ValueError(f"{what}: the model has {n} of them ({', '.join(names)}): expected a list of {n} "
                         f"arrays or a dict by name, got {type(data).__name__}")
    return tuple(as_array(a, f"{what} {name!r}") for a, name in zip(items, names))
