"""Activation layers of Lecture I."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from .base import InputSpec, Layer

__all__ = ["ReLU", "LeakyReLU", "PReLU", "Sigmoid", "Tanh", "Softmax", "Maxout", "Activation"]


class ReLU(Layer):
    def forward(self, x):
        return F.relu(x)


class Sigmoid(Layer):
    def forward(self, x, logits=False):
        return x if logits else F.sigmoid(x)

    def output_activation(self):
        return "sigmoid"


class Tanh(Layer):
    def forward(self, x):
        return F.tanh(x)


class Softmax(Layer):
    def __init__(self, axis=-1, name=None):
        super().__init__(name)
        self.axis = int(axis)

    def forward(self, x, logits=False):
        self._ndim = x.ndim
        if logits and self.output_activation():
            return x
        return F.softmax(x, self.axis)

    def output_activation(self):
        # fused cross entropy normalises over the last axis: only a softmax over that one fuses
        last = self.axis == -1 or self.axis == getattr(self, "_ndim", 0) - 1
        return "softmax" if last else None

    def get_config(self):
        return {"name": self.name, "axis": self.axis}


class LeakyReLU(Layer):
    """max(x, alpha * x); ``negative_slope=`` is Keras 3's name for ``alpha`` (default 0.01 either way)."""

    def __init__(self, alpha=None, name=None, *, negative_slope=None):
        super().__init__(name)
        if alpha is not None and negative_slope is not None and alpha != negative_slope:
            raise ValueError(f"LeakyReLU got alpha={alpha!r} and negative_slope={negative_slope!r}, which "
                             "disagree: pass one of them")
        alpha = alpha if alpha is not None else negative_slope if negative_slope is not None else 0.01
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
            raise ValueError(f"LeakyReLU expected a number for alpha, got {alpha!r}")
        self.alpha = float(alpha)

    @property
    def negative_slope(self) -> float:
        return self.alpha

    def forward(self, x):
        return F.leaky_relu(x, self.alpha)

    def get_config(self):
        return {"name": self.name, "alpha": self.alpha}


class PReLU(Layer):
    """Leaky ReLU whose slope is learned: one per channel (axis 1), or one shared."""

    input_min_ndim = 2

    def __init__(self, alpha_initializer=0.25, shared=False, name=None):
        super().__init__(name)
        if isinstance(alpha_initializer, bool) or not isinstance(alpha_initializer, (int, float)):
            raise ValueError(f"PReLU expected a number for alpha_initializer, got {alpha_initializer!r}")
        self.alpha_initializer = float(alpha_initializer)
        self.shared = bool(shared)

    def build(self, x):
        shape = () if self.shared else (x.shape[1],)
        value = self.alpha_initializer
        self.add_param("alpha", shape, lambda s, dtype: np.full(s, value, dtype=dtype), like=x)
        self.input_spec = InputSpec(min_ndim=2, axes={} if self.shared else {1: x.shape[1]})

    def forward(self, x):
        return F.prelu(x, self.alpha)

    def get_config(self):
        return {"name": self.name, "alpha_initializer": self.alpha_initializer, "shared": self.shared}


class Maxout(Layer):
    """Max over groups of ``pieces`` consecutive channels (axis 1): the tutorial's maxout.

    Put it after a Dense(units * pieces) (or Conv2D(filters * pieces)) to get a maxout layer
    of ``units`` neurons, each the max of its ``pieces`` linear pieces.
    """

    input_min_ndim = 2

    def __init__(self, pieces, name=None):
        super().__init__(name)
        if isinstance(pieces, bool) or not isinstance(pieces, int) or pieces < 1:
            raise ValueError(f"Maxout expected a positive integer number of pieces, got {pieces!r}")
        self.pieces = pieces

    def build(self, x):
        if x.shape[1] % self.pieces:
            raise ValueError(f"{self.describe()} expected axis 1 divisible by pieces={self.pieces}, "
                             f"got shape {x.shape}")
        self.input_spec = InputSpec(min_ndim=2, axes={1: x.shape[1]})

    def forward(self, x):
        return F.maxout(x, self.pieces)

    def get_config(self):
        return {"name": self.name, "pieces": self.pieces}


class Activation(Layer):
    """An activation given by name ('relu', 'sigmoid', ...)."""

    def __init__(self, activation, name=None):
        from .. import activations
        super().__init__(name)
        self._act = activations.get(activation)
        if not isinstance(activation, str):
            raise ValueError(f"Activation layer takes an activation name, got {activation!r}")
        self.activation = activation

    def forward(self, x, logits=False):
        return x if logits and self.output_activation() else self._act(x)

    def output_activation(self):
        name = self.activation.lower()
        return name if name in ("softmax", "sigmoid") else None

    def get_config(self):
        return {"name": self.name, "activation": self.activation}
