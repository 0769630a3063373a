"""What ``compile`` resolves (Keras' ``trainers/compile_utils.py``): the loss, with the fused
path taken when the model's last activation and the loss allow it, and the metrics.

Fused path: the loss object says which activation its logits variant replaces
(``loss.logits_activation``: "softmax" for categorical cross entropy, "sigmoid" for binary);
the model says which activation it ends with (``model.output_activation()``). When they
agree, the step runs the model up to the logits and calls ``loss.logits_variant()`` on them:
the same value, no log(0), and the softmax-CE kernel on the GPU. Metrics then see the logits
when their answer cannot change through the activation (an argmax), else the probabilities,
computed once per step only if some metric needs them.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from .. import functional as F
from .. import losses as losses_mod
from .. import metrics as metrics_mod
from ..autograd import Tensor, no_grad

__all__ = ["CompiledLoss", "CompiledMetrics", "OutputLoss", "OutputMetrics", "Prediction", "mask_weights"]

# metrics whose value is the same on logits as on softmax probabilities (argmax / top-k)
_ARGMAX_METRICS = (metrics_mod.CategoricalAccuracy, metrics_mod.SparseCategoricalAccuracy,
                   metrics_mod.TopKCategoricalAccuracy, metrics_mod.SparseTopKCategoricalAccuracy)
_CROSS_ENTROPY = (losses_mod.CategoricalCrossentropy, losses_mod.SparseCategoricalCrossentropy)
_POINTWISE = (losses_mod.MeanSquaredError, losses_mod.MeanAbsoluteError, losses_mod.Huber)
_POINTWISE_METRICS = (metrics_mod.MeanSquaredError, metrics_mod.MeanAbsoluteError)


class Prediction:
    """A step's output for the metrics: the model's output, or its logits and the activation
    left out (applied at most once, and only when a metric needs the probabilities)."""

    def __init__(self, out, activation=None):
        self.out, self.activation = out, activation
        self._probs = None
        self.mask = None

    @property
    def raw(self):
        return self.out.data if isinstance(self.out, Tensor) else self.out

    def probabilities(self):
        if self.activation is None:
            return self.raw
        if self._probs is None:
            with no_grad():
                fn = F.softmax if self.activation == "softmax" else F.sigmoid
                self._probs = fn(Tensor._wrap(self.raw)).data
        return self._probs


class OutputLoss:
    """The loss of one output: ``(out Tensor, y, sample_weight) -> loss Tensor``, fused on the
    logits when the output's last layer and the loss allow it."""

    def __init__(self, identifier):
        if identifier is None:
            raise ValueError("compile: loss is required (a name such as 'categorical_crossentropy', "
                             "a gpudl.losses object or a callable (y_true, y_pred))")
        self.identifier = identifier.lower() if isinstance(identifier, str) else identifier
        self.loss = losses_mod.get(identifier)
        self._variant = self.loss.logits_variant()

    def fused_with(self, activation):
        """The logits variant when the output ends in the activation it replaces, else None."""
        if self._variant is None:
            return None
        return self._variant if activation is not None and activation == self.loss.logits_activation else None

    def __call__(self, out, y, sample_weight, fused):
        """(loss Tensor, Prediction) for the output ``out`` (its logits when ``fused``)."""
        if fused:
            return self._variant(y, out, sample_weight), Prediction(out, self.loss.logits_activation)
        y = self._targets_for(y, out)
        return self.loss(y, out, sample_weight), Prediction(out)

    def _targets_for(self, y, out):
        """Integer ids against several outputs under a pointwise loss (mse, mae, huber): one-hot
        rows, as gpudl has always read them (the tutorial's square error on digits)."""
        if isinstance(self.loss, _POINTWISE) and y is not None and y.dtype.kind in "iu" \
                and y.ndim == out.ndim - 1 and out.shape[-1] > 1:
            xp = backend.get_array_module(y)
            return xp.eye(out.shape[-1], dtype=out.dtype)[y]
        return y

    def check_targets(self, out, y, what):
        """Shape, dtype and id range of ``y`` against the output's shape ``out`` (no batch axis),
        once per call of fit/evaluate (reads the range back once; never per step). True when
        ids were checked."""
        if out is None:
            return False
        out = tuple(out)
        sparse = isinstance(self.loss, losses_mod.SparseCategoricalCrossentropy) or (
            isinstance(self.loss, _CROSS_ENTROPY + _POINTWISE) and y.ndim == len(out))
        if sparse and y.ndim == len(out):
            expect = out[:-1]
            if tuple(y.shape[1:]) != expect and not (tuple(y.shape[1:]) == expect + (1,)):
                raise ValueError(f"{what}: integer labels for outputs {(None,) + out} expected shape "
                                 f"(N{''.join(', ' + str(d) for d in expect)}), got {tuple(y.shape)}")
            check_ids(y, out[-1], what)
            return True
        if isinstance(self.loss, _CROSS_ENTROPY + _POINTWISE + (losses_mod.BinaryCrossentropy,)):
            if tuple(y.shape[1:]) != out:
                ids = f" or integer labels (N{''.join(', ' + str(d) for d in out[:-1])})" \
                    if isinstance(self.loss, _CROSS_ENTROPY + _POINTWISE) else ""
                raise ValueError(f"{what}: y of shape {tuple(y.shape)} does not match the model's "
                                 f"{out[-1]} outputs of shape {(None,) + out} (expected "
                                 f"(N{''.join(', ' + str(d) for d in out)}){ids})")
        return False

    def get_config(self):
        return losses_mod.serialize(self.loss if not isinstance(self.identifier, str) else self.identifier)


def check_ids(y, classes, what):
    if y.dtype.kind not in "iu":
        raise TypeError(f"{what}: integer class labels expected, got dtype {y.dtype}")
    if y.size:
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= classes:
            raise ValueError(f"{what}: labels must lie in [0, {classes - 1}] for {classes} outputs, "
                             f"got values in [{lo}, {hi}]")


class OutputMetrics:
    """The metrics of one output, updated each step on the device and read once an epoch."""

    def __init__(self, metrics, compiled_loss, prefix=""):
        if metrics is None:
            metrics = []
        if isinstance(metrics, (str, metrics_mod.Metric)) or callable(metrics) and not isinstance(metrics, list):
            metrics = [metrics]
        if not isinstance(metrics, (list, tuple)):
            raise TypeError(f"compile: metrics expected a list of names, metric objects or callables, "
                            f"got {type(metrics).__name__}")
        self.identifiers = list(metrics)
        self._kinds = {}  # (label rank, last size, output rank, last size) -> accuracy class
        self.loss = compiled_loss
        self.metrics = [metrics_mod.get(m, loss=compiled_loss.loss) for m in self.identifiers]
        self.prefix = prefix
        names = [m.name for m in self.metrics]
        if "loss" in names or len(set(names)) != len(names):
            raise ValueError(f"compile: metric names must be unique and not 'loss', got {names}")

    @property
    def names(self):
        return [self.prefix + m.name for m in self.metrics]

    def _resolve(self, m, y_shape, pred_shape, fresh=False):
        """"accuracy" follows the labels it meets (ids or one-hot), decided afresh after each
        reset: a model evaluated on one-hot rows after training on ids reports accuracy too."""
        if not isinstance(m, metrics_mod.AutoAccuracy):
            return m
        # the choice depends on the ranks and last sizes only: decided once per kind of batch
        key = (len(y_shape), y_shape[-1:], len(pred_shape), pred_shape[-1:])
        want = self._kinds.get(key)
        if want is None:
            want = self._kinds[key] = type(metrics_mod.resolve_accuracy(y_shape, pred_shape, self.loss.loss))
        if type(m.resolved) is not want:
            if m.resolved is not None and id(m) in self._updated and not fresh:
                raise ValueError(f"metric {m.name!r}: labels of another kind within one epoch "
                                 f"(shape {y_shape} against outputs {pred_shape})")
            m.resolved = want(name=m.name)
        return m.resolved

    def check_targets(self, out, y, what, ids_checked=False):
        if out is None:
            return
        for m in self.metrics:
            concrete = self._resolve(m, tuple(y.shape), (len(y),) + tuple(out), fresh=True)
            if isinstance(concrete, metrics_mod.SparseCategoricalAccuracy) and y.ndim == len(out) \
                    and not ids_checked:
                check_ids(y, out[-1], what)
                ids_checked = True

    _updated = frozenset()

    def update(self, y, pred: Prediction, sample_weight=None):
        onehot = None
        for m in self.metrics:
            concrete = self._resolve(m, tuple(y.shape), tuple(pred.raw.shape))
            raw_ok = pred.activation == "softmax" and isinstance(concrete, _ARGMAX_METRICS)
            yp = pred.raw if raw_ok else pred.probabilities()
            yt = y
            if isinstance(concrete, _POINTWISE_METRICS) and y.dtype.kind in "iu" and y.ndim == yp.ndim - 1:
                # integer ids against class scores: the one-hot rows, as the loss reads them
                if onehot is None:
                    onehot = backend.get_array_module(y).eye(yp.shape[-1], dtype=yp.dtype)[y]
                yt = onehot
            m.update_state(yt, yp, sample_weight)
        self._updated = {id(m) for m in self.metrics}

    def reset(self):
        for m in self.metrics:
            m.reset_state()
        self._updated = frozenset()

    def results(self) -> dict:
        """Floats (a list for a per-class metric such as F1Score(average=None)): the device read."""
        out = {}
        for m in self.metrics:
            r = m.result()
            out[self.prefix + m.name] = [float(v) for v in r] if isinstance(r, (list, tuple)) else float(r)
        return out

    def get_config(self):
        return [metrics_mod.serialize(i if isinstance(i, str) else m)
                for i, m in zip(self.identifiers, self.metrics)]


# ---- several outputs ------------------------------------------------------------------------

def mask_weights(mask, sample_weight, dtype, normalise):
    """Per-element weights from an output's mask (batch, timesteps) and the per-sample weights:
    Keras' rule for the loss (``normalise``: valid entries weigh size/valid, so the mean runs
    over the unmasked steps only) and for the metrics (plain 0/1)."""
    xp = backend.get_array_module(mask)
    m = mask.astype(dtype)
    if normalise:
        total = m.sum()
        m = m * (xp.asarray(m.size, dtype=dtype) / xp.maximum(total, xp.asarray(1, dtype=dtype)))
    if sample_weight is not None:
        sw = sample_weight.astype(dtype) if hasattr(sample_weight, "astype") else sample_weight
        if getattr(sw, "ndim", 0) == 1:
            sw = sw.reshape((-1,) + (1,) * (m.ndim - 1))
        m = m * sw
    return m


def _per_output(value, names, what, default=None):
    """``value`` for each output: one value for all, a list in output order, or a dict by name."""
    n = len(names)
    if isinstance(value, dict):
        unknown = [k for k in value if k not in names]
        if unknown:
            raise ValueError(f"compile: {what} names outputs {unknown}, but the model's outputs are {names}")
        return [value.get(k, default) for k in names]
    if isinstance(value, (list, tuple)) and n > 1:
        if len(value) != n:
            raise ValueError(f"compile: {what} expected {n} entries (one per output {names}), got {len(value)}")
        return list(value)
    return [value] * n


class CompiledLoss:
    """Every output's loss, weighted by ``loss_weights`` and summed:
    ``(model, x, y, sample_weight) -> (loss Tensor, Prediction or list of them)``. The last
    call's per-output losses stay in ``parts`` (for the ``<output>_loss`` logs)."""

    def __init__(self, identifier, output_names=("output",), loss_weights=None):
        self.output_names = list(output_names)
        self.identifier = identifier.lower() if isinstance(identifier, str) else identifier
        if identifier is None:
            raise ValueError("compile: loss is required (a name such as 'categorical_crossentropy', "
                             "a gpudl.losses object or a callable (y_true, y_pred))")
        idents = _per_output(identifier, self.output_names, "loss")
        if len(self.output_names) > 1 and isinstance(identifier, dict) and any(i is None for i in idents):
            missing = [n for n, i in zip(self.output_names, idents) if i is None]
            raise ValueError(f"compile: loss gives no loss for outputs {missing}")
        self.outputs = [OutputLoss(i) for i in idents]
        weights = _per_output(loss_weights, self.output_names, "loss_weights", default=1.0) \
            if loss_weights is not None else [1.0] * len(self.outputs)
        for w in weights:
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not np.isfinite(w):
                raise ValueError(f"compile: loss_weights expected finite numbers, got {loss_weights!r}")
        self.weights = [float(w) for w in weights]
        self.loss_weights = loss_weights
        self.parts = None

    @property
    def loss(self):
        """The first output's loss object (the only one for a one-output model)."""
        return self.outputs[0].loss

    @property
    def multi(self) -> bool:
        return len(self.outputs) > 1

    def fused_flags(self, model) -> list:
        acts = model.output_activations()
        return [o.fused_with(a) is not None for o, a in zip(self.outputs, acts)]

    def fused_with(self, model):
        return self.outputs[0].fused_with(model.output_activations()[0])

    def __call__(self, model, x, y, sample_weight=None):
        flags = self.fused_flags(model)
        out = model.forward(x, logits=flags if self.multi else flags[0])
        if isinstance(out, dict):
            out = [out[k] for k in model.output_names]
        outs = out if self.multi else [out]
        ys = y if self.multi else (y,)
        sws = sample_weight if isinstance(sample_weight, tuple) else (sample_weight,) * len(outs)
        masks = getattr(model, "output_masks", None) or [None] * len(outs)
        total, preds, parts = None, [], []
        for i, (ol, o, yi, swi, fused) in enumerate(zip(self.outputs, outs, ys, sws, flags)):
            mask = masks[i] if i < len(masks) else None
            wi = swi if mask is None else mask_weights(mask, swi, o.dtype, normalise=True)
            value, pred = ol(o, yi, wi, fused)
            pred.mask = mask
            parts.append(value)
            preds.append(pred)
            term = value if self.weights[i] == 1.0 else value * self.weights[i]
            total = term if total is None else total + term
        self.parts = parts
        return total, (preds if self.multi else preds[0])

    def check_targets(self, model, y, what):
        """Per output (``y`` a tuple for several): True for each whose ids were checked."""
        shapes = model.output_shapes
        ys = y if self.multi else (y,)
        return [ol.check_targets(None if s is None else tuple(s), yi, f"{what}" if not self.multi else
                                 f"{what} (output {name!r})") if yi is not None else False
                for ol, s, yi, name in zip(self.outputs, shapes, ys, self.output_names)]

    def get_config(self):
        if not self.multi:
            return self.outputs[0].get_config()
        return {"outputs": [o.get_config() for o in self.outputs], "weights": self.weights}


class CompiledMetrics:
    """Every output's metrics; with several outputs their logs are named ``<output>_<metric>``."""

    def __init__(self, metrics, compiled_loss):
        names = compiled_loss.output_names
        multi = compiled_loss.multi
        if multi and isinstance(metrics, (list, tuple)) and len(metrics) == len(names) and \
                all(isinstance(m, (list, tuple)) or m is None for m in metrics):
            per = [list(m or []) for m in metrics]  # a list of lists: one per output
        elif isinstance(metrics, dict):
            unknown = [k for k in metrics if k not in names]
            if unknown:
                raise ValueError(f"compile: metrics names outputs {unknown}, but the model's outputs are {names}")
            per = [metrics.get(k) for k in names]
            per = [[m] if isinstance(m, (str, metrics_mod.Metric)) else list(m or []) for m in per]
        else:
            per = [metrics] + [_copy_metrics(metrics) for _ in names[1:]]  # the same list for each output
        self.outputs = [OutputMetrics(m, ol, prefix=f"{n}_" if multi else "")
                        for m, ol, n in zip(per, compiled_loss.outputs, names)]
        self.identifiers = metrics
        all_names = [n for o in self.outputs for n in o.names]
        if len(set(all_names)) != len(all_names):
            raise ValueError(f"compile: metric names must be unique, got {all_names}")

    @property
    def metrics(self):
        return [m for o in self.outputs for m in o.metrics]

    @property
    def names(self):
        return [n for o in self.outputs for n in o.names]

    def check_targets(self, model, y, what, ids_checked):
        ys = y if len(self.outputs) > 1 else (y,)
        for om, s, yi, done in zip(self.outputs, model.output_shapes, ys, ids_checked):
            if yi is not None:
                om.check_targets(None if s is None else tuple(s), yi, what, done)

    def update(self, y, pred, sample_weight=None):
        preds = pred if isinstance(pred, list) else [pred]
        ys = y if len(self.outputs) > 1 else (y,)
        sws = sample_weight if isinstance(sample_weight, tuple) else (sample_weight,) * len(preds)
        for om, yi, p, swi in zip(self.outputs, ys, preds, sws):
            mask = getattr(p, "mask", None)
            if mask is not None:
                swi = mask_weights(mask, swi, np.float32, normalise=False)
            om.update(yi, p, swi)

    def reset(self):
        for o in self.outputs:
            o.reset()

    def results(self) -> dict:
        out = {}
        for o in self.outputs:
            out.update(o.results())
        return out

    def get_config(self):
        if len(self.outputs) == 1:
            return self.outputs[0].get_config()
        return {"outputs": [o.get_config() for o in self.outputs]}


def _copy_metrics(metrics):
    """The same metrics for another output: names as given, objects as fresh copies."""
    if metrics is None:
        return None
    items = metrics if isinstance(metrics, (list, tuple)) else [metrics]
    out = []
    for m in items:
        if isinstance(m, metrics_mod.Metric):
            m = type(m).from_config(m.get_config()) if hasattr(type(m), "from_config") else m
        out.append(m)
    return out
