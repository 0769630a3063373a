"""Convolution layers (Lecture II's CNN): each filter detects a small pattern anywhere.

``Conv2D`` and ``Conv1D`` take Keras' ``dilation_rate`` and ``groups``; ``Conv2DTranspose``
maps a convolution's output shape back to its input shape (Keras' output sizes). All three
compose the ops of ``gpudl.functional.conv``.
"""
from __future__ import annotations

from .. import activations
from .. import functional as F
from .. import regularizers
from ..functional.conv import (_int_pair, _int_single, conv1d_pads, conv_output_size, effective_kernel,
                               normalize_dilation, normalize_kernel, normalize_padding, normalize_stride)
from .base import InputSpec, Layer
from .core import KernelBias, _act_name, _init_name, _positive_int, _reg_config

__all__ = ["Conv2D", "Conv1D", "Conv2DTranspose"]


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


def _groups_arg(layer, groups, filters):
    """groups: a positive int dividing the filters (the input channels are checked at build)."""
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"{layer.describe()} expected groups a positive int, got {groups!r}")
    if filters % groups:
        raise ValueError(f"{layer.describe()} expected groups to divide the {filters} filters, got groups={groups}")
    return groups


def _check_strides_dilation(layer, strides, dilation):
    if max(strides) > 1 and max(dilation) > 1:
        raise ValueError(f"{layer.describe()} got strides {tuple(strides)} with dilation_rate {tuple(dilation)}: "
                         f"strides > 1 together with dilation_rate > 1 is not supported (as in Keras)")


def _check_in_channels(layer, in_ch, groups):
    if in_ch % groups:
        raise ValueError(f"{layer.describe()} expected groups to divide the {in_ch} input channels, "
                         f"got groups={groups}")


def _kernel_bias_args(layer, activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                      bias_regularizer):
    """The arguments every convolution layer takes about its kernel, bias and activation."""
    layer.activation = activation
    layer._act = activations.get(activation)
    layer.use_bias = bool(use_bias)
    layer.kernel_initializer = kernel_initializer
    layer.bias_initializer = bias_initializer
    layer.kernel_regularizer = regularizers.get(kernel_regularizer)
    layer.bias_regularizer = regularizers.get(bias_regularizer)


class Conv2D(KernelBias, Layer):
    """``activation(conv2d(x, W) + b)`` on NCHW images, W (filters, in_ch / groups, kh, kw),
    b (filters,).

    padding: "valid" (none), "same" (output ceil(H / stride), extra pad at bottom/right as
    in Keras), an int or a pair (rows, cols) padded on both sides. ``strides=`` (Keras) is
    ``stride=``. ``dilation_rate`` (an int or a pair) spaces the kernel's taps; ``groups``
    splits the channels into that many independent convolutions (it must divide the input
    channels and ``filters``). Strides and a dilation rate both above 1 are refused, as in Keras.
    """

    input_ndim = 4

    def __init__(self, filters, kernel_size, stride=None, padding="valid", activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", kernel_regularizer=None, bias_initializer="zeros",
                 bias_regularizer=None, name=None, *, strides=None, dilation_rate=1, groups=1):
        super().__init__(name)
        self.filters = _positive_int("Conv2D", "filters", filters)
        self.kernel_size = normalize_kernel(kernel_size, "Conv2D")
        self.stride = strides_arg("Conv2D", stride, strides, normalize_stride(1, "Conv2D"))
        self.padding = _padding_arg("Conv2D", padding)
        self.dilation_rate = normalize_dilation(dilation_rate, self.describe(), "dilation_rate")
        _check_strides_dilation(self, self.stride, self.dilation_rate)
        self.groups = _groups_arg(self, groups, self.filters)
        _kernel_bias_args(self, activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                          bias_regularizer)

    def compute_output_shape(self, input_shape):
        """(N, filters, Ho, Wo) for an (N, C, H, W) input; raises if the kernel does not fit."""
        pads = self._pads(input_shape)
        kh, kw = effective_kernel(self.kernel_size, self.dilation_rate)
        sh, sw = self.stride
        return (input_shape[0], self.filters,
                conv_output_size(input_shape[2], kh, sh, pads[0] + pads[1]),
                conv_output_size(input_shape[3], kw, sw, pads[2] + pads[3]))

    def _pads(self, shape):
        span = effective_kernel(self.kernel_size, self.dilation_rate)
        pads = normalize_padding(self.padding, shape[2:], span, self.stride, "Conv2D")
        padded = (shape[2] + pads[0] + pads[1], shape[3] + pads[2] + pads[3])
        if span[0] > padded[0] or span[1] > padded[1]:
            what = f"kernel_size {self.kernel_size}" if span == self.kernel_size else \
                f"kernel_size {self.kernel_size} dilated by {self.dilation_rate} to {span}"
            raise ValueError(f"{self.describe()} has {what}, larger than its padded "
                             f"input {padded} (input shape {tuple(shape)}, padding {self.padding!r})")
        return pads

    def build(self, x):
        self._pads(x.shape)
        in_ch = x.shape[1]
        _check_in_channels(self, in_ch, self.groups)
        kh, kw = self.kernel_size
        self.add_param("W", (self.filters, in_ch // self.groups, kh, kw), self.kernel_initializer,
                       self.kernel_regularizer, like=x)
        if self.use_bias:
            self.add_param("b", (self.filters,), self.bias_initializer, self.bias_regularizer, like=x)
        self.input_spec = InputSpec(ndim=4, axes={1: in_ch})

    def forward(self, x):
        self._pads(x.shape)  # a clear error naming this layer for too small an image
        b = self.b if self.use_bias else None
        fused = "relu" if self._act is F.relu else None  # one fused op: saves two passes over the output
        y = F.conv2d(x, self.W, b, self.stride, self.padding, activation=fused,
                     dilation=self.dilation_rate, groups=self.groups)
        return y if fused else self._act(y)

    def get_config(self):
        padding = self.padding if isinstance(self.padding, (str, int)) else list(self.padding)
        return {"name": self.name, "filters": self.filters, "kernel_size": list(self.kernel_size),
                "stride": list(self.stride), "padding": padding,
                "dilation_rate": list(self.dilation_rate), "groups": self.groups,
                "activation": _act_name(self, self.activation), "use_bias": self.use_bias,
                "kernel_initializer": _init_name(self, self.kernel_initializer),
                "kernel_regularizer": _reg_config(self.kernel_regularizer),
                "bias_initializer": _init_name(self, self.bias_initializer),
                "bias_regularizer": _reg_config(self.bias_regularizer)}


def _strides_1d(cls, strides, stride):
    """Keras' ``strides=`` (an int or a 1-tuple) or gpudl's ``stride=``; both given, they must
    agree (``strides`` left at its default 1 yields to ``stride``)."""
    v = _int_single(strides, cls, "strides", 1, "a positive int")
    if stride is None:
        return v
    a = _int_single(stride, cls, "stride", 1, "a positive int")
    if v != 1 and a != v:
        raise ValueError(f"{cls} got stride={stride!r} and strides={strides!r}, which disagree: pass one of them")
    return a


class Conv1D(KernelBias, Layer):
    """``activation(conv1d(x, W) + b)`` on (N, C, L) sequences, W (filters, C / groups, k),
    b (filters,) (Keras' Conv1D, channels first as everywhere in gpudl).

    padding: "valid", "same" (output ceil(L / strides), the odd pad on the right), "causal"
    ((kernel_size - 1)*dilation_rate zeros on the left: output t sees inputs up to t) or an
    int padded on both ends. ``dilation_rate`` spaces the taps; ``groups`` splits the channels.
    Strides and a dilation rate both above 1 are refused, as in Keras.
    """

    input_ndim = 3

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation_rate=1, groups=1,
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, name=None, *, stride=None):
        super().__init__(name)
        self.filters = _positive_int("Conv1D", "filters", filters)
        self.kernel_size = _int_single(kernel_size, "Conv1D", "kernel_size", 1, "a positive int")
        self.strides = _strides_1d("Conv1D", strides, stride)
        conv1d_pads(padding, 1, 1, 1, "Conv1D")  # raises with the accepted forms
        self.padding = padding.lower() if isinstance(padding, str) else _int_single(
            padding, "Conv1D", "padding", 0, "a non-negative int")
        self.dilation_rate = _int_single(dilation_rate, self.describe(), "dilation_rate", 1, "a positive int")
        _check_strides_dilation(self, (self.strides,), (self.dilation_rate,))
        self.groups = _groups_arg(self, groups, self.filters)
        _kernel_bias_args(self, activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                          bias_regularizer)

    def _span(self):
        return (self.kernel_size - 1) * self.dilation_rate + 1

    def _pads(self, shape):
        span = self._span()
        left, right = conv1d_pads(self.padding, shape[2], span, self.strides, "Conv1D")
        if span > shape[2] + left + right:
            what = f"kernel_size {self.kernel_size}" if span == self.kernel_size else \
                f"kernel_size {self.kernel_size} dilated by {self.dilation_rate} to {span}"
            raise ValueError(f"{self.describe()} has {what}, larger than its padded input "
                             f"{shape[2] + left + right} (input shape {tuple(shape)}, padding {self.padding!r})")
        return left, right

    def compute_output_shape(self, input_shape):
        """(N, filters, L_out) for an (N, C, L) input; raises if the kernel does not fit."""
        left, right = self._pads(input_shape)
        return (input_shape[0], self.filters,
                conv_output_size(input_shape[2], self._span(), self.strides, left + right))

    def build(self, x):
        self._pads(x.shape)
        in_ch = x.shape[1]
        _check_in_channels(self, in_ch, self.groups)
        self.add_param("W", (self.filters, in_ch // self.groups, self.kernel_size), self.kernel_initializer,
                       self.kernel_regularizer, like=x)
        if self.use_bias:
            self.add_param("b", (self.filters,), self.bias_initializer, self.bias_regularizer, like=x)
        self.input_spec = InputSpec(ndim=3, axes={1: in_ch})

    def forward(self, x):
        self._pads(x.shape)
        b = self.b if self.use_bias else None
        fused = "relu" if self._act is F.relu else None
        y = F.conv1d(x, self.W, b, self.strides, self.padding, self.dilation_rate, self.groups, activation=fused)
        return y if fused else self._act(y)

    def get_config(self):
        return {"name": self.name, "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "dilation_rate": self.dilation_rate,
                "groups": self.groups, "activation": _act_name(self, self.activation), "use_bias": self.use_bias,
                "kernel_initializer": _init_name(self, self.kernel_initializer),
                "bias_initializer": _init_name(self, self.bias_initializer),
                "kernel_regularizer": _reg_config(self.kernel_regularizer),
                "bias_regularizer": _reg_config(self.bias_regularizer)}


def deconv_output_length(n, kernel, padding, output_padding, stride, dilation=1):
    """Keras' output length of a transposed convolution along one axis.

    kernel dilated to k = (kernel - 1)*dilation + 1; without output_padding, "valid" gives
    n*stride + max(k - stride, 0) and "same" n*stride; with it, (n - 1)*stride + k - 2*pad +
    output_padding, pad = k // 2 for "same" and 0 for "valid".
    """
    k = (kernel - 1) * dilation + 1
    if output_padding is None:
        return n * stride + max(k - stride, 0) if padding == "valid" else n * stride
    pad = k // 2 if padding == "same" else 0
    return (n - 1) * stride + k - 2 * pad + output_padding


def _transpose_crop(n, kernel, padding, output_padding, stride, dilation):
    """(before, after, extra) along one axis: F.conv_transpose2d's pads and output_padding
    that give Keras' size, cropping as TensorFlow does ("same": the odd row at the bottom)."""
    full = (n - 1) * stride + (kernel - 1) * dilation + 1
    out = deconv_output_length(n, kernel, padding, output_padding, stride, dilation)
    before = 0 if padding == "valid" else max(full - out, 0) // 2
    after = full - before - out
    return (before, after, 0) if after >= 0 else (before, 0, -after)


class Conv2DTranspose(KernelBias, Layer):
    """``activation(conv_transpose2d(x, W) + b)`` on NCHW images, W (in_ch, filters, kh, kw),
    b (filters,): the transpose of a convolution, mapping its output shape back to its input
    shape (upsampling with learnt filters).

    Output size as Keras' ``deconv_output_length``: "valid" (H - 1)*strides + kernel (the
    kernel dilated; at least H*strides), "same" H*strides; ``output_padding`` (an int or a
    pair, each below its stride) sets it to (H - 1)*strides + kernel - 2*pad + output_padding.
    Strides and a dilation rate both above 1 are refused, as in Keras.
    """

    input_ndim = 4

    def __init__(self, filters, kernel_size, strides=1, padding="valid", output_padding=None, dilation_rate=1,
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, name=None, *, stride=None):
        super().__init__(name)
        self.filters = _positive_int("Conv2DTranspose", "filters", filters)
        self.kernel_size = normalize_kernel(kernel_size, "Conv2DTranspose")
        self.strides = strides_arg("Conv2DTranspose", stride, None if strides == 1 and stride is not None
                                   else strides, normalize_stride(1, "Conv2DTranspose"))
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
            raise ValueError(f"{self.describe()} expected padding 'valid' or 'same', got {padding!r}")
        self.padding = padding.lower()
        self.dilation_rate = normalize_dilation(dilation_rate, self.describe(), "dilation_rate")
        if output_padding is None:
            self.output_padding = None
        else:
            self.output_padding = _int_pair(output_padding, self.describe(), "output_padding", 0,
                                            "a non-negative int")
            if any(o >= s for o, s in zip(self.output_padding, self.strides)):
                raise ValueError(f"{self.describe()} expected output_padding smaller than strides "
                                 f"{self.strides}, got {self.output_padding}")
        _check_strides_dilation(self, self.strides, self.dilation_rate)
        _kernel_bias_args(self, activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                          bias_regularizer)

    def _geometry(self, shape):
        """(pads (top, bottom, left, right), output_padding) for F.conv_transpose2d."""
        op = self.output_padding or (None, None)
        rows = _transpose_crop(shape[2], self.kernel_size[0], self.padding, op[0], self.strides[0],
                               self.dilation_rate[0])
        cols = _transpose_crop(shape[3], self.kernel_size[1], self.padding, op[1], self.strides[1],
                               self.dilation_rate[1])
        return (rows[0], rows[1], cols[0], cols[1]), (rows[2], cols[2])

    def compute_output_shape(self, input_shape):
        """(N, filters, Ho, Wo) for an (N, C, H, W) input, Keras' sizes; raises if that is empty."""
        op = self.output_padding or (None, None)
        out_hw = tuple(deconv_output_length(n, k, self.padding, o, s, d)
                       for n, k, o, s, d in zip(input_shape[2:], self.kernel_size, op, self.strides,
                                                self.dilation_rate))
        if min(out_hw) < 1:
            raise ValueError(f"{self.describe()} would give an empty {out_hw} output for input shape "
                             f"{tuple(input_shape)} (kernel_size {self.kernel_size}, padding {self.padding!r}, "
                             f"output_padding {self.output_padding})")
        return (input_shape[0], self.filters) + out_hw

    def build(self, x):
        self.compute_output_shape(x.shape)
        in_ch = x.shape[1]
        kh, kw = self.kernel_size
        self.add_param("W", (in_ch, self.filters, kh, kw), self.kernel_initializer, self.kernel_regularizer,
                       like=x)
        if self.use_bias:
            self.add_param("b", (self.filters,), self.bias_initializer, self.bias_regularizer, like=x)
        self.input_spec = InputSpec(ndim=4, axes={1: in_ch})

    def forward(self, x):
        self.compute_output_shape(x.shape)  # a clear error naming this layer for an empty output
        pads, out_pad = self._geometry(x.shape)
        b = self.b if self.use_bias else None
        fused = "relu" if self._act is F.relu else None
        y = F.conv_transpose2d(x, self.W, b, self.strides, pads, out_pad, self.dilation_rate, activation=fused)
        return y if fused else self._act(y)

    def get_config(self):
        return {"name": self.name, "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding,
                "output_padding": None if self.output_padding is None else list(self.output_padding),
                "dilation_rate": list(self.dilation_rate), "activation": _act_name(self, self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": _init_name(self, self.kernel_initializer),
                "bias_initializer": _init_name(self, self.bias_initializer),
                "kernel_regularizer": _reg_config(self.kernel_regularizer),
                "bias_regularizer": _reg_config(self.bias_regularizer)}
