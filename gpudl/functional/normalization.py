"""Normalisation ops: batch normalisation (batch or given statistics) and layer normalisation.

Variances are biased (divide by the count, not count - 1), as Keras 3's ``ops.moments``.

Batch normalisation with batch statistics is written twice, chosen once per op: NumPy array
code (the statistics, then the normalisation, each a few passes), and on CuPy the kernels of
``gpudl.kernels.normalization``: the per-channel mean and variance in one pass over x, the
normalised, scaled and shifted output in a second, and backward in two more (the per-channel
sums of g and g * (x - mean), then the input gradient), the normalised input recomputed from
x instead of stored.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Function, Tensor, as_tensor
from ._util import contiguous, on_gpu, require_float, scalar

__all__ = ["batch_norm", "layer_norm"]


def _axes(axis, ndim, op):
    """Normalised, sorted, distinct non-negative axes from an int or a sequence of ints."""
    items = [axis] if isinstance(axis, int) and not isinstance(axis, bool) else axis
    try:
        items = list(items)
    except TypeError:
        raise ValueError(f"{op} expected an integer axis or a list of them, got {axis!r}") from None
    out = []
    for a in items:
        if isinstance(a, bool) or not isinstance(a, int) or not -ndim <= a < ndim:
            raise ValueError(f"{op} expected axes in [{-ndim}, {ndim}) for an input of rank {ndim}, got {axis!r}")
        out.append(a % ndim)
    if not out or len(set(out)) != len(out):
        raise ValueError(f"{op} expected distinct axes, got {axis!r}")
    return tuple(sorted(out))


def _param_shape(shape, param_axes):
    """Where gamma/beta/mean/var broadcast: the input's size on ``param_axes``, 1 elsewhere."""
    return tuple(n if i in param_axes else 1 for i, n in enumerate(shape))


class _Normalize(Function):
    """(x - mean) / sqrt(var + eps) * gamma + beta with mean and var of x over ``red_axes``
    (batch norm: all axes but the channel axis; layer norm: the normalised axes), gradient
    through the statistics."""

    def __init__(self, red_axes, param_axes, epsilon, has_gamma, has_beta):
        self.red_axes, self.param_axes = red_axes, param_axes
        self.epsilon, self.has_gamma, self.has_beta = epsilon, has_gamma, has_beta

    def forward(self, x, *params):
        xp = backend.get_array_module(x)
        params = list(params)
        gamma = params.pop(0) if self.has_gamma else None
        beta = params.pop(0) if self.has_beta else None
        self.pshape = _param_shape(x.shape, self.param_axes)
        mean = x.mean(axis=self.red_axes, keepdims=True)
        xc = x - mean
        var = (xc * xc).mean(axis=self.red_axes, keepdims=True)
        inv = 1 / xp.sqrt(var + scalar(self.epsilon, x.dtype))
        xhat = xc * inv
        self._saved_stats = (mean, var)  # for the caller (moving statistics); release() drops them
        y = xhat
        g_b = None
        if gamma is not None:
            g_b = gamma.reshape(self.pshape)
            y = y * g_b
        if beta is not None:
            y = y + beta.reshape(self.pshape)
        self.gamma_shape = None if gamma is None else gamma.shape
        self.beta_shape = None if beta is None else beta.shape
        self._saved = (xhat, inv, g_b)
        return y

    def _param_grad(self, a, shape):
        other = tuple(i for i in range(a.ndim) if i not in self.param_axes)
        return (a.sum(axis=other) if other else a).reshape(shape)

    def backward(self, g):
        xhat, inv, g_b = self._saved
        grads = []
        dxhat = g if g_b is None else g * g_b
        m = dxhat.mean(axis=self.red_axes, keepdims=True)
        mx = (dxhat * xhat).mean(axis=self.red_axes, keepdims=True)
        grads.append(inv * (dxhat - m - xhat * mx))
        if self.has_gamma:
            grads.append(self._param_grad(g * xhat, self.gamma_shape))
        if self.has_beta:
            grads.append(self._param_grad(g, self.beta_shape))
        return tuple(grads)


_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class _BatchNorm(_Normalize):
    """Batch normalisation with the batch's statistics over every axis but ``axis``: the
    array code of :class:`_Normalize` on NumPy, the fused kernels on CuPy."""

    def __init__(self, axis, ndim, epsilon, has_gamma, has_beta):
        red = tuple(i for i in range(ndim) if i != axis)
        super().__init__(red, (axis,), epsilon, has_gamma, has_beta)
        self.axis = axis

    def forward(self, x, *params):
        self._gpu = (on_gpu(x) and x.dtype in _KERNEL_DTYPES and x.size > 0
                     and all(p.dtype == x.dtype for p in params))
        if not self._gpu:
            return super().forward(x, *params)
        from ..kernels import normalization as K
        x = contiguous(x)
        params = list(params)
        gamma = params.pop(0) if self.has_gamma else None
        beta = params.pop(0) if self.has_beta else None
        self.gamma_shape = None if gamma is None else gamma.shape
        self.beta_shape = None if beta is None else beta.shape
        gamma = None if gamma is None else contiguous(gamma.reshape(-1))
        beta = None if beta is None else contiguous(beta.reshape(-1))
        mean, var = K.batch_norm_stats(x, self.axis)
        y = K.batch_norm_forward(x, mean, var, gamma, beta, self.epsilon, self.axis)
        self._saved_stats = (mean, var)
        self._saved = (x, mean, var, gamma)
        return y

    def backward(self, g):
        if not self._gpu:
            return super().backward(g)
        from ..kernels import normalization as K
        x, mean, var, gamma = self._saved
        g = contiguous(g)
        sum_g, sum_gx = K.batch_norm_grad_sums(g, x, mean, self.axis)
        grads = [K.batch_norm_backward(g, x, mean, var, gamma, sum_g, sum_gx, self.epsilon, self.axis)]
        if self.has_gamma:
            xp = backend.get_array_module(var)
            inv = 1 / xp.sqrt(var + scalar(self.epsilon, var.dtype))
            grads.append((sum_gx * inv).reshape(self.gamma_shape))
        if self.has_beta:
            grads.append(sum_g.reshape(self.beta_shape))
        return tuple(grads)


class _BatchNormWithStats(Function):
    """(x - mean) / sqrt(var + eps) * gamma + beta with given per-channel mean and var."""

    def __init__(self, axis, epsilon, has_gamma, has_beta):
        self.axis, self.epsilon, self.has_gamma, self.has_beta = axis, epsilon, has_gamma, has_beta

    def forward(self, x, mean, var, *params):
        xp = backend.get_array_module(x)
        params = list(params)
        gamma = params.pop(0) if self.has_gamma else None
        beta = params.pop(0) if self.has_beta else None
        ps = _param_shape(x.shape, (self.axis,))
        self.pshape, self.stat_shape = ps, mean.shape
        inv = 1 / xp.sqrt(var.reshape(ps) + scalar(self.epsilon, x.dtype))
        xc = x - mean.reshape(ps)
        xhat = xc * inv
        g_b = None if gamma is None else gamma.reshape(ps)
        y = xhat if g_b is None else xhat * g_b
        if beta is not None:
            y = y + beta.reshape(ps)
        self._saved = (xhat, inv, g_b)
        return y

    def backward(self, g):
        xhat, inv, g_b = self._saved
        other = tuple(i for i in range(g.ndim) if i != self.axis)

        def per_channel(a):
            return a.sum(axis=other).reshape(self.stat_shape)

        dxhat = g if g_b is None else g * g_b
        gx = dxhat * inv
        gmean = -per_channel(gx)
        gvar = per_channel(dxhat * xhat * inv * inv) * scalar(-0.5, g.dtype)
        grads = [gx, gmean, gvar]
        if self.has_gamma:
            grads.append(per_channel(g * xhat))
        if self.has_beta:
            grads.append(per_channel(g))
        return tuple(grads)


def _check_param(p, name, size, op):
    if p is None:
        return None
    p = as_tensor(p)
    if p.size != size:
        raise ValueError(f"{op} expected {name} with {size} elements, got shape {p.shape}")
    return p


def batch_norm(x, gamma=None, beta=None, mean=None, var=None, axis=1, epsilon=1e-3,
               return_stats=False):
    """Batch normalisation over every axis of ``x`` but ``axis`` (the channel axis: 1 for
    NCHW and for (N, F)).

    With ``mean`` and ``var`` (per-channel, shape (C,)): normalise with them (inference).
    Without them: normalise with the batch's own mean and biased variance, the gradient
    flowing through those statistics (training); ``return_stats=True`` then returns
    ``(y, batch_mean, batch_var)``, the statistics as (C,) tensors outside the graph.
    ``gamma`` / ``beta`` (shape (C,)) may be None (no scale / no offset).
    """
    x = as_tensor(x)
    require_float(x, "batch_norm")
    if x.ndim < 2:
        raise ValueError(f"batch_norm expected input of rank >= 2 (batch, channels, ...), got shape {x.shape}")
    (ax,) = _axes(axis, x.ndim, "batch_norm")
    c = x.shape[ax]
    gamma = _check_param(gamma, "gamma", c, "batch_norm")
    beta = _check_param(beta, "beta", c, "batch_norm")
    params = [p for p in (gamma, beta) if p is not None]
    if (mean is None) != (var is None):
        raise ValueError("batch_norm expected both mean and var, or neither (batch statistics)")
    if mean is not None:
        mean = _check_param(mean, "mean", c, "batch_norm")
        var = _check_param(var, "var", c, "batch_norm")
        y = _BatchNormWithStats(ax, float(epsilon), gamma is not None, beta is not None)(x, mean, var, *params)
        return (y, mean, var) if return_stats else y
    fn = _BatchNorm(ax, x.ndim, float(epsilon), gamma is not None, beta is not None)
    y = fn(x, *params)
    if return_stats:
        mu, v = fn._saved_stats
        return y, Tensor._wrap(mu.reshape(c)), Tensor._wrap(v.reshape(c))
    return y


def layer_norm(x, gamma=None, beta=None, axis=-1, epsilon=1e-3):
    """Layer normalisation over ``axis`` (an int or a list of axes) of each sample; ``gamma`` /
    ``beta`` have the input's sizes on those axes (or None)."""
    x = as_tensor(x)
    require_float(x, "layer_norm")
    axes = _axes(axis, x.ndim, "layer_norm")
    size = 1
    for a in axes:
        size *= x.shape[a]
    gamma = _check_param(gamma, "gamma", size, "layer_norm")
    beta = _check_param(beta, "beta", size, "layer_norm")
    params = [p for p in (gamma, beta) if p is not None]
    return _Normalize(axes, axes, float(epsilon), gamma is not None, beta is not None)(x, *params)
