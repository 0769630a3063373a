"""Normalisation layers: BatchNormalization and LayerNormalization (Keras 3 semantics)."""
from __future__ import annotations

import numbers

from .. import functional as F
from ..functional.normalization import _axes
from .base import InputSpec, Layer

__all__ = ["BatchNormalization", "LayerNormalization"]


def _check_axis_arg(layer, axis, allow_list):
    ok_int = isinstance(axis, int) and not isinstance(axis, bool)
    ok_list = allow_list and isinstance(axis, (list, tuple)) and len(axis) > 0 and all(
        isinstance(a, int) and not isinstance(a, bool) for a in axis)
    if not (ok_int or ok_list):
        want = "an integer axis or a list of them" if allow_list else "an integer axis"
        raise ValueError(f"{layer} expected {want}, got {axis!r}")
    return axis if ok_int else [int(a) for a in axis]


def _check_epsilon(layer, epsilon):
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or not epsilon > 0:
        raise ValueError(f"{layer} expected a positive epsilon, got {epsilon!r}")
    return float(epsilon)


class BatchNormalization(Layer):
    """Normalise each channel (``axis``; 1 is the channel axis of NCHW and the feature axis of
    (N, F)) over the batch and every other axis.

    Training (``layer.training`` and ``layer.trainable``, Keras 3's ``if training and
    self.trainable`` in keras/src/layers/normalization/batch_normalization.py ``call``): the
    batch's mean and *biased* variance (Keras' ``ops.moments``) normalise the input, and the
    moving statistics move as ``moving = moving * momentum + batch * (1 - momentum)``, Keras'
    ``moving_mean.assign(...)`` exactly (the biased variance for the moving variance too, no
    Bessel correction). Inference, or a frozen layer: the moving statistics normalise.

    ``moving_mean`` (zeros) and ``moving_variance`` (ones) are Parameters marked
    ``trainable = False``: saved with the model, never stepped by an optimizer (Keras'
    ``add_weight(..., trainable=False)``).
    """

    input_min_ndim = 2

    def __init__(self, axis=1, momentum=0.99, epsilon=1e-3, center=True, scale=True, name=None):
        super().__init__(name)
        self.axis = _check_axis_arg("BatchNormalization", axis, allow_list=False)
        if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNormalization expected a momentum in [0, 1], got {momentum!r}")
        self.momentum = float(momentum)
        self.epsilon = _check_epsilon("BatchNormalization", epsilon)
        self.center, self.scale = bool(center), bool(scale)

    def build(self, x):
        try:
            (ax,) = _axes(self.axis, x.ndim, "BatchNormalization")
        except ValueError:
            raise ValueError(f"{self.describe()} expected an axis in [{-x.ndim}, {x.ndim}) for input of "
                             f"shape {x.shape}, got axis={self.axis!r}") from None
        if ax == 0:
            raise ValueError(f"{self.describe()} cannot normalise over the batch axis 0 (axis={self.axis!r}); "
                             "pass the channel/feature axis")
        c = x.shape[ax]
        if self.scale:
            self.add_param("gamma", (c,), "ones", like=x)
        if self.center:
            self.add_param("beta", (c,), "zeros", like=x)
        for name, init in (("moving_mean", "zeros"), ("moving_variance", "ones")):
            p = self.add_param(name, (c,), init, like=x)
            p.trainable = False
            p.requires_grad = False  # statistics, not weights: no gradient is ever kept for them
        self._axis = ax
        self.input_spec = InputSpec(ndim=x.ndim, axes={ax: c})

    def forward(self, x):
        gamma = self.gamma if self.scale else None
        beta = self.beta if self.center else None
        if not (self.training and self.trainable):
            return F.batch_norm(x, gamma, beta, self.moving_mean, self.moving_variance,
                                axis=self._axis, epsilon=self.epsilon)
        if x.size // x.shape[self._axis] < 2:
            # one value per channel: its variance is 0 and the output is beta alone (PyTorch refuses it too)
            raise ValueError(f"{self.describe()} expected more than one value per channel in training, got "
                             f"input of shape {x.shape} (a batch of one): train with batches of two or more, "
                             "or call it with training=False")
        y, mean, var = F.batch_norm(x, gamma, beta, axis=self._axis, epsilon=self.epsilon, return_stats=True)
        self._update_moving(self.moving_mean, mean.data)
        self._update_moving(self.moving_variance, var.data)
        return y

    def _update_moving(self, p, batch):
        # on raw arrays, in place: no autograd history, and the Parameter object (which the
        # optimizer and save/load hold) stays the same
        dt = p.data.dtype.type
        new = p.data * dt(self.momentum) + batch.astype(p.data.dtype, copy=False) * dt(1.0 - self.momentum)
        p.data[...] = new

    def get_config(self):
        return {"name": self.name, "axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale}


class LayerNormalization(Layer):
    """Normalise each sample over ``axis`` (an int or a list of axes, not the batch axis) with
    its own mean and biased variance, then ``* gamma + beta`` (shaped as the input on those
    axes; Keras 3's defaults center=True, scale=True, epsilon=1e-3)."""

    input_min_ndim = 2
    supports_masking = True

    def __init__(self, axis=-1, epsilon=1e-3, name=None):
        super().__init__(name)
        self.axis = _check_axis_arg("LayerNormalization", axis, allow_list=True)
        self.epsilon = _check_epsilon("LayerNormalization", epsilon)

    def build(self, x):
        try:
            axes = _axes(self.axis, x.ndim, "LayerNormalization")
        except ValueError:
            raise ValueError(f"{self.describe()} expected distinct axes in [{-x.ndim}, {x.ndim}) for input of "
                             f"shape {x.shape}, got axis={self.axis!r}") from None
        if 0 in axes:
            raise ValueError(f"{self.describe()} cannot normalise over the batch axis 0 (axis={self.axis!r})")
        shape = tuple(x.shape[a] for a in axes)
        self.add_param("gamma", shape, "ones", like=x)
        self.add_param("beta", shape, "zeros", like=x)
        self._axes = axes
        self.input_spec = InputSpec(ndim=x.ndim, axes={a: x.shape[a] for a in axes})

    def forward(self, x):
        return F.layer_norm(x, self.gamma, self.beta, axis=self._axes, epsilon=self.epsilon)

    def get_config(self):
        return {"name": self.name, "axis": self.axis, "epsilon": self.epsilon}
