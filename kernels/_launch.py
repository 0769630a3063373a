"""Launch helpers shared by the kernel families.

Each kernel module writes its kernels as plain Python functions, one per float type (typed
constants keep float32 math in float32), and registers them here with their explicit
signatures, one dispatcher per signature. The ``cuda.jit`` dispatchers are built on first launch, so importing a kernel
module needs neither a GPU nor the simulator, and ``numba.cuda.compile_ptx`` can check every
(function, signature) pair on a machine without a GPU.

Arrays come from one module: CuPy on a GPU, NumPy under Numba's CUDA simulator. CuPy arrays are
launched on CuPy's current stream through one reused Numba external stream, and never make the
host wait for the GPU.

What a launch costs on the host (numba-cuda 0.30, read from its source): ``kernel[grid, block,
stream]`` builds a ``_LaunchConfiguration`` (dispatcher.py, ``configure`` is an lru_cache of 128
entries shared by every kernel of the process, and the constructor is where the low-occupancy
NumbaPerformanceWarning is raised); gpudl keeps its own table of configured launches, so a
launch is one dict lookup and the warning, raised at construction only, is silenced there for
gpudl's launches alone. Each array argument then goes through ``_to_strided_memory_view``
(cudadrv/devicearray.py): an object with ``__dlpack__`` (every CuPy array) is viewed through
DLPack in C, with the launch stream as the consumer stream and no host synchronisation, while
``cuda.as_cuda_array`` first builds a Python ``DeviceNDArray`` (and an external stream object)
per argument per launch. So CuPy arrays go to the kernel as they are.
"""
from __future__ import annotations

import ctypes
import importlib.metadata
import math
import warnings

import numpy as np
from numba import cuda

from gpudl.backend import check_same_backend, get_array_module, is_cupy_array

try:  # numba-cuda keeps its own config; older numba has it in numba.config
    from numba.cuda.core import config as _config
except ImportError:  # pragma: no cover
    from numba import config as _config

__all__ = [
    "FLOAT_TYPES", "KernelSet", "build_kernels", "array_module", "check_backend", "check_float", "check_int",
    "check_shape", "check_32bit", "MAX_INDEX_32", "launch", "simulated", "block", "blocks",
    "stride_blocks", "grid_dim",
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


#: the kernels decode thread positions with 32-bit unsigned division (a 64-bit one is a long
#: instruction sequence on the GPU, and NVVM only narrows it behind a runtime check): the
#: largest extent they decode
MAX_INDEX_32 = 2**31 - 1


def check_32bit(op: str, **extents) -> None:
    """ValueError naming the first extent past MAX_INDEX_32 (an image of over 2**31 pixels)."""
    for name, value in extents.items():
        if value > MAX_INDEX_32:
            raise ValueError(
                f"{op}: {name} must be at most 2**31 - 1 = {MAX_INDEX_32} (the kernels index "
                f"positions in 32-bit arithmetic), got {value}")


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


def _host_view(a) -> np.ndarray:
    """A NumPy view of the memory that ``a.__cuda_array_interface__`` describes (simulator only)."""
    iface = a.__cuda_array_interface__
    ptr = iface["data"][0]
    dtype = np.dtype(iface["typestr"])
    shape = tuple(iface["shape"])
    strides = iface.get("strides") or None
    if strides is None:
        strides = tuple(int(s) * dtype.itemsize for s in np.cumprod((1,) + shape[:0:-1])[::-1]) if shape else ()
    span = dtype.itemsize if not shape else dtype.itemsize + sum((n - 1) * st for n, st in zip(shape, strides))
    if 0 in shape:
        return np.empty(shape, dtype)
    buf = (ctypes.c_char * span).from_address(ptr)
    return np.ndarray(shape, dtype, buffer=buf, strides=strides)


def _numba_stream(xp):
    """One Numba external stream per CuPy stream pointer, reused across launches.

    The reuse matters twice: building a stream object costs host time, and a configured launch
    is looked up by its stream object. CuPy's null stream (pointer 0) is handed to Numba as the
    legacy default stream it is (numba-cuda always uses the legacy API, api.py
    ``default_stream``): Numba passes the launch stream to each array's ``__dlpack__``, where 0
    is not a valid DLPack stream and makes CuPy warn on every launch.
    """
    ptr = xp.cuda.get_current_stream().ptr
    stream = _streams.get(ptr)
    if stream is None:
        stream = cuda.legacy_default_stream() if ptr == 0 else cuda.external_stream(ptr)
        _streams[ptr] = stream
    return stream


#: configured launches, ``kernel[grid, block, stream]``, by (kernel, grid, block, stream)
_configs = {}
# distinct shapes are few in a training run; a table past this size is dropped, not grown
_MAX_CONFIGS = 4096
#: Numba's warning for grids under 128 blocks (dispatcher.py, _LaunchConfiguration.__init__).
#: gpudl sizes its grids on purpose (grid-stride loops; small layers are small), so the warning
#: says nothing to gpudl's users; a user's own kernels keep it.
LOW_OCCUPANCY_MESSAGE = r"Grid size \d+ will likely result in GPU under-utilization due to low occupancy"


def _configured(kernel, griddim, blockdim, stream):
    """``kernel[griddim, blockdim, stream]``, built once per key with the low-occupancy warning
    silenced: the warning is raised only when the configuration is built, so the cost of
    ``catch_warnings`` is paid once per shape, not per launch."""
    key = (kernel, griddim, blockdim, stream)
    configured = _configs.get(key)
    if configured is None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=LOW_OCCUPANCY_MESSAGE)
            configured = kernel[griddim, blockdim, stream]
        if len(_configs) >= _MAX_CONFIGS:
            _configs.clear()
        _configs[key] = configured
    return configured


_direct = None
_direct_proven = False  # set by the first direct launch that worked


def _passes_arrays_directly() -> bool:
    """Whether this numba-cuda takes CuPy arrays as kernel arguments through DLPack, with no
    host synchronisation (read in numba-cuda 0.30's cudadrv/devicearray.py; older releases
    imported them through the CUDA array interface, which synchronises by default)."""
    global _direct
    if _direct is None:
        try:
            major, minor = (int(p) for p in importlib.metadata.version("numba-cuda").split(".")[:2])
            _direct = (major, minor) >= (0, 30)
        except (importlib.metadata.PackageNotFoundError, ValueError):
            _direct = False
    return _direct


def launch(kernel, griddim, blockdim, *args) -> None:
    """Launch ``kernel`` with ``args`` (arrays of one module, then scalars); no host sync."""
    cupy_arg = None
    for a in args:
        if is_cupy_array(a):
            cupy_arg = a
            break
    if simulated():
        # the simulator's kernel object is reconfigured in place by every [grid, block], so
        # it is never cached; its "device" memory is host memory: a CuPy-typed array whose
        # buffer lives on the host (a test device) is handed over as a view of that buffer
        if cupy_arg is not None:
            args = tuple(_host_view(a) if is_cupy_array(a) else a for a in args)
        kernel[griddim, blockdim](*args)
        return
    if cupy_arg is None:
        # NumPy arrays on a real GPU: Numba copies them to the device and back
        _configured(kernel, griddim, blockdim, 0)(*args)
        return
    global _direct, _direct_proven
    stream = _numba_stream(get_array_module(cupy_arg))
    configured = _configured(kernel, griddim, blockdim, stream)
    if _passes_arrays_directly():
        if _direct_proven:
            configured(*args)
            return
        try:
            configured(*args)
            _direct_proven = True
            return
        except Exception as exc:  # the first launch of the process proves the DLPack path once
            warnings.warn(f"gpudl: handing CuPy arrays to Numba directly failed ({type(exc).__name__}: "
                          f"{exc}); using the CUDA array interface from now on", RuntimeWarning, stacklevel=2)
            _direct = False
    # sync=False: the kernel goes on the stream the arrays were made on, so it is ordered
    # after their producers without the host waiting for them
    args = tuple(cuda.as_cuda_array(a, sync=False) if is_cupy_array(a) else a for a in args)
    configured(*args)
