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

from .. import backend
from .. import functional as F
from .. import losses as losses_mod
from .. import metrics as metrics_mod
from ..autograd import Tensor, no_grad

__all__ = ["CompiledLoss", "CompiledMetrics", "Prediction"]

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


class CompiledLoss:
    """The compiled loss: ``(model, x, y, sample_weight) -> (loss Tensor, Prediction)``."""

    def __init__(self, identifier):
        if identifier is None:
            raise ValueError("compile: loss is required (a name such as 'categorical_crossentropy', "
                             "a gpudl.losses object or a callable (y_true, y_pred))")
        self.identifier = identifier.lower() if isinstance(identifier, str) else identifier
        self.loss = losses_mod.get(identifier)
        self._variant = self.loss.logits_variant()

    def fused_with(self, model):
        """The logits variant when ``model`` ends in the activation it replaces, else None."""
        if self._variant is None:
            return None
        act = model.output_activation()
        return self._variant if act is not None and act == self.loss.logits_activation else None

    def __call__(self, model, x, y, sample_weight=None):
        variant = self.fused_with(model)
        if variant is not None:
            z = model.forward(x, logits=True)
            return variant(y, z, sample_weight), Prediction(z, self.loss.logits_activation)
        out = model.forward(x)
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

    def check_targets(self, model, y, what):
        """Shape, dtype and id range of ``y`` against the model's output, once per call of
        fit/evaluate (reads the range back once; never per step). True when ids were checked."""
        out = model.output_shape
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


class CompiledMetrics:
    """The compiled metrics, updated each step on the device and read once an epoch."""

    def __init__(self, metrics, compiled_loss):
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
        names = [m.name for m in self.metrics]
        if "loss" in names or len(set(names)) != len(names):
            raise ValueError(f"compile: metric names must be unique and not 'loss', got {names}")

    @property
    def names(self):
        return [m.name for m in self.metrics]

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

    def check_targets(self, model, y, what, ids_checked=False):
        out = model.output_shape
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
            out[m.name] = [float(v) for v in r] if isinstance(r, (list, tuple)) else float(r)
        return out

    def get_config(self):
        return [metrics_mod.serialize(i if isinstance(i, str) else m)
                for i, m in zip(self.identifiers, self.metrics)]
