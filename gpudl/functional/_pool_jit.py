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


@njit(cache=True, nogil=True)
def _forward_block(x, kh, kw, sh, sw, pt, pl, y, idx, lo, hi):
    channels, height, width = x.shape[1], x.shape[2], x.shape[3]
    ho_count, wo_count = y.shape[2], y.shape[3]
    neg_inf = x.dtype.type(-np.inf)
    for p in range(lo, hi):
        n = p // channels
        c = p - n * channels
        xp = x[n, c]
        yp = y[n, c]
        ip = idx[n, c]
        for i in range(ho_count):
            h0 = i * sh - pt
            for j in range(wo_count):
                w0 = j * sw - pl
                best = neg_inf
                arg = 0
                for a in range(kh):
                    h = h0 + a
                    if h < 0 or h >= height:
                        continue
                    for b in range(kw):
                        w = w0 + b
                        if w < 0 or w >= width:
                            continue
                        v = xp[h, w]
                        if v > best or (v != v and best == best):
                            best = v
                            arg = a * kw + b
                yp[i, j] = best
                ip[i, j] = arg


@njit(cache=True, nogil=True)
def _forward_2x2_block(x, y, idx, lo, hi):
    """The common 2x2 window at stride 2, no padding: the same rule, unrolled."""
    channels = x.shape[1]
    ho_count, wo_count = y.shape[2], y.shape[3]
    for p in range(lo, hi):
        n = p // channels
        c = p - n * channels
        xp = x[n, c]
        yp = y[n, c]
        ip = idx[n, c]
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
    channels, height, width = gx.shape[1], gx.shape[2], gx.shape[3]
    ho_count, wo_count = gy.shape[2], gy.shape[3]
    zero = gx.dtype.type(0)
    for p in range(lo, hi):
        n = p // channels
        c = p - n * channels
        gp = gx[n, c]
        gyp = gy[n, c]
        ip = idx[n, c]
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
