"""Losses: square error and the fused, stable softmax + cross entropy."""
from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Function, Tensor, as_tensor
from ._util import contiguous, on_gpu, raw, require_float, scalar

__all__ = ["softmax_cross_entropy", "mean_squared_error", "categorical_crossentropy",
           "check_labels"]


def check_labels(labels, n: int, num_classes: int, op: str = "softmax_cross_entropy"):
    """Validate integer labels (N,) or one-hot/probabilities (N, C); returns the raw array."""
    t = raw(labels)
    if t.ndim == 1:
        if t.dtype.kind not in "iu":
            raise TypeError(f"{op} expected integer class ids for 1-D labels, got dtype {t.dtype}")
        if t.shape[0] != n:
            raise ValueError(f"{op} expected {n} labels (one per row of the logits), got {t.shape[0]}")
        # on the device the range is not read back (a host sync per call): the softmax-CE kernel
        # flags an id outside [0, C) and gives its row a NaN loss; fit validates labels once
        if n and not backend.is_cupy_array(t):
            lo, hi = int(t.min()), int(t.max())
            if lo < 0 or hi >= num_classes:
                raise ValueError(f"{op} expected labels in [0, {num_classes - 1}], "
                                 f"got values in [{lo}, {hi}]")
    elif t.ndim == 2:
        if t.shape != (n, num_classes):
            raise ValueError(f"{op} expected one-hot labels of shape ({n}, {num_classes}), got {t.shape}")
        if t.dtype.kind not in "fiub":
            raise TypeError(f"{op} expected numeric one-hot labels, got dtype {t.dtype}")
    else:
        raise ValueError(f"{op} expected labels of shape ({n},) or ({n}, {num_classes}), got {t.shape}")
    return t


class SoftmaxCrossEntropy(Function):
    """Mean over the batch of -sum(t * log softmax(x)); gradient (softmax - t) / N."""

    def forward(self, x, t):
        n = x.shape[0]
        if on_gpu(x):
            from ..kernels import softmax_ce as K
            tt = t.astype(x.dtype if t.ndim == 2 else "int32", copy=False)
            loss, grad, flag = K.softmax_cross_entropy(contiguous(x), contiguous(tt))
            self._saved = grad
            self.nonfinite = flag  # device flag, read only when asked: no sync here
            return loss
        xp = backend.get_array_module(x)
        z = x - x.max(axis=1, keepdims=True)
        e = xp.exp(z)
        s = e.sum(axis=1, keepdims=True)
        log_s = xp.log(s)
        if t.ndim == 1:
            rows = xp.arange(n)
            picked = z[rows, t]
            loss = (log_s[:, 0] - picked).sum() / scalar(n, x.dtype)
            grad = e / s
            grad[rows, t] -= 1
        else:
            tf = t.astype(x.dtype, copy=False)
            loss = (tf * (log_s - z)).sum() / scalar(n, x.dtype)
            # d/dz of lse*sum(t) - sum(t*z): softmax * sum(t) - t (rows of t need not sum to 1)
            grad = e / s * tf.sum(axis=1, keepdims=True) - tf
        grad /= scalar(n, x.dtype)
        self._saved = grad
        return xp.asarray(loss, dtype=x.dtype)

    def backward(self, g):
        return self._saved * g, None


def softmax_cross_entropy(logits, labels):
    """Fused, stable softmax + cross entropy, mean over the batch.

    labels: integer class ids (N,) or one-hot / probabilities (N, C). Finite for logits
    of any finite magnitude (no log(0): log-softmax is computed from shifted logits).
    """
    require_float(logits, "softmax_cross_entropy")
    logits = as_tensor(logits)
    if logits.ndim != 2:
        raise ValueError(f"softmax_cross_entropy expected logits of shape (N, C), got {logits.shape}")
    if isinstance(labels, Tensor):
        labels = labels.data
    if not (isinstance(labels, np.ndarray) or backend.is_cupy_array(labels)):
        labels = np.asarray(labels)
    backend.check_same_backend([logits.data, labels], "softmax_cross_entropy")
    check_labels(labels, logits.shape[0], logits.shape[1])
    return SoftmaxCrossEntropy()(logits, Tensor._wrap(labels))


class MeanSquaredError(Function):
    def forward(self, y, t):
        d = y - t
        self._saved = d
        self.scale = scalar(2.0 / max(d.size, 1), d.dtype)
        return (d * d).sum() / scalar(max(d.size, 1), d.dtype)

    def backward(self, g):
        gy = self._saved * (self.scale * g)
        return gy, -gy


def mean_squared_error(y, t):
    """Mean of (y - t)^2 over all elements (the tutorial's square error, averaged)."""
    require_float(y, "mean_squared_error")
    y = as_tensor(y)
    t = as_tensor(t, like=y)
    if y.shape != t.shape:
        raise ValueError(f"mean_squared_error expected targets of shape {y.shape}, got {t.shape}")
    if t.dtype != y.dtype:
        t = t.astype(y.dtype) if t.requires_grad else Tensor._wrap(t.data.astype(y.dtype))
    return MeanSquaredError()(y, t)


class CategoricalCrossentropy(Function):
    """Cross entropy on probabilities (a softmax output that was not fused)."""

    def forward(self, p, t):
        xp = backend.get_array_module(p)
        eps = scalar(1e-7, p.dtype)
        pc = xp.clip(p, eps, 1 - eps)
        n = p.shape[0]
        self._saved = (pc, t, (p > eps) & (p < 1 - eps))
        return (-(t * xp.log(pc)).sum() / scalar(n, p.dtype)).astype(p.dtype)

    def backward(self, g):
        pc, t, inside = self._saved
        n = pc.shape[0]
        return -(t / pc) * inside * (g / scalar(n, pc.dtype)), None


def categorical_crossentropy(probs, labels):
    """-mean(sum(t * log p)) on probabilities, clipped to [1e-7, 1-1e-7] (Keras' rule)."""
    require_float(probs, "categorical_crossentropy")
    probs = as_tensor(probs)
    if probs.ndim != 2:
        raise ValueError(f"categorical_crossentropy expected probabilities of shape (N, C), got {probs.shape}")
    t = check_labels(labels, probs.shape[0], probs.shape[1], "categorical_crossentropy")
    xp = backend.get_array_module(probs.data)
    if t.ndim == 1:
        onehot = xp.zeros(probs.shape, dtype=probs.dtype)
        onehot[xp.arange(probs.shape[0]), t] = 1
        t = onehot
    return CategoricalCrossentropy()(probs, Tensor._wrap(t.astype(probs.dtype, copy=False)))
