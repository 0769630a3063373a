"""Small helpers the ONNX ops share: raw arrays, host integers, dtypes, one backend."""
from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Tensor

#: ONNX TensorProto data types gpudl runs, by their enum number
ONNX_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64,
               9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64}
DTYPE_CODES = {np.dtype(v): k for k, v in ONNX_DTYPES.items()}


def onnx_dtype(code, where="") -> np.dtype:
    """The NumPy dtype of an ONNX element type number; TypeError for the ones gpudl lacks."""
    try:
        return np.dtype(ONNX_DTYPES[int(code)])
    except KeyError:
        raise TypeError(f"{where}ONNX element type {code} (string, bfloat16, complex or 8/4-bit float) is not "
                        f"supported: gpudl runs {sorted(str(np.dtype(v)) for v in ONNX_DTYPES.values())}") from None


def raw(t):
    return t.data if isinstance(t, Tensor) else t


def wrap(a) -> Tensor:
    """A Tensor around an array, outside the autograd graph."""
    return Tensor._wrap(a)


def host(t) -> np.ndarray:
    """A NumPy copy or view of a value (a CuPy one is copied to the host)."""
    return backend.to_numpy(raw(t))


def ints(t) -> list:
    """A 0-d or 1-d integer value as a list of Python ints."""
    return [int(v) for v in host(t).reshape(-1)]


def scalar_of(t, default=None):
    """A one-element value as a Python number (``default`` for None)."""
    if t is None:
        return default
    return host(t).reshape(-1)[0].item()


def is_float(t) -> bool:
    return raw(t).dtype.kind == "f"


def xp_of(*ts):
    return backend.get_array_module(*[raw(t) for t in ts if t is not None])


def same_side(*ts):
    """The values on one backend: host arrays move to the device when any input lives there
    (small integer constants meeting device data), otherwise nothing moves."""
    if any(t is not None and backend.is_cupy_array(raw(t)) for t in ts):
        out = []
        for t in ts:
            if t is not None and isinstance(raw(t), np.ndarray):
                t = Tensor._wrap(backend.to_backend(raw(t), "cupy"))
            out.append(t)
        return out
    return list(ts)


def new_array(run, values, dtype):
    """An array made by an op from host data: float results on the run's device, integer and
    boolean results on the host (where shape arithmetic reads them)."""
    a = np.asarray(values, dtype=dtype)
    if a.dtype.kind == "f" and run.xp is not np:
        a = run.xp.asarray(a)
    return Tensor._wrap(a)


def axis_of(axis, ndim, where="axis"):
    """A possibly negative axis as one in [0, ndim); ValueError when out of range."""
    a = int(axis)
    if not -ndim <= a < max(ndim, 1):
        raise ValueError(f"{where} {axis} is out of range for a tensor of rank {ndim}")
    return a % ndim if ndim else 0


def detached(t) -> Tensor:
    return Tensor._wrap(raw(t))
