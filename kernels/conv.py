"""2-D convolution (NCHW) as im2col + a matrix product, and its backward pass.

cols has shape (N, C*kh*kw, Ho*Wo): row (c, ki, kj) of sample n holds the input pixels that
filter tap (c, ki, kj) meets at each output position (zero where the window hangs over the
padding). Then y[n] = W.reshape(F, -1) @ cols[n] comes out in NCHW order with no transpose, and
the array module's matmul (cuBLAS under CuPy) does the arithmetic.

Threads run along the output positions (gridDim.x), so a warp writes a contiguous stretch of
cols; gridDim.y walks the (c, ki, kj) rows and gridDim.z the samples, each with a block-stride
loop so any size fits CUDA's grid limits. col2im is the transpose as a gather: each input
pixel sums the entries of cols that came from it, in a fixed order, so the input gradient is
deterministic and needs no atomics.
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from . import _launch

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_backward", "KERNELS"]

THREADS = 128


def _make(ft):
    ZERO = ft(0)

    def im2col_kernel(x, kh, kw, sh, sw, top, left, wo_count, cols):
        p = cuda.grid(1)
        batch, _, height, width = x.shape
        rows = cols.shape[1]
        if p < cols.shape[2]:
            ho = p // wo_count
            wo = p - ho * wo_count
            taps = kh * kw
            for n in range(cuda.blockIdx.z, batch, cuda.gridDim.z):
                for row in range(cuda.blockIdx.y, rows, cuda.gridDim.y):
                    c = row // taps
                    k = row - c * taps
                    ki = k // kw
                    kj = k - ki * kw
                    h = ho * sh - top + ki
                    w = wo * sw - left + kj
                    if 0 <= h < height and 0 <= w < width:
                        cols[n, row, p] = x[n, c, h, w]
                    else:
                        cols[n, row, p] = ZERO

    def col2im_kernel(cols, kh, kw, sh, sw, top, left, wo_count, gx):
        q = cuda.grid(1)
        batch, channels, height, width = gx.shape
        ho_count = cols.shape[2] // wo_count
        if q < height * width:
            h = q // width
            w = q - h * width
            for n in range(cuda.blockIdx.z, batch, cuda.gridDim.z):
                for c in range(cuda.blockIdx.y, channels, cuda.gridDim.y):
                    acc = ZERO
                    for ki in range(kh):
                        a = h + top - ki          # = ho * sh for the window that meets h at tap ki
                        if a >= 0 and a % sh == 0 and a // sh < ho_count:
                            ho = a // sh
                            for kj in range(kw):
                                b = w + left - kj
                                if b >= 0 and b % sw == 0 and b // sw < wo_count:
                                    acc += cols[n, (c * kh + ki) * kw + kj, ho * wo_count + b // sw]
                    gx[n, c, h, w] = acc

    return {"im2col": im2col_kernel, "col2im": col2im_kernel}


_SIGNATURES = {
    "im2col": "void({f}[:, :, :, ::1], int64, int64, int64, int64, int64, int64, int64, "
              "{f}[:, :, ::1])",
    "col2im": "void({f}[:, :, ::1], int64, int64, int64, int64, int64, int64, int64, "
              "{f}[:, :, :, ::1])",
}

_kernels = _launch.build_kernels(_make, _SIGNATURES)

#: ``[(pyfunc, [signature, ...]), ...]`` for every kernel of this module
KERNELS = _kernels.listing()


def _geometry(op, kh, kw, stride, pads):
    sh, sw = _launch.pair(op, "stride", stride)
    if sh < 1 or sw < 1:
        raise ValueError(f"{op}: stride must be positive, got {(sh, sw)}")
    top, bottom, left, right = _launch.pads4(op, pads)
    if kh < 1 or kw < 1:
        raise ValueError(f"{op}: kernel size must be positive, got {(kh, kw)}")
    return sh, sw, top, bottom, left, right


def _output_hw(op, H, W, kh, kw, sh, sw, top, bottom, left, right):
    Ho = _launch.output_size(H, kh, sh, top, bottom)
    Wo = _launch.output_size(W, kw, sw, left, right)
    if Ho < 1 or Wo < 1:
        raise ValueError(
            f"{op}: a {kh}x{kw} window does not fit a {H}x{W} input padded by "
            f"{(top, bottom, left, right)}")
    return Ho, Wo


def _run(op, dtype, n_fast, rows, batch, *args):
    """One thread per item along gridDim.x; block-stride loops over rows (y) and batch (z)."""
    threads = _launch.block(THREADS)
    grid = (_launch.blocks(n_fast, threads), _launch.grid_dim(rows), _launch.grid_dim(batch))
    _launch.launch(_kernels.get((op, dtype)), grid, threads, *args)


def _im2col(x, kh, kw, sh, sw, top, left, Ho, Wo):
    xp = _launch.array_module(x)
    N, C = x.shape[:2]
    cols = xp.empty((N, C * kh * kw, Ho * Wo), dtype=x.dtype)
    _run("im2col", x.dtype, Ho * Wo, C * kh * kw, N,
         x, kh, kw, sh, sw, top, left, Wo, cols)
    return cols


def _col2im(cols, x_shape, kh, kw, sh, sw, top, left, Wo):
    xp = _launch.array_module(cols)
    N, C, H, W = x_shape
    gx = xp.empty(x_shape, dtype=cols.dtype)
    _run("col2im", cols.dtype, H * W, C, N,
         cols, kh, kw, sh, sw, top, left, Wo, gx)
    return gx


def _check_x(op, x):
    if x.ndim != 4:
        raise ValueError(f"{op}: x must be NCHW (4-D), got shape {tuple(x.shape)}")
    if 0 in x.shape:
        raise ValueError(f"{op}: x must not be empty, got shape {tuple(x.shape)}")


def im2col(x, kh, kw, stride, pads):
    """cols (N, C*kh*kw, Ho*Wo) from x (N, C, H, W); pads = (top, bottom, left, right)."""
    op = "im2col"
    kh, kw = int(kh), int(kw)
    _launch.check_backend(op, x)
    _launch.check_float(op, x=x)
    _check_x(op, x)
    sh, sw, top, bottom, left, right = _geometry(op, kh, kw, stride, pads)
    Ho, Wo = _output_hw(op, x.shape[2], x.shape[3], kh, kw, sh, sw, top, bottom, left, right)
    return _im2col(x, kh, kw, sh, sw, top, left, Ho, Wo)


def col2im(cols, x_shape, kh, kw, stride, pads):
    """x_grad (N, C, H, W): each pixel the sum of the entries of cols (N, C*kh*kw, Ho*Wo) it fed."""
    op = "col2im"
    kh, kw = int(kh), int(kw)
    _launch.check_backend(op, cols)
    _launch.check_float(op, cols=cols)
    x_shape = tuple(int(d) for d in x_shape)
    if len(x_shape) != 4 or 0 in x_shape:
        raise ValueError(f"{op}: x_shape must be a non-empty (N, C, H, W), got {x_shape}")
    sh, sw, top, bottom, left, right = _geometry(op, kh, kw, stride, pads)
    N, C, H, W = x_shape
    Ho, Wo = _output_hw(op, H, W, kh, kw, sh, sw, top, bottom, left, right)
    _launch.check_shape(op, "cols", cols, (N, C * kh * kw, Ho * Wo))
    return _col2im(cols, x_shape, kh, kw, sh, sw, top, left, Wo)


def _check_conv(op, x, W, b=None, gy=None):
    arrays = {"x": x, "W": W}
    if b is not None:
        arrays["b"] = b
    if gy is not None:
        arrays["gy"] = gy
    _launch.check_backend(op, *arrays.values())
    _launch.check_float(op, **arrays)
    _check_x(op, x)
    if W.ndim != 4 or W.shape[1] != x.shape[1]:
        raise ValueError(
            f"{op}: W must be (F, C, kh, kw) with C = {x.shape[1]} (x's channels), "
            f"got shape {tuple(W.shape)}")
    if b is not None:
        _launch.check_shape(op, "b", b, (W.shape[0],))


def conv2d_forward(x, W, b, stride, pads):
    """y (N, F, Ho, Wo) = conv(x (N, C, H, W), W (F, C, kh, kw)) + b (F,) or no bias."""
    op = "conv2d_forward"
    _check_conv(op, x, W, b)
    F, C, kh, kw = W.shape
    sh, sw, top, bottom, left, right = _geometry(op, kh, kw, stride, pads)
    N, _, H, Wd = x.shape
    Ho, Wo = _output_hw(op, H, Wd, kh, kw, sh, sw, top, bottom, left, right)
    xp = _launch.array_module(x)
    cols = _im2col(x, kh, kw, sh, sw, top, left, Ho, Wo)
    y = xp.matmul(W.reshape(F, C * kh * kw), cols)        # (N, F, Ho*Wo)
    if b is not None:
        y += b.reshape(1, F, 1)
    return y.reshape(N, F, Ho, Wo)


def conv2d_backward(x, W, gy, stride, pads, need_x_grad=True):
    """(gx, gW, gb) for y = conv2d_forward(x, W, b, stride, pads) and upstream gradient gy.

    gx is None when need_x_grad is false (a first layer needs no input gradient).
    """
    op = "conv2d_backward"
    _check_conv(op, x, W, gy=gy)
    F, C, kh, kw = W.shape
    sh, sw, top, bottom, left, right = _geometry(op, kh, kw, stride, pads)
    N, _, H, Wd = x.shape
    Ho, Wo = _output_hw(op, H, Wd, kh, kw, sh, sw, top, bottom, left, right)
    _launch.check_shape(op, "gy", gy, (N, F, Ho, Wo))
    xp = _launch.array_module(x)
    cols = _im2col(x, kh, kw, sh, sw, top, left, Ho, Wo)
    gy3 = gy.reshape(N, F, Ho * Wo)
    # batched (F, P) @ (P, CK) products, summed over the batch
    gW = xp.matmul(gy3, cols.transpose(0, 2, 1)).sum(axis=0).reshape(W.shape)
    gb = gy3.sum(axis=(0, 2))
    gx = None
    if need_x_grad:
        gcols = xp.ascontiguousarray(xp.matmul(W.reshape(F, C * kh * kw).T, gy3))  # (N, CK, P)
        gx = _col2im(gcols, x.shape, kh, kw, sh, sw, top, left, Wo)
    return gx, gW, gb
