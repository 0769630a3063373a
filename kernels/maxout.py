"""Maxout: the max over groups of ``pieces`` consecutive channels of axis 1.

x (N, C*pieces, *rest) is read as (N*C, pieces, inner) with inner = prod(rest): output element
(g, r) is the max of x[g, j, r] over j. Neighbouring threads take neighbouring r, so the loads of
a warp are contiguous. The first max wins ties; a NaN in a group wins, as in NumPy's max. The
backward pass is a gather over the same outputs: a thread reads gy and the argmax of output
(g, r) once and writes all ``pieces`` entries of its group (no atomics).

A thread divides its first output index and the grid's stride by inner once, then carries
(g, r) along its grid-stride loop by adding: no integer division runs per element.

The argmax is kept as int8 while a group has at most 127 pieces, and as int32 beyond (any
count works, as on the CPU path). int8 is worth keeping for the usual 2-5 pieces: idx is
written by the forward pass, kept until backward and read there, and at 4 bytes an entry it
would cost as much as the output y itself (1/pieces of x), where int8 costs a quarter of that.
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from . import _launch

__all__ = ["maxout_forward", "maxout_backward", "argmax_dtype", "KERNELS"]

THREADS = 256
#: the most pieces an int8 argmax holds; more pieces keep it as int32
INT8_PIECES = 127
_IDX_TYPES = (np.dtype(np.int8), np.dtype(np.int32))


def argmax_dtype(pieces: int) -> np.dtype:
    """The dtype of maxout's argmax for groups of ``pieces``: int8, or int32 past 127."""
    return _IDX_TYPES[0] if pieces <= INT8_PIECES else _IDX_TYPES[1]


def _make(ft):
    ZERO = ft(0)

    def maxout_forward_kernel(x, pieces, inner, y, idx, n):
        o = cuda.grid(1)
        step = cuda.gridsize(1)
        g = o // inner
        r = o - g * inner
        step_g = step // inner
        step_r = step - step_g * inner
        while o < n:
            base = g * pieces * inner + r
            best = x[base]
            arg = 0
            for j in range(1, pieces):
                v = x[base + j * inner]
                # strict > keeps the first max; a NaN wins once and stays
                if v > best or (v != v and best == best):
                    best = v
                    arg = j
            y[o] = best
            idx[o] = arg
            o += step
            g += step_g
            r += step_r
            if r >= inner:
                r -= inner
                g += 1

    def maxout_backward_kernel(gy, idx, pieces, inner, gx, n):
        # n is the number of outputs: gy[o] goes to piece idx[o] of group g, zero to the others
        o = cuda.grid(1)
        step = cuda.gridsize(1)
        g = o // inner
        r = o - g * inner
        step_g = step // inner
        step_r = step - step_g * inner
        while o < n:
            base = g * pieces * inner + r
            grad = gy[o]
            arg = idx[o]
            for j in range(pieces):
                gx[base + j * inner] = grad if j == arg else ZERO
            o += step
            g += step_g
            r += step_r
            if r >= inner:
                r -= inner
                g += 1

    return {"maxout_forward": maxout_forward_kernel, "maxout_backward": maxout_backward_kernel}


_SIGNATURES = {
    "maxout_forward": "void({f}[::1], int64, int64, {f}[::1], {i}[::1], int64)",
    "maxout_backward": "void({f}[::1], {i}[::1], int64, int64, {f}[::1], int64)",
}


def _build():
    """Every kernel for every float type and both argmax types, keyed (op, float, idx dtype)."""
    kernels = _launch.KernelSet()
    for dtype, name in _launch.FLOAT_TYPES.items():
        for op, fn in _make(dtype.type).items():
            fn.__name__ = fn.__qualname__ = f"{op}_kernel_{name}"
            for idx in _IDX_TYPES:
                kernels.add((op, dtype, idx), fn, _SIGNATURES[op].format(f=name, i=idx.name))
    return kernels


_kernels = _build()

#: ``[(pyfunc, [signature, ...]), ...]`` for every kernel of this module
KERNELS = _kernels.listing()


def _check_pieces(op, pieces):
    if isinstance(pieces, bool) or not isinstance(pieces, (int, np.integer)):
        raise TypeError(f"{op}: pieces must be an int, got {type(pieces).__name__}")
    if pieces < 1:
        raise ValueError(f"{op}: pieces must be a positive int, got {pieces}")
    return int(pieces)


def maxout_forward(x, pieces):
    """(y, idx): y (N, C, *rest) the max over each group, idx the index j of the max
    (int8, or int32 for more than 127 pieces: ``argmax_dtype(pieces)``)."""
    op = "maxout_forward"
    pieces = _check_pieces(op, pieces)
    _launch.check_backend(op, x)
    _launch.check_float(op, x=x)
    if x.ndim < 2 or x.shape[1] % pieces:
        raise ValueError(
            f"{op}: x must be (N, C*pieces, ...) with axis 1 divisible by pieces={pieces}, "
            f"got shape {tuple(x.shape)}")
    xp = _launch.array_module(x)
    out_shape = (x.shape[0], x.shape[1] // pieces) + tuple(x.shape[2:])
    y = xp.empty(out_shape, dtype=x.dtype)
    idx = xp.empty(out_shape, dtype=argmax_dtype(pieces))
    n = y.size
    if n:
        inner = n // (out_shape[0] * out_shape[1])
        kernel = _kernels.get(("maxout_forward", x.dtype, idx.dtype))
        threads = _launch.block(THREADS)
        _launch.launch(kernel, _launch.stride_blocks(n, threads), threads,
                       x.reshape(-1), pieces, inner, y.reshape(-1), idx.reshape(-1), n)
    return y, idx


def maxout_backward(gy, idx, pieces):
    """gx (N, C*pieces, *rest): gy routed to the argmax of each group, zero elsewhere."""
    op = "maxout_backward"
    pieces = _check_pieces(op, pieces)
    _launch.check_backend(op, gy, idx)
    _launch.check_float(op, gy=gy)
    _launch.check_int(op, "idx", idx, (argmax_dtype(pieces),))
    _launch.check_shape(op, "idx", idx, gy.shape)
    if gy.ndim < 2:
        raise ValueError(f"{op}: gy must be (N, C, ...), got shape {tuple(gy.shape)}")
    xp = _launch.array_module(gy)
    gx = xp.empty((gy.shape[0], gy.shape[1] * pieces) + tuple(gy.shape[2:]), dtype=gy.dtype)
    n = gy.size
    if n:
        inner = n // (gy.shape[0] * gy.shape[1])
        kernel = _kernels.get(("maxout_backward", gy.dtype, idx.dtype))
        threads = _launch.block(THREADS)
        _launch.launch(kernel, _launch.stride_blocks(n, threads), threads,
                       gy.reshape(-1), idx.reshape(-1), pieces, inner, gx.reshape(-1), n)
    return gx
