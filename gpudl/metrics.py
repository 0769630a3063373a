"""Stateful metrics, Keras style: ``update_state(y_true, y_pred, sample_weight=None)``,
``result()``, ``reset_state()``, ``name``.

State lives where the data does: sums are 0-d (or small 1-d) arrays on the arrays' device,
made on the first ``update_state`` (and again after ``reset_state``), so ``update_state``
never reads anything back to the host. ``result()`` is the one device read: a Python float
(a list of floats for per-threshold or per-class results). Before any update it is 0.0.

Inputs may be Tensors, NumPy or CuPy arrays (not both in one call: TypeError naming both),
or lists. Keras' semantics throughout; gpudl's additions: integer class ids given to the
categorical metrics are taken as sparse labels (as gpudl's categorical cross entropy does).

``"accuracy"``/``"acc"`` resolve as Keras' ``compile_utils`` does, plus its older rule for
binary cross entropy (:func:`resolve_accuracy`):

- binary accuracy (threshold 0.5) when the output has one unit (last axis 1, or a 1-d output)
  or the loss is binary cross-entropy;
- sparse categorical accuracy when the labels have fewer axes than the output (ids (N,) for
  (N, C), (N, T) for (N, T, C)) or a last axis of 1 against C > 1 outputs;
- categorical accuracy otherwise.

``get("accuracy", loss=...)`` returns an :class:`AutoAccuracy` that decides on its first
``update_state``; with ``y_true=``/``y_pred=`` (arrays or shapes) it decides at once. The
metric is named after the string given ("accuracy", "acc"), as Keras logs it; other strings
also name their metric ("mse" logs as "mse"); objects keep their ``name``.
"""
from __future__ import annotations

import inspect
import numbers

import numpy as np

from . import backend
from . import losses as _losses
from .autograd import Tensor, no_grad

__all__ = [
    "Metric", "Mean", "MeanMetricWrapper", "Accuracy", "BinaryAccuracy", "CategoricalAccuracy",
    "SparseCategoricalAccuracy", "TopKCategoricalAccuracy", "SparseTopKCategoricalAccuracy",
    "Precision", "Recall", "AUC", "F1Score", "FBetaScore", "MeanSquaredError", "MeanAbsoluteError",
    "BinaryCrossentropy", "CategoricalCrossentropy", "SparseCategoricalCrossentropy",
    "AutoAccuracy", "get", "serialize", "deserialize", "resolve_accuracy",
    "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
    "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy", "accuracy",
]

EPSILON = 1e-7
NEG_INF = -1e10  # Keras' value for predictions outside the top k
_F = np.float64  # state and per-sample values: float64 sums, whatever the model's dtype


# ---- inputs --------------------------------------------------------------------------------

def _is_array(x) -> bool:
    return isinstance(x, np.ndarray) or backend.is_cupy_array(x)


def _raw(x, like=None):
    """A raw array: Tensors unwrapped; lists and numbers become arrays on ``like``'s device."""
    if isinstance(x, Tensor):
        return x.data
    if _is_array(x):
        return x
    arr = np.asarray(x)
    if like is not None and backend.is_cupy_array(like):
        arr = backend.to_backend(arr, "cupy")
    return arr


def _inputs(y_true, y_pred, sample_weight, where):
    if y_true is None or y_pred is None:
        raise ValueError(f"{where} expected y_true and y_pred, got "
                         f"{'None' if y_true is None else 'an array'} and "
                         f"{'None' if y_pred is None else 'an array'}")
    yp = _raw(y_pred)
    yt = _raw(y_true, yp)
    sw = None if sample_weight is None else _raw(sample_weight, yp)
    backend.check_same_backend([yt, yp] + ([] if sw is None else [sw]), where)
    for what, a in (("y_true", yt), ("y_pred", yp), ("sample_weight", sw)):
        if a is not None and a.dtype.kind not in "fiub":
            raise TypeError(f"{where} expected numeric {what}, got dtype {a.dtype}")
    return yt, yp, sw


def _xp(a):
    return backend.get_array_module(a)


def _align(x1, x2):
    return _losses.squeeze_or_expand_to_same_rank(x1, x2)


def _same_shape(yt, yp, where, got=None):
    if tuple(yt.shape) != tuple(yp.shape):
        raise ValueError(f"{where} expected y_true of shape {tuple(yp.shape)} (the shape of y_pred), "
                         f"got {tuple(got if got is not None else yt.shape)}")


def _check_ids(ids, c, where):
    if ids.size and not backend.is_cupy_array(ids):
        if ids.dtype.kind == "f" and not np.all(np.isfinite(ids)):
            raise ValueError(f"{where} expected finite class ids, got NaN or Inf")
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= c:
            raise ValueError(f"{where} expected class ids in [0, {c - 1}], got values in [{lo}, {hi}]")


def _sparse_ids(yt, yp, where):
    """Integer ids of yp.shape[:-1] (a trailing 1 squeezed), as Keras' sparse metrics take them."""
    got = tuple(yt.shape)
    if yp.ndim < 1:
        raise ValueError(f"{where} expected y_pred of shape (N, C), got a scalar")
    if yt.ndim == yp.ndim and got[-1:] == (1,):
        yt = yt.reshape(got[:-1])
    if tuple(yt.shape) != tuple(yp.shape[:-1]):
        raise ValueError(f"{where} expected class ids of shape {tuple(yp.shape[:-1])} (y_pred's shape "
                         f"{tuple(yp.shape)} without the class axis), got {got}")
    return yt


def _is_sparse_for_categorical(yt, yp):
    return yt.dtype.kind in "iu" and tuple(yt.shape) == tuple(yp.shape[:-1])


# ---- per-sample metric functions (raw arrays in, float64 arrays out) ----------------------

def accuracy(y_true, y_pred):
    """Exact equality (Keras' ``accuracy``)."""
    yt, yp, _ = _inputs(y_true, y_pred, None, "accuracy")
    got = yt.shape
    yt, yp = _align(yt, yp)
    _same_shape(yt, yp, "accuracy", got)
    return (yt == yp.astype(yt.dtype, copy=False)).astype(_F)


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """1.0 where (y_pred > threshold) equals y_true, per element."""
    yt, yp, _ = _inputs(y_true, y_pred, None, "binary_accuracy")
    got = yt.shape
    yt, yp = _align(yt, yp)
    _same_shape(yt, yp, "binary_accuracy", got)
    return (yt == (yp > threshold).astype(yt.dtype)).astype(_F)


def sparse_categorical_accuracy(y_true, y_pred):
    """1.0 where argmax(y_pred) equals the class id y_true."""
    yt, yp, _ = _inputs(y_true, y_pred, None, "sparse_categorical_accuracy")
    yt = _sparse_ids(yt, yp, "sparse_categorical_accuracy")
    pred = _xp(yp).argmax(yp, axis=-1)
    if yt.dtype.kind in "iu":
        return (yt == pred).astype(_F)
    return (yt == pred.astype(yt.dtype)).astype(_F)


def categorical_accuracy(y_true, y_pred):
    """1.0 where argmax(y_pred) equals argmax(y_true) (one-hot labels); integer ids of the
    output's shape without the class axis are taken as sparse labels."""
    yt, yp, _ = _inputs(y_true, y_pred, None, "categorical_accuracy")
    if yp.ndim < 1:
        raise ValueError(f"categorical_accuracy expected y_pred of shape (N, C), got a scalar")
    if _is_sparse_for_categorical(yt, yp):
        return sparse_categorical_accuracy(yt, yp)
    _same_shape(yt, yp, "categorical_accuracy")
    xp = _xp(yp)
    return (xp.argmax(yt, axis=-1) == xp.argmax(yp, axis=-1)).astype(_F)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5):
    """1.0 where the class id's score is among the k largest (ties count in, as Keras'
    ``in_top_k``: no more than k-1 scores strictly above it)."""
    where = "sparse_top_k_categorical_accuracy"
    yt, yp, _ = _inputs(y_true, y_pred, None, where)
    yt = _sparse_ids(yt, yp, where)
    _check_ids(yt, yp.shape[-1], where)
    xp = _xp(yp)
    ids = yt.astype(np.int64, copy=False)
    target = xp.take_along_axis(yp, ids[..., None], axis=-1)
    above = (yp > target).sum(axis=-1)
    return (above < k).astype(_F)


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    """Top-k accuracy for one-hot labels (integer ids are taken as sparse labels)."""
    where = "top_k_categorical_accuracy"
    yt, yp, _ = _inputs(y_true, y_pred, None, where)
    if yp.ndim < 1:
        raise ValueError(f"{where} expected y_pred of shape (N, C), got a scalar")
    if not _is_sparse_for_categorical(yt, yp):
        _same_shape(yt, yp, where)
        yt = _xp(yt).argmax(yt, axis=-1)
    return sparse_top_k_categorical_accuracy(yt, yp, k)


def _mean_squared_error(y_true, y_pred):
    yt, yp, _ = _inputs(y_true, y_pred, None, "mean_squared_error")
    got = yt.shape
    yt, yp = _align(yt, yp)
    _same_shape(yt, yp, "mean_squared_error", got)
    d = yt.astype(_F) - yp.astype(_F)
    return (d * d).mean(axis=-1)


def _mean_absolute_error(y_true, y_pred):
    yt, yp, _ = _inputs(y_true, y_pred, None, "mean_absolute_error")
    got = yt.shape
    yt, yp = _align(yt, yp)
    _same_shape(yt, yp, "mean_absolute_error", got)
    return _xp(yp).abs(yt.astype(_F) - yp.astype(_F)).mean(axis=-1)


_mean_squared_error.__name__ = "mean_squared_error"
_mean_absolute_error.__name__ = "mean_absolute_error"


# ---- the base classes -------------------------------------------------------------------------

def _divide_no_nan(a, b):
    xp = backend.get_array_module(a, b)
    zero = b == 0
    return xp.where(zero, 0, a / xp.where(zero, 1, b))


def _read(x):
    """The one device read of result(): a float, or a list of floats."""
    host = backend.to_numpy(x)
    return float(host) if host.ndim == 0 else [float(v) for v in host.reshape(-1)]


class Metric:
    """Base class: ``update_state`` accumulates device sums in ``self._state`` (a dict of
    arrays, None until the first update), ``result()`` reads them once."""

    def __init__(self, name=None, dtype=None):
        self.name = name or _losses._default_name(type(self).__name__)
        self.dtype = dtype
        self._state = None

    def _where(self):
        return f"{type(self).__name__} {self.name!r}"

    def _add(self, **parts):
        """Accumulate device arrays into the state (made from the first values: no host copy)."""
        if self._state is None:
            self._state = {}
        for k, v in parts.items():
            v = v.astype(_F)
            self._state[k] = v if k not in self._state else self._state[k] + v

    def update_state(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define update_state")

    def result(self):
        raise NotImplementedError(f"{type(self).__name__} must define result")

    def reset_state(self):
        self._state = None

    reset_states = reset_state  # Keras 2's spelling

    def __call__(self, *args, **kwargs):
        """Update with one batch and return the result (state accumulates, as in Keras)."""
        self.update_state(*args, **kwargs)
        return self.result()

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}>"


class Mean(Metric):
    """The (weighted) mean of values: ``update_state(values, sample_weight=None)``.

    Values are first reduced to one per sample (mean over the axes past the weights' rank);
    the count is the number of samples, or the sum of the weights (Keras' Mean).
    """

    def __init__(self, name="mean", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def update_state(self, values, sample_weight=None):
        v = _raw(values)
        if v.dtype.kind not in "fiub":
            raise TypeError(f"{self._where()} expected numeric values, got dtype {v.dtype}")
        v = v.astype(_F)
        sw = None if sample_weight is None else _raw(sample_weight, v)
        if sw is not None:
            backend.check_same_backend([v, sw], self._where())
            sw = sw.astype(_F)
            v, sw = _align(v, sw)
            wn, vn = sw.ndim, v.ndim
            if vn > wn:
                v = v.mean(axis=tuple(range(wn, vn)))
            try:
                sw = _xp(v).broadcast_to(sw, v.shape)
            except ValueError:
                raise ValueError(f"{self._where()}: sample_weight of shape {tuple(_raw(sample_weight).shape)} "
                                 f"does not match values of shape {tuple(_raw(values).shape)}") from None
            v = v * sw
            if wn > 1:
                sw = sw.mean(axis=tuple(range(1, wn)))
        if v.ndim > 1:
            v = v.mean(axis=tuple(range(1, v.ndim)))
        if sw is not None:
            count = sw.sum()
        else:
            count = _xp(v).zeros((), dtype=_F) + (v.shape[0] if v.ndim else 1)
        self._add(total=v.sum(), count=count)

    def result(self):
        if self._state is None:
            return 0.0
        return _read(_divide_no_nan(self._state["total"], self._state["count"]))


class MeanMetricWrapper(Mean):
    """A function ``fn(y_true, y_pred, **kwargs)`` -> per-sample values, averaged.

    ``fn`` gets raw arrays (NumPy or CuPy) and may return an array or a Tensor.
    """

    def __init__(self, fn, name=None, dtype=None, **kwargs):
        super().__init__(name=name or getattr(fn, "__name__", None) or "mean", dtype=dtype)
        self._fn = fn
        self._fn_kwargs = kwargs

    def update_state(self, y_true, y_pred, sample_weight=None):
        yt, yp, sw = _inputs(y_true, y_pred, sample_weight, self._where())
        with no_grad():
            values = self._fn(yt, yp, **self._fn_kwargs)
        super().update_state(values, sample_weight=sw)

    def get_config(self):
        return {**super().get_config(), "fn": _fn_name(self._fn),
                **self._fn_kwargs}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        fn = config.pop("fn")
        if isinstance(fn, str):
            from .serialization import get_registered_object
            found = get_registered_object(fn, custom_objects) or _FUNCTIONS.get(fn)
            if found is None:
                raise ValueError(f"MeanMetricWrapper: cannot rebuild the metric function {fn!r}: "
                                 "pass it in custom_objects={name: function}")
            fn = found
        return cls(fn, **config)


class _Wrapped(MeanMetricWrapper):
    """A named MeanMetricWrapper whose config holds only its own arguments."""

    _fn_static = None

    def __init__(self, name=None, dtype=None, **kwargs):
        super().__init__(type(self)._fn_static, name=name, dtype=dtype, **kwargs)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, **self._fn_kwargs}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)


class Accuracy(_Wrapped):
    """How often y_pred equals y_true exactly (Keras' Accuracy; for "accuracy" the string, see
    :func:`resolve_accuracy`)."""
    _fn_static = staticmethod(accuracy)

    def __init__(self, name="accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)


class BinaryAccuracy(_Wrapped):
    """How often (y_pred > threshold) equals the 0/1 label."""
    _fn_static = staticmethod(binary_accuracy)

    def __init__(self, threshold=0.5, name="binary_accuracy", dtype=None):
        if not isinstance(threshold, numbers.Real) or isinstance(threshold, bool):
            raise TypeError(f"BinaryAccuracy expected a numeric threshold, got {threshold!r}")
        super().__init__(name=name, dtype=dtype, threshold=float(threshold))


class CategoricalAccuracy(_Wrapped):
    _fn_static = staticmethod(categorical_accuracy)

    def __init__(self, name="categorical_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)


class SparseCategoricalAccuracy(_Wrapped):
    _fn_static = staticmethod(sparse_categorical_accuracy)

    def __init__(self, name="sparse_categorical_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)


def _check_k(k, where):
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"{where} expected an integer k >= 1, got {k!r}")
    return int(k)


class TopKCategoricalAccuracy(_Wrapped):
    _fn_static = staticmethod(top_k_categorical_accuracy)

    def __init__(self, k=5, name="top_k_categorical_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype, k=_check_k(k, "TopKCategoricalAccuracy"))


class SparseTopKCategoricalAccuracy(_Wrapped):
    _fn_static = staticmethod(sparse_top_k_categorical_accuracy)

    def __init__(self, k=5, name="sparse_top_k_categorical_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype, k=_check_k(k, "SparseTopKCategoricalAccuracy"))


class MeanSquaredError(_Wrapped):
    _fn_static = staticmethod(_mean_squared_error)

    def __init__(self, name="mean_squared_error", dtype=None):
        super().__init__(name=name, dtype=dtype)


class MeanAbsoluteError(_Wrapped):
    _fn_static = staticmethod(_mean_absolute_error)

    def __init__(self, name="mean_absolute_error", dtype=None):
        super().__init__(name=name, dtype=dtype)


class _LossMetric(Mean):
    """The mean of a loss's per-sample values (masked positions left out), no graph recorded."""

    def _loss(self):
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        yt, yp, sw = _inputs(y_true, y_pred, sample_weight, self._where())
        values, mask = _losses._per_sample_no_grad(self._loss(), yt, yp)
        if mask is not None:
            m = mask.astype(_F)
            sw = m if sw is None else _losses._extend_weight(sw.astype(_F), m.shape) * m
        super().update_state(values, sample_weight=sw)


class BinaryCrossentropy(_LossMetric):
    def __init__(self, name="binary_crossentropy", dtype=None, from_logits=False, label_smoothing=0.0):
        super().__init__(name=name, dtype=dtype)
        self.from_logits, self.label_smoothing = bool(from_logits), float(label_smoothing)

    def _loss(self):
        return _losses.BinaryCrossentropy(self.from_logits, self.label_smoothing, reduction="none")

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing}


class CategoricalCrossentropy(_LossMetric):
    def __init__(self, name="categorical_crossentropy", dtype=None, from_logits=False,
                 label_smoothing=0.0):
        super().__init__(name=name, dtype=dtype)
        self.from_logits, self.label_smoothing = bool(from_logits), float(label_smoothing)

    def _loss(self):
        return _losses.CategoricalCrossentropy(self.from_logits, self.label_smoothing, reduction="none")

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing}


class SparseCategoricalCrossentropy(_LossMetric):
    def __init__(self, name="sparse_categorical_crossentropy", dtype=None, from_logits=False,
                 ignore_class=None):
        super().__init__(name=name, dtype=dtype)
        self.from_logits, self.ignore_class = bool(from_logits), ignore_class

    def _loss(self):
        return _losses.SparseCategoricalCrossentropy(self.from_logits, self.ignore_class,
                                                     reduction="none")

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "ignore_class": self.ignore_class}


# ---- confusion-matrix metrics --------------------------------------------------------------------

def _thresholds_list(thresholds, default, where):
    if thresholds is None:
        return [float(default)]
    items = list(thresholds) if isinstance(thresholds, (list, tuple, np.ndarray)) else [thresholds]
    out = []
    for t in items:
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not 0 <= t <= 1:
            raise ValueError(f"{where} expected thresholds in [0, 1], got {thresholds!r}")
        out.append(float(t))
    if not out:
        raise ValueError(f"{where} expected at least one threshold, got {thresholds!r}")
    return out


def _device_vector(xp, values):
    """A float64 vector on xp's device built from Python numbers by fills (no host copy)."""
    return xp.concatenate([xp.full((1,), v, dtype=_F) for v in values])


def _filter_top_k(x, k):
    """Keep the k largest scores of the last axis (the lower index wins a tie), the rest NEG_INF."""
    xp = _xp(x)
    order = xp.argsort(-x, axis=-1, kind="stable")
    ranks = xp.argsort(order, axis=-1, kind="stable")
    return xp.where(ranks < k, x, NEG_INF)


def _confusion(yt, yp, sw, thresholds, where, top_k=None, class_id=None, clip=False,
               label_weights=None, multi_label=False):
    """TP, FP, TN, FN per threshold, on the device: a prediction counts as positive for each
    threshold it exceeds strictly (Keras' rule); labels are cast to bool.

    ``thresholds``: a sorted float64 device vector (T,). Returns arrays (L, T): L = 1 unless
    ``multi_label`` (then one row per label column of a 2-D y_pred). One searchsorted and a
    bincount per update: O(N log T), never an (N, T) table.
    """
    xp = _xp(yp)
    got = tuple(yt.shape)
    yp, yt = _align(yp, yt)
    _same_shape(yt, yp, where, got)
    if sw is not None:
        orig = tuple(sw.shape)
        sw = _losses._extend_weight(sw.astype(_F), yp.shape) if sw.ndim else sw.astype(_F)
        try:
            sw = xp.broadcast_to(sw, yp.shape)
        except ValueError:
            raise ValueError(f"{where}: sample_weight of shape {orig} does not match y_pred of shape "
                             f"{tuple(yp.shape)}") from None
    if top_k is not None:
        yp = _filter_top_k(yp, top_k)
    if class_id is not None:
        if yp.ndim < 2:
            raise ValueError(f"{where}: class_id needs y_pred of shape (N, C), got {tuple(yp.shape)}")
        if not 0 <= class_id < yp.shape[-1]:
            raise ValueError(f"{where}: class_id {class_id} is outside [0, {yp.shape[-1] - 1}]")
        yt, yp = yt[..., class_id], yp[..., class_id]
        sw = None if sw is None else sw[..., class_id]
    p = yp.astype(_F)
    if clip:
        p = xp.clip(p, 0.0, 1.0)
    pos = (yt != 0).astype(_F)
    w = xp.ones(p.shape, dtype=_F) if sw is None else sw
    if label_weights is not None:
        w = w * label_weights
    t = thresholds.shape[0]
    if multi_label:
        if p.ndim != 2:
            raise ValueError(f"{where}: multi_label needs y_pred of shape (N, L), got {tuple(p.shape)}")
        labels = p.shape[1]
        col = xp.broadcast_to(xp.arange(labels), p.shape).reshape(-1)
    else:
        labels, col = 1, None
    p, pos, w = p.reshape(-1), pos.reshape(-1), w.reshape(-1)
    k = xp.searchsorted(thresholds, p, side="left")  # how many thresholds lie below p
    k = xp.where(p == p, k, 0)  # NaN exceeds no threshold
    if col is not None:
        k = k + col * (t + 1)
    size = labels * (t + 1)
    hist_pos = xp.bincount(k, weights=pos * w, minlength=size).reshape(labels, t + 1)
    hist_neg = xp.bincount(k, weights=(1 - pos) * w, minlength=size).reshape(labels, t + 1)
    # above[j] = weight of predictions beyond threshold j = sum of the buckets past j
    tp = xp.flip(xp.cumsum(xp.flip(hist_pos, axis=1), axis=1), axis=1)[:, 1:]
    fp = xp.flip(xp.cumsum(xp.flip(hist_neg, axis=1), axis=1), axis=1)[:, 1:]
    fn = hist_pos.sum(axis=1, keepdims=True) - tp
    tn = hist_neg.sum(axis=1, keepdims=True) - fp
    return tp, fp, tn, fn


class _ThresholdMetric(Metric):
    """Precision and Recall: counts per threshold; the thresholds kept sorted on the device."""

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.init_thresholds = thresholds
        if top_k is not None:
            top_k = _check_k(top_k, self._where())
        self.top_k, self.class_id = top_k, class_id
        default = 0.5 if top_k is None else NEG_INF
        self.thresholds = (_thresholds_list(thresholds, default, self._where())
                           if thresholds is not None else [default])
        self._order = np.argsort(self.thresholds, kind="stable")
        self._device_thresholds = {}

    def _thr(self, xp):
        key = xp.__name__
        if key not in self._device_thresholds:
            self._device_thresholds[key] = _device_vector(xp, [self.thresholds[i] for i in self._order])
        return self._device_thresholds[key]

    def _counts(self, y_true, y_pred, sample_weight):
        yt, yp, sw = _inputs(y_true, y_pred, sample_weight, self._where())
        tp, fp, tn, fn = _confusion(yt, yp, sw, self._thr(_xp(yp)), self._where(),
                                    top_k=self.top_k, class_id=self.class_id)
        return tp[0], fp[0], tn[0], fn[0]

    def _ratio(self, num, other):
        if self._state is None:
            r = [0.0] * len(self.thresholds)
        else:
            r = _read(_divide_no_nan(self._state[num], self._state[num] + self._state[other]))
        out = [0.0] * len(r)
        for pos, i in enumerate(self._order):  # back to the order the thresholds were given in
            out[i] = r[pos]
        return out[0] if len(out) == 1 else out

    def get_config(self):
        return {**super().get_config(), "thresholds": self.init_thresholds, "top_k": self.top_k,
                "class_id": self.class_id}


class Precision(_ThresholdMetric):
    """TP / (TP + FP) at each threshold (default 0.5: y_pred > 0.5 is positive)."""

    def __init__(self, thresholds=None, top_k=None, class_id=None, name="precision", dtype=None):
        super().__init__(thresholds, top_k, class_id, name=name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        tp, fp, _, _ = self._counts(y_true, y_pred, sample_weight)
        self._add(tp=tp, fp=fp)

    def result(self):
        return self._ratio("tp", "fp")


class Recall(_ThresholdMetric):
    """TP / (TP + FN) at each threshold (default 0.5)."""

    def __init__(self, thresholds=None, top_k=None, class_id=None, name="recall", dtype=None):
        super().__init__(thresholds, top_k, class_id, name=name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        tp, _, _, fn = self._counts(y_true, y_pred, sample_weight)
        self._add(tp=tp, fn=fn)

    def result(self):
        return self._ratio("tp", "fn")


_CURVES = ("ROC", "PR")
_SUMMATIONS = ("interpolation", "minoring", "majoring")


class AUC(Metric):
    """Area under the ROC (default) or PR curve from counts at ``num_thresholds`` thresholds:
    -1e-7, 1/(n-1), ..., (n-2)/(n-1), 1 + 1e-7 (or the given ``thresholds`` between those two
    endpoints). ``summation_method="interpolation"``: trapezoids for ROC, Davis & Goadrich's
    interpolation for PR (Keras' ``interpolate_pr_auc``); "minoring"/"majoring": lower/upper
    Riemann sums. Predictions are clipped to [0, 1]; ``from_logits=True`` applies a sigmoid.
    """

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation", name="auc",
                 dtype=None, thresholds=None, multi_label=False, num_labels=None, label_weights=None,
                 from_logits=False):
        super().__init__(name=name, dtype=dtype)
        curve = str(curve).upper()
        if curve not in _CURVES:
            raise ValueError(f"AUC expected curve in {_CURVES}, got {curve!r}")
        summation_method = str(summation_method).lower()
        if summation_method not in _SUMMATIONS:
            raise ValueError(f"AUC expected summation_method in {_SUMMATIONS}, got {summation_method!r}")
        self.curve, self.summation_method = curve, summation_method
        self._init_from_thresholds = thresholds is not None
        if thresholds is not None:
            inner = sorted(_thresholds_list(thresholds, 0.5, self._where()))
            self.num_thresholds = len(inner) + 2
        else:
            if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, numbers.Integral) \
                    or num_thresholds <= 1:
                raise ValueError(f"AUC expected an integer num_thresholds > 1, got {num_thresholds!r}")
            self.num_thresholds = int(num_thresholds)
            inner = None  # evenly spaced: made on the device
        self._inner = inner
        self.thresholds = [0.0 - EPSILON] + (
            inner if inner is not None else
            [(i + 1) * 1.0 / (self.num_thresholds - 1) for i in range(self.num_thresholds - 2)]
        ) + [1.0 + EPSILON]
        self.multi_label, self.num_labels = bool(multi_label), num_labels
        if num_labels is not None and not self.multi_label:
            raise ValueError("AUC: num_labels is needed only when multi_label is True")
        self.label_weights = None if label_weights is None else [float(w) for w in label_weights]
        self.from_logits = bool(from_logits)
        self._device = {}

    def _thr(self, xp):
        key = xp.__name__
        if key not in self._device:
            n = self.num_thresholds
            if self._inner is None:
                inner = xp.arange(1, n - 1, dtype=_F) / (n - 1)
            else:
                inner = _device_vector(xp, self._inner) if self._inner else xp.zeros((0,), dtype=_F)
            ends = _device_vector(xp, [0.0 - EPSILON, 1.0 + EPSILON])
            lw = None if self.label_weights is None else _device_vector(xp, self.label_weights)
            self._device[key] = (xp.concatenate([ends[:1], inner, ends[1:]]), lw)
        return self._device[key]

    def update_state(self, y_true, y_pred, sample_weight=None):
        yt, yp, sw = _inputs(y_true, y_pred, sample_weight, self._where())
        xp = _xp(yp)
        if self.from_logits:
            half = yp.dtype.type(0.5) if yp.dtype.kind == "f" else 0.5
            yp = half * (xp.tanh(half * yp) + 1)
        thr, lw = self._thr(xp)
        if lw is not None and yp.shape[-1] != lw.shape[0]:
            raise ValueError(f"{self._where()}: label_weights has {lw.shape[0]} entries, y_pred "
                             f"{yp.shape[-1]} labels")
        tp, fp, tn, fn = _confusion(yt, yp, sw, thr, self._where(), clip=True,
                                    label_weights=None if self.multi_label else lw,
                                    multi_label=self.multi_label)
        self._add(tp=tp, fp=fp, tn=tn, fn=fn)

    def _auc(self, xp, tp, fp, tn, fn):
        """Per label row, the area (on the device)."""
        if self.curve == "PR" and self.summation_method == "interpolation":
            dtp = tp[:, :-1] - tp[:, 1:]
            p = tp + fp
            dp = p[:, :-1] - p[:, 1:]
            slope = _divide_no_nan(dtp, xp.maximum(dp, 0))
            intercept = tp[:, 1:] - slope * p[:, 1:]
            both = (p[:, :-1] > 0) & (p[:, 1:] > 0)
            ratio = xp.where(both, _divide_no_nan(p[:, :-1], xp.maximum(p[:, 1:], 0)), 1.0)
            inc = _divide_no_nan(slope * (dtp + intercept * xp.log(ratio)),
                                 xp.maximum(tp[:, 1:] + fn[:, 1:], 0))
            return inc.sum(axis=1)
        recall = _divide_no_nan(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _divide_no_nan(fp, fp + tn), recall
        else:
            x, y = recall, _divide_no_nan(tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[:, :-1] + y[:, 1:]) / 2
        elif self.summation_method == "minoring":
            heights = xp.minimum(y[:, :-1], y[:, 1:])
        else:
            heights = xp.maximum(y[:, :-1], y[:, 1:])
        return ((x[:, :-1] - x[:, 1:]) * heights).sum(axis=1)

    def result(self):
        if self._state is None:
            return 0.0
        s = self._state
        xp = _xp(s["tp"])
        by_label = self._auc(xp, s["tp"], s["fp"], s["tn"], s["fn"])
        if self.multi_label:
            _, lw = self._thr(xp)
            value = by_label.mean() if lw is None else _divide_no_nan((by_label * lw).sum(), lw.sum())
        else:
            value = by_label[0]
        return _read(value)

    def get_config(self):
        cfg = {**super().get_config(), "num_thresholds": self.num_thresholds, "curve": self.curve,
               "summation_method": self.summation_method, "multi_label": self.multi_label,
               "num_labels": self.num_labels, "label_weights": self.label_weights,
               "from_logits": self.from_logits}
        if self._init_from_thresholds:
            cfg["thresholds"] = list(self._inner)
        return cfg


class FBetaScore(Metric):
    """F-beta per class of 2-D one-hot (or multi-label) y_true, Keras 3's FBetaScore.

    ``threshold=None``: the largest score of each row is the positive prediction (a row of
    zeros predicts nothing); else scores above ``threshold``. ``average``: None (one score per
    class, a list), "micro" (from global counts), "macro" (mean of per-class scores),
    "weighted" (weighted by each class's support).
    """

    def __init__(self, average=None, beta=1.0, threshold=None, name="fbeta_score", dtype=None):
        super().__init__(name=name, dtype=dtype)
        if average not in (None, "micro", "macro", "weighted"):
            raise ValueError("FBetaScore expected average in {None, 'micro', 'macro', 'weighted'}, "
                             f"got {average!r}")
        if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not beta > 0:
            raise ValueError(f"FBetaScore expected beta > 0, got {beta!r}")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, numbers.Real)
                                      or not 0 < threshold <= 1):
            raise ValueError(f"FBetaScore expected 0 < threshold <= 1 (or None), got {threshold!r}")
        self.average, self.beta = average, float(beta)
        self.threshold = None if threshold is None else float(threshold)
        self._axis = None if average == "micro" else 0

    def update_state(self, y_true, y_pred, sample_weight=None):
        yt, yp, sw = _inputs(y_true, y_pred, sample_weight, self._where())
        if yp.ndim != 2 or yt.ndim != 2:
            raise ValueError(f"{self._where()} expected 2-D inputs (batch_size, output_dim) (one-hot "
                             f"labels), got y_pred.shape={tuple(yp.shape)} and y_true.shape={tuple(yt.shape)}")
        _same_shape(yt, yp, self._where())
        xp = _xp(yp)
        p = yp.astype(_F)
        if self.threshold is None:
            pred = (p >= p.max(axis=-1, keepdims=True)) & (xp.abs(p) > 1e-9)
        else:
            pred = p > self.threshold
        pred, t = pred.astype(_F), yt.astype(_F)
        w = None
        if sw is not None:
            w = sw.astype(_F)
            if w.ndim == 1:
                w = w[:, None]
            try:
                w = xp.broadcast_to(w, t.shape)
            except ValueError:
                raise ValueError(f"{self._where()}: sample_weight of shape {tuple(sw.shape)} does not "
                                 f"match y_true of shape {tuple(yt.shape)}") from None

        def wsum(v):
            return (v if w is None else v * w).sum(axis=self._axis)

        self._add(tp=wsum(pred * t), fp=wsum(pred * (1 - t)), fn=wsum((1 - pred) * t), support=wsum(t))

    def result(self):
        if self._state is None:
            return 0.0 if self.average is not None else []
        s = self._state
        precision = s["tp"] / (s["tp"] + s["fp"] + EPSILON)
        recall = s["tp"] / (s["tp"] + s["fn"] + EPSILON)
        b2 = self.beta ** 2
        f = precision * recall / (b2 * precision + recall + EPSILON) * (1 + b2)
        if self.average == "weighted":
            f = (f * (s["support"] / (s["support"].sum() + EPSILON))).sum()
        elif self.average is not None:
            f = f.mean()
        return _read(f)

    def get_config(self):
        return {**super().get_config(), "average": self.average, "beta": self.beta,
                "threshold": self.threshold}


class F1Score(FBetaScore):
    """F1 (FBetaScore with beta 1): ``average=None|"micro"|"macro"|"weighted"``, ``threshold``."""

    def __init__(self, average=None, threshold=None, name="f1_score", dtype=None):
        super().__init__(average=average, beta=1.0, threshold=threshold, name=name, dtype=dtype)

    def get_config(self):
        cfg = super().get_config()
        cfg.pop("beta")
        return cfg


# ---- "accuracy" ---------------------------------------------------------------------------------

def _shape(x):
    """The shape of an array, Tensor or list, or ``x`` itself when it is a shape (a tuple of ints)."""
    if isinstance(x, Tensor):
        return x.shape
    if _is_array(x):
        return tuple(x.shape)
    if isinstance(x, tuple) and all(isinstance(d, numbers.Integral) for d in x):
        return x
    return np.shape(x)


def _is_binary_loss(loss) -> bool:
    if loss is None:
        return False
    try:
        obj = _losses.get(loss)
    except (ValueError, TypeError):
        return False
    return isinstance(obj, _losses.BinaryCrossentropy)


def resolve_accuracy(y_true, y_pred, loss=None, name="accuracy"):
    """The concrete accuracy metric Keras' compile would pick for "accuracy" (named ``name``).

    ``y_true``/``y_pred``: arrays, Tensors or shapes. Binary (threshold 0.5) for one output unit
    or a binary cross-entropy ``loss`` (string, object or function); sparse when the labels have
    fewer axes than the output, or a last axis of 1 against C > 1 outputs; categorical otherwise.
    """
    ts, ps = _shape(y_true), _shape(y_pred)
    if len(ps) == 0:
        raise ValueError(f"resolve_accuracy expected y_pred with a batch axis, got shape {ps}")
    is_binary = ps[-1] == 1 or len(ps) == 1 or _is_binary_loss(loss)
    is_sparse = len(ts) < len(ps) or (len(ts) > 0 and ts[-1] == 1 and ps[-1] > 1)
    if is_binary:
        return BinaryAccuracy(name=name)
    if is_sparse:
        return SparseCategoricalAccuracy(name=name)
    return CategoricalAccuracy(name=name)


class AutoAccuracy(Metric):
    """"accuracy" before the data is seen: resolves (see :func:`resolve_accuracy`) on the first
    ``update_state`` and then forwards to that metric (``resolved``) for good; reset keeps it."""

    def __init__(self, name="accuracy", loss=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.loss = loss
        self.resolved = None

    def update_state(self, y_true, y_pred, sample_weight=None):
        if self.resolved is None:
            yt, yp, _ = _inputs(y_true, y_pred, None, self._where())
            self.resolved = resolve_accuracy(yt, yp, self.loss, name=self.name)
        self.resolved.update_state(y_true, y_pred, sample_weight)

    def result(self):
        return 0.0 if self.resolved is None else self.resolved.result()

    def reset_state(self):
        if self.resolved is not None:
            self.resolved.reset_state()

    reset_states = reset_state

    def get_config(self):
        loss = self.loss if isinstance(self.loss, str) or self.loss is None else _losses.serialize(self.loss)
        return {"name": self.name, "loss": loss, "dtype": self.dtype}


# ---- get / serialize -------------------------------------------------------------------------------

_FUNCTIONS = {f.__name__: f for f in (
    accuracy, binary_accuracy, categorical_accuracy, sparse_categorical_accuracy,
    top_k_categorical_accuracy, sparse_top_k_categorical_accuracy,
    _mean_squared_error, _mean_absolute_error)}

_CLASSES = (Mean, MeanMetricWrapper, Accuracy, BinaryAccuracy, CategoricalAccuracy,
            SparseCategoricalAccuracy, TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy,
            Precision, Recall, AUC, F1Score, FBetaScore, MeanSquaredError, MeanAbsoluteError,
            BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy, AutoAccuracy)
_CLASSES_BY_NAME = {c.__name__: c for c in _CLASSES}

_STRINGS = {
    "binary_accuracy": BinaryAccuracy, "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
    "precision": Precision, "recall": Recall, "auc": AUC, "f1_score": F1Score,
    "fbeta_score": FBetaScore, "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError, "mean": Mean,
    "binary_crossentropy": BinaryCrossentropy, "bce": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
}
_STRINGS.update({c.__name__.lower(): c for c in _CLASSES if c not in (MeanMetricWrapper, AutoAccuracy)})
_ACCURACY = ("accuracy", "acc")
KNOWN = tuple(sorted(set(_ACCURACY) | {k for k in _STRINGS if "_" in k or k in (
    "mse", "mae", "bce", "auc", "precision", "recall", "mean")}))


def get(identifier, loss=None, y_true=None, y_pred=None):
    """A metric object from a string, a dict from :func:`serialize`, a metric object or class,
    or a callable ``(y_true, y_pred)`` -> per-sample values (averaged, named after it).

    "accuracy"/"acc" (any case): with ``y_true`` and ``y_pred`` (arrays or shapes) the metric
    :func:`resolve_accuracy` picks, else an :class:`AutoAccuracy` deciding on its first update;
    ``loss`` is the compiled loss (a binary cross entropy picks binary accuracy). Strings name
    their metric after themselves, as Keras logs them.
    """
    if identifier is None:
        return None
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str):
        low = identifier.lower()
        if low in _ACCURACY:
            if y_true is not None and y_pred is not None:
                obj = resolve_accuracy(y_true, y_pred, loss, name=identifier)
            else:
                obj = AutoAccuracy(name=identifier, loss=loss)
        else:
            cls = _STRINGS.get(low)
            if cls is None:
                raise ValueError(f"unknown metric {identifier!r}: expected one of "
                                 f"{', '.join(map(repr, KNOWN))}, a metric object or a callable "
                                 "(y_true, y_pred)")
            obj = cls(name=identifier)
        obj._identifier = identifier
        return obj
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if inspect.isclass(identifier) and issubclass(identifier, Metric):
        return identifier()
    if callable(identifier):
        return MeanMetricWrapper(identifier, name=getattr(identifier, "__name__", None))
    raise ValueError(f"could not interpret metric identifier {identifier!r}: expected one of "
                     f"{', '.join(map(repr, KNOWN))}, a metric object or a callable (y_true, y_pred)")


def serialize(metric):
    """The string a metric was made from, else ``{"class_name": ..., "config": ...}``."""
    if isinstance(metric, str):
        return metric
    ident = getattr(metric, "_identifier", None)
    if isinstance(ident, str):
        return ident
    if not isinstance(metric, Metric):
        metric = get(metric)
    from .serialization import registered_name
    return {"class_name": registered_name(metric) or type(metric).__name__, "config": metric.get_config()}


def deserialize(config, custom_objects=None):
    """Inverse of :func:`serialize`; ``custom_objects`` maps names to user classes/functions."""
    if isinstance(config, str):
        return get(config)
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"could not deserialize metric {config!r}: expected a string or "
                         "{'class_name': ..., 'config': {...}}")
    name = config["class_name"]
    from .serialization import get_registered_object
    cls = get_registered_object(name, custom_objects) or _CLASSES_BY_NAME.get(name)
    if cls is None:
        raise ValueError(f"unknown metric class {name!r}: expected one of "
                         f"{', '.join(sorted(_CLASSES_BY_NAME))} or one named in custom_objects")
    cfg = config.get("config", {})
    if cls is MeanMetricWrapper:
        return cls.from_config(cfg, custom_objects)
    return cls.from_config(cfg)


def _fn_name(fn):
    """A wrapped function's saved name: "package>name" when registered, else its __name__."""
    from .serialization import registered_name
    return registered_name(fn) or getattr(fn, "__name__", repr(fn))
