"""Dropout with counter-based masks: hash, keep/drop and multiply in one elementwise pass.

Element ``i`` is kept when SplitMix64's output for its counter clears an integer threshold;
the constants, the counter and the threshold are defined once in
:mod:`gpudl.functional.dropout` (which cites the generator) and this kernel reproduces
:func:`gpudl.functional.dropout.keep_mask` bit for bit. The same kernel serves forward
(``y = x * m``) and backward (``gx = gy * m``): backward recomputes ``m`` from (start,
threshold) rather than reading a saved mask, so nothing the size of x is stored between the
passes and backward moves the same bytes as any elementwise gradient (read gy, write gx).
The hash is ten 64-bit integer operations an element in the PTX (two multiplies, three
shift-xor pairs, the state's add, a compare); meant to hide under the memory time of the
bytes each element reads and writes, though not yet timed on a GPU.

All arithmetic is uint64 (wrapping as the CPU's does) and one multiply by the float type's
scale: no division, nothing float64 in the float32 kernel. The grid-stride loop issues four
independent loads before any store, as the activation kernels do, and steps the SplitMix64
state by ``step * GAMMA`` instead of multiplying the counter anew.
"""
from __future__ import annotations

import warnings

import numpy as np
from numba import cuda, uint64

from gpudl.functional.dropout import _C1, _C2, _G, _S1, _S2, _S3

from . import _launch

__all__ = ["dropout_apply", "KERNELS"]

THREADS = 256


def _make(ft):
    """The kernel for float type ``ft``; typed constants keep float32 math in float32."""
    ZERO = ft(0)

    @cuda.jit(device=True, inline="always")
    def mix(z):
        # SplitMix64's finalizer (Stafford's Mix13)
        z ^= z >> _S1
        z *= _C1
        z ^= z >> _S2
        z *= _C2
        return z ^ (z >> _S3)

    def dropout_apply_kernel(x, start, threshold, scale, y, n):
        i = cuda.grid(1)
        step = cuda.gridsize(1)
        z = start + uint64(i) * _G          # the state of element i
        dz = uint64(step) * _G              # ... and how far the next one of this thread is
        dz2 = dz + dz                       # (no int literal times a uint64: Numba would
        dz3 = dz2 + dz                      # type int64 * uint64 as float64)
        dz4 = dz2 + dz2
        while i + 3 * step < n:
            a = x[i]
            b = x[i + step]
            c = x[i + 2 * step]
            d = x[i + 3 * step]
            y[i] = a * (scale if mix(z) >= threshold else ZERO)
            y[i + step] = b * (scale if mix(z + dz) >= threshold else ZERO)
            y[i + 2 * step] = c * (scale if mix(z + dz2) >= threshold else ZERO)
            y[i + 3 * step] = d * (scale if mix(z + dz3) >= threshold else ZERO)
            i += 4 * step
            z += dz4
        while i < n:
            y[i] = x[i] * (scale if mix(z) >= threshold else ZERO)
            i += step
            z += dz

    return {"dropout_apply": dropout_apply_kernel}


_SIGNATURES = {
    "dropout_apply": "void({f}[::1], uint64, uint64, {f}, {f}[::1], int64)",
}

_kernels = _launch.build_kernels(_make, _SIGNATURES)

#: ``[(pyfunc, [signature, ...]), ...]`` for every kernel of this module
KERNELS = _kernels.listing()


def dropout_apply(x, start, threshold, scale):
    """``x * (scale if kept else 0)``, element ``i`` kept when SplitMix64's output for state
    ``start + i * GAMMA`` is ``>= threshold`` (both from ``gpudl.functional.dropout.mask_params``).

    Forward passes x, backward the output's gradient, with the same three numbers.
    """
    _launch.check_backend("dropout_apply", x)
    dtype = _launch.check_float("dropout_apply", x=x)
    xp = _launch.array_module(x)
    y = xp.empty_like(x)
    n = x.size
    if n == 0:
        return y
    kernel = _kernels.get(("dropout_apply", dtype))
    threads = _launch.block(THREADS)
    args = (x.reshape(-1), np.uint64(start), np.uint64(threshold), dtype.type(scale), y.reshape(-1), n)
    grid = _launch.stride_blocks(n, threads)
    if _launch.simulated():
        # the simulator runs the uint64 arithmetic on NumPy scalars, which warn on the
        # wraparound that the GPU (and SplitMix64) relies on
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning)
            _launch.launch(kernel, grid, threads, *args)
    else:
        _launch.launch(kernel, grid, threads, *args)
    return y
