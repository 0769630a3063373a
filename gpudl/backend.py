"""The one place that knows NumPy from CuPy.

Every other module asks this one for the active array module (``xp``), for the module of
a given array (``get_array_module``) and for moves between host and device. CuPy is
imported only when asked for, so ``import gpudl`` never initialises CUDA.
"""
from __future__ import annotations

import logging
import os
import sys
import types

import numpy as np

from .errors import BackendUnavailableError

__all__ = [
    "set_backend", "get_backend", "xp", "to_numpy", "to_backend", "get_array_module",
    "is_cupy_array", "check_same_backend", "cupy_available", "describe", "default_dtype",
    "synchronize", "device_free_bytes", "conv_algorithm", "deterministic", "set_deterministic",
    "CONV_ALGORITHMS",
]

logger = logging.getLogger("gpudl")

BACKENDS = ("numpy", "cupy", "auto")

#: default floating dtype for new tensors and parameters
default_dtype = np.float32

_xp: types.ModuleType = np

_name = "numpy"
_reason = "default"
_env_read = False
_cupy = None


def _import_cupy():
    """Import CuPy and check it can run; raise BackendUnavailableError saying why not."""
    global _cupy
    if _cupy is not None:
        return _cupy
    try:
        import cupy  # noqa: PLC0415  (only here: the one module that imports cupy)
    except ImportError as exc:
        raise BackendUnavailableError(
            "backend 'cupy' needs the CuPy package, which is not installed "
            f"({exc}); install gpudl[gpu] (cupy-cuda12x) on a machine with an NVIDIA GPU"
        ) from None
    except Exception as exc:  # a broken CuPy install (wrong CUDA toolkit, ...)
        raise BackendUnavailableError(f"backend 'cupy': importing CuPy failed: {exc}") from None
    try:
        version = cupy.cuda.runtime.driverGetVersion()
    except Exception as exc:
        raise BackendUnavailableError(
            f"backend 'cupy': CuPy is installed but no CUDA driver was found ({exc})") from None
    if version == 0:
        raise BackendUnavailableError("backend 'cupy': CuPy is installed but no CUDA driver was found")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        raise BackendUnavailableError(
            f"backend 'cupy': CUDA driver {version} found but no usable GPU device ({exc})") from None
    if count < 1:
        raise BackendUnavailableError(
            f"backend 'cupy': CUDA driver {version} found but no GPU device is visible")
    _cupy = cupy
    return cupy


def import_nccl():
    """CuPy's NCCL bindings (``cupy.cuda.nccl``), for the data-parallel NCCL communicator."""
    _import_cupy()
    try:
        import cupy.cuda.nccl as nccl  # noqa: PLC0415  (only here, beside the cupy import)
    except ImportError as exc:
        raise BackendUnavailableError(f"distributed backend 'nccl': CuPy's NCCL bindings are unavailable "
                                      f"({exc}); install NCCL for CuPy (pip install nvidia-nccl-cu12)") from None
    return nccl


def cupy_available() -> bool:
    """True when CuPy imports and sees a GPU (never raises)."""
    try:
        _import_cupy()
    except BackendUnavailableError:
        return False
    return True


def set_backend(name: str) -> str:
    """Select ``"numpy"``, ``"cupy"`` or ``"auto"``; returns the backend now active.

    ``auto`` picks CuPy only where it can run, else NumPy, and logs which and why.
    """
    global _xp, _name, _reason, _env_read
    _env_read = True  # an explicit choice wins over GPUDL_BACKEND
    if not isinstance(name, str) or name.lower() not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}: expected one of {', '.join(map(repr, BACKENDS))}")
    name = name.lower()
    if name == "numpy":
        _xp, _name, _reason = np, "numpy", "asked for"
    elif name == "cupy":
        _xp, _name, _reason = _import_cupy(), "cupy", "asked for"
    else:
        try:
            _xp, _name, _reason = _import_cupy(), "cupy", "auto: a CUDA GPU is available"
        except BackendUnavailableError as exc:
            _xp, _name, _reason = np, "numpy", f"auto: {exc}"
        logger.info("gpudl backend: %s (%s)", _name, _reason)
    return _name


def _read_env():
    global _env_read
    if not _env_read:
        _env_read = True
        env = os.environ.get("GPUDL_BACKEND")
        if env:
            set_backend(env)


def get_backend() -> str:
    """The active backend's name: ``"numpy"`` or ``"cupy"``."""
    _read_env()
    return _name


def get_xp() -> types.ModuleType:
    """The active array module (honours GPUDL_BACKEND on first use)."""
    _read_env()
    return _xp


def __getattr__(name):
    # ``gpudl.backend.xp`` is looked up afresh each time, so it follows set_backend
    if name == "xp":
        return get_xp()
    raise AttributeError(f"module 'gpudl.backend' has no attribute {name!r}")


def describe() -> str:
    """One line: which backend is active and why."""
    _read_env()
    return f"{_name} ({_reason})"


def is_cupy_array(a) -> bool:
    return type(a).__module__.startswith("cupy")


def get_array_module(*arrays) -> types.ModuleType:
    """numpy or cupy, from the arrays given (Tensors are looked through)."""
    for a in arrays:
        a = getattr(a, "data", a) if _is_tensor(a) else a
        if is_cupy_array(a):
            return _import_cupy()
    return np


def _is_tensor(a) -> bool:
    from .autograd import Tensor
    return isinstance(a, Tensor)


def _kind(a) -> str:
    if is_cupy_array(a):
        return "cupy"
    if isinstance(a, (np.ndarray, np.generic)):
        return "numpy"
    return "other"


def check_same_backend(arrays, where: str = "operation") -> None:
    """Raise TypeError when numpy and cupy arrays meet in one call, naming both types."""
    seen = {}
    for a in arrays:
        k = _kind(a)
        if k != "other":
            seen.setdefault(k, type(a))
    if len(seen) > 1:
        raise TypeError(
            f"{where}: arrays of two backends in one call: {seen['numpy'].__module__}."
            f"{seen['numpy'].__name__} (numpy) and {seen['cupy'].__module__}.{seen['cupy'].__name__} "
            "(cupy); move them to one backend first (gpudl.to_numpy, Tensor.to, Model.to)")


def to_numpy(a) -> np.ndarray:
    """A host NumPy copy (or view, for NumPy input) of an array or Tensor."""
    if _is_tensor(a):
        a = a.data
    if is_cupy_array(a):
        return a.get()
    return np.asarray(a)


def to_backend(a, name: str | None = None):
    """Move an array to backend ``name`` (default: the active one)."""
    name = name or get_backend()
    if name == "numpy":
        return to_numpy(a)
    if name == "cupy":
        cp = _import_cupy()
        return cp.asarray(a)
    raise ValueError(f"unknown backend {name!r}: expected 'numpy' or 'cupy'")


#: DLPack's device types (dlpack.h DLDeviceType) that each backend reads without a copy
_DLPACK_HOST = {1: "CPU", 3: "CUDA host (pinned)"}
_DLPACK_CUDA = {2: "CUDA", 13: "CUDA managed", 10: "ROCm"}
_DLPACK_NAMES = {4: "OpenCL", 7: "Vulkan", 8: "Metal", 9: "VPI", 11: "ROCm host", 12: "ExtDev",
                 14: "oneAPI", 15: "WebGPU", 16: "Hexagon", 17: "MAIA"}


def from_dlpack(x, copy=None):
    """An array sharing ``x``'s memory through DLPack: NumPy for a host buffer, CuPy for a CUDA
    one (chosen by ``x.__dlpack_device__()``, whatever the active backend: a move between
    devices is never implicit)."""
    if not (hasattr(x, "__dlpack__") and hasattr(x, "__dlpack_device__")):
        raise TypeError("from_dlpack expected an object with __dlpack__ and __dlpack_device__ "
                        f"(a NumPy, CuPy, PyTorch or JAX array), got {type(x).__name__}")
    device_type, device_id = (int(v) for v in x.__dlpack_device__())
    kwargs = {} if copy is None else {"copy": copy}
    if device_type in _DLPACK_HOST:
        return np.from_dlpack(x, **kwargs)
    if device_type in _DLPACK_CUDA:
        return _import_cupy().from_dlpack(x, **kwargs)
    name = _DLPACK_NAMES.get(device_type, f"device type {device_type}")
    raise ValueError(f"from_dlpack expected a host (CPU) or CUDA buffer, got one on {name} "
                     f"(device {device_id})")


def synchronize() -> None:
    """Wait for the GPU's queued work when the CuPy backend is active (a no-op on NumPy).

    For timing: CuPy calls return once their kernels are queued, not when they finish.
    """
    if get_backend() == "cupy":
        _import_cupy().cuda.get_current_stream().synchronize()


def device_free_bytes() -> int:
    """Bytes the current GPU can still give: the driver's free memory plus CuPy's pooled free blocks."""
    cp = _import_cupy()
    free, _total = cp.cuda.runtime.memGetInfo()
    return int(free) + int(cp.get_default_memory_pool().free_bytes())


def scatter_add(out, index, values) -> None:
    """out[index] += values, accumulating repeated indices (np.add.at / cupyx.scatter_add).

    On CuPy under ``set_deterministic(True)``, an integer-array index (or a tuple of them over
    the leading axes) takes a sort-and-segment kernel that adds repeated indices in a fixed
    order instead of cupyx's atomics (``gpudl.kernels.scatter``); NumPy's np.add.at is
    sequential, so always deterministic."""
    if is_cupy_array(out):
        if _deterministic and _deterministic_scatter(out, index, values):
            return
        import cupyx  # noqa: PLC0415  (here, beside the one cupy import)
        cupyx.scatter_add(out, index, values)
    else:
        np.add.at(out, index, values)


def _deterministic_scatter(out, index, values) -> bool:
    """The fixed-order scatter for integer-array indices; False (nothing done) for others."""
    cp = _import_cupy()
    arrays = index if isinstance(index, tuple) else (index,)
    if not arrays or not all(hasattr(a, "dtype") and a.dtype.kind in "iu" for a in arrays):
        return False
    from .kernels.scatter import segment_scatter_add  # noqa: PLC0415
    lead = out.shape[:len(arrays)]
    arrays = cp.broadcast_arrays(*[cp.asarray(a) for a in arrays])
    flat = arrays[0] % lead[0] if len(arrays) == 1 else cp.ravel_multi_index(
        tuple(a % n for a, n in zip(arrays, lead)), lead)
    rows = out.reshape((-1,) + out.shape[len(lead):])
    vals = cp.broadcast_to(values, flat.shape + out.shape[len(lead):])
    segment_scatter_add(rows, flat, vals)
    return True


def backend_of(a) -> str:
    return "cupy" if is_cupy_array(getattr(a, "data", a) if _is_tensor(a) else a) else "numpy"


# ---- algorithm choice and determinism --------------------------------------------------------

#: what ``conv_algorithm`` accepts: "auto" (time the applicable algorithms once per shape and
#: keep the fastest) or one algorithm's name (used wherever it applies; the fixed rule elsewhere)
CONV_ALGORITHMS = ("auto", "im2col", "fused", "winograd")

_conv_algorithm = "auto"
_deterministic = False


def set_deterministic(flag: bool = True) -> bool:
    """Make every choice that could vary between runs fixed: conv2d's algorithm comes from a
    fixed rule instead of timing (``conv_algorithm="auto"`` stops timing), and on CuPy the
    scatter-additions (embedding and gather gradients) add repeated indices in index order
    instead of with atomics. Returns the previous setting."""
    global _deterministic
    if not isinstance(flag, (bool, np.bool_)):
        raise TypeError(f"set_deterministic expected True or False, got {flag!r}")
    old, _deterministic = _deterministic, bool(flag)
    return old


class _BackendModule(types.ModuleType):
    """``gpudl.backend.conv_algorithm = ...`` checks its value, as ``torch.backends.cudnn``'s
    flags do, so a typo fails at the assignment rather than silently meaning "auto"."""

    @property
    def conv_algorithm(self) -> str:
        return self.__dict__["_conv_algorithm"]

    @conv_algorithm.setter
    def conv_algorithm(self, value):
        if not isinstance(value, str) or value.lower() not in CONV_ALGORITHMS:
            raise ValueError(f"gpudl.backend.conv_algorithm expected one of {', '.join(map(repr, CONV_ALGORITHMS))}, "
                             f"got {value!r}")
        self.__dict__["_conv_algorithm"] = value.lower()

    @property
    def deterministic(self) -> bool:
        """Whether set_deterministic(True) is in force (assigning it calls set_deterministic)."""
        return self.__dict__["_deterministic"]

    @deterministic.setter
    def deterministic(self, value):
        set_deterministic(value)


sys.modules[__name__].__class__ = _BackendModule
