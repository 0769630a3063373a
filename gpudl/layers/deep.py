"""Deep structures from Lecture I ("Deep = many hidden layers, special structure"):
Highway networks and Residual networks, which let gradients reach the early layers of a
very deep net through a (gated) copy of the input."""
from __future__ import annotations

import numpy as np

from .. import activations
from .. import functional as F
from .. import serialization
from .base import InputSpec, Layer
from .core import _act_name, _init_name

__all__ = ["Highway", "Residual"]


class Highway(Layer):
    """``y = T * H(x) + (1 - T) * x`` on (N, features), a highway layer (Srivastava et al.).

    H = activation(x @ W_h + b_h) is the transformed signal; the gate T = sigmoid(x @ W_t +
    b_t) decides, per unit, how much of it replaces the copied input. ``transform_bias``
    (negative) starts the gates mostly closed, so a deep stack begins close to the
    identity and learns which layers it needs.
    """

    input_ndim = 2

    def __init__(self, activation="relu", transform_bias=-2.0, kernel_initializer="glorot_uniform", name=None):
        super().__init__(name)
        self.activation = activation
        self._act = activations.get(activation)
        if isinstance(transform_bias, bool) or not isinstance(transform_bias, (int, float)):
            raise ValueError(f"Highway expected a number for transform_bias, got {transform_bias!r}")
        self.transform_bias = float(transform_bias)
        self.kernel_initializer = kernel_initializer

    def build(self, x):
        n = x.shape[1]
        tb = self.transform_bias
        self.add_param("W_h", (n, n), self.kernel_initializer, like=x)
        self.add_param("b_h", (n,), "zeros", like=x)
        self.add_param("W_t", (n, n), self.kernel_initializer, like=x)
        self.add_param("b_t", (n,), lambda shape, dtype: np.full(shape, tb, dtype=dtype), like=x)
        self.input_spec = InputSpec(ndim=2, axes={-1: n})

    def forward(self, x):
        h = self._act(F.linear(x, self.W_h, self.b_h))
        t = F.sigmoid(F.linear(x, self.W_t, self.b_t))
        return x + t * (h - x)  # = t*h + (1-t)*x with one op fewer

    def get_config(self):
        return {"name": self.name, "activation": _act_name(self, self.activation),
                "transform_bias": self.transform_bias,
                "kernel_initializer": _init_name(self, self.kernel_initializer)}


class Residual(Layer):
    """``y = x + f(x)`` with f the inner layers applied in order (He et al.'s residual block).

    f must keep the input's shape (e.g. Dense layers of the input's width, or Conv2D with
    ``padding="same"`` and as many filters as input channels).
    """

    def __init__(self, *layers, name=None):
        super().__init__(name)
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        if not layers:
            raise ValueError("Residual expected at least one inner layer, got none")
        for layer in layers:
            if not isinstance(layer, Layer):
                raise TypeError(f"Residual expected gpudl layers, got {type(layer).__name__}")
        self.layers = list(layers)

    def sublayers(self):
        return list(self.layers)

    def forward(self, x):
        h = x
        for layer in self.layers:
            h = layer(h)
        if h.shape != x.shape:
            chain = " -> ".join(layer.describe() for layer in self.layers)
            raise ValueError(f"{self.describe()} needs its inner layers to keep the input shape for x + f(x): "
                             f"expected {x.shape}, got {h.shape} from {chain}")
        return x + h

    def get_config(self):
        return {"name": self.name,
                # a layer used twice is written once and then referred to: loading keeps it shared
                "layers": [{"same_as": next(j for j, o in enumerate(self.layers) if o is layer)}
                           if any(o is layer for o in self.layers[:i]) else
                           serialization.serialize_layer(layer)
                           for i, layer in enumerate(self.layers)]}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        specs = config.pop("layers")
        inner = []
        for s in specs:
            if "same_as" in s:
                j = s["same_as"]
                if not isinstance(j, int) or not 0 <= j < len(inner):
                    raise ValueError(f"Residual config: 'same_as' must name an earlier layer, got {j!r}")
                inner.append(inner[j])
            else:
                inner.append(serialization.deserialize_layer(s))
        return cls(*inner, **config)
