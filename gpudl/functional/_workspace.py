"""Reused scratch arrays for the compiled conv2d paths (NumPy backend).

A Winograd or fused-gather conv2d step makes temporaries of tens of megabytes (the transformed
tiles, the GEMM results, the gathered columns). Fresh arrays that size come from mmap, so each
step paid a page fault and the kernel's zeroing for every 4 KiB of them: measured as a quarter
of a Winograd step on a 2-core machine. The pool keeps arrays that a conv has handed back and
gives them to the next request of the same shape and dtype, as PyTorch's caching allocator does
on the GPU. Only arrays that never escape an op go in: the GEMM results are returned in the same
call, the saved forward state when the op's graph is released (after backward, or at once when
no gradient is needed). At most ``MAX_BYTES`` are kept idle; the least recently returned go first.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

#: idle bytes kept at most; beyond it the least recently returned arrays are dropped
MAX_BYTES = 1 << 30

_lock = threading.Lock()
_idle = OrderedDict()  # id(array) -> array, oldest first
_idle_bytes = 0


def take(shape, dtype):
    """An uninitialised C-contiguous array of ``shape`` and ``dtype``: an idle one if any."""
    global _idle_bytes
    shape, dtype = tuple(int(s) for s in shape), np.dtype(dtype)
    with _lock:
        for key, arr in reversed(_idle.items()):
            if arr.shape == shape and arr.dtype == dtype:
                del _idle[key]
                _idle_bytes -= arr.nbytes
                return arr
    return np.empty(shape, dtype=dtype)


def give(*arrays):
    """Hand arrays back for reuse; the caller must hold no other reference to them."""
    global _idle_bytes
    with _lock:
        for arr in arrays:
            if arr is None or arr.nbytes < (1 << 16) or not arr.flags.c_contiguous or arr.base is not None:
                continue  # small arrays are cheap to make; views are not ours to recycle
            if id(arr) in _idle:
                continue
            _idle[id(arr)] = arr
            _idle_bytes += arr.nbytes
        while _idle_bytes > MAX_BYTES and _idle:
            _, old = _idle.popitem(last=False)
            _idle_bytes -= old.nbytes


def clear():
    """Drop every idle array."""
    global _idle_bytes
    with _lock:
        _idle.clear()
        _idle_bytes = 0


def idle_bytes() -> int:
    return _idle_bytes
