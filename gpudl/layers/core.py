"""Fully connected, dropout and flatten layers."""
from __future__ import annotations

from .. import activations
from .. import functional as F
from .. import regularizers
from .base import InputSpec, Layer, renamed_arg

__all__ = ["Dense", "Dropout", "Flatten"]


def _positive_int(layer, arg, v):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{layer} expected a positive integer for {arg}, got {v!r}")
    return v


class KernelBias:
    """Keras' names for W and b: ``layer.kernel``, ``layer.bias`` (None without a bias)."""

    @property
    def kernel(self):
        if "W" not in self._params:
            raise AttributeError(f"{self.describe()} has no kernel yet: it is built on its first call")
        return self.W

    @property
    def bias(self):
        if not self.use_bias:
            return None
        if "b" not in self._params:
            raise AttributeError(f"{self.describe()} has no bias yet: it is built on its first call")
        return self.b


class Dense(KernelBias, Layer):
    """``activation(x @ W + b)`` with W (in, units), b (units,).

    ``output_dim=`` is Keras 1's name for ``units`` (a DeprecationWarning says so).
    """

    input_min_ndim = 2

    def __init__(self, units=None, activation=None, use_bias=True, kernel_regularizer=None,
                 bias_regularizer=None, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 name=None, *, output_dim=None):
        super().__init__(name)
        units = renamed_arg("Dense", "output_dim", output_dim, "units", units, units is not None)
        if units is None:
            raise ValueError("Dense expected units (the number of outputs), got none")
        self.units = _positive_int("Dense", "units", units)
        self.activation = activation
        self._act = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer

    def build(self, x):
        n_in = x.shape[-1]
        self.add_param("W", (n_in, self.units), self.kernel_initializer, self.kernel_regularizer, like=x)
        if self.use_bias:
            self.add_param("b", (self.units,), self.bias_initializer, self.bias_regularizer, like=x)
        self.input_spec = InputSpec(min_ndim=2, axes={-1: n_in})

    def forward(self, x, logits=False):
        """``logits=True`` skips a final softmax or sigmoid (the losses fused on logits)."""
        z = F.linear(x, self.W, self.b if self.use_bias else None)
        return z if logits and self.output_activation() else self._act(z)

    def output_activation(self):
        name = self.activation.lower() if isinstance(self.activation, str) else None
        return name if name in ("softmax", "sigmoid") else None

    def get_config(self):
        return {"name": self.name, "units": self.units, "activation": _act_name(self, self.activation),
                "use_bias": self.use_bias,
                "kernel_regularizer": _reg_config(self.kernel_regularizer),
                "bias_regularizer": _reg_config(self.bias_regularizer),
                "kernel_initializer": _init_name(self, self.kernel_initializer),
                "bias_initializer": _init_name(self, self.bias_initializer)}


def _act_name(layer, act):
    name = activations.name_of(act)
    if name is None:
        raise ValueError(f"{layer.describe()} has a custom activation callable {act!r}, which cannot be "
                         f"saved: use one of {', '.join(activations.NAMES)}")
    return name


def _init_name(layer, init):
    if isinstance(init, str):
        return init
    raise ValueError(f"{layer.describe()} has a custom initializer callable {init!r}, which cannot be saved")


def _reg_config(reg):
    if reg is None:
        return None
    if isinstance(reg, regularizers.Regularizer):
        return reg.get_config()
    raise ValueError(f"a custom regularizer callable {reg!r} cannot be saved")


class Dropout(Layer):
    """Drops a fraction ``rate`` of activations while training (inverted scaling).

    ``layer(x, sample_offset=k)``: x holds samples k, k+1, ... of a larger batch (a
    data-parallel rank's share), and gets that batch's mask for them (see F.dropout).
    """

    def __init__(self, rate, name=None):
        super().__init__(name)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
            raise ValueError(f"Dropout expected a rate in [0, 1), got {rate!r}")
        self.rate = float(rate)

    def forward(self, x, sample_offset=0):
        return F.dropout(x, self.rate, training=self.training, sample_offset=sample_offset)

    def get_config(self):
        return {"name": self.name, "rate": self.rate}


class Flatten(Layer):
    """(N, ...) -> (N, prod(...))."""

    input_min_ndim = 1

    def build(self, x):
        self.input_spec = InputSpec(ndim=x.ndim, axes={i: n for i, n in enumerate(x.shape) if i > 0})

    def forward(self, x):
        return F.flatten(x)
