"""2-D convolution (NCHW) as im2col + matrix products, and its backward pass.

cols holds, in row (c, ki, kj) and column (n, ho, wo), the input pixel that filter tap
(c, ki, kj) meets at output position (ho, wo) of sample n (zero where the window hangs over the
padding). The two directions want its rows in two orders, and the kernels write either:

* forward, batch-major (N, C*kh*kw, Ho*Wo): y[n] = W.reshape(F, -1) @ cols[n] is one batched
  product whose result is NCHW already, so only the epilogue follows it (bias and ReLU, in
  place, one pass: ``activation.bias_relu_forward``);
* backward, tap-major (C*kh*kw, N*Ho*Wo): the weight gradient gW = gy_t @ cols.T is one GEMM
  whose contraction runs over all N*Ho*Wo positions, instead of N per-sample products summed
  afterwards through an (N, F, C*kh*kw) array. It needs gy_t (F, N*Ho*Wo), gy's one transposing
  copy (output-sized; cols, the large operand, is written in this order and never copied), and
  that copy applies the fused ReLU's mask in the same pass. The input gradient's columns
  gcols = W.T @ gy_t come out tap-major too, which col2im reads as they are.

Threads run along the output positions (gridDim.x), so a warp writes a contiguous stretch of
cols; gridDim.y walks the channels and gridDim.z the samples with block-stride loops, so any
size fits CUDA's grid limits. A thread decodes its position with one 32-bit division and then
walks its channel's kh*kw taps by counting: no integer division is left in any loop (a 64-bit
one is a long instruction sequence on the GPU). col2im is the transpose as a gather: each input
pixel sums the entries of cols that came from it, in a fixed order, so the input gradient is
deterministic and needs no atomics; the taps that meet a pixel are every sh-th row from the
first one, found once per thread rather than tested tap by tap.

Dilation has its own pair of kernels, so the undilated ones stay as they are. The dilated
im2col steps its taps d pixels apart. In the dilated col2im, the taps that meet a pixel row are
those with h + top - ki*dh a multiple of sh: an arithmetic progression with step
sh / gcd(sh, dh) in ki (and dh / gcd(sh, dh) in the window row), whose first term each thread
finds by stepping a residue (no division in that loop either).

Groups need no kernel: cols' rows are ordered (c, ki, kj), so group g's rows are one
contiguous block and each product becomes a batched product over the groups. The transposed
convolution is the same blocks the other way round: its forward is the input gradient of a
convolution (GEMM, then col2im) and its backward that convolution's forward (im2col, GEMM).
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, int64, uint32

from . import _launch
from . import activation as _activation

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_backward", "conv_transpose2d_forward",
           "conv_transpose2d_backward", "KERNELS"]

THREADS = 128


def _make(ft):
    ZERO = ft(0)

    def im2col_kernel(x, kh, kw, sh, sw, top, left, wo_count, n_step, row_step, cols):
        # cols is (rows, Ho*Wo); tap row t of sample n is row n * n_step + t * row_step
        p = cuda.grid(1)
        batch, channels, height, width = x.shape
        if p < cols.shape[1]:
            ho = int64(uint32(p) // uint32(wo_count))   # the launcher keeps Ho*Wo < 2**31
            wo = p - ho * wo_count
            h0 = ho * sh - top
            w0 = wo * sw - left
            taps = kh * kw
            n = cuda.blockIdx.z
            while n < batch:
                c = cuda.blockIdx.y
                while c < channels:
                    dest = n * n_step + c * taps * row_step
                    for ki in range(kh):
                        h = h0 + ki
                        for kj in range(kw):
                            w = w0 + kj
                            if 0 <= h < height and 0 <= w < width:
                                cols[dest, p] = x[n, c, h, w]
                            else:
                                cols[dest, p] = ZERO
                            dest += row_step
                    c += cuda.gridDim.y
                n += cuda.gridDim.z

    def col2im_kernel(cols, kh, kw, sh, sw, top, left, ho_count, wo_count, n_step, row_step,
                      gx):
        q = cuda.grid(1)
        batch, channels, height, width = gx.shape
        if q < height * width:
            h = int64(uint32(q) // uint32(width))
            w = q - h * width
            # window row ho meets pixel row h at tap ki = h + top - ho * sh: the taps that do
            # are ki0, ki0 + sh, ... with windows ho0, ho0 - 1, ... (the same for columns)
            ki0 = int64(uint32(h + top) % uint32(sh))
            ho0 = int64(uint32(h + top) // uint32(sh))
            kj0 = int64(uint32(w + left) % uint32(sw))
            wo0 = int64(uint32(w + left) // uint32(sw))
            taps = kh * kw
            n = cuda.blockIdx.z
            while n < batch:
                c = cuda.blockIdx.y
                while c < channels:
                    base = n * n_step + c * taps * row_step
                    acc = ZERO
                    ki = ki0
                    ho = ho0
                    while ki < kh and ho >= 0:
                        if ho < ho_count:
                            kj = kj0
                            wo = wo0
                            while kj < kw and wo >= 0:
                                if wo < wo_count:
                                    acc += cols[base + (ki * kw + kj) * row_step,
                                                ho * wo_count + wo]
                                kj += sw
                                wo -= 1
                        ki += sh
                        ho -= 1
                    gx[n, c, h, w] = acc
                    c += cuda.gridDim.y
                n += cuda.gridDim.z

    def im2col_dilated_kernel(x, kh, kw, sh, sw, dh, dw, top, left, wo_count, n_step, row_step,
                              cols):
        # im2col_kernel with taps dh rows and dw columns apart
        p = cuda.grid(1)
        batch, channels, height, width = x.shape
        if p < cols.shape[1]:
            ho = int64(uint32(p) // uint32(wo_count))   # the launcher keeps Ho*Wo < 2**31
            wo = p - ho * wo_count
            h0 = ho * sh - top
            w0 = wo * sw - left
            taps = kh * kw
            n = cuda.blockIdx.z
            while n < batch:
                c = cuda.blockIdx.y
                while c < channels:
                    dest = n * n_step + c * taps * row_step
                    h = h0
                    for ki in range(kh):
                        w = w0
                        for kj in range(kw):
                            if 0 <= h < height and 0 <= w < width:
                                cols[dest, p] = x[n, c, h, w]
                            else:
                                cols[dest, p] = ZERO
                            dest += row_step
                            w += dw
                        h += dh
                    c += cuda.gridDim.y
                n += cuda.gridDim.z

    def col2im_dilated_kernel(cols, kh, kw, sh, sw, dh, dw, top, left, ho_count, wo_count,
                              n_step, row_step, dh_mod, dw_mod, kstep_h, kstep_w, hstep_h,
                              hstep_w, gx):
        # tap ki of window row ho meets pixel row h when ho * sh + ki * dh = h + top: the taps
        # that do are ki0, ki0 + kstep_h, ... with windows ho0, ho0 - hstep_h, ... (kstep_h =
        # sh / gcd(sh, dh), hstep_h = dh / gcd(sh, dh)); dh_mod = dh % sh. Columns alike.
        q = cuda.grid(1)
        batch, channels, height, width = gx.shape
        if q < height * width:
            h = int64(uint32(q) // uint32(width))
            w = q - h * width
            # first tap: step the residue (h + top - ki*dh) mod sh down to 0
            rem = int64(uint32(h + top) % uint32(sh))
            ki0 = int64(0)
            while rem != 0 and ki0 < kstep_h:
                rem -= dh_mod
                if rem < 0:
                    rem += sh
                ki0 += 1
            ho0 = int64(-1)              # no tap meets this row: the loops below do not run
            if rem == 0 and h + top >= ki0 * dh:
                ho0 = int64(uint32(h + top - ki0 * dh) // uint32(sh))
            rem = int64(uint32(w + left) % uint32(sw))
            kj0 = int64(0)
            while rem != 0 and kj0 < kstep_w:
                rem -= dw_mod
                if rem < 0:
                    rem += sw
                kj0 += 1
            wo0 = int64(-1)
            if rem == 0 and w + left >= kj0 * dw:
                wo0 = int64(uint32(w + left - kj0 * dw) // uint32(sw))
            taps = kh * kw
            n = cuda.blockIdx.z
            while n < batch:
                c = cuda.blockIdx.y
                while c < channels:
                    base = n * n_step + c * taps * row_step
                    acc = ZERO
                    ki = ki0
                    ho = ho0
                    while ki < kh and ho >= 0:
                        if ho < ho_count:
                            kj = kj0
                            wo = wo0
                            while kj < kw and wo >= 0:
                                if wo < wo_count:
                                    acc += cols[base + (ki * kw + kj) * row_step,
                                                ho * wo_count + wo]
                                kj += kstep_w
                                wo -= hstep_w
                        ki += kstep_h
                        ho -= hstep_h
                    gx[n, c, h, w] = acc
                    c += cuda.gridDim.y
                n += cuda.gridDim.z

    return {"im2col": im2col_kernel, "col2im": col2im_kernel,
            "im2col_dilated": im2col_dilated_kernel, "col2im_dilated": col2im_dilated_kernel}


_SIGNATURES = {
    "im2col": "void({f}[:, :, :, ::1], " + ", ".join(["int64"] * 9) + ", {f}[:, ::1])",
    "col2im": "void({f}[:, ::1], " + ", ".join(["int64"] * 10) + ", {f}[:, :, :, ::1])",
    "im2col_dilated": "void({f}[:, :, :, ::1], " + ", ".join(["int64"] * 11) + ", {f}[:, ::1])",
    "col2im_dilated": "void({f}[:, ::1], " + ", ".join(["int64"] * 18) + ", {f}[:, :, :, ::1])",
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


def _dilation(op, dilation):
    dh, dw = _launch.pair(op, "dilation", dilation)
    if dh < 1 or dw < 1:
        raise ValueError(f"{op}: dilation must be positive, got {(dh, dw)}")
    return dh, dw


def _output_hw(op, H, W, kh, kw, sh, sw, top, bottom, left, right, dh=1, dw=1):
    Ho = _launch.output_size(H, (kh - 1) * dh + 1, sh, top, bottom)
    Wo = _launch.output_size(W, (kw - 1) * dw + 1, sw, left, right)
    if Ho < 1 or Wo < 1:
        window = f"{kh}x{kw} window" if (dh, dw) == (1, 1) else f"{kh}x{kw} window dilated by {(dh, dw)}"
        raise ValueError(
            f"{op}: a {window} does not fit a {H}x{W} input padded by "
            f"{(top, bottom, left, right)}")
    _launch.check_32bit(op, **{"Ho*Wo": Ho * Wo, "H*W": H * W, "H + top": H + top,
                               "W + left": W + left})
    return Ho, Wo


def _run(op, dtype, n_fast, channels, batch, *args):
    """One thread per item along gridDim.x; block-stride loops over channels (y) and batch (z)."""
    threads = _launch.block(THREADS)
    grid = (_launch.blocks(n_fast, threads), _launch.grid_dim(channels), _launch.grid_dim(batch))
    _launch.launch(_kernels.get((op, dtype)), grid, threads, *args)


def _steps(N, CK, tap_major):
    """(n_step, row_step): where tap row t of sample n sits among the rows of cols."""
    return (1, N) if tap_major else (CK, 1)


def _im2col(x, kh, kw, sh, sw, top, left, Ho, Wo, tap_major=False, dh=1, dw=1):
    """cols (N, CK, P), or (CK, N, P) with tap_major, for CK = C*kh*kw and P = Ho*Wo."""
    xp = _launch.array_module(x)
    N, C = x.shape[:2]
    CK, P = C * kh * kw, Ho * Wo
    cols = xp.empty((CK, N, P) if tap_major else (N, CK, P), dtype=x.dtype)
    if dh == 1 and dw == 1:
        _run("im2col", x.dtype, P, C, N,
             x, kh, kw, sh, sw, top, left, Wo, *_steps(N, CK, tap_major), cols.reshape(-1, P))
    else:
        _run("im2col_dilated", x.dtype, P, C, N,
             x, kh, kw, sh, sw, dh, dw, top, left, Wo, *_steps(N, CK, tap_major), cols.reshape(-1, P))
    return cols


def _col2im(cols, x_shape, kh, kw, sh, sw, top, left, Ho, Wo, tap_major=False, dh=1, dw=1):
    xp = _launch.array_module(cols)
    N, C, H, W = x_shape
    gx = xp.empty(x_shape, dtype=cols.dtype)
    if dh == 1 and dw == 1:
        _run("col2im", cols.dtype, H * W, C, N,
             cols.reshape(-1, Ho * Wo), kh, kw, sh, sw, top, left, Ho, Wo,
             *_steps(N, C * kh * kw, tap_major), gx)
    else:
        gh, gw = math.gcd(sh, dh), math.gcd(sw, dw)
        _run("col2im_dilated", cols.dtype, H * W, C, N,
             cols.reshape(-1, Ho * Wo), kh, kw, sh, sw, dh, dw, top, left, Ho, Wo,
             *_steps(N, C * kh * kw, tap_major), dh % sh, dw % sw, sh // gh, sw // gw, dh // gh,
             dw // gw, gx)
    return gx


def _check_x(op, x):
    if x.ndim != 4:
        raise ValueError(f"{op}: x must be NCHW (4-D), got shape {tuple(x.shape)}")
    if 0 in x.shape:
        raise ValueError(f"{op}: x must not be empty, got shape {tuple(x.shape)}")


def im2col(x, kh, kw, stride, pads, dilation=1):
    """cols (N, C*kh*kw, Ho*Wo) from x (N, C, H, W); pads = (top, bottom, left, right);
    dilation an int or a pair: tap (ki, kj) reads x[..., ho*sh + ki*dh - top, wo*sw + kj*dw - left]."""
    op = "im2col"
    kh, kw = int(kh), int(kw)
    _launch.check_backend(op, x)
    _launch.check_float(op, x=x)
    _check_x(op, x)
    sh, sw, top, bottom, left, right = _geometry(op, kh, kw, stride, pads)
    dh, dw = _dilation(op, dilation)
    Ho, Wo = _output_hw(op, x.shape[2], x.shape[3], kh, kw, sh, sw, top, bottom, left, right, dh, dw)
    return _im2col(x, kh, kw, sh, sw, top, left, Ho, Wo, dh=dh, dw=dw)


def col2im(cols, x_shape, kh, kw, stride, pads, dilation=1):
    """x_grad (N, C, H, W): each pixel the sum of the entries of cols (N, C*kh*kw, Ho*Wo) it fed."""
    op = "col2im"
    kh, kw = int(kh), int(kw)
    _launch.check_backend(op, cols)
    _launch.check_float(op, cols=cols)
    x_shape = tuple(int(d) for d in x_shape)
    if len(x_shape) != 4 or 0 in x_shape:
        raise ValueError(f"{op}: x_shape must be a non-empty (N, C, H, W), got {x_shape}")
    sh, sw, top, bottom, left, right = _geometry(op, kh, kw, stride, pads)
    dh, dw = _dilation(op, dilation)
    N, C, H, W = x_shape
    Ho, Wo = _output_hw(op, H, W, kh, kw, sh, sw, top, bottom, left, right, dh, dw)
    _launch.check_shape(op, "cols", cols, (N, C * kh * kw, Ho * Wo))
    return _col2im(cols, x_shape, kh, kw, sh, sw, top, left, Ho, Wo, dh=dh, dw=dw)


def _groups(op, groups):
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    return int(groups)


def _check_conv(op, x, W, b=None, gy=None, groups=1):
    arrays = {"x": x, "W": W}
    if b is not None:
        arrays["b"] = b
    if gy is not None:
        arrays["gy"] = gy
    _launch.check_backend(op, *arrays.values())
    _launch.check_float(op, **arrays)
    _check_x(op, x)
    C = x.shape[1]
    if groups == 1:
        if W.ndim != 4 or W.shape[1] != C:
            raise ValueError(
                f"{op}: W must be (F, C, kh, kw) with C = {C} (x's channels), "
                f"got shape {tuple(W.shape)}")
    elif C % groups or W.ndim != 4 or W.shape[0] % groups or W.shape[1] * groups != C:
        raise ValueError(
            f"{op}: with groups={groups}, x's channels ({C}) and W's filters must divide into the "
            f"groups and W must be (F, C/groups, kh, kw), got x {tuple(x.shape)} and W {tuple(W.shape)}")
    if b is not None:
        _launch.check_shape(op, "b", b, (W.shape[0],))


def conv2d_forward(x, W, b, stride, pads, relu=False, dilation=1, groups=1):
    """y (N, F, Ho, Wo) = conv(x (N, C, H, W), W (F, C/groups, kh, kw)) + b (F,) or no bias,
    then max(y, 0) with relu: bias and ReLU in one pass over y, in place, after the product.
    dilation (an int or a pair) spaces the taps; groups splits the channels (PyTorch's layout)."""
    op = "conv2d_forward"
    groups = _groups(op, groups)
    _check_conv(op, x, W, b, groups=groups)
    F, Cg, kh, kw = W.shape
    sh, sw, top, bottom, left, right = _geometry(op, kh, kw, stride, pads)
    dh, dw = _dilation(op, dilation)
    N, C, H, Wd = x.shape
    Ho, Wo = _output_hw(op, H, Wd, kh, kw, sh, sw, top, bottom, left, right, dh, dw)
    xp = _launch.array_module(x)
    cols = _im2col(x, kh, kw, sh, sw, top, left, Ho, Wo, dh=dh, dw=dw)
    if groups == 1:
        y = xp.matmul(W.reshape(F, C * kh * kw), cols).reshape(N, F, Ho, Wo)
    else:
        # group g's rows of cols are one block: (G, F/G, CgK) @ (N, G, CgK, P) -> (N, G, F/G, P)
        CgK = Cg * kh * kw
        y = xp.matmul(W.reshape(groups, F // groups, CgK),
                      cols.reshape(N, groups, CgK, Ho * Wo)).reshape(N, F, Ho, Wo)
    if b is not None or relu:
        _activation.bias_relu_forward(y, b, relu=relu, out=y)
    return y


def conv2d_backward(x, W, gy, stride, pads, need_x_grad=True, relu_y=None, dilation=1, groups=1):
    """(gx, gW, gb) for y = conv2d_forward(x, W, b, stride, pads, dilation=, groups=) and
    upstream gradient gy.

    relu_y: the output of conv2d_forward(..., relu=True), whose ReLU gy then passes back
    through (its mask is applied in the copy the weight gradient needs anyway).
    gx is None when need_x_grad is false (a first layer needs no input gradient).
    """
    op = "conv2d_backward"
    groups = _groups(op, groups)
    _check_conv(op, x, W, gy=gy, groups=groups)
    F, Cg, kh, kw = W.shape
    sh, sw, top, bottom, left, right = _geometry(op, kh, kw, stride, pads)
    dh, dw = _dilation(op, dilation)
    N, C, H, Wd = x.shape
    Ho, Wo = _output_hw(op, H, Wd, kh, kw, sh, sw, top, bottom, left, right, dh, dw)
    _launch.check_shape(op, "gy", gy, (N, F, Ho, Wo))
    if relu_y is not None:
        _launch.check_backend(op, gy, relu_y)
        _launch.check_float(op, gy=gy, relu_y=relu_y)
        _launch.check_shape(op, "relu_y", relu_y, gy.shape)
    xp = _launch.array_module(x)
    CK, NP = C * kh * kw, N * Ho * Wo
    cols = _im2col(x, kh, kw, sh, sw, top, left, Ho, Wo, tap_major=True, dh=dh, dw=dw).reshape(CK, NP)
    gy_t = _activation.channel_major(gy, relu_y).reshape(F, NP)
    gb = gy_t.sum(axis=1)
    if groups == 1:
        # one (F, N*P) @ (N*P, CK) product. cols.T is a transposed view: dot (CuPy's
        # tensordot_core, like NumPy's) hands an F-contiguous operand to the GEMM as transposed
        # instead of copying it
        gW = xp.dot(gy_t, cols.T).reshape(W.shape)
        gx = None
        if need_x_grad:
            gcols = xp.dot(W.reshape(F, CK).T, gy_t)                     # (CK, N*P), tap-major
            gx = _col2im(gcols, x.shape, kh, kw, sh, sw, top, left, Ho, Wo, tap_major=True,
                         dh=dh, dw=dw)
        return gx, gW, gb
    # groups: the same two products batched over the groups (tap-major rows are group-major)
    Fg, CgK = F // groups, Cg * kh * kw
    cols3 = cols.reshape(groups, CgK, NP)
    gy3 = gy_t.reshape(groups, Fg, NP)
    gW = xp.matmul(gy3, cols3.transpose(0, 2, 1)).reshape(W.shape)
    gx = None
    if need_x_grad:
        gcols = xp.matmul(W.reshape(groups, Fg, CgK).transpose(0, 2, 1), gy3)   # (G, CgK, N*P)
        gx = _col2im(gcols, x.shape, kh, kw, sh, sw, top, left, Ho, Wo, tap_major=True, dh=dh, dw=dw)
    return gx, gW, gb


def _transpose_geometry(op, x, W, stride, pads, output_padding, dilation):
    """(sh, sw, dh, dw, top, left, Ho, Wo) of a transposed convolution of x by W (C_in, C_out, kh, kw)."""
    _check_x(op, x)
    if W.ndim != 4 or W.shape[0] != x.shape[1]:
        raise ValueError(
            f"{op}: W must be (C_in, C_out, kh, kw) with C_in = {x.shape[1]} (x's channels), "
            f"got shape {tuple(W.shape)}")
    kh, kw = W.shape[2:]
    sh, sw, top, bottom, left, right = _geometry(op, kh, kw, stride, pads)
    dh, dw = _dilation(op, dilation)
    oh, ow = _launch.pair(op, "output_padding", output_padding)
    if oh < 0 or ow < 0:
        raise ValueError(f"{op}: output_padding must be non-negative, got {(oh, ow)}")
    H, Wd = x.shape[2:]
    Ho = (H - 1) * sh + (kh - 1) * dh + 1 - top - bottom + oh
    Wo = (Wd - 1) * sw + (kw - 1) * dw + 1 - left - right + ow
    if Ho < 1 or Wo < 1:
        raise ValueError(f"{op}: pads {(top, bottom, left, right)} crop the whole output of a {H}x{Wd} "
                         f"input and a {kh}x{kw} kernel, leaving {(Ho, Wo)}")
    _launch.check_32bit(op, **{"H*W": H * Wd, "Ho*Wo": Ho * Wo, "Ho + top": Ho + top,
                               "Wo + left": Wo + left})
    return sh, sw, dh, dw, top, left, Ho, Wo


def conv_transpose2d_forward(x, W, b, stride, pads, output_padding=0, dilation=1, relu=False):
    """y (N, C_out, Ho, Wo), the transposed convolution of x (N, C_in, H, W) by W (C_in, C_out,
    kh, kw), + b (C_out,) or no bias, then max(y, 0) with relu.

    pads (top, bottom, left, right) crop the full (H - 1)*sh + (kh - 1)*dh + 1 rows, and
    output_padding adds rows/columns at the bottom/right (PyTorch's conv_transpose2d).
    One GEMM, W^T @ x (C_in, N*H*W), gives the taps' columns; col2im sums them into y.
    """
    op = "conv_transpose2d_forward"
    arrays = {"x": x, "W": W} if b is None else {"x": x, "W": W, "b": b}
    _launch.check_backend(op, *arrays.values())
    _launch.check_float(op, **arrays)
    sh, sw, dh, dw, top, left, Ho, Wo = _transpose_geometry(op, x, W, stride, pads, output_padding, dilation)
    C_in, C_out, kh, kw = W.shape
    if b is not None:
        _launch.check_shape(op, "b", b, (C_out,))
    xp = _launch.array_module(x)
    N, _, H, Wd = x.shape
    x_t = _activation.channel_major(x).reshape(C_in, N * H * Wd)
    gcols = xp.dot(W.reshape(C_in, C_out * kh * kw).T, x_t)           # (C_out*kh*kw, N*H*W)
    y = _col2im(gcols, (N, C_out, Ho, Wo), kh, kw, sh, sw, top, left, H, Wd, tap_major=True,
                dh=dh, dw=dw)
    if b is not None or relu:
        _activation.bias_relu_forward(y, b, relu=relu, out=y)
    return y


def conv_transpose2d_backward(x, W, gy, stride, pads, output_padding=0, dilation=1, need_x_grad=True,
                              relu_y=None):
    """(gx, gW, gb) for y = conv_transpose2d_forward(x, W, b, stride, pads, output_padding,
    dilation) and upstream gradient gy: im2col of gy, then two GEMMs.

    relu_y: the output of conv_transpose2d_forward(..., relu=True), whose ReLU gy passes back
    through. gx is None when need_x_grad is false.
    """
    op = "conv_transpose2d_backward"
    _launch.check_backend(op, x, W, gy)
    _launch.check_float(op, x=x, W=W, gy=gy)
    sh, sw, dh, dw, top, left, Ho, Wo = _transpose_geometry(op, x, W, stride, pads, output_padding, dilation)
    C_in, C_out, kh, kw = W.shape
    N, _, H, Wd = x.shape
    _launch.check_shape(op, "gy", gy, (N, C_out, Ho, Wo))
    if relu_y is not None:
        _launch.check_backend(op, gy, relu_y)
        _launch.check_float(op, gy=gy, relu_y=relu_y)
        _launch.check_shape(op, "relu_y", relu_y, gy.shape)
        gy = _activation.relu_backward(relu_y, gy)
    xp = _launch.array_module(x)
    CK, NP = C_out * kh * kw, N * H * Wd
    cols = _im2col(gy, kh, kw, sh, sw, top, left, H, Wd, tap_major=True, dh=dh, dw=dw).reshape(CK, NP)
    x_t = _activation.channel_major(x).reshape(C_in, NP)
    gW = xp.dot(x_t, cols.T).reshape(W.shape)
    gb = gy.sum(axis=(0, 2, 3))
    gx = None
    if need_x_grad:
        gx_t = xp.dot(W.reshape(C_in, CK), cols)                         # (C_in, N*H*W)
        gx = xp.ascontiguousarray(gx_t.reshape(C_in, N, H, Wd).transpose(1, 0, 2, 3))
    return gx, gW, gb
