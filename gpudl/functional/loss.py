"""Losses as ops: cross entropies (fused with softmax or sigmoid, or on probabilities) and the
pointwise regression and margin losses, each a Function with forward/backward on raw arrays.

Every op takes ``(prediction, target)`` (PyTorch's order; the Keras-style loss objects of
:mod:`gpudl.losses` take ``(y_true, y_pred)``) and ``reduction=``:

- ``"mean"`` (default): the mean over every element (pointwise ops) or every row (cross entropies);
- ``"sum"``: their sum;
- ``"none"``: the unreduced losses, one per element (pointwise ops, the shape of the prediction)
  or one per row (cross entropies, the prediction's shape without its class axis).

Cross entropies take outputs (N, C) or (N, T, ..., C) (many-to-many: flattened to rows of C and
back) with labels as integer class ids of the leading shape or dense targets of the full shape.
Probabilities are clipped to [1e-7, 1 - 1e-7] as Keras does (``EPSILON``).
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Function, Tensor, as_tensor, unbroadcast
from ._util import contiguous, on_gpu, raw, require_float, scalar

__all__ = ["softmax_cross_entropy", "mean_squared_error", "categorical_crossentropy",
           "binary_cross_entropy", "sigmoid_binary_cross_entropy", "mean_absolute_error",
           "huber_loss", "hinge", "kl_divergence", "weighted_reduce", "check_labels",
           "EPSILON", "REDUCTIONS"]

#: Keras' ``backend.epsilon()``: the clip applied to probabilities
EPSILON = 1e-7
REDUCTIONS = ("mean", "sum", "none")


def _reduction(reduction, op):
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op} expected reduction in {', '.join(map(repr, REDUCTIONS))}, got {reduction!r}")
    return reduction


def _array0(s):
    """NumPy reductions give scalars; keep every loss a 0-d array (CuPy's already are)."""
    return np.asarray(s) if isinstance(s, np.generic) else s


def _reduce(values, reduction, count):
    """Forward of a reduction over ``count`` terms (elements or rows)."""
    if reduction == "none":
        return values
    s = values.sum()
    if reduction == "mean":
        s = s / scalar(max(count, 1), values.dtype)
    return _array0(s)


def _reduce_grad(g, reduction, count, trailing=0):
    """The upstream gradient of a reduction, shaped to multiply the per-term gradient
    (``trailing`` extra axes for per-row losses whose rows have C columns)."""
    if reduction == "mean":
        return g / scalar(max(count, 1), g.dtype)
    if reduction == "none" and trailing:
        return g.reshape(g.shape + (1,) * trailing)
    return g


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


def _label_array(labels):
    if isinstance(labels, Tensor):
        return labels.data
    if isinstance(labels, np.ndarray) or backend.is_cupy_array(labels):
        return labels
    return np.asarray(labels)


def _rows(x: Tensor, labels, op):
    """(x as rows (M, C), labels as (M,) or (M, C), the leading shape) for outputs (N, ..., C)."""
    if x.ndim < 2:
        raise ValueError(f"{op} expected {'logits' if 'softmax' in op else 'probabilities'} "
                         f"of shape (N, C), got {x.shape}")
    backend.check_same_backend([x.data, labels], op)
    if x.ndim == 2:
        return x, labels, x.shape[:1]
    lead, c = x.shape[:-1], x.shape[-1]
    if tuple(labels.shape) == lead:
        labels = labels.reshape(-1)
    elif tuple(labels.shape) == x.shape:
        labels = labels.reshape(-1, c)
    else:
        raise ValueError(f"{op} expected labels of shape {lead} (class ids) or {x.shape} "
                         f"(one-hot), got {tuple(labels.shape)}")
    return x.reshape(-1, c), labels, lead


def _unrows(loss: Tensor, lead):
    return loss if loss.shape == tuple(lead) else loss.reshape(tuple(lead))


class Scale(Function):
    """``x * factor`` for a Python number: no device scalar is made for it."""

    def __init__(self, factor):
        self.factor = factor

    def forward(self, x):
        return _array0(x * scalar(self.factor, x.dtype))

    def backward(self, g):
        return g * scalar(self.factor, g.dtype)


# ---- softmax + cross entropy ---------------------------------------------------------------

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


class SoftmaxCrossEntropyRows(Function):
    """One loss per row, -sum(t * log softmax(x)); gradient g_row * (softmax * sum(t) - t).

    The unreduced form (for per-sample weights and masks); CuPy array ops on the GPU, since
    the fused kernel returns the mean only.
    """

    def forward(self, x, t):
        xp = backend.get_array_module(x)
        z = x - x.max(axis=1, keepdims=True)
        e = xp.exp(z)
        s = e.sum(axis=1, keepdims=True)
        log_s = xp.log(s)
        p = e / s
        if t.ndim == 1:
            rows = xp.arange(x.shape[0])
            loss = log_s[:, 0] - z[rows, t]
            self._saved = (p, t, None)
        else:
            tf = t.astype(x.dtype, copy=False)
            loss = (tf * (log_s - z)).sum(axis=1)
            self._saved = (p, tf, tf.sum(axis=1, keepdims=True))
        return loss

    def backward(self, g):
        p, t, tsum = self._saved
        if tsum is None:
            xp = backend.get_array_module(p)
            grad = p.copy()
            grad[xp.arange(p.shape[0]), t] -= 1
        else:
            grad = p * tsum - t
        return grad * g[:, None], None


def softmax_cross_entropy(logits, labels, *, reduction="mean"):
    """Fused, stable softmax + cross entropy, mean over the batch.

    labels: integer class ids (N,) or one-hot / probabilities (N, C). Finite for logits
    of any finite magnitude (no log(0): log-softmax is computed from shifted logits).
    Logits (N, T, ..., C) take labels (N, T, ...) or (N, T, ..., C); the mean is over every
    row. ``reduction="none"`` gives one loss per row (the logits' shape without C), ``"sum"``
    their sum; the mean keeps the fused kernel on the GPU.
    """
    op = "softmax_cross_entropy"
    _reduction(reduction, op)
    require_float(logits, op)
    logits = as_tensor(logits)
    x, t, lead = _rows(logits, _label_array(labels), op)
    check_labels(t, x.shape[0], x.shape[1])
    if reduction == "none":
        return _unrows(SoftmaxCrossEntropyRows()(x, Tensor._wrap(t)), lead)
    loss = SoftmaxCrossEntropy()(x, Tensor._wrap(t))
    return Scale(x.shape[0])(loss) if reduction == "sum" else loss


# ---- cross entropy on probabilities ---------------------------------------------------------

class CategoricalCrossentropy(Function):
    """Cross entropy on probabilities (a softmax output that was not fused), per row
    -sum(t * log clip(p / sum(p))): rows are renormalised first, then clipped (Keras' rule)."""

    def __init__(self, reduction="mean"):
        self.reduction = reduction

    def forward(self, p, t):
        xp = backend.get_array_module(p)
        eps, one = scalar(EPSILON, p.dtype), scalar(1, p.dtype)
        s = p.sum(axis=1, keepdims=True)
        q = p / s
        qc = xp.clip(q, eps, one - eps)
        self.n = p.shape[0]
        self._saved = (q, qc, s, t, (q >= eps) & (q <= one - eps))
        return _reduce((t * -xp.log(qc)).sum(axis=1), self.reduction, self.n)

    def backward(self, g):
        q, qc, s, t, inside = self._saved
        a = -(t / qc) * inside  # d loss / d q
        # q = p / sum(p): d q_j / d p_k = (delta_jk - q_j) / s
        gp = (a - (a * q).sum(axis=1, keepdims=True)) / s
        return gp * _reduce_grad(g, self.reduction, self.n, trailing=1), None


def categorical_crossentropy(probs, labels, *, reduction="mean"):
    """-mean(sum(t * log p)) on probabilities: each row renormalised to sum 1, then clipped to
    [1e-7, 1-1e-7] (Keras' rule). Labels: integer ids (treated as one-hot) or dense targets;
    outputs (N, T, ..., C) as for :func:`softmax_cross_entropy`."""
    op = "categorical_crossentropy"
    _reduction(reduction, op)
    require_float(probs, op)
    probs = as_tensor(probs)
    p, t, lead = _rows(probs, _label_array(labels), op)
    t = check_labels(t, p.shape[0], p.shape[1], op)
    if t.ndim == 1:
        xp = backend.get_array_module(p.data)
        onehot = xp.zeros(p.shape, dtype=p.dtype)
        onehot[xp.arange(p.shape[0]), t] = 1
        t = onehot
    loss = CategoricalCrossentropy(reduction)(p, Tensor._wrap(t.astype(p.dtype, copy=False)))
    return _unrows(loss, lead) if reduction == "none" else loss


# ---- pointwise losses ------------------------------------------------------------------------

class _Pointwise(Function):
    """An elementwise loss l(y, t), reduced. Subclasses define ``_terms(y, t)`` (the losses,
    saving what the gradients need) and ``_grads(want_t)`` -> (dl/dy, dl/dt or None)."""

    def __init__(self, reduction="mean"):
        self.reduction = reduction

    def forward(self, y, t):
        values = self._terms(y, t)
        self.n = values.size
        return _reduce(values, self.reduction, self.n)

    def backward(self, g):
        g = _reduce_grad(g, self.reduction, self.n)
        gy, gt = self._grads(self.needs_grad(1))
        return gy * g, None if gt is None else gt * g


class MeanSquaredError(_Pointwise):
    def _terms(self, y, t):
        d = y - t
        self._saved = d
        return d * d

    def _grads(self, want_t):
        gy = self._saved * scalar(2, self._saved.dtype)
        return gy, -gy if want_t else None


class MeanAbsoluteError(_Pointwise):
    def _terms(self, y, t):
        xp = backend.get_array_module(y)
        d = y - t
        self._saved = xp.sign(d)
        return xp.abs(d)

    def _grads(self, want_t):
        return self._saved, -self._saved if want_t else None


class Huber(_Pointwise):
    def __init__(self, delta=1.0, reduction="mean"):
        super().__init__(reduction)
        self.delta = delta

    def _terms(self, y, t):
        xp = backend.get_array_module(y)
        d = y - t
        a = xp.abs(d)
        delta, half = scalar(self.delta, y.dtype), scalar(0.5, y.dtype)
        small = a <= delta
        self._saved = xp.where(small, d, delta * xp.sign(d))
        return xp.where(small, half * d * d, delta * a - half * delta * delta)

    def _grads(self, want_t):
        return self._saved, -self._saved if want_t else None


class Hinge(_Pointwise):
    def _terms(self, y, t):
        xp = backend.get_array_module(y)
        m = scalar(1, y.dtype) - t * y
        active = (m > 0).astype(y.dtype)
        self._saved = (y, t, active)
        return xp.maximum(m, 0)

    def _grads(self, want_t):
        y, t, active = self._saved
        return -t * active, -y * active if want_t else None


class KLDivergence(_Pointwise):
    def _terms(self, p, t):
        xp = backend.get_array_module(p)
        eps, one = scalar(EPSILON, p.dtype), scalar(1, p.dtype)
        pc, tc = xp.clip(p, eps, one), xp.clip(t, eps, one)
        log_ratio = xp.log(tc / pc)
        self._saved = (pc, tc, log_ratio, (p >= eps) & (p <= one), (t >= eps) & (t <= one))
        return tc * log_ratio

    def _grads(self, want_t):
        pc, tc, log_ratio, inside_p, inside_t = self._saved
        gp = -(tc / pc) * inside_p
        return gp, (log_ratio + scalar(1, pc.dtype)) * inside_t if want_t else None


class BinaryCrossEntropy(_Pointwise):
    """-(t log p + (1 - t) log(1 - p)) with p clipped to [1e-7, 1 - 1e-7]."""

    def _terms(self, p, t):
        xp = backend.get_array_module(p)
        eps, one = scalar(EPSILON, p.dtype), scalar(1, p.dtype)
        pc = xp.clip(p, eps, one - eps)
        self._saved = (pc, t, (p >= eps) & (p <= one - eps))
        return -(t * xp.log(pc) + (one - t) * xp.log1p(-pc))

    def _grads(self, want_t):
        xp = backend.get_array_module(self._saved[0])
        pc, t, inside = self._saved
        one = scalar(1, pc.dtype)
        gp = ((one - t) / (one - pc) - t / pc) * inside
        return gp, xp.log1p(-pc) - xp.log(pc) if want_t else None


class SigmoidBinaryCrossEntropy(_Pointwise):
    """BCE of sigmoid(z), fused: max(z, 0) - z t + log1p(exp(-|z|)); gradient sigmoid(z) - t.
    One exp per element and no overflow for any finite z."""

    def _terms(self, z, t):
        xp = backend.get_array_module(z)
        one = scalar(1, z.dtype)
        e = xp.exp(-xp.abs(z))
        self._saved = (xp.where(z >= 0, one, e) / (one + e), t, z)
        return xp.maximum(z, 0) - z * t + xp.log1p(e)

    def _grads(self, want_t):
        sig, t, z = self._saved
        return sig - t, -z if want_t else None


def _pointwise(cls, op, y, t, reduction, **kw):
    _reduction(reduction, op)
    require_float(y, op)
    y = as_tensor(y)
    t = as_tensor(t, like=y)
    if y.shape != t.shape:
        raise ValueError(f"{op} expected targets of shape {y.shape}, got {t.shape}")
    if t.dtype.kind not in "fiub":
        raise TypeError(f"{op} expected numeric targets, got dtype {t.dtype}")
    if t.dtype != y.dtype:
        t = t.astype(y.dtype) if t.requires_grad else Tensor._wrap(t.data.astype(y.dtype))
    return cls(reduction=reduction, **kw)(y, t)


def mean_squared_error(y, t, *, reduction="mean"):
    """Mean of (y - t)^2 over all elements (the tutorial's square error, averaged)."""
    return _pointwise(MeanSquaredError, "mean_squared_error", y, t, reduction)


def mean_absolute_error(y, t, *, reduction="mean"):
    """Mean of |y - t| over all elements."""
    return _pointwise(MeanAbsoluteError, "mean_absolute_error", y, t, reduction)


def huber_loss(y, t, delta=1.0, *, reduction="mean"):
    """0.5 d^2 where |d| <= delta, else delta |d| - 0.5 delta^2 (d = y - t), Keras' Huber."""
    if not delta > 0:
        raise ValueError(f"huber_loss expected delta > 0, got {delta!r}")
    return _pointwise(Huber, "huber_loss", y, t, reduction, delta=float(delta))


def hinge(y, t, *, reduction="mean"):
    """max(1 - t y, 0) for targets t in {-1, 1} (gpudl.losses.Hinge also converts 0/1 labels)."""
    return _pointwise(Hinge, "hinge", y, t, reduction)


def kl_divergence(p, t, *, reduction="mean"):
    """t log(t / p), both clipped to [1e-7, 1] (Keras' KLDivergence before its sum over classes)."""
    return _pointwise(KLDivergence, "kl_divergence", p, t, reduction)


def binary_cross_entropy(p, t, *, reduction="mean"):
    """Binary cross entropy on probabilities p, clipped to [1e-7, 1 - 1e-7] as Keras does.

    For a sigmoid output prefer :func:`sigmoid_binary_cross_entropy` on its logits (exact for
    any logit, no clip)."""
    return _pointwise(BinaryCrossEntropy, "binary_cross_entropy", p, t, reduction)


def sigmoid_binary_cross_entropy(logits, t, *, reduction="mean"):
    """Fused sigmoid + binary cross entropy on logits: max(z,0) - z t + log1p(exp(-|z|)),
    gradient sigmoid(z) - t; finite for logits of +-1e4 (and any finite value)."""
    return _pointwise(SigmoidBinaryCrossEntropy, "sigmoid_binary_cross_entropy", logits, t, reduction)


# ---- weighting and reduction (the loss objects' last step) ------------------------------------

class WeightedReduce(Function):
    """values * weights, then summed ("sum"), summed and divided ("mean") or kept ("none").

    ``weights`` and ``divisor`` are raw arrays or scalars without gradient; ``divisor`` None
    means the number of weighted values, and a zero divisor gives 0 (Keras' divide_no_nan).
    A scalar result of weighting (or an empty one) passes through unreduced, as in Keras.
    """

    def __init__(self, weights=None, reduction="mean", divisor=None):
        self.w, self.reduction, self.divisor = weights, reduction, divisor

    def forward(self, v):
        self.v_shape = v.shape
        vw = v if self.w is None else v * self.w
        self.out_shape = vw.shape
        self.passthrough = self.reduction == "none" or vw.shape in ((), (0,))
        if self.passthrough:
            return _array0(vw)
        s = _array0(vw.sum())
        self.inv = None
        if self.reduction == "mean":
            d = self.divisor
            if d is None:
                self.inv = scalar(1.0 / max(vw.size, 1), v.dtype)
            else:
                xp = backend.get_array_module(v, d)
                d = xp.asarray(d, dtype=v.dtype) if not isinstance(d, (int, float)) else scalar(d, v.dtype)
                zero = d == 0
                self.inv = xp.where(zero, 0, 1 / xp.where(zero, 1, d)).astype(v.dtype)
            s = _array0(s * self.inv)
        return s

    def backward(self, g):
        xp = backend.get_array_module(g)
        if not self.passthrough:
            if self.inv is not None:
                g = g * self.inv
            g = xp.broadcast_to(g, self.out_shape)
        if self.w is not None:
            g = g * self.w
        return unbroadcast(g, self.v_shape)


def weighted_reduce(values, weights=None, reduction="mean", divisor=None):
    """Reduce per-sample losses ``values`` (a Tensor) weighted by ``weights`` (an array
    broadcastable to them, no gradient): "mean" divides the weighted sum by ``divisor``
    (default: the number of weighted values), "sum" sums, "none" returns them weighted."""
    _reduction(reduction, "weighted_reduce")
    return WeightedReduce(raw(weights), reduction, raw(divisor))(as_tensor(values))
