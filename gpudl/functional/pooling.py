"""Pooling (Lecture II's CNN): ``max_pool2d`` and ``avg_pool2d`` on NCHW images.

Both walk the kh*kw offsets of the pooling window: for offset (a, b) the strided slice
``x[:, :, a::sh, b::sw]`` (cut to Ho x Wo) holds that element of every window at once, so
one pass is kh*kw vectorised operations on output-sized arrays, for any stride and pad.
When windows tile the image (stride == kernel, no padding: the common 2x2 / stride 2),
the gradient is written through a (N, C, Ho, kh, Wo, kw) reshape of the input gradient
with plain assignments (no zero-fill, no accumulation).

Max pooling pads with -inf (a pad never wins) and sends each window's gradient to its
first maximum, as PyTorch does; a NaN wins over numbers. In float32 and float64 it is one
compiled pass each way (``_pool_jit``, the CUDA kernels' rules) instead of the offset walk.

Average pooling counts padded zeros in the divisor by default (PyTorch's
``count_include_pad=True``): every window divides by kh*kw; with
``count_include_pad=False`` each window divides by its real cells, as TensorFlow's "SAME"
pooling does. ``padding="same"`` pads as TensorFlow/Keras do: output ceil(H / sh), the total
pad max((Ho - 1)*sh + kh - H, 0) split with the odd row/column at the bottom/right.
The CuPy path calls the launchers in ``gpudl.kernels.pooling``.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Function, as_tensor
from ._util import contiguous, on_gpu, require_float, scalar
from .conv import _int_pair, conv_output_size, normalize_kernel, normalize_padding, normalize_stride

__all__ = ["max_pool2d", "avg_pool2d"]

#: dtypes max pooling's compiled loops are built for; others (float16) take the NumPy passes
_JIT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _pool_pads(x_hw, kernel, stride, padding, op):
    """(top, bottom, left, right) from an int, a pair, four ints, 'valid' or 'same'."""
    if isinstance(padding, str):
        if padding.lower() in ("valid", "same"):  # "same" never pads more than half the kernel
            return normalize_padding(padding.lower(), x_hw, kernel, stride, op)
        raise ValueError(f"{op} expected padding a non-negative int, a pair of them, four (top, bottom, "
                         f"left, right), 'valid' or 'same', got {padding!r}")
    if (isinstance(padding, (tuple, list)) and len(padding) == 4
            and all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in padding)):
        pads = tuple(int(p) for p in padding)
    else:
        ph, pw = _int_pair(padding, op, "padding", 0, "a non-negative int")
        pads = (ph, ph, pw, pw)
    if max(pads[:2]) > kernel[0] // 2 or max(pads[2:]) > kernel[1] // 2:
        shown = (pads[0], pads[2]) if pads == (pads[0], pads[0], pads[2], pads[2]) else pads
        raise ValueError(f"{op} expected padding at most half the kernel ({kernel[0] // 2}, {kernel[1] // 2}) "
                         f"for kernel_size {kernel}, got padding {shown}")
    return pads


def _geometry(x, kernel_size, stride, padding, op):
    if x.ndim != 4:
        raise ValueError(f"{op} expected x of rank 4 (N, C, H, W), got shape {x.shape}")
    kernel = normalize_kernel(kernel_size, op)
    stride = kernel if stride is None else normalize_stride(stride, op)
    pads = _pool_pads(x.shape[2:], kernel, stride, padding, op)
    padded = (x.shape[2] + pads[0] + pads[1], x.shape[3] + pads[2] + pads[3])
    if kernel[0] > padded[0] or kernel[1] > padded[1]:
        raise ValueError(f"{op} kernel_size {kernel} is larger than the padded input {padded} "
                         f"(input shape {x.shape}, padding {padding!r})")
    out_hw = (conv_output_size(x.shape[2], kernel[0], stride[0], pads[0] + pads[1]),
              conv_output_size(x.shape[3], kernel[1], stride[1], pads[2] + pads[3]))
    return kernel, stride, pads, out_hw


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
        kh, kw = self.kernel
        if x.dtype in _JIT_DTYPES:  # one compiled pass (gpudl.functional._pool_jit)
            from ._pool_jit import max_pool_forward
            y, self._saved = max_pool_forward(x if x.flags.c_contiguous else x.copy(), self.kernel, self.stride,
                                              self.pads, self.out_hw, np.int8 if kh * kw <= 127 else np.int32)
            self._compiled = True
            return y
        self._compiled = False
        xp = backend.get_array_module(x)
        xpad = self._padded(x, -xp.inf)
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
        if self._compiled:
            from ._pool_jit import max_pool_backward
            return max_pool_backward(gy if gy.flags.c_contiguous else gy.copy(), idx, self.x_shape, self.kernel,
                                     self.stride, self.pads, self.tiles)
        xp = backend.get_array_module(gy)
        return self._scatter(self.x_shape, lambda o, out: xp.multiply(gy, idx == o, out=out), gy.dtype, xp)


class AvgPool2d(_Pool):
    def __init__(self, kernel, stride, pads, out_hw, count_include_pad=True):
        super().__init__(kernel, stride, pads, out_hw)
        # without padding every window holds kh*kw real cells: the two rules agree
        self.count_include_pad = bool(count_include_pad) or not any(pads)

    def _scale(self, dtype):
        """1 / the divisor of each window: a scalar, or (Ho, Wo) real-cell counts without pads."""
        kh, kw = self.kernel
        if self.count_include_pad:
            return scalar(1.0 / (kh * kw), dtype)
        (sh, sw), (pt, _, pl, _), (ho, wo) = self.stride, self.pads, self.out_hw
        h, w = self.x_shape[2:]

        def real(n_out, k, s, before, size):  # real cells of each window along one axis
            start = np.arange(n_out) * s - before
            return np.minimum(start + k, size) - np.maximum(start, 0)

        return (1.0 / np.outer(real(ho, kh, sh, pt, h), real(wo, kw, sw, pl, w))).astype(dtype)

    def forward(self, x):
        self.x_shape = x.shape
        if on_gpu(x):
            from ..kernels import pooling as K
            return K.avg_pool2d_forward(contiguous(x), self.kernel, self.stride, self.pads,
                                        count_include_pad=self.count_include_pad)
        xpad = self._padded(x, 0)
        offsets = self._offsets()
        _, first = next(offsets)
        y = xpad[first].copy()
        for _, sl in offsets:
            y += xpad[sl]
        y *= self._scale(y.dtype)
        return y

    def backward(self, gy):
        if on_gpu(gy):
            from ..kernels import pooling as K
            return K.avg_pool2d_backward(contiguous(gy), self.x_shape, self.kernel, self.stride, self.pads,
                                         count_include_pad=self.count_include_pad)
        xp = backend.get_array_module(gy)
        share = gy * self._scale(gy.dtype)
        return self._scatter(self.x_shape, lambda o, out: xp.copyto(out, share), gy.dtype, xp)


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Max over kh x kw windows of NCHW images.

    kernel_size and stride (default: kernel_size) each an int or a pair; padding an int, a
    pair (rows, cols) on both sides or four (top, bottom, left, right), each at most half the
    kernel (as in PyTorch), or ``"valid"`` / ``"same"`` (TensorFlow/Keras: output
    ceil(H / sh), the odd pad at the bottom/right). Pads are -inf, so a pad is never the
    maximum. Output (N, C, floor((H + top + bottom - kh) / sh) + 1, ...). The gradient goes
    to the first maximum of each window.
    """
    require_float(x, "max_pool2d")
    x = as_tensor(x)
    return MaxPool2d(*_geometry(x, kernel_size, stride, padding, "max_pool2d"))(x)


def avg_pool2d(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    """Mean over kh x kw windows of NCHW images.

    Arguments as for :func:`max_pool2d`. ``count_include_pad=True`` (PyTorch's default)
    counts padded zeros in the mean: every window divides by kh*kw. ``False`` divides each
    window by its real cells, as TensorFlow's "SAME" pooling (and so Keras's
    ``AveragePooling2D(padding="same")``) does.
    """
    require_float(x, "avg_pool2d")
    x = as_tensor(x)
    return AvgPool2d(*_geometry(x, kernel_size, stride, padding, "avg_pool2d"),
                     count_include_pad=bool(count_include_pad))(x)
