"""Lecture I's activations: sigmoid, tanh, ReLU, leaky and parametric ReLU, maxout, softmax."""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import backend
from ..autograd import Function, Tensor, as_tensor, unbroadcast
from ._util import contiguous as _contiguous
from ._util import on_gpu, require_float, scalar

__all__ = ["sigmoid", "tanh", "relu", "leaky_relu", "prelu", "maxout", "softmax", "log_softmax"]


def _number(op, arg, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{op} expected a number for {arg}, got {v!r}")
    return float(v)


class Sigmoid(Function):
    def forward(self, x):
        xp = backend.get_array_module(x)
        half = scalar(0.5, x.dtype)
        y = half * (xp.tanh(half * x) + 1)  # stable for any |x|, no overflow in exp
        self._saved = y
        return y

    def backward(self, g):
        y = self._saved
        return g * y * (1 - y)


class Tanh(Function):
    def forward(self, x):
        xp = backend.get_array_module(x)
        self._saved = xp.tanh(x)
        return self._saved

    def backward(self, g):
        y = self._saved
        return g * (1 - y * y)


class ReLU(Function):
    def forward(self, x):
        if on_gpu(x):
            from ..kernels import activation as K
            y = K.relu_forward(_contiguous(x))
        else:
            xp = backend.get_array_module(x)
            y = xp.maximum(x, 0)
        self._saved = y
        return y

    def backward(self, g):
        y = self._saved
        if on_gpu(y):
            from ..kernels import activation as K
            return K.relu_backward(y, _contiguous(g))
        return g * (y > 0)


class LeakyReLU(Function):
    def __init__(self, alpha):
        self.alpha = float(alpha)

    def forward(self, x):
        if on_gpu(x):
            from ..kernels import activation as K
            x = _contiguous(x)
            self._saved = x
            return K.leaky_relu_forward(x, self.alpha)
        self._saved = x
        xp = backend.get_array_module(x)
        return xp.where(x > 0, x, x * scalar(self.alpha, x.dtype))

    def backward(self, g):
        x = self._saved
        if on_gpu(x):
            from ..kernels import activation as K
            return K.leaky_relu_backward(x, _contiguous(g), self.alpha)
        xp = backend.get_array_module(x)
        return xp.where(x > 0, g, g * scalar(self.alpha, g.dtype))


class GeneralReLU(Function):
    """Keras' general ReLU: ``max_value`` where x >= max_value, x where threshold <= x <
    max_value, ``negative_slope * (x - threshold)`` below the threshold (max_value None: no
    cap). The derivative is 0, 1 and negative_slope on those three pieces.

    Written twice: NumPy in place (one temporary), and CuPy's elementwise array code; the
    backward recomputes the pieces from the saved input.
    """

    def __init__(self, negative_slope, max_value, threshold):
        self.negative_slope, self.max_value, self.threshold = negative_slope, max_value, threshold

    def forward(self, x):
        self._saved = x
        return self._forward_gpu(x) if on_gpu(x) else self._forward_cpu(x)

    def backward(self, g):
        x = self._saved
        return self._backward_gpu(x, g) if on_gpu(x) else self._backward_cpu(x, g)

    def _consts(self, dtype):
        top = None if self.max_value is None else scalar(self.max_value, dtype)
        return scalar(self.negative_slope, dtype), top, scalar(self.threshold, dtype)

    def _forward_cpu(self, x):
        slope, top, thr = self._consts(x.dtype)
        y = x - thr
        y *= slope
        np.copyto(y, x, where=x >= thr)
        if top is not None:
            np.copyto(y, top, where=x >= top)
        return y

    def _backward_cpu(self, x, g):
        slope, top, thr = self._consts(g.dtype)
        gx = g * slope
        np.copyto(gx, g, where=x >= thr)
        if top is not None:
            gx[x >= top] = 0
        return gx

    def _forward_gpu(self, x):
        xp = backend.get_array_module(x)
        slope, top, thr = self._consts(x.dtype)
        y = xp.where(x >= thr, x, (x - thr) * slope)
        return y if top is None else xp.where(x >= top, top, y)

    def _backward_gpu(self, x, g):
        xp = backend.get_array_module(x)
        slope, top, thr = self._consts(g.dtype)
        d = xp.where(x >= thr, scalar(1, g.dtype), slope)
        if top is not None:
            d = xp.where(x >= top, scalar(0, g.dtype), d)
        return g * d


class PReLU(Function):
    """alpha: a scalar (shape () or (1,)), one value per channel of axis 1 (PyTorch's
    ``num_parameters``), or any shape that broadcasts against x.shape[1:] (Keras' alpha with
    ``shared_axes``); its gradient is summed over the axes it is broadcast along."""

    def forward(self, x, alpha):
        xp = backend.get_array_module(x)
        self.alpha_shape = alpha.shape
        a = self._broadcast_alpha(alpha, x)
        self._saved = (x, a)
        return xp.where(x > 0, x, a * x)

    def _broadcast_alpha(self, alpha, x):
        return alpha.reshape(alpha_view_shape(alpha.shape, x.shape))

    def backward(self, g):
        x, a = self._saved
        xp = backend.get_array_module(x)
        pos = x > 0
        gx = xp.where(pos, g, a * g)
        ga = None
        if self.needs_grad(1):
            ga_full = xp.where(pos, 0, g * x)
            if math.prod(self.alpha_shape) == 1:  # a host product: the shape never goes to the device
                ga = ga_full.sum().reshape(self.alpha_shape)
            else:
                ga = unbroadcast(ga_full, a.shape).reshape(self.alpha_shape)
        return gx, ga


def alpha_view_shape(alpha_shape, x_shape):
    """The shape PReLU views alpha in against an input of ``x_shape``: () for one value,
    (1, C, 1, ...) for one per channel of axis 1, else alpha's shape right-aligned under
    x.shape[1:] (NumPy's broadcast) behind a batch axis of 1. None when it does not broadcast.
    """
    alpha_shape, x_shape = tuple(alpha_shape), tuple(x_shape)
    if math.prod(alpha_shape) == 1 and len(alpha_shape) <= max(1, len(x_shape) - 1):
        return ()
    if len(x_shape) < 2:
        return None
    if len(alpha_shape) == 1 and alpha_shape[0] == x_shape[1]:
        return (1, alpha_shape[0]) + (1,) * (len(x_shape) - 2)
    inner = x_shape[1:]
    if len(alpha_shape) > len(inner):
        return None
    for a, n in zip(alpha_shape[::-1], inner[::-1]):
        if a != 1 and a != n:
            return None
    return (1,) * (len(x_shape) - len(alpha_shape)) + alpha_shape


class Maxout(Function):
    def __init__(self, pieces):
        self.pieces = pieces

    def forward(self, x):
        k = self.pieces
        n, c = x.shape[0], x.shape[1]
        self.x_shape = x.shape
        if on_gpu(x):
            from ..kernels import maxout as K
            y, idx = K.maxout_forward(_contiguous(x), k)
            self._saved = idx
            return y
        xp = backend.get_array_module(x)
        grouped = x.reshape((n, c // k, k) + x.shape[2:])
        # a chain of elementwise maxima over the k strided pieces: ~10x faster than a
        # reduction over a short axis; the argmax is found again only in backward
        y = grouped[:, :, 0].copy()
        for j in range(1, k):
            xp.maximum(y, grouped[:, :, j], out=y)
        self._saved = (grouped, y)
        return y

    def backward(self, g):
        k = self.pieces
        if on_gpu(g):
            from ..kernels import maxout as K
            return K.maxout_backward(_contiguous(g), self._saved, k)
        xp = backend.get_array_module(g)
        grouped, y = self._saved
        gx = xp.zeros(grouped.shape, dtype=g.dtype)
        taken = xp.zeros(y.shape, dtype=bool)
        for j in range(k):  # the first piece equal to the max takes the gradient (ties: first wins)
            hit = (grouped[:, :, j] == y) & ~taken
            gx[:, :, j] = g * hit
            taken |= hit
        return gx.reshape(self.x_shape)


class Softmax(Function):
    def __init__(self, axis=-1):
        self.axis = axis

    def forward(self, x):
        xp = backend.get_array_module(x)
        z = x - x.max(axis=self.axis, keepdims=True)
        e = xp.exp(z)
        y = e / e.sum(axis=self.axis, keepdims=True)
        self._saved = y
        return y

    def backward(self, g):
        y = self._saved
        return y * (g - (g * y).sum(axis=self.axis, keepdims=True))


class LogSoftmax(Function):
    def __init__(self, axis=-1):
        self.axis = axis

    def forward(self, x):
        xp = backend.get_array_module(x)
        z = x - x.max(axis=self.axis, keepdims=True)
        y = z - xp.log(xp.exp(z).sum(axis=self.axis, keepdims=True))
        self._saved = y
        return y

    def backward(self, g):
        xp = backend.get_array_module(g)
        return g - xp.exp(self._saved) * g.sum(axis=self.axis, keepdims=True)


def sigmoid(x):
    require_float(x, "sigmoid")
    return Sigmoid()(x)


def tanh(x):
    require_float(x, "tanh")
    return Tanh()(x)


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """max(x, 0); with Keras' arguments: ``max_value`` where x >= max_value, x where
    threshold <= x < max_value, ``negative_slope * (x - threshold)`` below the threshold.

    The defaults take the plain ReLU (its fused kernel on CuPy); a slope alone with no cap
    and no threshold is the leaky ReLU's op (its kernel); anything else one op of its own.
    """
    require_float(x, "relu")
    slope = _number("relu", "negative_slope", negative_slope)
    thr = _number("relu", "threshold", threshold)
    top = None if max_value is None else _number("relu", "max_value", max_value)
    if slope < 0:
        raise ValueError(f"relu expected a non-negative negative_slope, got {negative_slope!r}")
    if top is not None and top < 0:
        raise ValueError(f"relu expected max_value=None or a non-negative number, got {max_value!r}")
    if top is None and thr == 0.0:
        if slope == 0.0:
            return ReLU()(x)
        return LeakyReLU(slope)(x)  # x if x > 0 else slope * x: the same function
    return GeneralReLU(slope, top, thr)(x)


def leaky_relu(x, alpha=0.01):
    require_float(x, "leaky_relu")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
        raise TypeError(f"leaky_relu expected a number for alpha, got {type(alpha).__name__}")
    return LeakyReLU(alpha)(x)


def prelu(x, alpha):
    """Parametric ReLU: ``x`` where x > 0, else ``alpha * x``. ``alpha`` a learned Tensor: a
    scalar, one per channel of axis 1 (shape (C,), PyTorch's convention, which wins when C is
    also the size of the last axis), or any shape that broadcasts against x.shape[1:]
    (Keras' alpha, e.g. (C, 1, 1) on NCHW with the slope shared over the image)."""
    require_float(x, "prelu")
    x = as_tensor(x)
    alpha = as_tensor(alpha, like=x)
    if alpha_view_shape(alpha.shape, x.shape) is None:
        c = x.shape[1] if x.ndim > 1 else "?"
        raise ValueError(f"prelu expected alpha of shape () or ({c},) (one per channel of axis 1), or a shape "
                         f"that broadcasts against the input's shape without the batch axis "
                         f"{tuple(x.shape[1:])}, for input shape {x.shape}, got alpha shape {alpha.shape}")
    return PReLU()(x, alpha)


def maxout(x, pieces):
    """Max over groups of ``pieces`` consecutive channels of axis 1: (N, C*k, ...) -> (N, C, ...)."""
    require_float(x, "maxout")
    if isinstance(pieces, bool) or not isinstance(pieces, int) or pieces < 1:
        raise ValueError(f"maxout expected a positive integer number of pieces, got {pieces!r}")
    shape = x.shape
    if len(shape) < 2:
        raise ValueError(f"maxout expected input of rank >= 2 (N, C*pieces, ...), got shape {tuple(shape)}")
    if shape[1] % pieces:
        raise ValueError(f"maxout expected axis 1 divisible by pieces={pieces}, got shape {tuple(shape)}")
    return Maxout(pieces)(x)


def softmax(x, axis=-1):
    require_float(x, "softmax")
    return Softmax(axis)(x)


def log_softmax(x, axis=-1):
    require_float(x, "log_softmax")
    return LogSoftmax(axis)(x)
