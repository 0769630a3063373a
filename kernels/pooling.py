"""2-D max pooling (NCHW) with -inf padding, and its backward pass as a gather.

The forward kernel gives one thread per output position (gridDim.x), with block-stride loops
over channels (gridDim.y) and samples (gridDim.z). It records idx, the flat offset ki*kw + kj
of the max inside the window; the first max wins ties (a padded position counts as -inf, so a
window of -inf values points at its first position) and a NaN wins, as in NumPy's max.

The backward kernel gives one thread per input pixel, which sums the gradients of the windows
whose argmax it is, in a fixed order: deterministic, no atomics.
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from . import _launch

__all__ = ["max_pool2d_forward", "max_pool2d_backward", "KERNELS"]

THREADS = 128


def _make(ft):
    ZERO = ft(0)
    NEG_INF = ft(-np.inf)

    def max_pool2d_forward_kernel(x, kh, kw, sh, sw, top, left, y, idx):
        q = cuda.grid(1)
        batch, channels, height, width = x.shape
        wo_count = y.shape[3]
        if q < y.shape[2] * wo_count:
            ho = q // wo_count
            wo = q - ho * wo_count
            h0 = ho * sh - top
            w0 = wo * sw - left
            for n in range(cuda.blockIdx.z, batch, cuda.gridDim.z):
                for c in range(cuda.blockIdx.y, channels, cuda.gridDim.y):
                    best = NEG_INF
                    arg = 0
                    for ki in range(kh):
                        h = h0 + ki
                        for kj in range(kw):
                            w = w0 + kj
                            if 0 <= h < height and 0 <= w < width:
                                v = x[n, c, h, w]
                                if v > best or (v != v and best == best):
                                    best = v
                                    arg = ki * kw + kj
                    y[n, c, ho, wo] = best
                    idx[n, c, ho, wo] = arg

    def max_pool2d_backward_kernel(gy, idx, kh, kw, sh, sw, top, left, gx):
        q = cuda.grid(1)
        batch, channels, height, width = gx.shape
        ho_count = gy.shape[2]
        wo_count = gy.shape[3]
        if q < height * width:
            h = q // width
            w = q - h * width
            for n in range(cuda.blockIdx.z, batch, cuda.gridDim.z):
                for c in range(cuda.blockIdx.y, channels, cuda.gridDim.y):
                    acc = ZERO
                    for ki in range(kh):
                        a = h + top - ki          # = ho * sh for the window that has h at row ki
                        if a >= 0 and a % sh == 0 and a // sh < ho_count:
                            ho = a // sh
                            for kj in range(kw):
                                b = w + left - kj
                                if b >= 0 and b % sw == 0 and b // sw < wo_count:
                                    wo = b // sw
                                    if idx[n, c, ho, wo] == ki * kw + kj:
                                        acc += gy[n, c, ho, wo]
                    gx[n, c, h, w] = acc

    return {"forward": max_pool2d_forward_kernel, "backward": max_pool2d_backward_kernel}


_SIGNATURES = {
    "forward": "void({f}[:, :, :, ::1], int64, int64, int64, int64, int64, int64, "
               "{f}[:, :, :, ::1], int32[:, :, :, ::1])",
    "backward": "void({f}[:, :, :, ::1], int32[:, :, :, ::1], int64, int64, int64, int64, "
                "int64, int64, {f}[:, :, :, ::1])",
}

_kernels = _launch.build_kernels(_make, _SIGNATURES, prefix='max_pool2d_')

#: ``[(pyfunc, [signature, ...]), ...]`` for every kernel of this module
KERNELS = _kernels.listing()


def _geometry(op, x_shape, kernel, stride, pads):
    kh, kw = _launch.pair(op, "kernel", kernel)
    sh, sw = _launch.pair(op, "stride", stride)
    if min(kh, kw, sh, sw) < 1:
        raise ValueError(f"{op}: kernel and stride must be positive, got {(kh, kw)}, {(sh, sw)}")
    top, bottom, left, right = _launch.pads4(op, pads)
    if len(x_shape) != 4 or 0 in x_shape:
        raise ValueError(f"{op}: x must be a non-empty NCHW (4-D) array, got shape {x_shape}")
    Ho = _launch.output_size(x_shape[2], kh, sh, top, bottom)
    Wo = _launch.output_size(x_shape[3], kw, sw, left, right)
    if Ho < 1 or Wo < 1:
        raise ValueError(
            f"{op}: a {kh}x{kw} window does not fit a {x_shape[2]}x{x_shape[3]} input padded by "
            f"{(top, bottom, left, right)}")
    return kh, kw, sh, sw, top, left, Ho, Wo


def _run(op, dtype, n_fast, channels, batch, *args):
    """One thread per item along gridDim.x; block-stride loops over channels (y) and batch (z)."""
    threads = _launch.block(THREADS)
    grid = (_launch.blocks(n_fast, threads), _launch.grid_dim(channels), _launch.grid_dim(batch))
    _launch.launch(_kernels.get((op, dtype)), grid, threads, *args)


def max_pool2d_forward(x, kernel, stride, pads):
    """(y, idx): y (N, C, Ho, Wo) the window maxima, idx int32 the max's offset ki*kw + kj."""
    op = "max_pool2d_forward"
    _launch.check_backend(op, x)
    _launch.check_float(op, x=x)
    kh, kw, sh, sw, top, left, Ho, Wo = _geometry(op, tuple(x.shape), kernel, stride, pads)
    xp = _launch.array_module(x)
    N, C = x.shape[:2]
    y = xp.empty((N, C, Ho, Wo), dtype=x.dtype)
    idx = xp.empty((N, C, Ho, Wo), dtype=np.int32)
    _run("forward", x.dtype, Ho * Wo, C, N,
         x, kh, kw, sh, sw, top, left, y, idx)
    return y, idx


def max_pool2d_backward(gy, idx, x_shape, kernel, stride, pads):
    """gx (x_shape): each input pixel the sum of gy over the windows whose argmax it is."""
    op = "max_pool2d_backward"
    _launch.check_backend(op, gy, idx)
    _launch.check_float(op, gy=gy)
    _launch.check_int(op, "idx", idx, (np.int32,))
    x_shape = tuple(int(d) for d in x_shape)
    kh, kw, sh, sw, top, left, Ho, Wo = _geometry(op, x_shape, kernel, stride, pads)
    N, C, H, W = x_shape
    _launch.check_shape(op, "gy", gy, (N, C, Ho, Wo))
    _launch.check_shape(op, "idx", idx, (N, C, Ho, Wo))
    xp = _launch.array_module(gy)
    gx = xp.empty(x_shape, dtype=gy.dtype)
    _run("backward", gy.dtype, H * W, C, N,
         gy, idx, kh, kw, sh, sw, top, left, gx)
    return gx
