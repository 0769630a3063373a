"""2-D max and average pooling (NCHW), and their backward passes as gathers.

The forward kernel gives one thread per output position (gridDim.x), with block-stride loops
over channels (gridDim.y) and samples (gridDim.z). It records idx, the flat offset ki*kw + kj
of the max inside the window; the first max wins ties (a padded position counts as -inf, so a
window of -inf values points at its first position) and a NaN wins, as in NumPy's max.

The backward kernel gives one thread per input pixel, which sums the gradients of the windows
whose argmax it is, in a fixed order: deterministic, no atomics. The windows that hold a pixel
are found once per thread (every sh-th window row from the first one), not tested one by one.

Average pooling walks the same windows: forward, a thread sums the real cells of its window
(padding adds nothing, so it is never read) and scales by 1 / (kh*kw), padded zeros counted
(PyTorch's ``count_include_pad=True``), or by 1 / (the window's real cells) (TensorFlow's
"SAME"); backward, each input pixel gathers gy / count over the windows that hold it. A
window's real rows are ``min(h0 + kh, H) - max(h0, 0)``: no division for the count either.

Each thread decodes its position with 32-bit divisions, once; no integer division is left in
a loop (a 64-bit one is a long instruction sequence on the GPU). Pads may differ on each side
(TensorFlow's "SAME" puts the odd one at the bottom/right).
"""
from __future__ import annotations

import numpy as np
from numba import cuda, int64, uint32

from . import _launch

__all__ = ["max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
           "KERNELS"]

THREADS = 128


def _make(ft):
    ZERO = ft(0)
    NEG_INF = ft(-np.inf)

    def max_pool2d_forward_kernel(x, kh, kw, sh, sw, top, left, y, idx):
        q = cuda.grid(1)
        batch, channels, height, width = x.shape
        wo_count = y.shape[3]
        if q < y.shape[2] * wo_count:
            ho = int64(uint32(q) // uint32(wo_count))   # the launcher keeps Ho*Wo < 2**31
            wo = q - ho * wo_count
            h0 = ho * sh - top
            w0 = wo * sw - left
            n = cuda.blockIdx.z
            while n < batch:
                c = cuda.blockIdx.y
                while c < channels:
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
                    c += cuda.gridDim.y
                n += cuda.gridDim.z

    def max_pool2d_backward_kernel(gy, idx, kh, kw, sh, sw, top, left, gx):
        q = cuda.grid(1)
        batch, channels, height, width = gx.shape
        ho_count = gy.shape[2]
        wo_count = gy.shape[3]
        if q < height * width:
            h = int64(uint32(q) // uint32(width))
            w = q - h * width
            # window row ho holds pixel row h at ki = h + top - ho * sh: the windows that do are
            # ho0, ho0 - 1, ... at ki0, ki0 + sh, ... (the same for columns)
            ki0 = int64(uint32(h + top) % uint32(sh))
            ho0 = int64(uint32(h + top) // uint32(sh))
            kj0 = int64(uint32(w + left) % uint32(sw))
            wo0 = int64(uint32(w + left) // uint32(sw))
            n = cuda.blockIdx.z
            while n < batch:
                c = cuda.blockIdx.y
                while c < channels:
                    acc = ZERO
                    ki = ki0
                    ho = ho0
                    while ki < kh and ho >= 0:
                        if ho < ho_count:
                            kj = kj0
                            wo = wo0
                            while kj < kw and wo >= 0:
                                if wo < wo_count and idx[n, c, ho, wo] == ki * kw + kj:
                                    acc += gy[n, c, ho, wo]
                                kj += sw
                                wo -= 1
                        ki += sh
                        ho -= 1
                    gx[n, c, h, w] = acc
                    c += cuda.gridDim.y
                n += cuda.gridDim.z

    return {"forward": max_pool2d_forward_kernel, "backward": max_pool2d_backward_kernel}


_SIGNATURES = {
    "forward": "void({f}[:, :, :, ::1], int64, int64, int64, int64, int64, int64, "
               "{f}[:, :, :, ::1], int32[:, :, :, ::1])",
    "backward": "void({f}[:, :, :, ::1], int32[:, :, :, ::1], int64, int64, int64, int64, "
                "int64, int64, {f}[:, :, :, ::1])",
}

_kernels = _launch.build_kernels(_make, _SIGNATURES, prefix='max_pool2d_')


def _make_avg(ft):
    ZERO = ft(0)
    ONE = ft(1)

    def avg_pool2d_forward_kernel(x, kh, kw, sh, sw, top, left, include_pad, y):
        q = cuda.grid(1)
        batch, channels, height, width = x.shape
        wo_count = y.shape[3]
        if q < y.shape[2] * wo_count:
            ho = int64(uint32(q) // uint32(wo_count))   # the launcher keeps Ho*Wo < 2**31
            wo = q - ho * wo_count
            h0 = ho * sh - top
            w0 = wo * sw - left
            # the window's real cells: rows [h_lo, h_hi), columns [w_lo, w_hi)
            h_lo = max(h0, 0)
            h_hi = min(h0 + kh, height)
            w_lo = max(w0, 0)
            w_hi = min(w0 + kw, width)
            count = kh * kw
            if not include_pad:
                count = (h_hi - h_lo) * (w_hi - w_lo)
            inv = ONE / ft(count)
            n = cuda.blockIdx.z
            while n < batch:
                c = cuda.blockIdx.y
                while c < channels:
                    acc = ZERO
                    for h in range(h_lo, h_hi):
                        for w in range(w_lo, w_hi):
                            acc += x[n, c, h, w]
                    y[n, c, ho, wo] = acc * inv
                    c += cuda.gridDim.y
                n += cuda.gridDim.z

    def avg_pool2d_backward_kernel(gy, kh, kw, sh, sw, top, left, include_pad, gx):
        q = cuda.grid(1)
        batch, channels, height, width = gx.shape
        ho_count = gy.shape[2]
        wo_count = gy.shape[3]
        if q < height * width:
            h = int64(uint32(q) // uint32(width))
            w = q - h * width
            # the windows that hold pixel row h: ho0, ho0 - 1, ... at ki0, ki0 + sh, ... (as in
            # max pooling's backward; the same for columns)
            ki0 = int64(uint32(h + top) % uint32(sh))
            ho0 = int64(uint32(h + top) // uint32(sh))
            kj0 = int64(uint32(w + left) % uint32(sw))
            wo0 = int64(uint32(w + left) // uint32(sw))
            n = cuda.blockIdx.z
            while n < batch:
                c = cuda.blockIdx.y
                while c < channels:
                    acc = ZERO
                    ki = ki0
                    ho = ho0
                    while ki < kh and ho >= 0:
                        if ho < ho_count:
                            rows = kh
                            if not include_pad:
                                h0 = ho * sh - top
                                rows = min(h0 + kh, height) - max(h0, 0)
                            kj = kj0
                            wo = wo0
                            while kj < kw and wo >= 0:
                                if wo < wo_count:
                                    cols = kw
                                    if not include_pad:
                                        w0 = wo * sw - left
                                        cols = min(w0 + kw, width) - max(w0, 0)
                                    acc += gy[n, c, ho, wo] * (ONE / ft(rows * cols))
                                kj += sw
                                wo -= 1
                        ki += sh
                        ho -= 1
                    gx[n, c, h, w] = acc
                    c += cuda.gridDim.y
                n += cuda.gridDim.z

    return {"forward": avg_pool2d_forward_kernel, "backward": avg_pool2d_backward_kernel}


_AVG_SIGNATURES = {
    "forward": "void({f}[:, :, :, ::1], " + ", ".join(["int64"] * 7) + ", {f}[:, :, :, ::1])",
    "backward": "void({f}[:, :, :, ::1], " + ", ".join(["int64"] * 7) + ", {f}[:, :, :, ::1])",
}

_avg_kernels = _launch.build_kernels(_make_avg, _AVG_SIGNATURES, prefix='avg_pool2d_')

#: ``[(pyfunc, [signature, ...]), ...]`` for every kernel of this module
KERNELS = _kernels.listing() + _avg_kernels.listing()


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
    H, W = x_shape[2:]
    _launch.check_32bit(op, **{"Ho*Wo": Ho * Wo, "H*W": H * W, "H + top": H + top,
                               "W + left": W + left})
    return kh, kw, sh, sw, top, left, Ho, Wo


def _run(op, dtype, n_fast, channels, batch, *args, kernels=_kernels):
    """One thread per item along gridDim.x; block-stride loops over channels (y) and batch (z)."""
    threads = _launch.block(THREADS)
    grid = (_launch.blocks(n_fast, threads), _launch.grid_dim(channels), _launch.grid_dim(batch))
    _launch.launch(kernels.get((op, dtype)), grid, threads, *args)


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


def _check_real_cells(op, x_shape, kernel, stride, pads, Ho, Wo):
    """Every window holds a real cell (a count of zero would divide by zero): only the first
    and the last window along an axis can lie wholly in the padding."""
    kh, kw = kernel
    sh, sw = stride
    top, _, left, _ = pads
    H, W = x_shape[2:]
    if top >= kh or left >= kw or (Ho - 1) * sh - top >= H or (Wo - 1) * sw - left >= W:
        raise ValueError(
            f"{op}: with count_include_pad=False every window must hold a real cell, but pads "
            f"{tuple(pads)} leave a {kh}x{kw} window on a {H}x{W} input with nothing but padding")


def avg_pool2d_forward(x, kernel, stride, pads, count_include_pad=True):
    """y (N, C, Ho, Wo): the window means, dividing by kh*kw (count_include_pad) or by the
    window's real cells."""
    op = "avg_pool2d_forward"
    _launch.check_backend(op, x)
    _launch.check_float(op, x=x)
    kh, kw, sh, sw, top, left, Ho, Wo = _geometry(op, tuple(x.shape), kernel, stride, pads)
    if not count_include_pad:
        _check_real_cells(op, x.shape, (kh, kw), (sh, sw), _launch.pads4(op, pads), Ho, Wo)
    xp = _launch.array_module(x)
    N, C = x.shape[:2]
    y = xp.empty((N, C, Ho, Wo), dtype=x.dtype)
    _run("forward", x.dtype, Ho * Wo, C, N,
         x, kh, kw, sh, sw, top, left, int(bool(count_include_pad)), y, kernels=_avg_kernels)
    return y


def avg_pool2d_backward(gy, x_shape, kernel, stride, pads, count_include_pad=True):
    """gx (x_shape): each input pixel the sum of gy / count over the windows that hold it."""
    op = "avg_pool2d_backward"
    _launch.check_backend(op, gy)
    _launch.check_float(op, gy=gy)
    x_shape = tuple(int(d) for d in x_shape)
    kh, kw, sh, sw, top, left, Ho, Wo = _geometry(op, x_shape, kernel, stride, pads)
    N, C, H, W = x_shape
    _launch.check_shape(op, "gy", gy, (N, C, Ho, Wo))
    if not count_include_pad:
        _check_real_cells(op, x_shape, (kh, kw), (sh, sw), _launch.pads4(op, pads), Ho, Wo)
    xp = _launch.array_module(gy)
    gx = xp.empty(x_shape, dtype=gy.dtype)
    _run("backward", gy.dtype, H * W, C, N,
         gy, kh, kw, sh, sw, top, left, int(bool(count_include_pad)), gx, kernels=_avg_kernels)
    return gx
