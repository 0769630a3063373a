"""Small helpers shared by the functional ops."""
from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Tensor


def raw(x):
    """The backend array behind a Tensor (or the array itself)."""
    return x.data if isinstance(x, Tensor) else x


def on_gpu(*arrays) -> bool:
    """True when the op runs on CuPy arrays (and so uses gpudl.kernels)."""
    return any(backend.is_cupy_array(a) for a in arrays)


def require_float(x, op: str):
    dt = raw(x).dtype
    if dt.kind != "f":
        raise TypeError(f"{op} expected a floating-point input (float32 or float64), got dtype {dt}")


def scalar(value, dtype):
    """A Python number as a 0-d scalar of ``dtype`` so float32 math stays float32."""
    return np.dtype(dtype).type(value)


def contiguous(a):
    """``a`` itself when C-contiguous, else a C-contiguous copy (what the kernels take)."""
    return a if a.flags.c_contiguous else a.copy()
