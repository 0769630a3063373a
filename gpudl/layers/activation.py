"""Activation layers of Lecture I."""
from __future__ import annotations

import numbers

import numpy as np

from .. import functional as F
from .. import regularizers
from .base import InputSpec, Layer
from .core import _init_arg, _init_name, _reg_config

__all__ = ["ReLU", "LeakyReLU", "PReLU", "Sigmoid", "Tanh", "Softmax", "Maxout", "Activation"]


class ReLU(Layer):
    """Keras' ReLU: ``max_value`` where x >= max_value, x where threshold <= x < max_value,
    ``negative_slope * (x - threshold)`` below the threshold. The defaults are max(x, 0)."""

    supports_masking = True  # passes the input's mask on (Keras)

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, name=None):
        super().__init__(name)
        for arg, v in (("max_value", max_value), ("negative_slope", negative_slope), ("threshold", threshold)):
            if (v is not None or arg != "max_value") and (isinstance(v, bool) or not isinstance(v, numbers.Real)):
                raise ValueError(f"ReLU expected a number for {arg}, got {v!r}")
        if max_value is not None and max_value < 0:
            raise ValueError(f"ReLU expected max_value=None or a non-negative number, got {max_value!r}")
        if negative_slope < 0:
            raise ValueError(f"ReLU expected a non-negative negative_slope, got {negative_slope!r}")
        self.max_value = None if max_value is None else float(max_value)
        self.negative_slope = float(negative_slope)
        self.threshold = float(threshold)

    def forward(self, x):
        return F.relu(x, negative_slope=self.negative_slope, max_value=self.max_value, threshold=self.threshold)

    def get_config(self):
        return {**super().get_config(), "max_value": self.max_value, "negative_slope": self.negative_slope,
                "threshold": self.threshold}


class Sigmoid(Layer):
    supports_masking = True  # passes the input's mask on (Keras)

    def forward(self, x, logits=False):
        return x if logits else F.sigmoid(x)

    def output_activation(self):
        return "sigmoid"


class Tanh(Layer):
    supports_masking = True  # passes the input's mask on (Keras)

    def forward(self, x):
        return F.tanh(x)


class Softmax(Layer):
    supports_masking = True  # passes the input's mask on (Keras)

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

    supports_masking = True  # passes the input's mask on (Keras)

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
    """Leaky ReLU whose slope is learned: ``x`` where x > 0, else ``alpha * x``.

    Where alpha lives:

    - ``shared_axes=None`` (the default): one alpha per channel of axis 1, PyTorch's
      ``num_parameters`` convention (``nn.PReLU(num_parameters=C)``), or one alpha for the
      whole input with ``shared=True`` (``nn.PReLU()``'s single slope);
    - ``shared_axes`` (Keras): the axes, counted with the batch axis as 0, along which alpha
      is shared; alpha's shape is the input's without the batch axis, with those axes set to
      1 (NCHW input with ``shared_axes=[2, 3]``: alpha (C, 1, 1), one per channel).

    ``alpha_initializer``: a number (every slope starts there, 0.25 as in PyTorch), an
    initializer name or an initializer object (``gpudl.initializers``);
    ``alpha_regularizer`` a regularizer as for Dense's weights.
    """

    supports_masking = True  # passes the input's mask on (Keras)

    input_min_ndim = 2

    def __init__(self, alpha_initializer=0.25, alpha_regularizer=None, shared_axes=None, name=None, *,
                 shared=False):
        super().__init__(name)
        if isinstance(alpha_initializer, bool):
            raise ValueError(f"PReLU expected a number, an initializer name or object for alpha_initializer, "
                             f"got {alpha_initializer!r}")
        if isinstance(alpha_initializer, numbers.Real):
            alpha_initializer = float(alpha_initializer)
        else:
            try:
                alpha_initializer = _init_arg(alpha_initializer)
            except ValueError as exc:
                raise ValueError(f"PReLU expected a number, an initializer name or object for "
                                 f"alpha_initializer: {exc}") from None
        self.alpha_initializer = alpha_initializer
        self.alpha_regularizer = regularizers.get(alpha_regularizer)
        self.shared = bool(shared)
        if shared_axes is not None:
            axes = [shared_axes] if isinstance(shared_axes, numbers.Integral) and not isinstance(shared_axes, bool) \
                else shared_axes
            try:
                axes = list(axes)
            except TypeError:
                axes = None
            if not axes or not all(isinstance(a, numbers.Integral) and not isinstance(a, bool) and a >= 1
                                   for a in axes) or len(set(axes)) != len(axes):
                raise ValueError(f"PReLU expected shared_axes as distinct positive axes (the batch axis is 0), "
                                 f"got {shared_axes!r}")
            if self.shared:
                raise ValueError("PReLU got shared=True and shared_axes: pass one of them")
            shared_axes = [int(a) for a in axes]
        self.shared_axes = shared_axes

    def build(self, x):
        if self.shared_axes is not None:
            bad = [a for a in self.shared_axes if a >= x.ndim]
            if bad:
                raise ValueError(f"{self.describe()} expected shared_axes in [1, {x.ndim}) for input of shape "
                                 f"{x.shape}, got shared_axes={self.shared_axes}")
            shape = tuple(1 if i in self.shared_axes else n for i, n in enumerate(x.shape) if i > 0)
            spec = {i: n for i, n in enumerate(x.shape) if i > 0 and i not in self.shared_axes}
        else:
            shape = () if self.shared else (x.shape[1],)
            spec = {} if self.shared else {1: x.shape[1]}
        init = self.alpha_initializer
        if isinstance(init, float):
            value = init
            init = lambda s, dtype: np.full(s, value, dtype=dtype)  # noqa: E731
        self.add_param("alpha", shape, init, self.alpha_regularizer, like=x)
        self.input_spec = InputSpec(ndim=x.ndim if self.shared_axes is not None else None, min_ndim=2,
                                    axes=spec)

    def forward(self, x):
        return F.prelu(x, self.alpha)

    def get_config(self):
        init = self.alpha_initializer
        return {"name": self.name,
                "alpha_initializer": init if isinstance(init, float) else _init_name(self, init),
                "alpha_regularizer": _reg_config(self.alpha_regularizer),
                "shared_axes": self.shared_axes, "shared": self.shared}


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

    supports_masking = True  # passes the input's mask on (Keras)

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
