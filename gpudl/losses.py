"""Loss objects, called Keras-style: ``loss(y_true, y_pred, sample_weight=None)`` -> a Tensor.

Each loss computes per-sample values (Keras' ``call``: one value per position of the
prediction's shape without its last axis, so (N, T) for outputs (N, T, C)), weights them and
reduces them with ``reduction=``, in Keras 3's meanings:

- ``"sum_over_batch_size"`` (default; ``"mean"`` is the same): the sum of the weighted
  per-sample values divided by their number (N, or N*T many-to-many);
- ``"sum"``: their sum; ``"mean_with_sample_weight"``: their sum over the sum of the weights;
- ``"none"`` (or ``None``): the weighted per-sample values themselves.

``sample_weight`` is a scalar or an array of the per-sample shape or a leading part of it
((N,) weights every step of (N, T) losses alike; Keras would reject that shape). Without
weights the usual reductions take one fused op (no per-sample tensor is made).

Fused-path protocol (how a trainer swaps a final softmax or sigmoid for a fused loss):

``loss.logits_activation``
    ``"softmax"`` (categorical and sparse categorical cross entropy), ``"sigmoid"`` (binary
    cross entropy) or ``None``: the activation whose *input* the logits variant takes.
``loss.logits_variant()``
    The same loss (reduction, label smoothing, ignore_class, name) with ``from_logits=True``,
    or ``None`` when there is none (the loss already takes logits, or it is not a cross
    entropy on probabilities).

A trainer whose model ends in that activation (over the last axis) runs the model up to it
and calls ``variant(y_true, logits, sample_weight)``: the same value as ``loss(y_true,
probabilities, sample_weight)`` (without the 1e-7 clip) and no log(0)::

    variant = loss.logits_variant()
    if variant is not None and last_activation == loss.logits_activation:
        logits = model.forward(x, logits=True)
        value = variant(y, logits, sample_weight)

:func:`get` resolves strings, dicts from :func:`serialize`, loss objects, loss classes and
callables ``(y_true, y_pred) -> per-sample values`` (wrapped in a LossFunctionWrapper).
:func:`serialize` gives back the string a loss was made from, else ``{"class_name",
"config"}``; ``get(serialize(loss))`` rebuilds it.
"""
from __future__ import annotations

import inspect
import numbers

import numpy as np

from . import backend
from .autograd import Tensor, no_grad
from .functional import loss as FL
from .functional._util import scalar

__all__ = [
    "Loss", "LossFunctionWrapper", "MeanSquaredError", "MeanAbsoluteError", "Huber",
    "BinaryCrossentropy", "CategoricalCrossentropy", "SparseCategoricalCrossentropy",
    "KLDivergence", "Hinge", "get", "serialize", "deserialize", "reduce_weighted_values",
    "mean_squared_error", "mse", "mean_absolute_error", "mae", "huber", "binary_crossentropy",
    "categorical_crossentropy", "sparse_categorical_crossentropy", "kl_divergence", "kld", "hinge",
    "REDUCTIONS",
]

REDUCTIONS = ("sum_over_batch_size", "sum", "none", "mean", "mean_with_sample_weight")


def standardize_reduction(reduction):
    if reduction is None:
        return "none"
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}: expected one of "
                         f"{', '.join(map(repr, REDUCTIONS))} or None")
    return reduction


# ---- inputs --------------------------------------------------------------------------------

def _is_array(x) -> bool:
    return isinstance(x, np.ndarray) or backend.is_cupy_array(x)


def _as_pred(y_pred, where) -> Tensor:
    """y_pred as a Tensor on its own device (a raw array is wrapped, never moved)."""
    if isinstance(y_pred, Tensor):
        t = y_pred
    elif _is_array(y_pred):
        t = Tensor._wrap(y_pred)
    else:
        t = Tensor(y_pred)
    if t.dtype.kind != "f":
        raise TypeError(f"{where} expected floating-point y_pred (float32 or float64), got dtype {t.dtype}")
    return t


def _as_array_like(x, y_pred: Tensor, what, where):
    """A raw array on y_pred's backend: Tensors are unwrapped, lists and numbers land there;
    an array of the other backend is refused (TypeError naming both)."""
    if isinstance(x, Tensor):
        x = x.data
    if not _is_array(x):
        x = np.asarray(x)
        if backend.is_cupy_array(y_pred.data):
            x = backend.to_backend(x, "cupy")
    backend.check_same_backend([y_pred.data, x], where)
    if x.dtype.kind not in "fiub":
        raise TypeError(f"{where} expected numeric {what}, got dtype {x.dtype}")
    return x


def _as_weight(sample_weight, y_pred: Tensor, where):
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Number) and not isinstance(sample_weight, bool):
        return scalar(sample_weight, y_pred.dtype)  # a host scalar: no device copy is made
    w = _as_array_like(sample_weight, y_pred, "sample_weight", where)
    return w.astype(y_pred.dtype, copy=False)


def squeeze_or_expand_to_same_rank(x1, x2, expand_rank_1=True):
    """Keras' rule: ranks that differ by one with a trailing 1 are matched (Tensors or arrays)."""
    r1, r2 = len(x1.shape), len(x2.shape)
    if r1 == r2:
        return x1, x2
    if r1 == r2 + 1 and x1.shape[-1] == 1:
        if r2 == 1 and expand_rank_1:
            x2 = x2.reshape(tuple(x2.shape) + (1,))
        else:
            x1 = x1.reshape(tuple(x1.shape[:-1]))
    if r2 == r1 + 1 and x2.shape[-1] == 1:
        if r1 == 1 and expand_rank_1:
            x1 = x1.reshape(tuple(x1.shape) + (1,))
        else:
            x2 = x2.reshape(tuple(x2.shape[:-1]))
    return x1, x2


def _extend_weight(w, values_shape):
    """Weights of a leading part of the per-sample shape get trailing axes (gpudl's extension:
    (N,) weights weigh every step of (N, T) losses alike)."""
    shape = tuple(w.shape)
    if 0 < len(shape) < len(values_shape):
        w = w.reshape(shape + (1,) * (len(values_shape) - len(shape)))
    return w


def _divide_no_nan(a, b):
    xp = backend.get_array_module(a, b)
    zero = b == 0
    return xp.where(zero, 0, a / xp.where(zero, 1, b))


def reduce_weighted_values(values, sample_weight=None, mask=None, reduction="sum_over_batch_size",
                           where="loss"):
    """Keras' ``reduce_weighted_values``: merge ``mask`` into the weights (valid entries weigh
    total/valid under the mean reductions), weight ``values`` (a Tensor) and reduce them."""
    reduction = standardize_reduction(reduction)
    if not isinstance(values, Tensor):
        values = Tensor._wrap(values) if _is_array(values) else Tensor(values)
    sw = sample_weight
    original = None if sw is None else tuple(np.shape(sw))
    if mask is not None:
        m = mask.astype(values.dtype)
        if reduction in ("mean", "sum_over_batch_size"):
            m = m * _divide_no_nan(scalar(m.size, values.dtype), m.sum()).astype(values.dtype)
        if sw is not None and not isinstance(sw, np.generic):
            m, sw = squeeze_or_expand_to_same_rank(m, sw)
            sw = _extend_weight(sw, m.shape)
        sw = m if sw is None else sw * m
    if sw is not None and not isinstance(sw, np.generic) and values.ndim:
        values, sw = squeeze_or_expand_to_same_rank(values, sw)
        sw = _extend_weight(sw, values.shape)
        try:
            ok = np.broadcast_shapes(values.shape, tuple(sw.shape)) == values.shape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"{where}: sample_weight of shape {original} does not match the per-sample "
                             f"losses of shape {values.shape} (expected that shape, a leading part of it "
                             f"such as ({values.shape[0]},), or a scalar)")
    divisor = None
    if reduction == "mean_with_sample_weight" and sw is not None:
        xp = backend.get_array_module(values.data)
        full = np.broadcast_shapes(values.shape, tuple(np.shape(sw)))
        if isinstance(sw, np.generic):  # a scalar weight w: the divisor is w times the count
            divisor = sw * scalar(int(np.prod(full)), values.dtype)
        else:
            divisor = xp.broadcast_to(sw, full).sum()
    mode = {"none": "none", "sum": "sum"}.get(reduction, "mean")
    return FL.WeightedReduce(sw, mode, divisor)(values)


def _default_name(cls_name):
    out = []
    for i, ch in enumerate(cls_name):
        if ch.isupper() and i and (not cls_name[i - 1].isupper() or
                                   (i + 1 < len(cls_name) and cls_name[i + 1].islower())):
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


# ---- the base class ----------------------------------------------------------------------------

class Loss:
    """Base class: subclasses define ``call(y_true, y_pred)`` -> per-sample values (a Tensor).

    ``y_true`` reaches ``call`` as a Tensor of y_pred's dtype (Keras casts it to the loss dtype).
    """

    #: the activation whose input ``logits_variant()`` takes ("softmax", "sigmoid" or None)
    logits_activation: str | None = None

    def __init__(self, name=None, reduction="sum_over_batch_size"):
        self.name = name or _default_name(type(self).__name__)
        self.reduction = standardize_reduction(reduction)

    def _where(self):
        return f"{type(self).__name__} {self.name!r}"

    def __call__(self, y_true, y_pred, sample_weight=None):
        where = self._where()
        y_pred = _as_pred(y_pred, where)
        if y_true is None:
            raise ValueError(f"{where} expected y_true (targets), got None")
        y_true = _as_array_like(y_true, y_pred, "y_true", where)
        sw = _as_weight(sample_weight, y_pred, where)
        if sw is None and self.reduction != "none":
            fast = self._fast(y_true, y_pred, "sum" if self.reduction == "sum" else "mean")
            if fast is not None:
                return fast
        values, mask = self._values(y_true, y_pred)
        return reduce_weighted_values(values, sw, mask, self.reduction, where)

    def call(self, y_true, y_pred):
        raise NotImplementedError(f"{type(self).__name__} must define call(y_true, y_pred)")

    def _values(self, y_true, y_pred):
        """(per-sample values, mask or None); y_true is a raw array on y_pred's backend."""
        out = self.call(Tensor._wrap(y_true.astype(y_pred.dtype, copy=False)), y_pred)
        if not isinstance(out, Tensor):
            out = Tensor._wrap(out) if _is_array(out) else Tensor(out, dtype=y_pred.dtype)
        return out, None

    def _fast(self, y_true, y_pred, mode):
        """The reduced loss in one op ("mean" over samples or "sum"), or None."""
        return None

    def logits_variant(self):
        """This loss on logits (see the module docstring), or None: the same configuration with
        ``from_logits=True``, for the losses that take probabilities and have that switch."""
        if getattr(self, "from_logits", True):
            return None
        return type(self).from_config({**self.get_config(), "from_logits": True})

    def get_config(self) -> dict:
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class LossFunctionWrapper(Loss):
    """A callable ``fn(y_true, y_pred, **kwargs)`` -> per-sample values, as a loss object."""

    def __init__(self, fn, reduction="sum_over_batch_size", name=None, **kwargs):
        super().__init__(name=name or getattr(fn, "__name__", None) or "loss", reduction=reduction)
        self.fn = fn
        self._fn_kwargs = kwargs

    def call(self, y_true, y_pred):
        y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
        return self.fn(y_true, y_pred, **self._fn_kwargs)

    def get_config(self):
        return {**super().get_config(), "fn": _fn_name(self.fn),
                **self._fn_kwargs}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        fn = config.pop("fn")
        if isinstance(fn, str):
            from .serialization import get_registered_object
            found = get_registered_object(fn, custom_objects) or _FUNCTIONS_BY_NAME.get(fn)
            if found is None:
                raise ValueError(f"LossFunctionWrapper: cannot rebuild the loss function {fn!r}: "
                                 "pass it in custom_objects={name: function}")
            fn = found
        return cls(fn, **config)

    def __repr__(self):
        return f"LossFunctionWrapper({getattr(self.fn, '__name__', self.fn)!r}, reduction={self.reduction!r})"


# ---- pointwise losses: per-sample values are a mean (or sum) over the last axis ----------------

class _LastAxisLoss(Loss):
    #: how the elementwise losses become per-sample values: "mean" or "sum" over the last axis
    _over_last = "mean"

    def _elementwise(self, t, y, reduction):
        raise NotImplementedError

    def _targets(self, t, y: Tensor):
        return t

    def _prepare(self, y_true, y_pred):
        where = self._where()
        if y_pred.ndim == 0:
            raise ValueError(f"{where} expected y_pred with at least one axis (N, ...), got a scalar")
        got = tuple(y_true.shape)
        t, y = squeeze_or_expand_to_same_rank(y_true, y_pred)
        if tuple(t.shape) != y.shape:
            raise ValueError(f"{where} expected y_true of shape {y_pred.shape} (the shape of y_pred), "
                             f"got {got}")
        return self._targets(t.astype(y.dtype, copy=False), y), y

    def _values(self, y_true, y_pred):
        t, y = self._prepare(y_true, y_pred)
        e = self._elementwise(t, y, "none")
        return (e.mean(axis=-1) if self._over_last == "mean" else e.sum(axis=-1)), None

    def _fast(self, y_true, y_pred, mode):
        t, y = self._prepare(y_true, y_pred)
        c = y.shape[-1]
        per_sample = y.size // c if c else 0
        if self._over_last == "mean":
            if mode == "mean" or y.ndim == 1:  # one per-sample value: Keras leaves it unreduced
                return self._elementwise(t, y, "mean")
            return FL.Scale(1.0 / max(c, 1))(self._elementwise(t, y, "sum"))
        if mode == "sum" or y.ndim == 1:
            return self._elementwise(t, y, "sum")
        return FL.Scale(1.0 / max(per_sample, 1))(self._elementwise(t, y, "sum"))


class MeanSquaredError(_LastAxisLoss):
    """mean((y_true - y_pred)^2) over the last axis per sample."""

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error"):
        super().__init__(name=name, reduction=reduction)

    def _elementwise(self, t, y, reduction):
        return FL.mean_squared_error(y, Tensor._wrap(t), reduction=reduction)


class MeanAbsoluteError(_LastAxisLoss):
    """mean(|y_true - y_pred|) over the last axis per sample."""

    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_error"):
        super().__init__(name=name, reduction=reduction)

    def _elementwise(self, t, y, reduction):
        return FL.mean_absolute_error(y, Tensor._wrap(t), reduction=reduction)


class Huber(_LastAxisLoss):
    """mean over the last axis of 0.5 e^2 (|e| <= delta) or delta |e| - 0.5 delta^2."""

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="huber_loss"):
        super().__init__(name=name, reduction=reduction)
        if not isinstance(delta, numbers.Real) or not delta > 0:
            raise ValueError(f"Huber expected delta > 0, got {delta!r}")
        self.delta = float(delta)

    def _elementwise(self, t, y, reduction):
        return FL.huber_loss(y, Tensor._wrap(t), self.delta, reduction=reduction)

    def get_config(self):
        return {**super().get_config(), "delta": self.delta}


class Hinge(_LastAxisLoss):
    """mean(max(1 - y_true * y_pred, 0)) over the last axis; labels 0/1 become -1/1 (Keras:
    when every label is 0 or 1, decided on the device without a host read)."""

    def __init__(self, reduction="sum_over_batch_size", name="hinge"):
        super().__init__(name=name, reduction=reduction)

    def _targets(self, t, y):
        xp = backend.get_array_module(t)
        one = scalar(1, t.dtype)
        binary = ((t == 0) | (t == one)).all()
        return xp.where(binary, t * scalar(2, t.dtype) - one, t)

    def _elementwise(self, t, y, reduction):
        return FL.hinge(y, Tensor._wrap(t), reduction=reduction)


class KLDivergence(_LastAxisLoss):
    """sum(y_true * log(y_true / y_pred)) over the last axis, both clipped to [1e-7, 1]."""

    _over_last = "sum"

    def __init__(self, reduction="sum_over_batch_size", name="kl_divergence"):
        super().__init__(name=name, reduction=reduction)

    def _elementwise(self, t, y, reduction):
        return FL.kl_divergence(y, Tensor._wrap(t), reduction=reduction)


def _check_smoothing(label_smoothing, where):
    if not isinstance(label_smoothing, numbers.Real) or not 0 <= label_smoothing <= 1:
        raise ValueError(f"{where} expected label_smoothing in [0, 1], got {label_smoothing!r}")
    return float(label_smoothing)


def _check_axis(axis, where):
    if axis != -1:
        raise ValueError(f"{where}: only axis=-1 (the last axis holds the classes) is supported, got {axis!r}")
    return axis


class BinaryCrossentropy(_LastAxisLoss):
    """Binary cross entropy, mean over the last axis per sample. On probabilities (clipped to
    [1e-7, 1 - 1e-7]) or, with ``from_logits=True``, fused with the sigmoid (exact for any
    logit). ``label_smoothing`` squeezes targets towards 0.5: t (1 - ls) + ls / 2."""

    logits_activation = "sigmoid"

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="binary_crossentropy"):
        super().__init__(name=name, reduction=reduction)
        self.from_logits = bool(from_logits)
        self.label_smoothing = _check_smoothing(label_smoothing, self._where())
        self.axis = _check_axis(axis, self._where())

    def _targets(self, t, y):
        ls = self.label_smoothing
        if ls:
            t = t * scalar(1 - ls, t.dtype) + scalar(0.5 * ls, t.dtype)
        return t

    def _elementwise(self, t, y, reduction):
        op = FL.sigmoid_binary_cross_entropy if self.from_logits else FL.binary_cross_entropy
        return op(y, Tensor._wrap(t), reduction=reduction)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": self.axis}


# ---- cross entropies over classes: per-sample values are per row ---------------------------------

class _ClassCrossentropy(Loss):
    logits_activation = "softmax"

    def _labels(self, y_true, y_pred):
        """(labels for the F op: ids of y_pred.shape[:-1] or dense of y_pred.shape, mask or None)."""
        raise NotImplementedError

    def _op(self, y_pred, labels, reduction):
        if self.from_logits:
            return FL.softmax_cross_entropy(y_pred, labels, reduction=reduction)
        return FL.categorical_crossentropy(y_pred, labels, reduction=reduction)

    def _check_pred(self, y_pred):
        if y_pred.ndim < 2:
            raise ValueError(f"{self._where()} expected y_pred of shape (N, C) or (N, ..., C), "
                             f"got {y_pred.shape}")

    def _values(self, y_true, y_pred):
        labels, mask = self._labels(y_true, y_pred)
        values = self._op(y_pred, labels, "none")
        if mask is not None:
            values = values * Tensor._wrap(mask.astype(values.dtype))
        return values, mask

    def _fast(self, y_true, y_pred, mode):
        labels, mask = self._labels(y_true, y_pred)
        if mask is not None:
            return None
        return self._op(y_pred, labels, mode)

    def _smooth(self, labels, y_pred):
        """Dense (one-hot for ids) targets smoothed towards 1/C, when label_smoothing > 0."""
        ls = getattr(self, "label_smoothing", 0.0)
        if not ls:
            return labels
        xp = backend.get_array_module(y_pred.data)
        c = y_pred.shape[-1]
        if labels.ndim == y_pred.ndim - 1:
            labels = (labels[..., None] == xp.arange(c)).astype(y_pred.dtype)
        return labels * scalar(1 - ls, y_pred.dtype) + scalar(ls / c, y_pred.dtype)


def _check_ids(ids, c, where):
    if ids.size and not backend.is_cupy_array(ids):
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= c:
            raise ValueError(f"{where} expected class ids in [0, {c - 1}], got values in [{lo}, {hi}]")


class CategoricalCrossentropy(_ClassCrossentropy):
    """-sum(y_true * log y_pred) over the classes (last axis) per row; on probabilities (each
    row renormalised, then clipped) or, ``from_logits=True``, the fused softmax cross entropy.

    y_true: one-hot / probabilities of y_pred's shape; integer class ids of y_pred's shape
    without the class axis are also taken (as sparse labels: gpudl's long-standing rule).
    ``label_smoothing``: targets t (1 - ls) + ls / C.
    """

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_crossentropy"):
        super().__init__(name=name, reduction=reduction)
        self.from_logits = bool(from_logits)
        self.label_smoothing = _check_smoothing(label_smoothing, self._where())
        self.axis = _check_axis(axis, self._where())

    def _labels(self, y_true, y_pred):
        self._check_pred(y_pred)
        where, shape, lead = self._where(), y_pred.shape, y_pred.shape[:-1]
        got = tuple(y_true.shape)
        t = y_true
        if t.dtype.kind in "iu" and got == lead + (1,) and shape[-1] != 1:
            t = t.reshape(lead)
        if tuple(t.shape) == lead:
            if t.dtype.kind not in "iu":
                raise TypeError(f"{where} expected integer class ids for labels of shape {lead} "
                                f"(or one-hot labels of shape {shape}), got dtype {t.dtype}")
            _check_ids(t, shape[-1], where)
        elif tuple(t.shape) == shape:
            t = t.astype(y_pred.dtype, copy=False)
        else:
            raise ValueError(f"{where} expected y_true of shape {shape} (one-hot) or {lead} "
                             f"(integer class ids), got {got}")
        return self._smooth(t, y_pred), None

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": self.axis}


class SparseCategoricalCrossentropy(_ClassCrossentropy):
    """Cross entropy with integer class ids y_true (y_pred's shape without the class axis, or
    with a trailing 1). ``ignore_class``: positions with that label contribute 0 and, under the
    mean reductions, are left out of the count (Keras' mask)."""

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size",
                 axis=-1, name="sparse_categorical_crossentropy"):
        super().__init__(name=name, reduction=reduction)
        self.from_logits = bool(from_logits)
        if ignore_class is not None and (isinstance(ignore_class, bool) or
                                         not isinstance(ignore_class, numbers.Integral)):
            raise TypeError(f"{self._where()} expected an integer ignore_class, got {ignore_class!r}")
        self.ignore_class = None if ignore_class is None else int(ignore_class)
        self.axis = _check_axis(axis, self._where())

    def _labels(self, y_true, y_pred):
        self._check_pred(y_pred)
        where, lead = self._where(), y_pred.shape[:-1]
        got = tuple(y_true.shape)
        t = y_true
        if t.ndim == y_pred.ndim and got[-1:] == (1,):
            t = t.reshape(got[:-1])
        if tuple(t.shape) != lead:
            raise ValueError(f"{where} expected integer class ids of shape {lead} (y_pred's shape "
                             f"{y_pred.shape} without the class axis), got {got}")
        if t.dtype.kind not in "iu":
            t = t.astype(np.int64)  # Keras casts float labels to int
        mask = None
        if self.ignore_class is not None:
            xp = backend.get_array_module(t)
            mask = t != self.ignore_class
            t = xp.where(mask, t, 0)
        _check_ids(t, y_pred.shape[-1], where)
        return t, mask

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "ignore_class": self.ignore_class, "axis": self.axis}


# ---- Keras' function forms: per-sample values -------------------------------------------------

def mean_squared_error(y_true, y_pred):
    """Per-sample mean squared error (mean over the last axis)."""
    return MeanSquaredError(reduction="none")(y_true, y_pred)


def mean_absolute_error(y_true, y_pred):
    return MeanAbsoluteError(reduction="none")(y_true, y_pred)


def huber(y_true, y_pred, delta=1.0):
    return Huber(delta=delta, reduction="none")(y_true, y_pred)


def hinge(y_true, y_pred):
    return Hinge(reduction="none")(y_true, y_pred)


def kl_divergence(y_true, y_pred):
    return KLDivergence(reduction="none")(y_true, y_pred)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    return BinaryCrossentropy(from_logits=from_logits, label_smoothing=label_smoothing, axis=axis,
                              reduction="none")(y_true, y_pred)


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    return CategoricalCrossentropy(from_logits=from_logits, label_smoothing=label_smoothing,
                                   axis=axis, reduction="none")(y_true, y_pred)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1):
    return SparseCategoricalCrossentropy(from_logits=from_logits, ignore_class=ignore_class,
                                         axis=axis, reduction="none")(y_true, y_pred)


mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error
kld = KLD = kl_divergence

# the function forms resolve to their classes (so the fused path still applies)
_FUNCTION_CLASSES = {
    mean_squared_error: MeanSquaredError, mean_absolute_error: MeanAbsoluteError, huber: Huber,
    hinge: Hinge, kl_divergence: KLDivergence, binary_crossentropy: BinaryCrossentropy,
    categorical_crossentropy: CategoricalCrossentropy,
    sparse_categorical_crossentropy: SparseCategoricalCrossentropy,
}
_FUNCTIONS_BY_NAME = {f.__name__: f for f in _FUNCTION_CLASSES}

_CLASSES = (Loss, LossFunctionWrapper, MeanSquaredError, MeanAbsoluteError, Huber,
            BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy,
            KLDivergence, Hinge)
_CLASSES_BY_NAME = {c.__name__: c for c in _CLASSES}


def _softmax_cross_entropy():
    # gpudl's own name: softmax cross entropy on logits, labels ids or one-hot
    return CategoricalCrossentropy(from_logits=True, name="softmax_cross_entropy")


#: every string :func:`get` knows (matched without regard to case), and what it makes
_STRINGS = {
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError,
    "huber": Huber, "huber_loss": Huber,
    "binary_crossentropy": BinaryCrossentropy, "bce": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "kl_divergence": KLDivergence, "kld": KLDivergence,
    "kullback_leibler_divergence": KLDivergence,
    "hinge": Hinge,
    "softmax_cross_entropy": _softmax_cross_entropy,
}
_STRINGS.update({c.__name__.lower(): c for c in _CLASSES[2:]})
KNOWN = tuple(sorted(k for k in _STRINGS if "_" in k or k in ("mse", "mae", "kld", "bce", "huber", "hinge")))


def _from_string(identifier: str) -> Loss:
    make = _STRINGS.get(identifier.lower())
    if make is None:
        raise ValueError(f"unknown loss {identifier!r}: expected one of {', '.join(map(repr, KNOWN))}, "
                         "a loss object or a callable (y_true, y_pred)")
    obj = make()
    obj._identifier = identifier
    return obj


def get(identifier, custom_objects=None):
    """A loss object from a string, a dict from :func:`serialize`, a loss object or class, or
    a callable ``(y_true, y_pred)`` returning per-sample values (a Tensor or an array); None
    gives None. Unknown strings raise ValueError listing the known ones."""
    if identifier is None:
        return None
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        return _from_string(identifier)
    if isinstance(identifier, dict):
        return deserialize(identifier, custom_objects)
    if inspect.isclass(identifier) and issubclass(identifier, Loss):
        return identifier()
    try:
        cls = _FUNCTION_CLASSES.get(identifier)
    except TypeError:  # unhashable
        cls = None
    if cls is not None:
        return cls()
    if callable(identifier):
        return LossFunctionWrapper(identifier)
    raise ValueError(f"could not interpret loss identifier {identifier!r}: expected one of "
                     f"{', '.join(map(repr, KNOWN))}, a loss object or a callable (y_true, y_pred)")


def serialize(loss):
    """The string a loss was made from (so "mse" round-trips as "mse"), else
    ``{"class_name": ..., "config": ...}``."""
    if isinstance(loss, str):
        return loss
    ident = getattr(loss, "_identifier", None)
    if isinstance(ident, str):
        return ident
    if not isinstance(loss, Loss):
        loss = get(loss)
    from .serialization import registered_name
    return {"class_name": registered_name(loss) or type(loss).__name__, "config": loss.get_config()}


def deserialize(config, custom_objects=None):
    """Inverse of :func:`serialize`; ``custom_objects`` maps names to user loss classes/functions."""
    if isinstance(config, str):
        return get(config)
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"could not deserialize loss {config!r}: expected a string or "
                         "{'class_name': ..., 'config': {...}}")
    name = config["class_name"]
    from .serialization import get_registered_object
    cls = get_registered_object(name, custom_objects) or _CLASSES_BY_NAME.get(name)
    if cls is None:
        raise ValueError(f"unknown loss class {name!r}: expected one of "
                         f"{', '.join(sorted(_CLASSES_BY_NAME))} or one named in custom_objects")
    cfg = config.get("config", {})
    if cls is LossFunctionWrapper:
        return cls.from_config(cfg, custom_objects)
    return cls.from_config(cfg)


def _per_sample_no_grad(loss, y_true, y_pred):
    """Per-sample values of ``loss`` (a raw array) without recording a graph, and its mask."""
    where = loss._where()
    with no_grad():
        yp = _as_pred(y_pred, where)
        values, mask = loss._values(_as_array_like(y_true, yp, "y_true", where), yp)
    return values.data, mask


def _fn_name(fn):
    """A wrapped function's saved name: "package>name" when registered, else its __name__."""
    from .serialization import registered_name
    return registered_name(fn) or getattr(fn, "__name__", repr(fn))
