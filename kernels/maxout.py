"""Maxout: the max over groups of ``pieces`` consecutive channels of axis 1.

x (N, C*pieces, *rest) is read as (N*C, pieces, inner) with inner = prod(rest): output element
(g, r) is the max of x[g, j, r] over j. Neighbouring threads take neighbouring r, so the loads of
a warp are contiguous. The argmax is kept as int8 (a quarter of the bytes of an int32), the first
max winning ties; a NaN in a group wins, as in NumPy's max. The backward pass is a gather: each
input element takes its output's gradient if it was the argmax, else zero (no atomics).
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from . import _launch

__all__ = ["maxout_forward", "maxout_backward", "KERNELS"]

THREADS = 256
#: idx is int8, so a group holds at most this many pieces
MAX_PIECES = 127


def _make(ft):
    ZERO = ft(0)

    def maxout_forward_kernel(x, pieces, inner, y, idx, n):
        o = cuda.grid(1)
        step = cuda.gridsize(1)
        while o < n:
            g = o // inner
            r = o - g * inner
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

    def maxout_backward_kernel(gy, idx, pieces, inner, gx, n):
        i = cuda.grid(1)
        step = cuda.gridsize(1)
        while i < n:
            gj = i // inner           # n * C * pieces + c * pieces + j
            r = i - gj * inner
            g = gj // pieces
            j = gj - g * pieces
            o = g * inner + r
            gx[i] = gy[o] if idx[o] == j else ZERO
            i += step

    return {"maxout_forward": maxout_forward_kernel, "maxout_backward": maxout_backward_kernel}


_SIGNATURES = {
    "maxout_forward": "void({f}[::1], int64, int64, {f}[::1], int8[::1], int64)",
    "maxout_backward": "void({f}[::1], int8[::1], int64, int64, {f}[::1], int64)",
}

_kernels = _launch.build_kernels(_make, _SIGNATURES)

#: ``[(pyfunc, [signature, ...]), ...]`` for every kernel of this module
KERNELS = _kernels.listing()


def _check_pieces(op, pieces):
    if isinstance(pieces, bool) or not isinstance(pieces, (int, np.integer)):
        raise TypeError(f"{op}: pieces must be an int, got {type(pieces).__name__}")
    if not 1 <= pieces <= MAX_PIECES:
        raise ValueError(f"{op}: pieces must be in [1, {MAX_PIECES}], got {pieces}")
    return int(pieces)


def maxout_forward(x, pieces):
    """(y, idx): y (N, C, *rest) the max over each group, idx int8 the index j of the max."""
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
    idx = xp.empty(out_shape, dtype=np.int8)
    n = y.size
    if n:
        inner = n // (out_shape[0] * out_shape[1])
        kernel = _kernels.get(("maxout_forward", x.dtype))
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
    _launch.check_int(op, "idx", idx, (np.int8,))
    _launch.check_shape(op, "idx", idx, gy.shape)
    if gy.ndim < 2:
        raise ValueError(f"{op}: gy must be (N, C, ...), got shape {tuple(gy.shape)}")
    xp = _launch.array_module(gy)
    gx = xp.empty((gy.shape[0], gy.shape[1] * pieces) + tuple(gy.shape[2:]), dtype=gy.dtype)
    n = gx.size
    if n:
        inner = gy.size // (gy.shape[0] * gy.shape[1])
        kernel = _kernels.get(("maxout_backward", gy.dtype))
        threads = _launch.block(THREADS)
        _launch.launch(kernel, _launch.stride_blocks(n, threads), threads,
                       gy.reshape(-1), idx.reshape(-1), pieces, inner, gx.reshape(-1), n)
    return gx
