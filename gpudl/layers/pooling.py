"""Pooling layers (Lecture II's CNN): subsample the feature maps, keep the pattern."""
from __future__ import annotations

from .. import functional as F
from ..functional.conv import _int_pair, conv_output_size
from .base import InputSpec, Layer
from .conv import strides_arg

__all__ = ["MaxPool2D", "AvgPool2D", "MaxPooling2D", "AveragePooling2D"]


class _Pool2D(Layer):
    input_ndim = 4
    _op = None

    def __init__(self, pool_size=2, stride=None, padding=0, name=None, *, strides=None):
        super().__init__(name)
        cls = type(self).__name__
        self.pool_size = _int_pair(pool_size, cls, "pool_size", 1, "a positive int")
        self.stride = strides_arg(cls, stride, strides, self.pool_size)
        ph, pw = _int_pair(padding, cls, "padding", 0, "a non-negative int")
        if ph > self.pool_size[0] // 2 or pw > self.pool_size[1] // 2:
            raise ValueError(f"{cls} expected padding at most half the pool size "
                             f"{(self.pool_size[0] // 2, self.pool_size[1] // 2)}, got {(ph, pw)}")
        self.padding = (ph, pw)

    def compute_output_shape(self, input_shape):
        """(N, C, Ho, Wo) for an (N, C, H, W) input; raises if the window does not fit."""
        (kh, kw), (sh, sw), (ph, pw) = self.pool_size, self.stride, self.padding
        padded = (input_shape[2] + 2 * ph, input_shape[3] + 2 * pw)
        if kh > padded[0] or kw > padded[1]:
            raise ValueError(f"{self.describe()} has pool_size {self.pool_size}, larger than its padded "
                             f"input {padded} (input shape {tuple(input_shape)}, padding {self.padding})")
        return (input_shape[0], input_shape[1], conv_output_size(input_shape[2], kh, sh, 2 * ph),
                conv_output_size(input_shape[3], kw, sw, 2 * pw))

    def build(self, x):
        self.compute_output_shape(x.shape)
        self.input_spec = InputSpec(ndim=4, axes={1: x.shape[1]})

    def forward(self, x):
        self.compute_output_shape(x.shape)
        return self._op(x, self.pool_size, self.stride, self.padding)

    def get_config(self):
        return {"name": self.name, "pool_size": list(self.pool_size), "stride": list(self.stride),
                "padding": list(self.padding)}


class MaxPool2D(_Pool2D):
    """Max of each pool_size window (stride defaults to pool_size); pads never win."""

    _op = staticmethod(F.max_pool2d)


class AvgPool2D(_Pool2D):
    """Mean of each pool_size window; padded zeros count (every window divides by kh*kw)."""

    _op = staticmethod(F.avg_pool2d)


#: Keras' names: the same classes, so configs and saved files name MaxPool2D / AvgPool2D
MaxPooling2D = MaxPool2D
AveragePooling2D = AvgPool2D
