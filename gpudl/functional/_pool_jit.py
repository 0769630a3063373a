"""Compiled CPU loops for max pooling (NumPy backend, float32 and float64).

One pass over the input forward (the window's max and its offset ki*kw + kj), one pass over
the input gradient backward, each (image, channel) plane owned by one thread, so the sums
of overlapping windows run in a fixed order and the result does not depend on the thread
count. The rules are the CUDA kernels' (``gpudl.kernels.pooling``): a padded cell is never
read, the first maximum wins ties, a NaN wins over numbers (the first NaN), and a window of
-inf values points at its first position.

The NumPy path these replace took kh*kw strided passes forward (compare, max, index) and
kh*kw masked multiplies backward: 27 ms of a 145 ms mnist_cnn step on two cores.

Imported lazily: ``import gpudl`` never loads numba.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ._threads import run_blocks

__all__ = ["max_pool_forward", "max_pool_backward"]


@njit(inline="always")
def _planes(p, a, b, idx):
    """Job p's (image, channel) plane of a, b and idx (all N, C, ...)."""
    n = p // a.shape[1]
    c = p - n * a.shape[1]
    return a[n, c], b[n, c], idx[n, c]


@njit(cache=True, nogil=True)
def _forward_block(x, kh, kw, sh, sw, pt, pl, y, idx, lo, hi):
    """Any window, stride and padding: the window's cells in order (a, b), each a pass over
    the plane's outputs along its rows. On two threads about as fast as NumPy's strided passes
    (3x3 windows: 12 against 12 ms at stride 2, 43 against 29-38 at stride 1, (32, 64, 32,
    32) float32), which it replaces for the NaN rule's sake; the loop did not vectorise (the
    index's conditional store), where the 2x2 one below did: 1.8 ms against 15-20."""
    height, width = x.shape[2], x.shape[3]
    ho_count, wo_count = y.shape[2], y.shape[3]
    neg_inf = x.dtype.type(-np.inf)
    # for cell column b, the outputs j whose window column j*sw - pl + b is inside the image
    j_lo = np.empty(kw, dtype=np.int64)
    j_hi = np.empty(kw, dtype=np.int64)
    for b in range(kw):
        first = 0
        while first < wo_count and first * sw - pl + b < 0:
            first += 1
        last = wo_count
        while last > first and (last - 1) * sw - pl + b >= width:
            last -= 1
        j_lo[b] = first
        j_hi[b] = last
    for p in range(lo, hi):
        xp, yp, ip = _planes(p, x, y, idx)
        for i in range(ho_count):
            for j in range(wo_count):
                yp[i, j] = neg_inf
                ip[i, j] = 0
        for a in range(kh):
            for b in range(kw):
                o = a * kw + b
                for i in range(ho_count):
                    h = i * sh - pt + a
                    if h < 0 or h >= height:
                        continue
                    row = xp[h]
                    y_row = yp[i]
                    i_row = ip[i]
                    for j in range(j_lo[b], j_hi[b]):
                        v = row[j * sw - pl + b]
                        best = y_row[j]
                        if v > best or (v != v and best == best):
                            y_row[j] = v
                            i_row[j] = o


@njit(cache=True, nogil=True)
def _forward_2x2_block(x, y, idx, lo, hi):
    """The common 2x2 window at stride 2, no padding: the same rule, unrolled."""
    ho_count, wo_count = y.shape[2], y.shape[3]
    for p in range(lo, hi):
        xp, yp, ip = _planes(p, x, y, idx)
        for i in range(ho_count):
            for j in range(wo_count):
                best = xp[2 * i, 2 * j]
                arg = 0
                v = xp[2 * i, 2 * j + 1]
                if v > best or (v != v and best == best):
                    best = v
                    arg = 1
                v = xp[2 * i + 1, 2 * j]
                if v > best or (v != v and best == best):
                    best = v
                    arg = 2
                v = xp[2 * i + 1, 2 * j + 1]
                if v > best or (v != v and best == best):
                    best = v
                    arg = 3
                yp[i, j] = best
                ip[i, j] = arg


@njit(cache=True, nogil=True)
def _backward_block(gy, idx, kh, kw, sh, sw, pt, pl, tiles, gx, lo, hi):
    height, width = gx.shape[2], gx.shape[3]
    ho_count, wo_count = gy.shape[2], gy.shape[3]
    zero = gx.dtype.type(0)
    for p in range(lo, hi):
        gp, gyp, ip = _planes(p, gx, gy, idx)
        if tiles:  # every covered cell written once: no zero-fill but the uncovered edge
            for i in range(ho_count):
                for a in range(kh):
                    row = gp[i * kh + a]
                    for j in range(wo_count):
                        g = gyp[i, j]
                        k = ip[i, j] - a * kw
                        for b in range(kw):
                            row[j * kw + b] = g if k == b else zero
            for h in range(ho_count * kh, height):
                for w in range(width):
                    gp[h, w] = zero
            for h in range(ho_count * kh):
                for w in range(wo_count * kw, width):
                    gp[h, w] = zero
        else:  # overlapping or padded windows: added in window order (fixed, so deterministic)
            for h in range(height):
                for w in range(width):
                    gp[h, w] = zero
            for i in range(ho_count):
                for j in range(wo_count):
                    k = ip[i, j]
                    a = k // kw
                    h = i * sh - pt + a
                    w = j * sw - pl + (k - a * kw)
                    if 0 <= h < height and 0 <= w < width:
                        gp[h, w] += gyp[i, j]


def max_pool_forward(x, kernel, stride, pads, out_hw, idx_dtype):
    """(y, idx) of max pooling a C-contiguous float32/float64 NCHW x."""
    n, c = x.shape[:2]
    y = np.empty((n, c) + tuple(out_hw), dtype=x.dtype)
    idx = np.empty(y.shape, dtype=idx_dtype)
    if tuple(kernel) == (2, 2) and tuple(stride) == (2, 2) and not any(pads):
        run_blocks(_forward_2x2_block, n * c, x, y, idx)
    else:
        run_blocks(_forward_block, n * c, x, kernel[0], kernel[1], stride[0], stride[1], pads[0], pads[2], y, idx)
    return y, idx


def max_pool_backward(gy, idx, x_shape, kernel, stride, pads, tiles):
    """The input gradient of max pooling: gy sent to each window's recorded maximum."""
    gx = np.empty(x_shape, dtype=gy.dtype)
    run_blocks(_backward_block, x_shape[0] * x_shape[1], gy, idx, kernel[0], kernel[1], stride[0], stride[1],
               pads[0], pads[2], bool(tiles), gx)
    return gx
