"""Lecture I's activations: sigmoid, tanh, ReLU, leaky and parametric ReLU, maxout, softmax."""
from __future__ import annotations

import math

from .. import backend
from ..autograd import Function, Tensor, as_tensor
from ._util import contiguous as _contiguous
from ._util import on_gpu, require_float, scalar

__all__ = ["sigmoid", "tanh", "relu", "leaky_relu", "prelu", "maxout", "softmax", "log_softmax"]


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


class PReLU(Function):
    """alpha: a scalar (shape () or (1,)) or one value per channel of axis 1."""

    def forward(self, x, alpha):
        xp = backend.get_array_module(x)
        self.alpha_shape = alpha.shape
        a = self._broadcast_alpha(alpha, x)
        self._saved = (x, a)
        return xp.where(x > 0, x, a * x)

    def _broadcast_alpha(self, alpha, x):
        if alpha.size == 1:
            return alpha.reshape(())
        return alpha.reshape((1, -1) + (1,) * (x.ndim - 2))

    def backward(self, g):
        x, a = self._saved
        xp = backend.get_array_module(x)
        pos = x > 0
        gx = xp.where(pos, g, a * g)
        ga_full = xp.where(pos, 0, g * x)
        if math.prod(self.alpha_shape) == 1:  # a host product: the shape never goes to the device
            ga = ga_full.sum().reshape(self.alpha_shape)
        else:
            axes = (0,) + tuple(range(2, x.ndim))
            ga = ga_full.sum(axis=axes).reshape(self.alpha_shape)
        return gx, ga


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


def relu(x):
    require_float(x, "relu")
    return ReLU()(x)


def leaky_relu(x, alpha=0.01):
    require_float(x, "leaky_relu")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
        raise TypeError(f"leaky_relu expected a number for alpha, got {type(alpha).__name__}")
    return LeakyReLU(alpha)(x)


def prelu(x, alpha):
    """Parametric ReLU: ``alpha`` a learned Tensor, a scalar or one per channel (axis 1)."""
    require_float(x, "prelu")
    x = as_tensor(x)
    alpha = as_tensor(alpha, like=x)
    if alpha.size != 1:
        if x.ndim < 2 or alpha.ndim != 1 or alpha.shape[0] != x.shape[1]:
            raise ValueError(f"prelu expected alpha of shape () or ({x.shape[1] if x.ndim > 1 else '?'},) "
                             f"(one per channel of axis 1) for input shape {x.shape}, got alpha shape {alpha.shape}")
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
