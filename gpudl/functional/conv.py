"""Convolution (Lecture II's CNN): ``conv2d`` on NCHW images.

The NumPy path is im2col + one BLAS matrix product per direction:

* forward: the padded input goes channels-last once, and the windows are gathered into
  ``cols`` of shape (N*Ho*Wo, kh*kw*C), so every copied run is C contiguous floats; then
  ``y = cols @ W^T``.
* weight gradient: ``gW^T = cols^T @ gy`` with gy laid out (out_ch, N*Ho*Wo), so the
  long N*Ho*Wo axis is the contraction.
* input gradient: ``gcols = W^T @ gy`` laid out (C*kh*kw, N*Ho*Wo), so the slice of one
  kernel offset is a contiguous (C, N, Ho, Wo) block; col2im adds those kh*kw blocks into
  strided slices of the padded gradient (kh*kw vectorised additions, no per-pixel loop).

That mix of layouts measured fastest on two cores (each product runs on contiguous
operands, and col2im reads whole Ho*Wo planes); ``benchmarks/bench_cnn_cpu.py`` times it
against PyTorch. The CuPy path calls the launchers in ``gpudl.kernels.conv``.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..autograd import Function, as_tensor
from ._util import on_gpu, require_float

__all__ = ["conv2d", "conv_output_size", "normalize_stride", "normalize_padding"]


def _int_pair(value, op: str, arg: str, minimum: int, what: str):
    """(a, b) from an int or a pair of ints, each >= minimum; ValueError otherwise."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif (isinstance(value, (tuple, list)) and len(value) == 2
          and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value)):
        pair = (int(value[0]), int(value[1]))
    else:
        raise ValueError(f"{op} expected {arg} {what} or a pair of them, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{op} expected {arg} {what} or a pair of them, got {value!r}")
    return pair


def normalize_stride(stride, op: str = "conv2d"):
    """(sh, sw) from an int or a pair, each >= 1."""
    return _int_pair(stride, op, "stride", 1, "a positive int")


def normalize_kernel(kernel_size, op: str):
    return _int_pair(kernel_size, op, "kernel_size", 1, "a positive int")


def normalize_padding(padding, in_hw, kernel, stride, op: str = "conv2d"):
    """(top, bottom, left, right) pads.

    ``padding``: an int, a pair (rows, cols) padded on both sides, ``"valid"`` (none) or
    ``"same"``: output size ceil(in / stride), the total pad split as TensorFlow/Keras do,
    with the odd pixel at the bottom/right.
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0, 0, 0)
        if mode == "same":
            pads = []
            for n, k, s in zip(in_hw, kernel, stride):
                out = -(-n // s)
                total = max((out - 1) * s + k - n, 0)
                pads += [total // 2, total - total // 2]
            return tuple(pads)
        raise ValueError(f"{op} expected padding a non-negative int, a pair of them, 'valid' or 'same', "
                         f"got {padding!r}")
    try:
        ph, pw = _int_pair(padding, op, "padding", 0, "a non-negative int")
    except ValueError:
        raise ValueError(f"{op} expected padding a non-negative int, a pair of them, 'valid' or 'same', "
                         f"got {padding!r}") from None
    return (ph, ph, pw, pw)


def conv_output_size(n: int, k: int, s: int, pad_total: int) -> int:
    """Output length along one axis: floor((n + pads - k) / s) + 1."""
    return (n + pad_total - k) // s + 1


def _pad_channels_last(x, pads):
    """(N, C, H, W) -> zero-padded (N, Hp, Wp, C), in one copy."""
    n, c, h, w = x.shape
    pt, pb, pl, pr = pads
    out = np.empty((n, h + pt + pb, w + pl + pr, c), dtype=x.dtype)
    if pt or pb or pl or pr:
        out[:, :pt] = 0
        out[:, h + pt:] = 0
        out[:, pt:h + pt, :pl] = 0
        out[:, pt:h + pt, w + pl:] = 0
    out[:, pt:h + pt, pl:w + pl, :] = x.transpose(0, 2, 3, 1)
    return out


def _im2col(x, kernel, stride, pads, out_hw):
    """cols (N*Ho*Wo, kh*kw*C): row = one output pixel, columns ordered (kh, kw, C)."""
    n, c = x.shape[:2]
    kh, kw = kernel
    sh, sw = stride
    ho, wo = out_hw
    xpad = _pad_channels_last(x, pads)
    s0, s1, s2, s3 = xpad.strides
    # windows[n, i, j, a, b, c] = xpad[n, i*sh + a, j*sw + b, c]
    windows = np.lib.stride_tricks.as_strided(
        xpad, shape=(n, ho, wo, kh, kw, c), strides=(s0, s1 * sh, s2 * sw, s1, s2, s3), writeable=False)
    cols = np.empty((n, ho, wo, kh, kw, c), dtype=x.dtype)
    cols[...] = windows
    return cols.reshape(n * ho * wo, kh * kw * c)


def _col2im(gcols, x_shape, kernel, stride, pads, out_hw):
    """Sum gcols (C, kh, kw, N, Ho, Wo) back into the input gradient (N, C, H, W)."""
    n, c, h, w = x_shape
    kh, kw = kernel
    sh, sw = stride
    ho, wo = out_hw
    pt, pb, pl, pr = pads
    g = np.zeros((c, n, h + pt + pb, w + pl + pr), dtype=gcols.dtype)
    for a in range(kh):
        for b in range(kw):
            g[:, :, a:a + sh * (ho - 1) + 1:sh, b:b + sw * (wo - 1) + 1:sw] += gcols[:, a, b]
    return np.ascontiguousarray(g[:, :, pt:pt + h, pl:pl + w].transpose(1, 0, 2, 3))


class Conv2d(Function):
    """Convolution, optionally followed by ReLU in the same op (``relu=True``): the ReLU is
    applied in place on the output and its mask folded into the copy backward makes
    anyway, which saves two passes over the largest activations of a CNN."""

    def __init__(self, stride, pads, out_hw, relu=False):
        self.stride, self.pads, self.out_hw, self.relu = stride, pads, out_hw, relu

    def forward(self, x, W, b=None):
        self.has_b = b is not None
        if on_gpu(x):
            from ..kernels import conv as K
            x = x if x.flags.c_contiguous else x.copy()
            W = W if W.flags.c_contiguous else W.copy()
            if b is not None and not b.flags.c_contiguous:
                b = b.copy()
            self._saved = (x, W)
            # bias and ReLU are the product's epilogue: one pass over y, in place
            y = K.conv2d_forward(x, W, b, self.stride, self.pads, relu=self.relu)
            if self.relu:
                self._saved_y = y
            return y
        out_ch, _, kh, kw = W.shape
        n = x.shape[0]
        ho, wo = self.out_hw
        cols = _im2col(x, (kh, kw), self.stride, self.pads, self.out_hw)
        w_rows = W.transpose(0, 2, 3, 1).reshape(out_ch, -1)  # (out_ch, kh*kw*C) like cols
        # (out_ch, N*Ho*Wo): moving it to NCHW then copies runs of Ho*Wo floats, where the
        # (N*Ho*Wo, out_ch) product would need a gather of single floats (measured 1.2-2x slower)
        y = w_rows @ cols.T
        out = np.empty((n, out_ch, ho, wo), dtype=y.dtype)
        y4 = y.reshape(out_ch, n, ho, wo).transpose(1, 0, 2, 3)
        if b is not None:
            np.add(y4, b.reshape(1, out_ch, 1, 1), out=out)
        else:
            out[...] = y4
        if self.relu:
            np.maximum(out, 0, out=out)
            self._saved_y = out
        self._saved = (cols, W)
        self.x_shape = x.shape
        return out

    def backward(self, gy):
        need_x = self.inputs[0].requires_grad
        need_w = self.inputs[1].requires_grad
        if on_gpu(gy):
            from ..kernels import conv as K
            x, W = self._saved
            gy = gy if gy.flags.c_contiguous else gy.copy()
            # the ReLU's mask rides on the transposing copy of gy the weight gradient makes
            gx, gW, gb = K.conv2d_backward(x, W, gy, self.stride, self.pads, need_x_grad=need_x,
                                           relu_y=self._saved_y if self.relu else None)
            if not need_x:
                gx = None
            return (gx, gW, gb) if self.has_b else (gx, gW)
        cols, W = self._saved
        out_ch, c, kh, kw = W.shape
        # (out_ch, N*Ho*Wo): one copy serves the bias, weight and input gradients
        if self.relu:  # the ReLU's mask applied in the same pass as the transposing copy
            gy_t = np.empty((out_ch,) + (gy.shape[0],) + gy.shape[2:], dtype=gy.dtype)
            np.multiply(gy.transpose(1, 0, 2, 3), (self._saved_y > 0).transpose(1, 0, 2, 3), out=gy_t)
            gy_t = gy_t.reshape(out_ch, -1)
        else:
            gy_t = np.ascontiguousarray(gy.transpose(1, 0, 2, 3)).reshape(out_ch, -1)
        gW = gx = None
        if need_w:
            # computed transposed, (kh*kw*C, out_ch): the same product, but OpenBLAS runs this
            # orientation of the long-K GEMM far more steadily when the cores are shared
            gW = (cols.T @ gy_t.T).T.reshape(out_ch, kh, kw, c).transpose(0, 3, 1, 2)
            gW = np.ascontiguousarray(gW, dtype=W.dtype)
        if need_x:
            w_cols = W.transpose(1, 2, 3, 0).reshape(c * kh * kw, out_ch)  # (C*kh*kw, out_ch)
            gcols = (w_cols @ gy_t).reshape(c, kh, kw, gy.shape[0], *self.out_hw)
            gx = _col2im(gcols, self.x_shape, (kh, kw), self.stride, self.pads, self.out_hw)
        if self.has_b:
            return gx, gW, gy_t.sum(axis=1)
        return gx, gW


def conv2d(x, W, b=None, stride=1, padding=0, activation=None):
    """2-D convolution (cross-correlation, as in every DL library) of NCHW images.

    x (N, C, H, W); W (out_ch, C, kh, kw); b (out_ch,) or None; stride an int or (sh, sw);
    padding an int, a pair (rows, cols) padded on both sides, ``"valid"`` or ``"same"``
    (output ceil(H / sh) x ceil(W / sw); an odd total pad puts the extra row/column at the
    bottom/right, as TensorFlow/Keras do). Returns (N, out_ch, Ho, Wo).
    ``activation="relu"`` fuses a ReLU into the op (same result as ``F.relu(conv2d(...))``).
    """
    require_float(x, "conv2d")
    x = as_tensor(x)
    W = as_tensor(W, like=x)
    if x.ndim != 4:
        raise ValueError(f"conv2d expected x of rank 4 (N, C, H, W), got shape {x.shape}")
    if W.ndim != 4:
        raise ValueError(f"conv2d expected W of rank 4 (out_ch, in_ch, kh, kw), got shape {W.shape}")
    if x.shape[1] != W.shape[1]:
        raise ValueError(f"conv2d expected x with {W.shape[1]} channels on axis 1 (W is {W.shape}), "
                         f"got shape {x.shape}")
    if b is not None:
        b = as_tensor(b, like=x)
        if b.shape != (W.shape[0],):
            raise ValueError(f"conv2d expected b of shape ({W.shape[0]},) (one per output channel), got {b.shape}")
    stride = normalize_stride(stride, "conv2d")
    kernel = (W.shape[2], W.shape[3])
    pads = normalize_padding(padding, x.shape[2:], kernel, stride, "conv2d")
    padded = (x.shape[2] + pads[0] + pads[1], x.shape[3] + pads[2] + pads[3])
    if kernel[0] > padded[0] or kernel[1] > padded[1]:
        raise ValueError(f"conv2d kernel {kernel} is larger than the padded input {padded} "
                         f"(input {x.shape[2:]}, padding {padding!r})")
    out_hw = (conv_output_size(x.shape[2], kernel[0], stride[0], pads[0] + pads[1]),
              conv_output_size(x.shape[3], kernel[1], stride[1], pads[2] + pads[3]))
    if activation not in (None, "relu"):
        raise ValueError(f"conv2d fuses activation None or 'relu', got {activation!r}")
    fn = Conv2d(stride, pads, out_hw, relu=activation == "relu")
    return fn(x, W) if b is None else fn(x, W, b)
