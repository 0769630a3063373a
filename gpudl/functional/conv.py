"""Convolution (Lecture II's CNN): ``conv2d`` on NCHW images.

The NumPy path is im2col + one BLAS matrix product per direction:

* forward: the padded input goes channels-last once, and the windows are gathered into
  ``cols`` of shape (N*Ho*Wo, kh*kw*C), so every copied run is C contiguous floats; then
  ``y = cols @ W^T``.
* weight gradient: ``gW^T = cols^T @ gy`` with gy laid out (out_ch, N*Ho*Wo), so the
  long N*Ho*Wo axis is the contraction.
* input gradient: ``gcols = W^T @ gy`` laid out (C*kh*kw, N*Ho*Wo), so the slice of one
  kernel offset is a contiguous (C, N, Ho, Wo) block; col2im adds those kh*kw blocks into
  strided slices of the padded gradient (kh*kw vectorised additions, no per-pixel loop).

That mix of layouts measured fastest on two cores (each product runs on contiguous
operands, and col2im reads whole Ho*Wo planes); ``benchmarks/bench_cnn_cpu.py`` times it
against PyTorch. The CuPy path calls the launchers in ``gpudl.kernels.conv``.

Dilation spaces the taps of a window: tap (a, b) reads ``xpad[i*sh + a*dh, j*sw + b*dw]``, so
im2col's window view and col2im's slices just take the dilated offsets (an effective kernel of
(k - 1)*d + 1 for sizes and "same" padding). Groups split the channels into ``groups``
independent convolutions: cols keeps its rows and gains a group axis, (N*Ho*Wo, G, kh*kw*C/G),
and each product becomes one batched product over the groups (no Python loop over them).

``conv1d`` is ``conv2d`` on (N, C, 1, L). ``conv_transpose2d`` is the input gradient of a
convolution run forwards (GEMM, then col2im) and its backward is that convolution's forward
(im2col, then GEMM), so it reuses the same building blocks on both backends.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..autograd import Function, as_tensor, is_grad_enabled
from ._util import on_gpu, require_float

__all__ = ["conv2d", "conv1d", "conv_transpose2d", "conv_output_size", "normalize_stride",
           "normalize_padding", "normalize_dilation", "normalize_groups", "effective_kernel",
           "transpose_output_size", "conv1d_pads", "transpose_pads"]


def _int_pair(value, op: str, arg: str, minimum: int, what: str):
    """(a, b) from an int or a pair of ints, each >= minimum; ValueError otherwise."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif (isinstance(value, (tuple, list)) and len(value) == 2
          and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value)):
        pair = (int(value[0]), int(value[1]))
    else:
        raise ValueError(f"{op} expected {arg} {what} or a pair of them, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{op} expected {arg} {what} or a pair of them, got {value!r}")
    return pair


def normalize_stride(stride, op: str = "conv2d"):
    """(sh, sw) from an int or a pair, each >= 1."""
    return _int_pair(stride, op, "stride", 1, "a positive int")


def normalize_kernel(kernel_size, op: str):
    return _int_pair(kernel_size, op, "kernel_size", 1, "a positive int")


def normalize_dilation(dilation, op: str = "conv2d", arg: str = "dilation"):
    """(dh, dw) from an int or a pair, each >= 1."""
    return _int_pair(dilation, op, arg, 1, "a positive int")


def normalize_groups(groups, op: str = "conv2d"):
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"{op} expected groups a positive int, got {groups!r}")
    return int(groups)


def effective_kernel(kernel, dilation):
    """The extent (k - 1)*d + 1 of each dilated kernel axis."""
    return tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))


def transpose_output_size(n: int, k: int, s: int, pad_total: int, output_padding: int = 0) -> int:
    """Output length of a transposed convolution: (n - 1)*s + k - pads + output_padding (k dilated)."""
    return (n - 1) * s + k - pad_total + output_padding


def normalize_padding(padding, in_hw, kernel, stride, op: str = "conv2d"):
    """(top, bottom, left, right) pads.

    ``padding``: an int, a pair (rows, cols) padded on both sides, ``"valid"`` (none) or
    ``"same"``: output size ceil(in / stride), the total pad split as TensorFlow/Keras do,
    with the odd pixel at the bottom/right.
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0, 0, 0)
        if mode == "same":
            pads = []
            for n, k, s in zip(in_hw, kernel, stride):
                out = -(-n // s)
                total = max((out - 1) * s + k - n, 0)
                pads += [total // 2, total - total // 2]
            return tuple(pads)
        raise ValueError(f"{op} expected padding a non-negative int, a pair of them, 'valid' or 'same', "
                         f"got {padding!r}")
    try:
        ph, pw = _int_pair(padding, op, "padding", 0, "a non-negative int")
    except ValueError:
        raise ValueError(f"{op} expected padding a non-negative int, a pair of them, 'valid' or 'same', "
                         f"got {padding!r}") from None
    return (ph, ph, pw, pw)


def conv_output_size(n: int, k: int, s: int, pad_total: int) -> int:
    """Output length along one axis: floor((n + pads - k) / s) + 1."""
    return (n + pad_total - k) // s + 1


def _pad_channels_last(x, pads):
    """(N, C, H, W) -> zero-padded (N, Hp, Wp, C), in one copy."""
    n, c, h, w = x.shape
    pt, pb, pl, pr = pads
    out = np.empty((n, h + pt + pb, w + pl + pr, c), dtype=x.dtype)
    if pt or pb or pl or pr:
        out[:, :pt] = 0
        out[:, h + pt:] = 0
        out[:, pt:h + pt, :pl] = 0
        out[:, pt:h + pt, w + pl:] = 0
    out[:, pt:h + pt, pl:w + pl, :] = x.transpose(0, 2, 3, 1)
    return out


def _im2col(x, kernel, stride, pads, out_hw, dilation=(1, 1), groups=1):
    """cols (N*Ho*Wo, kh*kw*C): row = one output pixel, columns ordered (kh, kw, C); with
    groups, ordered (G, kh, kw, C/G), so cols.reshape(N*Ho*Wo, G, -1)[:, g] is group g's."""
    n, c = x.shape[:2]
    kh, kw = kernel
    sh, sw = stride
    dh, dw = dilation
    ho, wo = out_hw
    xpad = _pad_channels_last(x, pads)
    s0, s1, s2, s3 = xpad.strides
    if groups == 1:
        # windows[n, i, j, a, b, c] = xpad[n, i*sh + a*dh, j*sw + b*dw, c]
        windows = np.lib.stride_tricks.as_strided(
            xpad, shape=(n, ho, wo, kh, kw, c), strides=(s0, s1 * sh, s2 * sw, s1 * dh, s2 * dw, s3),
            writeable=False)
        cols = np.empty((n, ho, wo, kh, kw, c), dtype=x.dtype)
    else:
        cg = c // groups
        # windows[n, i, j, g, a, b, c] = xpad[n, i*sh + a*dh, j*sw + b*dw, g*cg + c]
        windows = np.lib.stride_tricks.as_strided(
            xpad, shape=(n, ho, wo, groups, kh, kw, cg),
            strides=(s0, s1 * sh, s2 * sw, s3 * cg, s1 * dh, s2 * dw, s3), writeable=False)
        cols = np.empty((n, ho, wo, groups, kh, kw, cg), dtype=x.dtype)
    cols[...] = windows
    return cols.reshape(n * ho * wo, kh * kw * c)


def _col2im(gcols, x_shape, kernel, stride, pads, out_hw, dilation=(1, 1)):
    """Sum gcols (C, kh, kw, N, Ho, Wo) back into the input gradient (N, C, H, W)."""
    n, c, h, w = x_shape
    kh, kw = kernel
    sh, sw = stride
    dh, dw = dilation
    ho, wo = out_hw
    pt, pb, pl, pr = pads
    g = np.zeros((c, n, h + pt + pb, w + pl + pr), dtype=gcols.dtype)
    for a in range(kh):
        for b in range(kw):
            r, q = a * dh, b * dw
            g[:, :, r:r + sh * (ho - 1) + 1:sh, q:q + sw * (wo - 1) + 1:sw] += gcols[:, a, b]
    return np.ascontiguousarray(g[:, :, pt:pt + h, pl:pl + w].transpose(1, 0, 2, 3))


def _c_contiguous(*arrays):
    """Each array C-contiguous (copied only when it is not); None stays None."""
    return tuple(a if a is None or a.flags.c_contiguous else a.copy() for a in arrays)


class Conv2d(Function):
    """Convolution, optionally followed by ReLU in the same op (``relu=True``): the ReLU is
    applied in place on the output and its mask folded into the copy backward makes
    anyway, which saves two passes over the largest activations of a CNN.

    The work is done by one of ``conv_algorithms.ALGORITHMS`` (im2col, fused gathers,
    Winograd on NumPy; the CUDA kernels on CuPy), chosen per shape on the first call."""

    def __init__(self, stride, pads, out_hw, relu=False, dilation=(1, 1), groups=1, need_grad=True):
        self.stride, self.pads, self.out_hw, self.relu = stride, pads, out_hw, relu
        self.dilation, self.groups = tuple(dilation), int(groups)
        self.need_grad = need_grad

    def forward(self, x, W, b=None):
        from . import conv_algorithms as A
        self.has_b = b is not None
        x, W, b = _c_contiguous(x, W, b)  # the compiled loops and kernels index C-ordered buffers
        gpu = on_gpu(x)
        self.geom = A.Geometry(x.shape, W.shape, self.stride, self.pads, self.out_hw, self.dilation,
                               self.groups, x.dtype)
        self.algorithm = A.choose(x, W, b, self.relu, self.geom, self.need_grad, "cupy" if gpu else "numpy")
        y, state = self.algorithm.forward(x, W, b, self.relu, self.geom)
        if self.need_grad:
            self._saved = state
        else:  # no backward will read it: its scratch goes back to the pool now
            self.algorithm.recycle(state)
        if self.relu:
            self._saved_y = y
        return y

    def release(self):
        state = getattr(self, "_saved", None)
        super().release()
        if state is not None:
            # the graph is done with the saved state (backward ran without retain_graph)
            self.algorithm.recycle(state)

    def backward(self, gy):
        gy = gy if gy.flags.c_contiguous else gy.copy()
        gx, gW, gb = self.algorithm.backward(
            self._saved, gy, self._saved_y if self.relu else None, self.relu,
            self.inputs[0].requires_grad, self.inputs[1].requires_grad, self.has_b, self.geom)
        return (gx, gW, gb) if self.has_b else (gx, gW)


class ConvTranspose2d(Function):
    """The transposed convolution: y is the input gradient of the convolution whose output
    has x's shape (GEMM, then col2im), cropped by (top, left); its backward runs that
    convolution forwards (im2col of gy, then GEMM). ``relu=True`` fuses a ReLU as Conv2d does."""

    def __init__(self, stride, pads, output_padding, dilation, out_hw, relu=False):
        self.stride, self.pads, self.output_padding = stride, pads, output_padding
        self.dilation, self.out_hw, self.relu = tuple(dilation), out_hw, relu
        pt, pb, pl, pr = pads
        oh, ow = output_padding
        # the convolution's pads: output_padding takes rows off the bottom pad, and rows past
        # the last window (output_padding beyond the pad) are simply not reached
        self.col_pads = (pt, max(pb - oh, 0), pl, max(pr - ow, 0))

    def forward(self, x, W, b=None):
        self.has_b = b is not None
        if on_gpu(x):
            from ..kernels import conv as K
            x, W, b = _c_contiguous(x, W, b)  # the kernels index flat C-ordered buffers
            self._saved = (x, W)
            y = K.conv_transpose2d_forward(x, W, b, self.stride, self.pads, self.output_padding,
                                           dilation=self.dilation, relu=self.relu)
            if self.relu:
                self._saved_y = y
            return y
        c_in, c_out, kh, kw = W.shape
        n, _, h, w = x.shape
        x_t = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).reshape(c_in, -1)  # (C_in, N*H*W)
        gcols = (W.reshape(c_in, -1).T @ x_t).reshape(c_out, kh, kw, n, h, w)
        y = _col2im(gcols, (n, c_out) + tuple(self.out_hw), (kh, kw), self.stride, self.col_pads, (h, w),
                    self.dilation)
        if b is not None:
            y += b.reshape(1, c_out, 1, 1)
        if self.relu:
            np.maximum(y, 0, out=y)
            self._saved_y = y
        self._saved = (x_t, W)
        self.x_shape = x.shape
        return y

    def backward(self, gy):
        need_x = self.inputs[0].requires_grad
        if on_gpu(gy):
            from ..kernels import conv as K
            x, W = self._saved
            gy = gy if gy.flags.c_contiguous else gy.copy()
            gx, gW, gb = K.conv_transpose2d_backward(
                x, W, gy, self.stride, self.pads, self.output_padding, dilation=self.dilation,
                need_x_grad=need_x, relu_y=self._saved_y if self.relu else None)
            if not need_x:
                gx = None
            return (gx, gW, gb) if self.has_b else (gx, gW)
        x_t, W = self._saved
        c_in, c_out, kh, kw = W.shape
        n, _, h, w = self.x_shape
        if self.relu:
            gy = gy * (self._saved_y > 0)
        cols = _im2col(gy, (kh, kw), self.stride, self.col_pads, (h, w), self.dilation)  # (N*H*W, kh*kw*C_out)
        gx = gW = None
        if self.inputs[1].requires_grad:
            gW = (x_t @ cols).reshape(c_in, kh, kw, c_out).transpose(0, 3, 1, 2)
            gW = np.ascontiguousarray(gW, dtype=W.dtype)
        if need_x:
            w_rows = W.transpose(0, 2, 3, 1).reshape(c_in, -1)  # (C_in, kh*kw*C_out) like cols
            gx = np.ascontiguousarray((w_rows @ cols.T).reshape(c_in, n, h, w).transpose(1, 0, 2, 3))
        if self.has_b:
            return gx, gW, gy.sum(axis=(0, 2, 3))
        return gx, gW


def _check_channels(x_shape, w_shape, groups, op):
    """x's channels against W (out_ch, in_ch / groups, ...) and groups."""
    c, f = x_shape[1], w_shape[0]
    if groups == 1:
        if c != w_shape[1]:
            raise ValueError(f"{op} expected x with {w_shape[1]} channels on axis 1 (W is {w_shape}), "
                             f"got shape {x_shape}")
        return
    if c % groups:
        raise ValueError(f"{op} expected groups to divide the {c} input channels, got groups={groups}")
    if f % groups:
        raise ValueError(f"{op} expected groups to divide the {f} output channels (W is {w_shape}), "
                         f"got groups={groups}")
    if w_shape[1] * groups != c:
        raise ValueError(f"{op} expected W with {c // groups} input channels per group on axis 1 "
                         f"({c} channels in {groups} groups), got W of shape {w_shape}")


def _check_bias(b, x, n_out, op):
    if b is None:
        return None
    b = as_tensor(b, like=x)
    if b.shape != (n_out,):
        raise ValueError(f"{op} expected b of shape ({n_out},) (one per output channel), got {b.shape}")
    return b


def _check_activation(activation, op):
    if activation not in (None, "relu"):
        raise ValueError(f"{op} fuses activation None or 'relu', got {activation!r}")


def _conv(x, W, b, stride, pads, dilation, groups, activation, padding, op):
    """conv2d on checked Tensors: pads (top, bottom, left, right) explicit."""
    kernel = (W.shape[2], W.shape[3])
    span = effective_kernel(kernel, dilation)
    padded = (x.shape[2] + pads[0] + pads[1], x.shape[3] + pads[2] + pads[3])
    if span[0] > padded[0] or span[1] > padded[1]:
        what = f"kernel {kernel}" if dilation == (1, 1) else f"kernel {kernel} dilated by {dilation} to {span}"
        raise ValueError(f"{op} {what} is larger than the padded input {padded} "
                         f"(input {x.shape[2:]}, padding {padding!r})")
    out_hw = (conv_output_size(x.shape[2], span[0], stride[0], pads[0] + pads[1]),
              conv_output_size(x.shape[3], span[1], stride[1], pads[2] + pads[3]))
    _check_activation(activation, op)
    need_grad = is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, W, b))
    fn = Conv2d(stride, pads, out_hw, relu=activation == "relu", dilation=dilation, groups=groups,
                need_grad=need_grad)
    return fn(x, W) if b is None else fn(x, W, b)


def conv2d(x, W, b=None, stride=1, padding=0, activation=None, dilation=1, groups=1):
    """2-D convolution (cross-correlation, as in every DL library) of NCHW images.

    x (N, C, H, W); W (out_ch, C / groups, kh, kw); b (out_ch,) or None; stride and
    dilation an int or a pair; padding an int, a pair (rows, cols) padded on both sides,
    ``"valid"`` or ``"same"`` (output ceil(H / sh) x ceil(W / sw); an odd total pad puts the
    extra row/column at the bottom/right, as TensorFlow/Keras do; a dilated kernel counts
    its span (k - 1)*d + 1). ``groups`` splits the channels into that many independent
    convolutions, output channels ``[g*out_ch/G, (g+1)*out_ch/G)`` seeing input channels
    ``[g*C/G, (g+1)*C/G)`` (PyTorch's layout). Returns (N, out_ch, Ho, Wo).
    ``activation="relu"`` fuses a ReLU into the op (same result as ``F.relu(conv2d(...))``).
    """
    require_float(x, "conv2d")
    x = as_tensor(x)
    W = as_tensor(W, like=x)
    if x.ndim != 4:
        raise ValueError(f"conv2d expected x of rank 4 (N, C, H, W), got shape {x.shape}")
    if W.ndim != 4:
        raise ValueError(f"conv2d expected W of rank 4 (out_ch, in_ch, kh, kw), got shape {W.shape}")
    groups = normalize_groups(groups, "conv2d")
    _check_channels(x.shape, W.shape, groups, "conv2d")
    b = _check_bias(b, x, W.shape[0], "conv2d")
    stride = normalize_stride(stride, "conv2d")
    dilation = normalize_dilation(dilation, "conv2d")
    kernel = (W.shape[2], W.shape[3])
    pads = normalize_padding(padding, x.shape[2:], effective_kernel(kernel, dilation), stride, "conv2d")
    return _conv(x, W, b, stride, pads, dilation, groups, activation, padding, "conv2d")


def _int_single(value, op, arg, minimum, what):
    """An int from an int or a 1-tuple of one, >= minimum; ValueError otherwise."""
    v = value[0] if isinstance(value, (tuple, list)) and len(value) == 1 else value
    if isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= minimum:
        return int(v)
    raise ValueError(f"{op} expected {arg} {what} (or a 1-tuple of one), got {value!r}")


def conv1d_pads(padding, length, span, stride, op="conv1d"):
    """(left, right) pads of a 1-D convolution whose dilated kernel spans ``span``:
    an int or a 1-tuple (both sides), ``"valid"``, ``"same"`` (output ceil(L / stride), the
    odd pixel on the right) or ``"causal"`` (span - 1 on the left: output t sees inputs <= t)."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "causal":
            return (span - 1, 0)
        if mode == "valid":
            return (0, 0)
        if mode == "same":
            return normalize_padding(mode, (length,), (span,), (stride,), op)
    else:
        try:
            p = _int_single(padding, op, "padding", 0, "a non-negative int")
            return (p, p)
        except ValueError:
            pass
    raise ValueError(f"{op} expected padding a non-negative int, 'valid', 'same' or 'causal', got {padding!r}")


def conv1d(x, W, b=None, stride=1, padding=0, dilation=1, groups=1, activation=None):
    """1-D convolution of (N, C, L) sequences: ``conv2d`` on (N, C, 1, L).

    W (out_ch, C / groups, k); b (out_ch,) or None; stride and dilation an int (or a
    1-tuple); padding an int (both ends), ``"valid"``, ``"same"`` (Keras/TensorFlow: the odd
    pad on the right) or ``"causal"`` (Keras: (k - 1)*dilation zeros on the left, so output t
    depends on inputs up to t only). Returns (N, out_ch, L_out).
    """
    op = "conv1d"
    require_float(x, op)
    x = as_tensor(x)
    W = as_tensor(W, like=x)
    if x.ndim != 3:
        raise ValueError(f"{op} expected x of rank 3 (N, C, L), got shape {x.shape}")
    if W.ndim != 3:
        raise ValueError(f"{op} expected W of rank 3 (out_ch, in_ch, k), got shape {W.shape}")
    groups = normalize_groups(groups, op)
    _check_channels(x.shape, W.shape, groups, op)
    b = _check_bias(b, x, W.shape[0], op)
    s = _int_single(stride, op, "stride", 1, "a positive int")
    d = _int_single(dilation, op, "dilation", 1, "a positive int")
    n, c, length = x.shape
    k = W.shape[2]
    span = (k - 1) * d + 1
    left, right = conv1d_pads(padding, length, span, s, op)
    if span > length + left + right:
        what = f"kernel {k}" if d == 1 else f"kernel {k} dilated by {d} to {span}"
        raise ValueError(f"{op} {what} is larger than the padded input {length + left + right} "
                         f"(input length {length}, padding {padding!r})")
    _check_activation(activation, op)
    y = _conv(x.reshape(n, c, 1, length), W.reshape(W.shape[0], W.shape[1], 1, k), b, (1, s),
              (0, 0, left, right), (1, d), groups, activation, padding, op)
    return y.reshape(n, W.shape[0], y.shape[3])


def transpose_pads(padding, op="conv_transpose2d"):
    """(top, bottom, left, right) crops of a transposed convolution: an int, a pair (rows,
    cols) cropped on both sides (PyTorch's padding) or the four of them."""
    if (isinstance(padding, (tuple, list)) and len(padding) == 4
            and all(isinstance(p, numbers.Integral) and not isinstance(p, bool) and p >= 0 for p in padding)):
        return tuple(int(p) for p in padding)
    try:
        ph, pw = _int_pair(padding, op, "padding", 0, "a non-negative int")
    except ValueError:
        raise ValueError(f"{op} expected padding a non-negative int, a pair of them or four "
                         f"(top, bottom, left, right), got {padding!r}") from None
    return (ph, ph, pw, pw)


def conv_transpose2d(x, W, b=None, stride=1, padding=0, output_padding=0, dilation=1, activation=None):
    """Transposed 2-D convolution of NCHW images (PyTorch's ``conv_transpose2d``): the
    gradient of ``conv2d`` with respect to its input, so it maps a convolution's output
    shape back to its input shape.

    x (N, C_in, H, W); W (C_in, C_out, kh, kw) (PyTorch's layout); b (C_out,) or None;
    stride and dilation an int or a pair; padding an int or a pair cropped from both sides
    of the full (H - 1)*sh + (kh - 1)*dh + 1 output, or (top, bottom, left, right);
    output_padding (an int or a pair, each smaller than the stride or the dilation) adds
    rows/columns at the bottom/right. Output (N, C_out, Ho, Wo) with
    Ho = (H - 1)*sh - top - bottom + (kh - 1)*dh + output_padding + 1.
    ``activation="relu"`` fuses a ReLU into the op.
    """
    op = "conv_transpose2d"
    require_float(x, op)
    x = as_tensor(x)
    W = as_tensor(W, like=x)
    if x.ndim != 4:
        raise ValueError(f"{op} expected x of rank 4 (N, C, H, W), got shape {x.shape}")
    if W.ndim != 4:
        raise ValueError(f"{op} expected W of rank 4 (in_ch, out_ch, kh, kw), got shape {W.shape}")
    if x.shape[1] != W.shape[0]:
        raise ValueError(f"{op} expected x with {W.shape[0]} channels on axis 1 (W is {W.shape}, laid out "
                         f"(in_ch, out_ch, kh, kw)), got shape {x.shape}")
    b = _check_bias(b, x, W.shape[1], op)
    stride = normalize_stride(stride, op)
    dilation = normalize_dilation(dilation, op)
    pads = transpose_pads(padding, op)
    out_pad = _int_pair(output_padding, op, "output_padding", 0, "a non-negative int")
    if any(o >= max(s, d) for o, s, d in zip(out_pad, stride, dilation)):
        raise ValueError(f"{op} expected output_padding smaller than the stride or the dilation, got "
                         f"output_padding {out_pad} with stride {stride} and dilation {dilation}")
    span = effective_kernel((W.shape[2], W.shape[3]), dilation)
    out_hw = (transpose_output_size(x.shape[2], span[0], stride[0], pads[0] + pads[1], out_pad[0]),
              transpose_output_size(x.shape[3], span[1], stride[1], pads[2] + pads[3], out_pad[1]))
    if min(out_hw) < 1:
        full = (transpose_output_size(x.shape[2], span[0], stride[0], 0),
                transpose_output_size(x.shape[3], span[1], stride[1], 0))
        raise ValueError(f"{op} padding {padding!r} crops the whole {full} output (input {x.shape[2:]}, "
                         f"kernel {tuple(W.shape[2:])}), leaving {out_hw}")
    _check_activation(activation, op)
    fn = ConvTranspose2d(stride, pads, out_pad, dilation, out_hw, relu=activation == "relu")
    return fn(x, W) if b is None else fn(x, W, b)
