"""Pooling (Lecture II's CNN): ``max_pool2d`` and ``avg_pool2d`` on NCHW images.

Both walk the kh*kw offsets of the pooling window: for offset (a, b) the strided slice
``x[:, :, a::sh, b::sw]`` (cut to Ho x Wo) holds that element of every window at once, so
one pass is kh*kw vectorised operations on output-sized arrays, for any stride and pad.
When windows tile the image (stride == kernel, no padding: the common 2x2 / stride 2),
the gradient is written through a (N, C, Ho, kh, Wo, kw) reshape of the input gradient
with plain assignments (no zero-fill, no accumulation).

Max pooling pads with -inf (a pad never wins) and sends each window's gradient to its
first maximum, as PyTorch does. Average pooling counts padded zeros in the divisor
(PyTorch's ``count_include_pad=True``): every window divides by kh*kw.
"""
from __future__ import annotations

from .. import backend
from ..autograd import Function, as_tensor
from ._util import on_gpu, require_float, scalar
from .conv import _int_pair, conv_output_size, normalize_kernel, normalize_stride

__all__ = ["max_pool2d", "avg_pool2d"]


def _geometry(x, kernel_size, stride, padding, op):
    if x.ndim != 4:
        raise ValueError(f"{op} expected x of rank 4 (N, C, H, W), got shape {x.shape}")
    kernel = normalize_kernel(kernel_size, op)
    stride = kernel if stride is None else normalize_stride(stride, op)
    ph, pw = _int_pair(padding, op, "padding", 0, "a non-negative int")
    if ph > kernel[0] // 2 or pw > kernel[1] // 2:
        raise ValueError(f"{op} expected padding at most half the kernel ({kernel[0] // 2}, {kernel[1] // 2}) "
                         f"for kernel_size {kernel}, got padding {(ph, pw)}")
    padded = (x.shape[2] + 2 * ph, x.shape[3] + 2 * pw)
    if kernel[0] > padded[0] or kernel[1] > padded[1]:
        raise ValueError(f"{op} kernel_size {kernel} is larger than the padded input {padded} "
                         f"(input shape {x.shape}, padding {(ph, pw)})")
    out_hw = (conv_output_size(x.shape[2], kernel[0], stride[0], 2 * ph),
              conv_output_size(x.shape[3], kernel[1], stride[1], 2 * pw))
    return kernel, stride, (ph, ph, pw, pw), out_hw


class _Pool(Function):
    def __init__(self, kernel, stride, pads, out_hw):
        self.kernel, self.stride, self.pads, self.out_hw = kernel, stride, pads, out_hw
        self.tiles = stride == kernel and not any(pads)

    def _padded(self, x, fill):
        pt, pb, pl, pr = self.pads
        if not (pt or pb or pl or pr):
            return x
        xp = backend.get_array_module(x)
        n, c, h, w = x.shape
        out = xp.full((n, c, h + pt + pb, w + pl + pr), fill, dtype=x.dtype)
        out[:, :, pt:pt + h, pl:pl + w] = x
        return out

    def _offsets(self):
        """(index, slice of the padded input holding that window element for every output pixel)."""
        kh, kw = self.kernel
        sh, sw = self.stride
        ho, wo = self.out_hw
        for i in range(kh):
            for j in range(kw):
                yield i * kw + j, (slice(None), slice(None),
                                   slice(i, i + sh * (ho - 1) + 1, sh), slice(j, j + sw * (wo - 1) + 1, sw))

    def _scatter(self, x_shape, piece, dtype, xp):
        """Input gradient from ``piece(o, out)``, which writes into ``out`` the gradient
        reaching window element o of every window."""
        n, c, h, w = x_shape
        kh, kw = self.kernel
        ho, wo = self.out_hw
        if self.tiles:
            g6 = xp.empty((n, c, ho, kh, wo, kw), dtype=dtype)
            for i in range(kh):
                for j in range(kw):
                    piece(i * kw + j, g6[:, :, :, i, :, j])
            g = g6.reshape(n, c, ho * kh, wo * kw)
            if (ho * kh, wo * kw) == (h, w):
                return g
            full = xp.zeros(x_shape, dtype=dtype)  # rows/columns no window covers
            full[:, :, :ho * kh, :wo * kw] = g
            return full
        pt, pb, pl, pr = self.pads
        g = xp.zeros((n, c, h + pt + pb, w + pl + pr), dtype=dtype)
        tmp = xp.empty((n, c, ho, wo), dtype=dtype)
        for o, sl in self._offsets():
            piece(o, tmp)
            g[sl] += tmp
        return g[:, :, pt:pt + h, pl:pl + w] if (pt or pb or pl or pr) else g


class MaxPool2d(_Pool):
    def forward(self, x):
        self.x_shape = x.shape
        if on_gpu(x):
            from ..kernels import pooling as K
            y, idx = K.max_pool2d_forward(x if x.flags.c_contiguous else x.copy(), self.kernel,
                                          self.stride, self.pads)
            self._saved = idx
            return y
        xp = backend.get_array_module(x)
        xpad = self._padded(x, -xp.inf)
        kh, kw = self.kernel
        offsets = self._offsets()
        _, first = next(offsets)
        y = xpad[first].copy()
        idx = xp.zeros(y.shape, dtype=xp.int8 if kh * kw <= 127 else xp.int32)
        better = xp.empty(y.shape, dtype=bool)
        for o, sl in offsets:
            v = xpad[sl]
            xp.greater(v, y, out=better)  # strict: ties keep the first maximum
            xp.maximum(y, v, out=y)
            # offsets come in increasing order, so "idx = o where better" is a max
            # (measured ~2x faster than a masked copy)
            xp.maximum(idx, better * idx.dtype.type(o), out=idx)
        self._saved = idx
        return y

    def backward(self, gy):
        idx = self._saved
        if on_gpu(gy):
            from ..kernels import pooling as K
            return K.max_pool2d_backward(gy if gy.flags.c_contiguous else gy.copy(), idx, self.x_shape,
                                         self.kernel, self.stride, self.pads)
        xp = backend.get_array_module(gy)
        return self._scatter(self.x_shape, lambda o, out: xp.multiply(gy, idx == o, out=out), gy.dtype, xp)


class AvgPool2d(_Pool):
    def forward(self, x):
        self.x_shape = x.shape
        xp = backend.get_array_module(x)
        xpad = self._padded(x, 0)
        offsets = self._offsets()
        _, first = next(offsets)
        y = xpad[first].copy()
        for _, sl in offsets:
            y += xpad[sl]
        y *= scalar(1.0 / (self.kernel[0] * self.kernel[1]), y.dtype)
        return y

    def backward(self, gy):
        xp = backend.get_array_module(gy)
        share = gy * scalar(1.0 / (self.kernel[0] * self.kernel[1]), gy.dtype)
        return self._scatter(self.x_shape, lambda o, out: xp.copyto(out, share), gy.dtype, xp)


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Max over kh x kw windows of NCHW images.

    kernel_size, stride (default: kernel_size) and padding each an int or a pair; padding
    (at most half the kernel, as in PyTorch) is -inf, so a pad is never the maximum.
    Output (N, C, floor((H + 2*ph - kh) / sh) + 1, ...). The gradient goes to the first
    maximum of each window.
    """
    require_float(x, "max_pool2d")
    x = as_tensor(x)
    return MaxPool2d(*_geometry(x, kernel_size, stride, padding, "max_pool2d"))(x)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Mean over kh x kw windows of NCHW images.

    Arguments as for :func:`max_pool2d`. Padded zeros count in the mean: every window
    divides by kh*kw (PyTorch's ``count_include_pad=True``).
    """
    require_float(x, "avg_pool2d")
    x = as_tensor(x)
    return AvgPool2d(*_geometry(x, kernel_size, stride, padding, "avg_pool2d"))(x)
