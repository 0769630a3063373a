"""Fully connected, dropout and flatten layers."""
from __future__ import annotations

import numbers

import numpy as np

from .. import activations
from .. import functional as F
from .. import initializers, regularizers
from .. import random as grandom
from ..functional.dropout import STEP_OFFSET, splitmix64
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

    supports_masking = True  # passes the input's mask on (Keras)

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
        self.kernel_initializer = _init_arg(kernel_initializer)
        self.bias_initializer = _init_arg(bias_initializer)

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


def _init_arg(init):
    """An initializer argument as a layer keeps it: a name or a callable as given, a saved
    ``{"class", "config"}`` record as the object it describes (unknown ones raise now, not at
    build)."""
    resolved = initializers.get(init)
    return resolved if isinstance(init, dict) else init


def _init_name(layer, init):
    """What ``get_config`` stores for an initializer: a built-in name as that string, an
    initializer object (``gpudl.initializers.Constant(...)``, ...) as its
    ``{"class", "config"}`` record (``initializers.serialize``); the layers' constructors read
    both back through ``initializers.get``."""
    try:
        return initializers.serialize(init)
    except ValueError as exc:
        if isinstance(init, (str, dict, initializers.Initializer)):
            raise ValueError(f"{layer.describe()}: {exc}") from None
        raise ValueError(f"{layer.describe()} has a custom initializer callable {init!r}, which cannot be "
                         "saved: use a name or an object of gpudl.initializers") from None


def _reg_config(reg):
    if reg is None:
        return None
    if isinstance(reg, regularizers.Regularizer):
        return reg.get_config()
    raise ValueError(f"a custom regularizer callable {reg!r} cannot be saved")


class Dropout(Layer):
    """Drops a fraction ``rate`` of activations while training (inverted scaling); the
    identity at inference (Keras' rule: no scaling then).

    ``noise_shape`` (Keras): the shape of the keep mask, one entry per input axis including
    the batch axis, None entries taken from the input; the mask is broadcast over the axes
    where it has size 1, e.g. ``(None, 1, 28)`` on (N, T, 28) input drops the same features
    at every step of a sample.

    ``seed``: the layer draws its mask keys from its own stream, a pure function of the seed
    and the number of masks drawn so far, so two layers made with the same seed drop the
    same units on the same inputs; without it the keys come from gpudl's shared generator
    (``gpudl.set_seed``), as ``F.dropout`` draws them.

    ``layer(x, sample_offset=k)``: x holds samples k, k+1, ... of a larger batch (a
    data-parallel rank's share), and gets that batch's mask for them (see F.dropout); by
    default the training step's offset (``fit`` sets each rank's).
    """

    supports_masking = True  # passes the input's mask on (Keras)

    def __init__(self, rate, noise_shape=None, seed=None, name=None):
        super().__init__(name)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
            raise ValueError(f"Dropout expected a rate in [0, 1), got {rate!r}")
        self.rate = float(rate)
        self.noise_shape = _noise_shape_arg(noise_shape)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
                                 or not 0 <= seed < 2**64):
            raise ValueError(f"Dropout expected seed=None or an integer in [0, 2**64), got {seed!r}")
        self.seed = None if seed is None else int(seed)
        self._draws = 0  # keys drawn from the seed's stream so far

    def _next_key(self):
        """The next key of this layer's stream: output number ``_draws`` of SplitMix64 seeded
        with ``seed`` (gpudl.functional.dropout.splitmix64, the masks' own generator)."""
        key = int(splitmix64(self.seed, self._draws, 1)[0])
        self._draws += 1
        return key

    def forward(self, x, sample_offset=None):
        if self.noise_shape is not None and len(self.noise_shape) != x.ndim:
            raise ValueError(f"{self.describe()} expected noise_shape with one entry per input axis "
                             f"({x.ndim}), got noise_shape {self.noise_shape} for input shape {x.shape}")
        key = None
        if self.seed is not None and self.training and self.rate > 0.0:
            # inside fit's step: keyed on (seed, step, call), so ranks stay in step even when
            # one holds no sample of the batch (and so never calls the layer)
            key = grandom.seeded_key(self, self.seed)
            if key is None:
                key = self._next_key()
        try:
            offset = STEP_OFFSET if sample_offset is None else sample_offset
            return F.dropout(x, self.rate, training=self.training, sample_offset=offset,
                             noise_shape=self.noise_shape, key=key)
        except ValueError as exc:
            if "noise_shape" in str(exc):
                raise ValueError(f"{self.describe()}: {exc}") from None
            raise

    def get_config(self):
        return {"name": self.name, "rate": self.rate,
                "noise_shape": None if self.noise_shape is None else list(self.noise_shape),
                "seed": self.seed}


def _noise_shape_arg(noise_shape):
    if noise_shape is None:
        return None
    try:
        items = tuple(noise_shape)
    except TypeError:
        items = None
    if items is None or not items or not all(
            n is None or (isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1) for n in items):
        raise ValueError(f"Dropout expected noise_shape as a tuple of positive integers or None (one "
                         f"entry per input axis), got {noise_shape!r}")
    return tuple(None if n is None else int(n) for n in items)


class Flatten(Layer):
    """(N, ...) -> (N, prod(...))."""

    input_min_ndim = 1

    def build(self, x):
        self.input_spec = InputSpec(ndim=x.ndim, axes={i: n for i, n in enumerate(x.shape) if i > 0})

    def forward(self, x):
        return F.flatten(x)
