"""Pooling layers (Lecture II's CNN): subsample the feature maps, keep the pattern.

padding: an int or a pair (at most half the pool size, padded on both sides, as PyTorch),
"valid" (none) or "same" (Keras/TensorFlow: output ceil(H / strides), the odd pad at the
bottom/right; a max never picks a pad, an average divides by the window's real cells).
"""
from __future__ import annotations

from .. import functional as F
from ..functional.conv import _int_pair, conv_output_size, normalize_padding
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
        if isinstance(padding, str):
            if padding.lower() not in ("valid", "same"):
                raise ValueError(f"{cls} expected padding 'valid', 'same', a non-negative int or a pair of them, "
                                 f"got {padding!r}")
            self.padding = padding.lower()
        else:
            ph, pw = _int_pair(padding, cls, "padding", 0, "a non-negative int")
            if ph > self.pool_size[0] // 2 or pw > self.pool_size[1] // 2:
                raise ValueError(f"{cls} expected padding at most half the pool size "
                                 f"{(self.pool_size[0] // 2, self.pool_size[1] // 2)}, got {(ph, pw)}")
            self.padding = (ph, pw)

    def _pads(self, shape):
        """(top, bottom, left, right) for an (N, C, H, W) input."""
        if isinstance(self.padding, str):
            return normalize_padding(self.padding, shape[2:], self.pool_size, self.stride, type(self).__name__)
        ph, pw = self.padding
        return (ph, ph, pw, pw)

    def compute_output_shape(self, input_shape):
        """(N, C, Ho, Wo) for an (N, C, H, W) input; raises if the window does not fit."""
        (kh, kw), (sh, sw) = self.pool_size, self.stride
        pt, pb, pl, pr = self._pads(input_shape)
        padded = (input_shape[2] + pt + pb, input_shape[3] + pl + pr)
        if kh > padded[0] or kw > padded[1]:
            raise ValueError(f"{self.describe()} has pool_size {self.pool_size}, larger than its padded "
                             f"input {padded} (input shape {tuple(input_shape)}, padding {self.padding})")
        return (input_shape[0], input_shape[1], conv_output_size(input_shape[2], kh, sh, pt + pb),
                conv_output_size(input_shape[3], kw, sw, pl + pr))

    def build(self, x):
        self.compute_output_shape(x.shape)
        self.input_spec = InputSpec(ndim=4, axes={1: x.shape[1]})

    def forward(self, x):
        self.compute_output_shape(x.shape)
        return self._op(x, self.pool_size, self.stride, self.padding)

    def get_config(self):
        padding = self.padding if isinstance(self.padding, str) else list(self.padding)
        return {"name": self.name, "pool_size": list(self.pool_size), "stride": list(self.stride),
                "padding": padding}


class MaxPool2D(_Pool2D):
    """Max of each pool_size window (stride defaults to pool_size); pads never win."""

    _op = staticmethod(F.max_pool2d)


def _avg_pool(x, pool_size, stride, padding):
    # Keras' "same" averages the real cells only (TensorFlow's SAME pooling); integer padding
    # counts the padded zeros, as PyTorch's default does
    return F.avg_pool2d(x, pool_size, stride, padding, count_include_pad=padding != "same")


class AvgPool2D(_Pool2D):
    """Mean of each pool_size window. Integer padding: padded zeros count (every window
    divides by kh*kw); "same": each window divides by its real cells, as in Keras."""

    _op = staticmethod(_avg_pool)


#: Keras' names: the same classes, so configs and saved files name MaxPool2D / AvgPool2D
MaxPooling2D = MaxPool2D
AveragePooling2D = AvgPool2D
