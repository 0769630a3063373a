"""Convolution layer (Lecture II's CNN): each filter detects a small pattern anywhere."""
from __future__ import annotations

from .. import activations
from .. import functional as F
from .. import regularizers
from ..functional.conv import conv_output_size, normalize_kernel, normalize_padding, normalize_stride
from .base import InputSpec, Layer
from .core import KernelBias, _act_name, _init_name, _positive_int, _reg_config

__all__ = ["Conv2D"]


def _padding_arg(layer, padding):
    """'valid' / 'same' (any case), an int or a pair; checked now, not on the first call."""
    normalize_padding(padding, (1, 1), (1, 1), (1, 1), layer)  # raises with the accepted forms
    if isinstance(padding, str):
        return padding.lower()
    return padding if isinstance(padding, int) else tuple(int(p) for p in padding)


def strides_arg(cls, stride, strides, default):
    """Keras' ``strides=`` as well as gpudl's ``stride=``; both given must agree."""
    if strides is None:
        return default if stride is None else normalize_stride(stride, cls)
    s = normalize_stride(strides, cls)
    if stride is not None and normalize_stride(stride, cls) != s:
        raise ValueError(f"{cls} got stride={stride!r} and strides={strides!r}, which disagree: pass one of them")
    return s


class Conv2D(KernelBias, Layer):
    """``activation(conv2d(x, W) + b)`` on NCHW images, W (filters, in_ch, kh, kw), b (filters,).

    padding: "valid" (none), "same" (output ceil(H / stride), extra pad at bottom/right as
    in Keras), an int or a pair (rows, cols) padded on both sides. ``strides=`` (Keras) is
    ``stride=``.
    """

    input_ndim = 4

    def __init__(self, filters, kernel_size, stride=None, padding="valid", activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", kernel_regularizer=None, bias_initializer="zeros",
                 bias_regularizer=None, name=None, *, strides=None):
        super().__init__(name)
        self.filters = _positive_int("Conv2D", "filters", filters)
        self.kernel_size = normalize_kernel(kernel_size, "Conv2D")
        self.stride = strides_arg("Conv2D", stride, strides, normalize_stride(1, "Conv2D"))
        self.padding = _padding_arg("Conv2D", padding)
        self.activation = activation
        self._act = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)

    def compute_output_shape(self, input_shape):
        """(N, filters, Ho, Wo) for an (N, C, H, W) input; raises if the kernel does not fit."""
        pads = self._pads(input_shape)
        kh, kw = self.kernel_size
        sh, sw = self.stride
        return (input_shape[0], self.filters,
                conv_output_size(input_shape[2], kh, sh, pads[0] + pads[1]),
                conv_output_size(input_shape[3], kw, sw, pads[2] + pads[3]))

    def _pads(self, shape):
        pads = normalize_padding(self.padding, shape[2:], self.kernel_size, self.stride, "Conv2D")
        padded = (shape[2] + pads[0] + pads[1], shape[3] + pads[2] + pads[3])
        if self.kernel_size[0] > padded[0] or self.kernel_size[1] > padded[1]:
            raise ValueError(f"{self.describe()} has kernel_size {self.kernel_size}, larger than its padded "
                             f"input {padded} (input shape {tuple(shape)}, padding {self.padding!r})")
        return pads

    def build(self, x):
        self._pads(x.shape)
        in_ch = x.shape[1]
        kh, kw = self.kernel_size
        self.add_param("W", (self.filters, in_ch, kh, kw), self.kernel_initializer, self.kernel_regularizer,
                       like=x)
        if self.use_bias:
            self.add_param("b", (self.filters,), self.bias_initializer, self.bias_regularizer, like=x)
        self.input_spec = InputSpec(ndim=4, axes={1: in_ch})

    def forward(self, x):
        self._pads(x.shape)  # a clear error naming this layer for too small an image
        b = self.b if self.use_bias else None
        if self._act is F.relu:  # one fused op: saves two passes over the output
            return F.conv2d(x, self.W, b, self.stride, self.padding, activation="relu")
        return self._act(F.conv2d(x, self.W, b, self.stride, self.padding))

    def get_config(self):
        padding = self.padding if isinstance(self.padding, (str, int)) else list(self.padding)
        return {"name": self.name, "filters": self.filters, "kernel_size": list(self.kernel_size),
                "stride": list(self.stride), "padding": padding,
                "activation": _act_name(self, self.activation), "use_bias": self.use_bias,
                "kernel_initializer": _init_name(self, self.kernel_initializer),
                "kernel_regularizer": _reg_config(self.kernel_regularizer),
                "bias_initializer": _init_name(self, self.bias_initializer),
                "bias_regularizer": _reg_config(self.bias_regularizer)}
