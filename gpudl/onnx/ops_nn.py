"""ONNX neural-network ops on gpudl.functional: convolution, pooling, normalisation,
softmax, dropout and resizing.

Convolution and pooling of 1-D and 2-D images run on gpudl's conv2d / pooling ops (their
CUDA kernels on CuPy): 1-D ones as images one row high, a 3-D convolution (and transposed
convolution) as one 2-D one per kernel depth. Pooling cases those ops do not take
(N-d, dilation, ceil mode, pads over half the window) walk the window's offsets with strided
slices instead, which the autograd differentiates.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from .. import functional as F
from ..autograd import Max, Mean, Sum, stack
from ..functional.conv import _conv
from . import functions as G
from ._values import axis_of, host, ints, is_float, raw, same_side, scalar_of, wrap, xp_of
from .runtime import UnsupportedOpError, op

# ---- geometry ---------------------------------------------------------------------------------


def _auto_pads(auto_pad, in_shape, spans, strides):
    """(begins, ends) for auto_pad SAME_UPPER / SAME_LOWER / VALID."""
    if auto_pad == "VALID":
        return [0] * len(in_shape), [0] * len(in_shape)
    begins, ends = [], []
    for n, k, s in zip(in_shape, spans, strides):
        out = -(-n // s)
        total = max((out - 1) * s + k - n, 0)
        small, big = total // 2, total - total // 2
        begins.append(small if auto_pad == "SAME_UPPER" else big)
        ends.append(big if auto_pad == "SAME_UPPER" else small)
    return begins, ends


def _geometry(node, x, kernel):
    """(strides, dilations, spans, pad begins, pad ends) of a conv or pool node."""
    nd = x.ndim - 2
    strides = list(node.attr("strides") or [1] * nd)
    dil = list(node.attr("dilations") or [1] * nd)
    spans = [(k - 1) * d + 1 for k, d in zip(kernel, dil)]
    auto = node.attr("auto_pad", "NOTSET")
    if isinstance(auto, bytes):
        auto = auto.decode()
    if auto in ("SAME_UPPER", "SAME_LOWER", "VALID"):
        begins, ends = _auto_pads(auto, x.shape[2:], spans, strides)
    else:
        pads = list(node.attr("pads") or [0] * (2 * nd))
        begins, ends = pads[:nd], pads[nd:]
    return strides, dil, spans, begins, ends


def _as_2d(x, nd, what):
    if nd == 1:
        return x.reshape(x.shape[:2] + (1,) + x.shape[2:])
    if nd != 2:
        raise UnsupportedOpError(f"{what} on {nd} spatial axes: gpudl runs it on 1-D and 2-D images "
                                 "(N, C, L) / (N, C, H, W)")
    return x


# ---- convolution ------------------------------------------------------------------------------

@op("Conv")
def _conv_op(run, node, x, w, b=None):
    x, w, b = same_side(x, w, b)
    nd = x.ndim - 2
    group = int(node.attr("group", 1))
    if x.shape[1] != w.shape[1] * group:
        raise ValueError(f"Conv expected input with {w.shape[1] * group} channels (W {w.shape}, group {group}), "
                         f"got shape {x.shape}")
    strides, dil, spans, begins, ends = _geometry(node, x, w.shape[2:])
    if nd == 3:
        return _conv3d(x, w, b, strides, dil, begins, ends, group)
    x2, w2 = _as_2d(x, nd, "Conv"), _as_2d(w, nd, "Conv")
    if nd == 1:
        strides, dil, begins, ends = [1] + strides, [1] + dil, [0] + begins, [0] + ends
    pads = (begins[0], ends[0], begins[1], ends[1])
    y = _conv(x2, w2, b, tuple(strides), pads, tuple(dil), group, None, pads, "Conv")
    return y.reshape(y.shape[:2] + y.shape[3:]) if nd == 1 else y


def _conv3d(x, w, b, strides, dil, begins, ends, group):
    """A 3-D convolution as one 2-D convolution per kernel depth: the output depths that tap
    depth k of the kernel read input depths k*d, k*d + s, ..., batched into the batch axis."""
    n, c, depth = x.shape[:3]
    kd = w.shape[2]
    if begins[0] or ends[0]:
        x = G.PadConstant([(0, 0), (0, 0), (begins[0], ends[0]), (0, 0), (0, 0)], 0.0)(x)
        depth += begins[0] + ends[0]
    span = (kd - 1) * dil[0] + 1
    if span > depth:
        raise ValueError(f"Conv kernel depth {kd} (dilated to {span}) is larger than the padded input depth {depth}")
    out_d = (depth - span) // strides[0] + 1
    pads = (begins[1], ends[1], begins[2], ends[2])
    total = None
    for k in range(kd):
        start = k * dil[0]
        part = x[:, :, start:start + strides[0] * (out_d - 1) + 1:strides[0]]  # (N, C, out_d, H, W)
        part = part.transpose((0, 2, 1, 3, 4)).reshape((n * out_d, c) + part.shape[3:])
        y = _conv(part, w[:, :, k], None, tuple(strides[1:]), pads, tuple(dil[1:]), group, None, pads, "Conv")
        total = y if total is None else total + y
    y = total.reshape((n, out_d) + total.shape[1:]).transpose((0, 2, 1, 3, 4))
    return y if b is None else y + b.reshape((1, -1, 1, 1, 1))


@op("ConvTranspose")
def _conv_transpose(run, node, x, w, b=None):
    x, w, b = same_side(x, w, b)
    nd = x.ndim - 2
    group = int(node.attr("group", 1))
    kernel = w.shape[2:]
    strides = list(node.attr("strides") or [1] * nd)
    dil = list(node.attr("dilations") or [1] * nd)
    out_pad = list(node.attr("output_padding") or [0] * nd)
    begins, ends = _transpose_pads(node, x.shape[2:], kernel, strides, dil, out_pad)
    ends = [e - o for e, o in zip(ends, out_pad)]  # output_padding: fewer rows cropped at the end
    crop_b, crop_e = [max(v, 0) for v in begins], [max(v, 0) for v in ends]
    if nd == 3:
        y = _conv_transpose3d(x, w, strides, dil, crop_b, crop_e, group)
        if b is not None:
            y = y + b.reshape((1, -1, 1, 1, 1))
    else:
        x2, w2 = _as_2d(x, nd, "ConvTranspose"), _as_2d(w, nd, "ConvTranspose")
        if nd == 1:
            strides, dil, crop_b, crop_e = [1] + strides, [1] + dil, [0] + crop_b, [0] + crop_e
        y = _conv_transpose2d(x2, w2, b, strides, dil, (crop_b[0], crop_e[0], crop_b[1], crop_e[1]), group)
        if nd == 1:
            y = y.reshape(y.shape[:2] + y.shape[3:])
    grow = [(0, 0), (0, 0)] + [(max(-a, 0), max(-e, 0)) for a, e in zip(begins, ends)]
    if any(a or e for a, e in grow):  # more output than the full transposed convolution: zero rows
        y = G.PadConstant(grow, 0.0)(y)
        if b is not None:  # the bias covers the added rows too
            mask = np.ones(y.shape[2:], dtype=bool)
            mask[tuple(slice(a, n - e) for (a, e), n in zip(grow[2:], y.shape[2:]))] = False
            y = y + wrap(xp_of(y).asarray(mask.astype(raw(y).dtype))) * b.reshape((1, -1) + (1,) * nd)
    return y


def _conv_transpose2d(x, w, b, strides, dil, pads, group):
    """F.conv_transpose2d, one call per group (it has no groups argument)."""
    if group == 1:
        return F.conv_transpose2d(x, w, b, tuple(strides), pads, 0, tuple(dil))
    cin, cout = x.shape[1] // group, w.shape[1]
    parts = [F.conv_transpose2d(x[:, g * cin:(g + 1) * cin], w[g * cin:(g + 1) * cin], None, tuple(strides), pads,
                                0, tuple(dil)) for g in range(group)]
    y = _concat(parts, 1)
    return y if b is None else y + b.reshape((1, cout * group, 1, 1))


def _conv_transpose3d(x, w, strides, dil, crop_b, crop_e, group):
    """A 3-D transposed convolution as one 2-D one per kernel depth: input depth i, through
    kernel depth k, lands on output depth i*s + k*d; those slices are spread by the stride
    and shifted by k*d, summed, then cropped."""
    n, c, depth = x.shape[:3]
    kd, sd, dd = w.shape[2], strides[0], dil[0]
    full = (depth - 1) * sd + (kd - 1) * dd + 1
    flat = x.transpose((0, 2, 1, 3, 4)).reshape((n * depth, c) + x.shape[3:])
    pads = (crop_b[1], crop_e[1], crop_b[2], crop_e[2])
    total = None
    for k in range(kd):
        z = _conv_transpose2d(flat, w[:, :, k], None, strides[1:], dil[1:], pads, group)
        z = z.reshape((n, depth) + z.shape[1:])  # (N, D, O, H', W')
        if sd > 1:  # D slices spread sd apart: zeros between them
            zeros = G.BroadcastTo((n, depth, sd - 1) + z.shape[2:])(wrap(xp_of(z).zeros((), dtype=raw(z).dtype)))
            z = _concat([z.reshape((n, depth, 1) + z.shape[2:]), zeros], 2).reshape(
                (n, depth * sd) + z.shape[2:])[:, :(depth - 1) * sd + 1]
        before = k * dd
        z = G.PadConstant([(0, 0), (before, full - before - z.shape[1])] + [(0, 0)] * 3, 0.0)(z)
        total = z if total is None else total + z
    y = total[:, crop_b[0]:full - crop_e[0]]
    return y.transpose((0, 2, 1, 3, 4))


def _transpose_pads(node, in_shape, kernel, strides, dil, out_pad):
    """Pad begins and ends (before output_padding) of a transposed convolution, from pads,
    auto_pad or output_shape as the ONNX reference computes them."""
    nd = len(in_shape)
    auto = node.attr("auto_pad", "NOTSET")
    if isinstance(auto, bytes):
        auto = auto.decode()
    out_shape = node.attr("output_shape")
    pads = node.attr("pads")
    if pads is not None and out_shape is None:
        return list(pads[:nd]), list(pads[nd:])
    if out_shape is None:
        if auto not in ("SAME_UPPER", "SAME_LOWER"):
            return [0] * nd, [0] * nd
        out_shape = [n * s for n, s in zip(in_shape, strides)]
    out_shape = list(out_shape)[-nd:]
    begins, ends = [], []
    for n, k, s, d, o, want in zip(in_shape, kernel, strides, dil, out_pad, out_shape):
        total = s * (n - 1) + o + (k - 1) * d + 1 - want
        if auto == "SAME_UPPER":
            begins.append(total // 2)
            ends.append(total - total // 2)
        else:
            begins.append(total - total // 2)
            ends.append(total // 2)
    return begins, ends


def _concat(parts, axis):
    from ..autograd import concatenate
    return concatenate(parts, axis=axis)


# ---- pooling ----------------------------------------------------------------------------------

def _pool_shape(node, x, kernel):
    """(strides, dilations, spans, pad begins, pad ends, extra end pads for ceil mode, out)."""
    strides, dil, spans, begins, ends = _geometry(node, x, kernel)
    ceil = bool(node.attr("ceil_mode", 0))
    out, extra = [], []
    for n, k, s, b, e in zip(x.shape[2:], spans, strides, begins, ends):
        size = (n + b + e - k) / s + 1
        o = int(math.ceil(size)) if ceil else int(math.floor(size))
        if ceil and (o - 1) * s >= n + b:  # the last window must start inside the image or its pad
            o -= 1
        out.append(o)
        extra.append(max((o - 1) * s + k - (n + b + e), 0))
    return strides, dil, spans, begins, ends, extra, out


def _windows(x, kernel, strides, dil, out):
    """Strided slices of (padded) x, one per window offset."""
    for offs in itertools.product(*[range(k) for k in kernel]):
        index = (slice(None), slice(None)) + tuple(
            slice(o * d, o * d + s * (n - 1) + 1, s) for o, d, s, n in zip(offs, dil, strides, out))
        yield x[index]


def _pad_spatial(x, begins, ends, fill):
    if not any(begins) and not any(ends):
        return x
    pads = [(0, 0), (0, 0)] + list(zip(begins, ends))
    return G.PadConstant(pads, fill)(x) if is_float(x) else wrap(G.PadConstant(pads, fill).forward(raw(x)))


@op("MaxPool")
def _max_pool(run, node, x):
    kernel = list(node.attr("kernel_shape"))
    strides, dil, spans, begins, ends, extra, out = _pool_shape(node, x, kernel)
    nd = x.ndim - 2
    ends_all = [e + c for e, c in zip(ends, extra)]
    simple = nd in (1, 2) and all(d == 1 for d in dil) and is_float(x) and all(
        max(b, e) <= k // 2 for b, e, k in zip(begins, ends_all, kernel))
    if len(node.outputs) > 1 and node.outputs[1]:
        return _max_pool_with_indices(node, x, kernel, strides, dil, begins, ends_all, out)
    if simple:
        x2 = _as_2d(x, nd, "MaxPool")
        k2, s2 = ([1] + kernel, [1] + strides) if nd == 1 else (kernel, strides)
        b2, e2 = ([0] + begins, [0] + ends_all) if nd == 1 else (begins, ends_all)
        y = F.max_pool2d(x2, tuple(k2), tuple(s2), (b2[0], e2[0], b2[1], e2[1]))
        return y.reshape(y.shape[:2] + y.shape[3:]) if nd == 1 else y
    fill = -np.inf if is_float(x) else np.iinfo(raw(x).dtype).min
    xp_ = _pad_spatial(x, begins, ends_all, fill)
    parts = list(_windows(xp_, kernel, strides, dil, out))
    if not is_float(x):
        return wrap(xp_of(x).stack([raw(p) for p in parts]).max(axis=0))
    return Max(0)(stack(parts, axis=0))


def _max_pool_with_indices(node, x, kernel, strides, dil, begins, ends, out):
    """Values and the flat (row-major, NC...) index of each window's first maximum."""
    xp = xp_of(x)
    a = raw(x)
    nd = a.ndim - 2
    fill = -np.inf if a.dtype.kind == "f" else np.iinfo(a.dtype).min
    padded = xp.full(a.shape[:2] + tuple(n + b + e for n, b, e in zip(a.shape[2:], begins, ends)), fill,
                     dtype=a.dtype)
    padded[(slice(None), slice(None)) + tuple(slice(b, b + n) for b, n in zip(begins, a.shape[2:]))] = a
    best = best_idx = None
    grids = np.meshgrid(*[np.arange(o) for o in out], indexing="ij")
    for offs in itertools.product(*[range(k) for k in kernel]):
        index = (slice(None), slice(None)) + tuple(
            slice(o * d, o * d + s * (n - 1) + 1, s) for o, d, s, n in zip(offs, dil, strides, out))
        v = padded[index]
        pos = [g * s + o * d - b for g, s, o, d, b in zip(grids, strides, offs, dil, begins)]
        flat = np.zeros(grids[0].shape, dtype=np.int64) if nd else np.zeros((), np.int64)
        for p, n in zip(pos, a.shape[2:]):
            flat = flat * n + p
        flat = xp.asarray(flat)
        if best is None:
            best, best_idx = v, xp.broadcast_to(flat, v.shape).copy()
        else:
            take = v > best
            best = xp.where(take, v, best)
            best_idx = xp.where(take, flat, best_idx)
    spatial = int(np.prod(a.shape[2:]))
    base = (xp.arange(a.shape[0])[:, None] * a.shape[1] + xp.arange(a.shape[1])[None, :]) * spatial
    if node.attr("storage_order", 0) and nd == 2:  # column-major within each image
        h, w = a.shape[2:]
        best_idx = (best_idx % w) * h + best_idx // w
    best_idx = best_idx + base.reshape(base.shape + (1,) * nd)
    values = _max_pool_values(x, kernel, strides, dil, begins, ends, out)
    return values, wrap(best_idx.astype(np.int64))


def _max_pool_values(x, kernel, strides, dil, begins, ends, out):
    fill = -np.inf if is_float(x) else np.iinfo(raw(x).dtype).min
    parts = list(_windows(_pad_spatial(x, begins, ends, fill), kernel, strides, dil, out))
    if not is_float(x):
        return wrap(xp_of(x).stack([raw(p) for p in parts]).max(axis=0))
    return Max(0)(stack(parts, axis=0))


@op("AveragePool", "LpPool")
def _avg_pool(run, node, x):
    kernel = list(node.attr("kernel_shape"))
    strides, dil, spans, begins, ends, extra, out = _pool_shape(node, x, kernel)
    nd = x.ndim - 2
    include = bool(node.attr("count_include_pad", 0))
    if node.op == "LpPool":
        p = float(node.attr("p", 2))
        include = True
        base = G.Unary(lambda xp, v: xp.abs(v) ** p, lambda xp, v, y: p * xp.sign(v) * xp.abs(v) ** (p - 1))(x)
    else:
        base = x
    simple = (node.op == "AveragePool" and nd in (1, 2) and all(d == 1 for d in dil) and not any(extra)
              and all(max(b, e) <= k // 2 for b, e, k in zip(begins, ends, kernel)))
    if simple:
        x2 = _as_2d(base, nd, "AveragePool")
        k2, s2 = ([1] + kernel, [1] + strides) if nd == 1 else (kernel, strides)
        b2, e2 = ([0] + begins, [0] + ends) if nd == 1 else (begins, ends)
        y = F.avg_pool2d(x2, tuple(k2), tuple(s2), (b2[0], e2[0], b2[1], e2[1]), count_include_pad=include)
        return y.reshape(y.shape[:2] + y.shape[3:]) if nd == 1 else y
    ends_all = [e + c for e, c in zip(ends, extra)]
    total = _window_sum(_pad_spatial(base, begins, ends_all, 0.0), kernel, strides, dil, out)
    if node.op == "LpPool":
        return G.Unary(lambda xp, v: v ** (1.0 / p), lambda xp, v, y: y ** (1 - p) / p)(total)
    # the divisor: cells inside the input (and its real pads when counted), never the ceil overhang
    inside = np.ones(x.shape[2:], dtype=raw(x).dtype)
    if include:
        inside = np.pad(inside, list(zip(begins, ends)), constant_values=1)
        counted = np.pad(inside, [(0, c) for c in extra])
    else:
        counted = np.pad(inside, [(b, e) for b, e in zip(begins, ends_all)])
    cnt = _window_sum(wrap(counted[None, None]), kernel, strides, dil, out)
    return total / wrap(xp_of(x).asarray(raw(cnt)))


def _window_sum(x, kernel, strides, dil, out):
    total = None
    for part in _windows(x, kernel, strides, dil, out):
        total = part if total is None else total + part
    return total


@op("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
def _global_pool(run, node, x):
    axes = tuple(range(2, x.ndim))
    if node.op == "GlobalAveragePool":
        return Mean(axes, True)(x)
    if node.op == "GlobalMaxPool":
        return Max(axes, True)(x)
    p = float(node.attr("p", 2))
    s = Sum(axes, True)(G.Unary(lambda xp, v: xp.abs(v) ** p,
                                lambda xp, v, y: p * xp.sign(v) * xp.abs(v) ** (p - 1))(x))
    return G.Unary(lambda xp, v: v ** (1.0 / p), lambda xp, v, y: y ** (1 - p) / p)(s)


# ---- normalisation ----------------------------------------------------------------------------

@op("BatchNormalization")
def _batch_norm(run, node, x, scale, bias, mean, var):
    x, scale, bias, mean, var = same_side(x, scale, bias, mean, var)
    eps = float(node.attr("epsilon", 1e-5))
    training = bool(node.attr("training_mode", 0)) or (run.opset.get("", 17) < 14 and len(
        [o for o in node.outputs if o]) > 1)
    if not training:
        return F.batch_norm(x, scale, bias, mean, var, axis=1, epsilon=eps)
    momentum = float(node.attr("momentum", 0.9))
    y, m, v = F.batch_norm(x, scale, bias, axis=1, epsilon=eps, return_stats=True)
    rm = wrap(raw(mean) * momentum + raw(m) * (1 - momentum))
    rv = wrap(raw(var) * momentum + raw(v) * (1 - momentum))
    if run.opset.get("", 17) < 14:
        return y, rm, rv, m, v
    return y, rm, rv


def _normalize(x, axes, eps):
    """(x - mean) / sqrt(var + eps) over ``axes`` (biased variance), differentiable."""
    return F.layer_norm(x, None, None, axis=list(axes), epsilon=eps)


@op("InstanceNormalization")
def _instance_norm(run, node, x, scale, bias):
    x, scale, bias = same_side(x, scale, bias)
    y = _normalize(x, range(2, x.ndim), float(node.attr("epsilon", 1e-5)))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return y * scale.reshape(shape) + bias.reshape(shape)


@op("LayerNormalization")
def _layer_norm(run, node, x, scale, bias=None):
    x, scale, bias = same_side(x, scale, bias)
    axis = axis_of(node.attr("axis", -1), x.ndim, "LayerNormalization axis")
    eps = float(node.attr("epsilon", 1e-5))
    axes = list(range(axis, x.ndim))
    y = _normalize(x, axes, eps) * scale
    if bias is not None:
        y = y + bias
    if len([o for o in node.outputs if o]) == 1:
        return y
    a = raw(x).astype(np.float32) if raw(x).dtype != np.float64 else raw(x)
    mu = a.mean(axis=tuple(axes), keepdims=True)
    inv = 1 / xp_of(x).sqrt(((a - mu) ** 2).mean(axis=tuple(axes), keepdims=True) + eps)
    return y, wrap(mu), wrap(inv)


@op("GroupNormalization")
def _group_norm(run, node, x, scale, bias):
    x, scale, bias = same_side(x, scale, bias)
    g = int(node.attr("num_groups"))
    n, c = x.shape[:2]
    eps = float(node.attr("epsilon", 1e-5))
    y = _normalize(x.reshape((n, g, -1)), [2], eps).reshape(x.shape)
    if scale.shape[0] == g and g != c:  # opset 18: one scale and bias per group
        scale = G.BroadcastTo((g, c // g))(scale.reshape((g, 1))).reshape((c,))
        bias = G.BroadcastTo((g, c // g))(bias.reshape((g, 1))).reshape((c,))
    shape = (1, c) + (1,) * (x.ndim - 2)
    return y * scale.reshape(shape) + bias.reshape(shape)


@op("RMSNormalization")
def _rms_norm(run, node, x, scale):
    x, scale = same_side(x, scale)
    axis = axis_of(node.attr("axis", -1), x.ndim, "RMSNormalization axis")
    eps = float(node.attr("epsilon", 1e-5))
    axes = tuple(range(axis, x.ndim))
    ms = Mean(axes, True)(x * x) + wrap(xp_of(x).asarray(eps, dtype=raw(x).dtype))
    inv = G.Unary(lambda xp, v: 1 / xp.sqrt(v), lambda xp, v, y: -0.5 * y ** 3)(ms)
    return x * inv * scale


@op("LRN")
def _lrn(run, node, x):
    size = int(node.attr("size"))
    alpha, beta, bias = float(node.attr("alpha", 1e-4)), float(node.attr("beta", 0.75)), float(node.attr("bias", 1.0))
    c = x.shape[1]
    pre, post = (size - 1) // 2, size - 1 - (size - 1) // 2
    sq = G.PadConstant([(0, 0), (pre, post)] + [(0, 0)] * (x.ndim - 2), 0.0)(x * x)
    total = None
    for i in range(size):
        part = sq[:, i:i + c]
        total = part if total is None else total + part
    denom = G.Unary(lambda xp, v: (bias + alpha / size * v) ** beta,
                    lambda xp, v, y: beta * alpha / size * (bias + alpha / size * v) ** (beta - 1))(total)
    return x / denom


@op("MeanVarianceNormalization")
def _mvn(run, node, x):
    axes = list(node.attr("axes") or [0, 2, 3])
    axes = [axis_of(a, x.ndim) for a in axes]
    mu = Mean(tuple(axes), True)(x)
    d = x - mu
    var = Mean(tuple(axes), True)(d * d)
    return d / G.Unary(lambda xp, v: xp.sqrt(v) + 1e-9, lambda xp, v, y: 0.5 / xp.sqrt(v))(var)


@op("LpNormalization")
def _lp_norm(run, node, x):
    axis = axis_of(node.attr("axis", -1), x.ndim)
    p = int(node.attr("p", 2))
    if p == 1:
        norm = Sum((axis,), True)(x.abs())
    else:
        norm = G.Unary(lambda xp, v: xp.sqrt(v), lambda xp, v, y: 0.5 / y)(Sum((axis,), True)(x * x))
    safe = G.Where(raw(norm) == 0)(wrap(xp_of(x).ones((), dtype=raw(x).dtype)), norm)
    return x / safe


# ---- softmax family ---------------------------------------------------------------------------

def _softmax_like(run, node, x, fn):
    if run.opset.get("", 17) >= 13:
        return fn(x, axis_of(node.attr("axis", -1), x.ndim, f"{node.op} axis"))
    axis = axis_of(node.attr("axis", 1), x.ndim, f"{node.op} axis")  # coerced to 2-d (opset < 13)
    flat = x.reshape((math.prod(x.shape[:axis]), math.prod(x.shape[axis:])))
    return fn(flat, 1).reshape(x.shape)


@op("Softmax")
def _softmax(run, node, x):
    return _softmax_like(run, node, x, F.softmax)


@op("LogSoftmax")
def _log_softmax(run, node, x):
    return _softmax_like(run, node, x, F.log_softmax)


@op("Hardmax")
def _hardmax(run, node, x):
    def hard(v, axis):
        a, xp = raw(v), xp_of(v)
        idx = xp.expand_dims(a.argmax(axis=axis), axis)
        shape = [1] * a.ndim
        shape[axis] = a.shape[axis]
        return wrap((xp.arange(a.shape[axis]).reshape(shape) == idx).astype(a.dtype))
    return _softmax_like(run, node, x, hard)


# ---- dropout ----------------------------------------------------------------------------------

@op("Dropout")
def _dropout(run, node, x, ratio=None, training_mode=None):
    rate = scalar_of(ratio, node.attr("ratio", 0.5))
    training = bool(scalar_of(training_mode, 0))
    want_mask = len(node.outputs) > 1 and node.outputs[1]
    xp = xp_of(x)
    if not training or rate == 0:
        return (x, wrap(xp.ones(x.shape, dtype=bool))) if want_mask else x
    y = F.dropout(x, float(rate), training=True)
    return (y, wrap(raw(y) != 0)) if want_mask else y


# ---- losses -----------------------------------------------------------------------------------

@op("SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss")
def _losses(run, node, scores, labels, weights=None):
    scores, labels, weights = same_side(scores, labels, weights)
    xp = xp_of(scores)
    c = scores.shape[1]
    logp = _softmax_like_axis1(scores) if node.op == "SoftmaxCrossEntropyLoss" else scores
    lab = raw(labels).astype(np.int64)
    ignore = node.attr("ignore_index")
    valid = xp.ones(lab.shape, dtype=bool) if ignore is None else lab != ignore
    safe = xp.where(valid, lab, 0)
    grids = _grid_index(xp, lab.shape)
    picked = logp[(grids[0], xp.asarray(safe)) + tuple(grids[1:])]
    w = xp.where(valid, 1.0, 0.0).astype(raw(scores).dtype)
    if weights is not None:
        w = w * raw(weights)[safe]
    loss = -picked * wrap(w)
    reduction = node.attr("reduction", "mean")
    if reduction == "none":
        out = loss
    elif reduction == "sum":
        out = loss.sum()
    else:
        out = loss.sum() / wrap(xp.asarray(w.sum(), dtype=raw(scores).dtype))
    if node.op == "SoftmaxCrossEntropyLoss" and len(node.outputs) > 1 and node.outputs[1]:
        return out, logp
    return out


def _softmax_like_axis1(x):
    return F.log_softmax(x, 1)


def _grid_index(xp, shape):
    """Index arrays for axis 0 and the axes after the class axis of a (N, C, d1, ...) tensor."""
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return [xp.asarray(g) for g in grids]


# ---- resizing ---------------------------------------------------------------------------------

def _nearest_pick(ratio, integer, mode):
    if mode == "round_prefer_ceil":
        up = ratio >= 0.5
    elif mode == "floor":
        up = np.zeros_like(ratio, dtype=bool)
    elif mode == "ceil":
        up = np.ones_like(ratio, dtype=bool)
    else:
        up = ratio > 0.5
    up = up | integer
    return np.stack([~up, up], axis=1).astype(np.float64)


def _cubic(ratio, a):
    r = ratio[:, None]
    t = np.concatenate([r + 1, r, 1 - r, 2 - r], axis=1)
    return _cubic_kernel(t, a)


def _cubic_kernel(t, a):
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _axis_coeffs(mode, ratio, integer, scale, node):
    """(n_out, taps) interpolation weights for the taps left of and around each source point."""
    antialias = bool(node.attr("antialias", 0)) and scale < 1
    if mode == "nearest":
        return _nearest_pick(ratio, integer, node.attr("nearest_mode", "round_prefer_floor"))
    if mode == "linear":
        if not antialias:
            return np.stack([1 - ratio, ratio], axis=1)
        start = int(np.floor(-1 / scale) + 1)
        args = (np.arange(start, start + 2 - 2 * start)[None, :] - ratio[:, None]) * scale
        c = np.clip(1 - np.abs(args), 0, 1)
        return c / c.sum(axis=1, keepdims=True)
    if mode == "cubic":
        a = float(node.attr("cubic_coeff_a", -0.75))
        if not antialias:
            return _cubic(ratio, a)
        start = int(np.floor(-2 / scale) + 1)
        args = scale * (np.arange(start, 2 - start)[None, :] - ratio[:, None])
        c = _cubic_kernel(args, a)
        return c / c.sum(axis=1, keepdims=True)
    raise ValueError(f"Resize expected mode nearest, linear or cubic, got {mode!r}")


def _source_coords(ctm, out_n, in_n, scale, roi):
    y = np.arange(out_n, dtype=np.float64)
    out_w = scale * in_n
    extrap = None
    if ctm == "align_corners":
        x = np.zeros(out_n) if out_w == 1 else y * (in_n - 1) / (out_w - 1)
    elif ctm == "asymmetric":
        x = y / scale
    elif ctm == "tf_crop_and_resize":
        lo, hi = roi
        x = np.full(out_n, (hi - lo) * (in_n - 1) / 2) if out_w == 1 else y * (hi - lo) * (in_n - 1) / (out_w - 1)
        x = x + lo * (in_n - 1)
        extrap = (x < 0) | (x > in_n - 1)
    elif ctm == "pytorch_half_pixel":
        x = np.full(out_n, -0.5) if out_w == 1 else (y + 0.5) / scale - 0.5
    elif ctm == "half_pixel":
        x = (y + 0.5) / scale - 0.5
    elif ctm == "half_pixel_symmetric":
        offset = in_n / 2 * (1 - out_n / out_w)
        x = offset + (y + 0.5) / scale - 0.5
    else:
        raise ValueError(f"Resize: unknown coordinate_transformation_mode {ctm!r}")
    return x, extrap


def _axis_plan(node, mode, ctm, in_n, out_n, scale, roi):
    """(source index (n_out, taps), weights (n_out, taps), extrapolated rows or None)."""
    x, extrap = _source_coords(ctm, out_n, in_n, scale, roi)
    base = np.floor(x)
    integer = x == base
    ratio = np.where(integer, 1.0, x - base)
    coeffs = _axis_coeffs(mode, ratio, integer, scale, node)
    n = coeffs.shape[1]
    pad = int(np.ceil(n / 2))
    xp_ = x + pad
    p = np.floor(xp_).astype(np.int64)
    frac = xp_ - p
    if n % 2 == 0:
        offset = np.where(frac == 0, -(n // 2), -(n // 2) + 1)
    else:
        offset = np.where(frac <= 0.5, -((n - 1) // 2), -((n - 1) // 2) + 1)
    idx = (p + offset)[:, None] + np.arange(n)[None, :] - pad
    if node.attr("exclude_outside", 0):
        coeffs = np.where((idx < 0) | (idx >= in_n), 0.0, coeffs)
        s = coeffs.sum(axis=1, keepdims=True)
        coeffs = coeffs / np.where(s == 0, 1.0, s)
    return np.clip(idx, 0, in_n - 1), coeffs, extrap


def _resize_axis(x, axis, node, mode, ctm, out_n, scale, roi):
    in_n = x.shape[axis]
    idx, coeffs, extrap = _axis_plan(node, mode, ctm, in_n, out_n, scale, roi)
    xp = xp_of(x)
    if mode == "nearest":
        pick = idx[np.arange(out_n), coeffs.argmax(axis=1)]
        y = x[(slice(None),) * axis + (xp.asarray(pick),)]
    else:
        m = np.zeros((out_n, in_n))
        np.add.at(m, (np.repeat(np.arange(out_n), idx.shape[1]), idx.reshape(-1)), coeffs.reshape(-1))
        perm = [i for i in range(x.ndim) if i != axis] + [axis]
        moved = x.transpose(tuple(perm))
        mt = wrap(xp.asarray(np.ascontiguousarray(m.T).astype(raw(x).dtype)))
        y = (moved @ mt).transpose(tuple(np.argsort(perm)))
    if extrap is not None and extrap.any():
        shape = [1] * x.ndim
        shape[axis] = out_n
        value = wrap(xp.full((), float(node.attr("extrapolation_value", 0.0)), dtype=raw(x).dtype))
        y = G.Where(xp.asarray(extrap.reshape(shape)))(value, y) if is_float(x) else wrap(
            xp.where(xp.asarray(extrap.reshape(shape)), raw(value), raw(y)))
    return y


def _resize(run, node, x, scales, sizes, roi, ctm, mode):
    r = x.ndim
    axes = node.attr("axes")
    axes = list(range(r)) if axes is None else [axis_of(a, r, "Resize axis") for a in axes]
    roi_full = None
    if roi is not None and len(roi):
        k = len(axes)
        roi_full = [0.0] * r + [1.0] * r
        for i, a in enumerate(axes):
            roi_full[a], roi_full[r + a] = roi[i], roi[k + i]
    if sizes is not None:
        size_of = dict(zip(axes, sizes))
        scale_of = {a: size_of[a] / x.shape[a] for a in axes}
        policy = node.attr("keep_aspect_ratio_policy", "stretch")
        if policy != "stretch":
            s = (min if policy == "not_larger" else max)(scale_of.values())
            scale_of = {a: s for a in axes}
            size_of = {a: int(s * x.shape[a] + 0.5) for a in axes}
    else:
        scale_of = dict(zip(axes, scales))
        size_of = {a: int(scale_of[a] * x.shape[a]) for a in axes}
    y = x
    for a in axes:
        s, n = float(scale_of[a]), int(size_of[a])
        axis_roi = None if roi_full is None else (roi_full[a], roi_full[r + a])
        if math.isclose(s, 1.0) and n == x.shape[a] and (axis_roi is None or axis_roi == (0.0, 1.0)):
            continue
        y = _resize_axis(y, a, node, mode, ctm, n, s, axis_roi)
    return y


def _mode(node, default="nearest"):
    m = node.attr("mode", default)
    return m.decode() if isinstance(m, bytes) else m


@op("Resize")
def _resize_op(run, node, x, roi=None, scales=None, sizes=None):
    if run.opset.get("", 17) < 11:  # opset 10: (X, scales), Upsample's coordinates
        return _upsample(run, node, x, roi)
    sc = None if scales is None or raw(scales).size == 0 else [float(v) for v in host(scales).reshape(-1)]
    sz = None if sizes is None or raw(sizes).size == 0 else ints(sizes)
    rv = None if roi is None or raw(roi).size == 0 else [float(v) for v in host(roi).reshape(-1)]
    ctm = node.attr("coordinate_transformation_mode", "half_pixel")
    return _resize(run, node, x, sc, sz, rv, ctm, _mode(node))


@op("Upsample")
def _upsample(run, node, x, scales=None):
    sc = [float(v) for v in host(scales).reshape(-1)] if scales is not None else list(node.attr("scales"))
    mode = _mode(node)
    if mode == "nearest":
        plain = type(node)(node.op, node.inputs, node.outputs, {**node.attrs, "nearest_mode": "floor"})
        return _resize(run, plain, x, sc, None, None, "asymmetric", "nearest")
    return _resize(run, node, x, sc, None, None, "asymmetric", "linear")

