"""Launch helpers shared by the kernel families.

Each kernel module writes its kernels as plain Python functions, one per float type (typed
constants keep float32 math in float32), and registers them here with their explicit
signatures, one dispatcher per signature. The ``cuda.jit`` dispatchers are built on first launch, so importing a kernel
module needs neither a GPU nor the simulator, and ``numba.cuda.compile_ptx`` can check every
(function, signature) pair on a machine without a GPU.

Arrays come from one module: CuPy on a GPU, NumPy under Numba's CUDA simulator. CuPy arrays are
launched on CuPy's current stream through one reused Numba external stream, and handed to Numba
without the stream synchronisation its CUDA-array-interface import does by default, so a launch
never makes the host wait for the GPU.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda

from gpudl.backend import check_same_backend, get_array_module, is_cupy_array

try:  # numba-cuda keeps its own config; older numba has it in numba.config
    from numba.cuda.core import config as _config
except ImportError:  # pragma: no cover
    from numba import config as _config

__all__ = [
    "FLOAT_TYPES", "KernelSet", "build_kernels", "array_module", "check_backend", "check_float", "check_int",
    "check_shape", "launch", "simulated", "block", "blocks", "stride_blocks", "grid_dim",
    "next_pow2", "pair", "pads4", "output_size",
]

#: the float types every kernel is built for, with their Numba type names
FLOAT_TYPES = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}

# a grid-stride loop keeps this many blocks per multiprocessor busy: enough to hide latency
_BLOCKS_PER_SM = 32
# under the simulator every thread is a Python thread (about 1 ms each): keep grids tiny so
# the loops that cover the rest of the work are exercised too
_SIM_MAX_BLOCKS = 2
# ... and one warp per block there
_SIM_THREADS = 32
# CUDA's limit on gridDim.y and gridDim.z
_MAX_GRID_YZ = 65535


def simulated() -> bool:
    """True when Numba runs kernels in its CUDA simulator (NUMBA_ENABLE_CUDASIM=1)."""
    return bool(_config.ENABLE_CUDASIM)


class KernelSet:
    """The kernels of one module: plain functions, their signatures, dispatchers built lazily."""

    def __init__(self):
        self._entries = {}   # key -> (pyfunc, signature)
        self._compiled = {}  # key -> dispatcher

    def add(self, key, pyfunc, signature: str) -> None:
        self._entries[key] = (pyfunc, signature)

    def get(self, key):
        """The dispatcher for ``key``, compiled for its one signature on first use.

        One explicit signature makes the dispatcher specialized: a launch skips type inference.
        """
        disp = self._compiled.get(key)
        if disp is None:
            pyfunc, sig = self._entries[key]
            disp = cuda.jit(sig)(pyfunc)
            self._compiled[key] = disp
        return disp

    def listing(self):
        """``[(pyfunc, [signature, ...]), ...]``: what the PTX tests compile."""
        by_func = {}
        for pyfunc, sig in self._entries.values():
            by_func.setdefault(pyfunc, []).append(sig)
        return list(by_func.items())


def build_kernels(make, signatures, prefix="") -> KernelSet:
    """A KernelSet of ``make(float_type)``'s kernels for every float type, each named
    ``<prefix><op>_kernel_<type>`` and registered with ``signatures[op]`` for that type."""
    kernels = KernelSet()
    for dtype, name in FLOAT_TYPES.items():
        for op, fn in make(dtype.type).items():
            fn.__name__ = fn.__qualname__ = f"{prefix}{op}_kernel_{name}"
            kernels.add((op, dtype), fn, signatures[op].format(f=name))
    return kernels


def array_module(*arrays):
    """numpy or cupy, from the arrays given."""
    return get_array_module(*arrays)


def _check_array(op: str, name: str, a) -> None:
    if not hasattr(a, "dtype") or not hasattr(a, "flags"):
        raise TypeError(f"{op}: {name} must be a numpy or cupy array, got {type(a).__name__}")
    if not a.flags.c_contiguous:
        raise ValueError(
            f"{op}: {name} must be C-contiguous, got strides {a.strides} for shape {a.shape}; "
            "pass xp.ascontiguousarray(...) first")


def check_float(op: str, **arrays) -> np.dtype:
    """All arrays float32 or all float64 and C-contiguous; returns the dtype."""
    dtype = None
    first = None
    for name, a in arrays.items():
        _check_array(op, name, a)
        if a.dtype not in FLOAT_TYPES:
            raise TypeError(f"{op}: {name} must be float32 or float64, got {a.dtype}")
        if dtype is None:
            dtype, first = a.dtype, name
        elif a.dtype != dtype:
            raise TypeError(
                f"{op}: {name} must have the dtype of {first} ({dtype}), got {a.dtype}")
    return dtype


def check_backend(op: str, *arrays) -> None:
    """TypeError when NumPy and CuPy arrays meet in one call, naming both types."""
    check_same_backend(arrays, where=op)


def check_int(op: str, name: str, a, dtypes) -> None:
    """``a`` is a C-contiguous integer array of one of ``dtypes``."""
    _check_array(op, name, a)
    allowed = tuple(np.dtype(d) for d in dtypes)
    if a.dtype not in allowed:
        raise TypeError(
            f"{op}: {name} must have dtype {' or '.join(str(d) for d in allowed)}, got {a.dtype}")


def check_shape(op: str, name: str, a, shape) -> None:
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{op}: {name} must have shape {tuple(shape)}, got {tuple(a.shape)}")


def pair(op: str, name: str, v) -> tuple[int, int]:
    """An int or a pair of ints, as a pair."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        v = (v, v)
    try:
        a, b = (int(e) for e in v)
    except (TypeError, ValueError):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {v!r}") from None
    return a, b


def pads4(op: str, pads) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), each a non-negative int."""
    try:
        top, bottom, left, right = (int(p) for p in pads)
    except (TypeError, ValueError):
        raise TypeError(
            f"{op}: pads must be (top, bottom, left, right) ints, got {pads!r}") from None
    if min(top, bottom, left, right) < 0:
        raise ValueError(f"{op}: pads must be non-negative, got {(top, bottom, left, right)}")
    return top, bottom, left, right


def output_size(size: int, k: int, s: int, before: int, after: int) -> int:
    """Output length of a sliding window along one axis: (size + before + after - k) // s + 1."""
    return (size + before + after - k) // s + 1


def block(threads: int) -> int:
    """Threads per block for kernels that loop over any excess: one warp under the simulator."""
    return min(threads, _SIM_THREADS) if simulated() else threads


def next_pow2(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(1, n))))


def blocks(n: int, threads: int) -> int:
    """Blocks of ``threads`` that cover ``n`` items, one item per thread."""
    return max(1, math.ceil(n / threads))


_sm_count = None


def _multiprocessors() -> int:
    global _sm_count
    if _sm_count is None:
        _sm_count = cuda.get_current_device().MULTIPROCESSOR_COUNT
    return _sm_count


def stride_blocks(n: int, threads: int) -> int:
    """Blocks for a grid-stride loop over ``n`` items: enough to fill the GPU, no more."""
    if simulated():
        return min(blocks(n, threads), _SIM_MAX_BLOCKS)
    return min(blocks(n, threads), _BLOCKS_PER_SM * _multiprocessors())


def grid_dim(n: int) -> int:
    """gridDim.y or gridDim.z for ``n`` items walked by a block-stride loop in that dimension."""
    cap = _SIM_MAX_BLOCKS if simulated() else _MAX_GRID_YZ
    return max(1, min(n, cap))


_streams = {}


def _numba_stream(xp):
    """One Numba external stream per CuPy stream pointer, reused across launches."""
    ptr = xp.cuda.get_current_stream().ptr
    stream = _streams.get(ptr)
    if stream is None:
        stream = cuda.external_stream(ptr)
        _streams[ptr] = stream
    return stream


def launch(kernel, griddim, blockdim, *args) -> None:
    """Launch ``kernel`` with ``args`` (arrays of one module, then scalars); no host sync."""
    xp = None
    for a in args:
        if is_cupy_array(a):
            xp = get_array_module(a)
            break
    if xp is None:
        # NumPy arrays: the simulator uses them in place; on a real GPU Numba copies them
        kernel[griddim, blockdim](*args)
        return
    # sync=False: the kernel goes on the stream the arrays were made on, so it is ordered
    # after their producers without the host waiting for them
    args = tuple(cuda.as_cuda_array(a, sync=False) if is_cupy_array(a) else a for a in args)
    kernel[griddim, blockdim, _numba_stream(xp)](*args)
