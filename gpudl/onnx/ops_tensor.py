"""ONNX shape, indexing and creation ops on gpudl Tensors.

Slicing and gathering go through the autograd's indexing (``Tensor.__getitem__``, whose
backward scatters back), reshapes and transposes through its shape ops, so gradients flow
through every one that moves float data.
"""
from __future__ import annotations

import math

import numpy as np

from ..autograd import concatenate
from . import functions as G
from ._values import (axis_of, host, ints, is_float, new_array, onnx_dtype, raw, same_side, scalar_of, wrap,
                      xp_of)
from .runtime import UnsupportedOpError, op

# ---- constants and creation ---------------------------------------------------------------


@op("Constant")
def _constant(run, node):
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in node.attrs:
            v = node.attrs[key]
            if key in ("value_float", "value_floats"):
                v = np.asarray(v, dtype=np.float32)
            elif key in ("value_int", "value_ints"):
                v = np.asarray(v, dtype=np.int64)
            return new_array(run, v, np.asarray(v).dtype)
    raise UnsupportedOpError(f"Constant with attribute(s) {sorted(node.attrs)}: gpudl runs numeric "
                             "tensors only (no strings or sparse tensors)")


@op("Shape")
def _shape(run, node, x):
    shape = list(x.shape)
    n = len(shape)
    start = node.attr("start", 0)
    end = node.attr("end", n)
    start = min(max(start + n if start < 0 else start, 0), n)
    end = min(max(end + n if end < 0 else end, 0), n)
    return wrap(np.asarray(shape[start:end], dtype=np.int64))


@op("Size")
def _size(run, node, x):
    return wrap(np.asarray(math.prod(x.shape), dtype=np.int64))


@op("ConstantOfShape")
def _constant_of_shape(run, node, shape):
    value = node.attr("value")
    value = np.zeros(1, np.float32) if value is None else np.asarray(value)
    return new_array(run, np.full(ints(shape), value.reshape(-1)[0], dtype=value.dtype), value.dtype)


@op("Range")
def _range(run, node, start, limit, delta):
    dt = raw(start).dtype
    s, l, d = (host(v).reshape(-1)[0] for v in (start, limit, delta))
    n = max(int(math.ceil((l - s) / d)), 0)
    return new_array(run, (s + np.arange(n) * d).astype(dt), dt)


@op("EyeLike")
def _eye_like(run, node, x):
    code = node.attr("dtype")
    dt = raw(x).dtype if code is None else onnx_dtype(code)
    n, m = x.shape
    return new_array(run, np.eye(n, m, k=node.attr("k", 0), dtype=dt), dt)


@op("OneHot")
def _one_hot(run, node, indices, depth, values):
    idx, xp = raw(indices), xp_of(indices)
    d = int(scalar_of(depth))
    idx = xp.where(idx < 0, idx + d, idx)
    axis = node.attr("axis", -1)
    axis = axis + idx.ndim + 1 if axis < 0 else axis
    shape = [1] * (idx.ndim + 1)
    shape[axis] = d
    hot = xp.expand_dims(idx, axis) == xp.arange(d).reshape(shape)
    off, on = raw(values)[0], raw(values)[1]
    return wrap(xp.where(hot, on, off))


def _rng(node):
    seed = node.attr("seed")
    return np.random.default_rng(None if seed is None else int(seed))


def _random_dtype(node, like=None):
    code = node.attr("dtype")
    if code is None:
        return raw(like).dtype if like is not None else np.dtype(np.float32)
    return onnx_dtype(code)


@op("RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike")
def _random(run, node, like=None):
    shape = node.attr("shape") if like is None else like.shape
    dt = _random_dtype(node, like)
    rng = _rng(node)
    if node.op.startswith("RandomNormal"):
        v = rng.normal(node.attr("mean", 0.0), node.attr("scale", 1.0), size=shape)
    else:
        v = rng.uniform(node.attr("low", 0.0), node.attr("high", 1.0), size=shape)
    return new_array(run, v.astype(dt), dt)


@op("Bernoulli")
def _bernoulli(run, node, x):
    dt = _random_dtype(node, x)
    p = host(x)
    return new_array(run, (_rng(node).uniform(size=p.shape) < p).astype(dt), dt)


# ---- types ------------------------------------------------------------------------------------

def _cast(x, dt):
    dt = np.dtype(dt)
    if raw(x).dtype == dt:
        return x
    if is_float(x) and dt.kind == "f":
        return x.astype(dt)  # differentiable: the gradient is cast back
    a = raw(x)
    if a.dtype.kind == "f" and dt.kind in "iu":
        xp = xp_of(x)
        a = xp.where(xp.isfinite(a), a, 0)  # NaN/inf to an integer is undefined: 0, not garbage
    return wrap(a.astype(dt))


@op("Cast")
def _cast_op(run, node, x):
    return _cast(x, onnx_dtype(node.attr("to"), "Cast: "))


@op("CastLike")
def _cast_like(run, node, x, like):
    return _cast(x, raw(like).dtype)


@op("Identity")
def _identity(run, node, x):
    return x


# ---- shape ------------------------------------------------------------------------------------

@op("Reshape")
def _reshape(run, node, x, shape=None):
    target = ints(shape) if shape is not None else list(node.attr("shape"))
    if not node.attr("allowzero", 0):
        target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
    if target.count(-1) > 1:
        raise ValueError(f"Reshape expected at most one -1 in the shape, got {target}")
    return x.reshape(tuple(target))


@op("Flatten")
def _flatten(run, node, x):
    axis = node.attr("axis", 1)
    axis = axis + x.ndim if axis < 0 else axis
    return x.reshape((math.prod(x.shape[:axis]), math.prod(x.shape[axis:])))


@op("Transpose")
def _transpose(run, node, x):
    perm = node.attr("perm")
    return x.transpose(tuple(perm) if perm is not None else tuple(range(x.ndim))[::-1])


def _axes_arg(run, node, axes_in, since=13):
    if run.opset.get("", 17) >= since:
        return None if axes_in is None else ints(axes_in)
    return node.attr("axes")


@op("Squeeze")
def _squeeze(run, node, x, axes_in=None):
    axes = _axes_arg(run, node, axes_in)
    if axes is None:
        axes = [i for i, n in enumerate(x.shape) if n == 1]
    axes = {axis_of(a, x.ndim, "Squeeze axis") for a in axes}
    bad = [a for a in axes if x.shape[a] != 1]
    if bad:
        raise ValueError(f"Squeeze expected axes of size 1, got axes {sorted(axes)} of shape {x.shape}")
    return x.reshape(tuple(n for i, n in enumerate(x.shape) if i not in axes))


@op("Unsqueeze")
def _unsqueeze(run, node, x, axes_in=None):
    axes = _axes_arg(run, node, axes_in)
    rank = x.ndim + len(axes)
    axes = sorted(axis_of(a, rank, "Unsqueeze axis") for a in axes)
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return x.reshape(tuple(shape))


@op("Concat")
def _concat(run, node, *xs):
    xs = [x for x in same_side(*xs)]
    axis = axis_of(node.attr("axis"), xs[0].ndim, "Concat axis")
    if is_float(xs[0]) and any(x.requires_grad for x in xs):
        return concatenate(xs, axis=axis)
    return wrap(xp_of(*xs).concatenate([raw(x) for x in xs], axis=axis))


@op("Split")
def _split(run, node, x, split=None):
    axis = axis_of(node.attr("axis", 0), x.ndim, "Split axis")
    n = x.shape[axis]
    count = len(node.outputs)
    if split is not None:
        sizes = ints(split)
    elif node.attr("split") is not None:
        sizes = list(node.attr("split"))
    elif node.attr("num_outputs") is not None:
        k = int(node.attr("num_outputs"))
        chunk = -(-n // k)
        sizes = [min(chunk, n - i * chunk) for i in range(k)]
    else:
        if n % count:
            raise ValueError(f"Split expected axis {axis} (size {n}) to divide into {count} equal parts")
        sizes = [n // count] * count
    if sum(sizes) != n:
        raise ValueError(f"Split sizes {sizes} do not add up to axis {axis}'s size {n}")
    out, start = [], 0
    for s in sizes:
        index = (slice(None),) * axis + (slice(start, start + s),)
        out.append(x[index])
        start += s
    return tuple(out)


def _slice_bounds(start, end, step, dim):
    """A Python slice for ONNX's clamped [start, end) with ``step``."""
    if step == 0:
        raise ValueError("Slice expected non-zero steps")
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, -1), dim - 1), min(max(end, -1), dim - 1)
    return slice(start, None if end < 0 else end, step)


@op("Slice")
def _slice(run, node, x, starts=None, ends=None, axes=None, steps=None):
    if starts is None:  # opset < 10: attributes
        s, e = list(node.attr("starts")), list(node.attr("ends"))
        ax = node.attr("axes")
        st = [1] * len(s)
    else:
        s, e = ints(starts), ints(ends)
        ax = None if axes is None else ints(axes)
        st = [1] * len(s) if steps is None else ints(steps)
    ax = list(range(len(s))) if ax is None else [axis_of(a, x.ndim, "Slice axis") for a in ax]
    index = [slice(None)] * x.ndim
    for a, b, c, d in zip(ax, s, e, st):
        index[a] = _slice_bounds(b, c, d, x.shape[a])
    return x[tuple(index)]


def _index_array(idx, dim, like):
    """Indices with negative entries counted from the end, on ``like``'s backend."""
    xp = xp_of(like)
    a = xp.asarray(raw(idx))
    return xp.where(a < 0, a + dim, a) if a.dtype.kind == "i" else a


@op("Gather")
def _gather(run, node, x, indices):
    axis = axis_of(node.attr("axis", 0), x.ndim, "Gather axis")
    idx = _index_array(indices, x.shape[axis], x)
    return x[(slice(None),) * axis + (idx,)]


def _grids(xp, shape):
    return list(xp.meshgrid(*[xp.arange(n) for n in shape], indexing="ij"))


@op("GatherElements")
def _gather_elements(run, node, x, indices):
    axis = axis_of(node.attr("axis", 0), x.ndim, "GatherElements axis")
    idx = _index_array(indices, x.shape[axis], x)
    grids = _grids(xp_of(x), idx.shape)
    grids[axis] = idx
    return x[tuple(grids)]


@op("GatherND")
def _gather_nd(run, node, x, indices):
    b = node.attr("batch_dims", 0)
    xp = xp_of(x)
    idx = xp.asarray(raw(indices))
    k = idx.shape[-1]
    lead = idx.shape[:-1]
    parts = []
    for j in range(b):
        shape = [1] * len(lead)
        shape[j] = lead[j]
        parts.append(xp.broadcast_to(xp.arange(lead[j]).reshape(shape), lead))
    for i in range(k):
        dim = x.shape[b + i]
        v = idx[..., i]
        parts.append(xp.where(v < 0, v + dim, v))
    return x[tuple(parts)]


@op("ScatterElements", "Scatter")
def _scatter_elements(run, node, x, indices, updates):
    x, indices, updates = same_side(x, indices, updates)
    axis = axis_of(node.attr("axis", 0), x.ndim, f"{node.op} axis")
    fn = G.ScatterElements(raw(indices), axis, node.attr("reduction", "none"))
    return _scatter_call(fn, x, updates)


@op("ScatterND")
def _scatter_nd(run, node, x, indices, updates):
    x, indices, updates = same_side(x, indices, updates)
    fn = G.ScatterND(raw(indices), node.attr("reduction", "none"))
    return _scatter_call(fn, x, updates)


def _scatter_call(fn, x, updates):
    if is_float(x):
        return fn(x, updates)
    return wrap(fn.forward(raw(x), raw(updates)))


@op("Expand")
def _expand(run, node, x, shape):
    out = np.broadcast_shapes(tuple(x.shape), tuple(ints(shape)))
    if is_float(x):
        return G.BroadcastTo(out)(x)
    xp = xp_of(x)
    return wrap(xp.ascontiguousarray(xp.broadcast_to(raw(x), out)))


@op("Tile")
def _tile(run, node, x, repeats):
    reps = ints(repeats)
    if is_float(x):
        return G.Tile(reps)(x)
    return wrap(xp_of(x).tile(raw(x), reps))


def _pads_arg(run, node, x, pads, axes):
    if pads is None:
        p = list(node.attr("pads"))
    else:
        p = ints(pads)
    ax = list(range(x.ndim)) if axes is None else [axis_of(a, x.ndim, "Pad axis") for a in ints(axes)]
    k = len(ax)
    if len(p) != 2 * k:
        raise ValueError(f"Pad expected {2 * k} pads for {k} axes, got {p}")
    out = [(0, 0)] * x.ndim
    for i, a in enumerate(ax):
        out[a] = (p[i], p[i + k])
    return out


@op("Pad")
def _pad(run, node, x, pads=None, value=None, axes=None):
    mode = node.attr("mode", "constant")
    if isinstance(mode, bytes):
        mode = mode.decode()
    per_axis = _pads_arg(run, node, x, pads, axes)
    # negative pads crop first
    crop = tuple(slice(-a if a < 0 else 0, n + b if b < 0 else n) for (a, b), n in zip(per_axis, x.shape))
    if any(a < 0 or b < 0 for a, b in per_axis):
        x = x[crop]
    per_axis = [(max(a, 0), max(b, 0)) for a, b in per_axis]
    if mode == "constant":
        v = scalar_of(value, node.attr("value", 0.0))
        if is_float(x):
            return G.PadConstant(per_axis, v)(x)
        return wrap(G.PadConstant(per_axis, v).forward(raw(x)))
    if mode not in ("reflect", "edge", "wrap"):
        raise ValueError(f"Pad expected mode constant, reflect, edge or wrap, got {mode!r}")
    xp = xp_of(x)
    index = []
    for i, ((a, b), n) in enumerate(zip(per_axis, x.shape)):
        pos = np.arange(-a, n + b)
        if mode == "edge":
            pos = np.clip(pos, 0, n - 1)
        elif mode == "wrap":
            pos = pos % n
        else:
            if n == 1:
                pos = np.zeros_like(pos)
            else:
                period = 2 * (n - 1)
                pos = np.abs(pos) % period
                pos = np.where(pos >= n, period - pos, pos)
        shape = [1] * x.ndim
        shape[i] = len(pos)
        index.append(xp.asarray(pos.reshape(shape)))
    return x[tuple(index)]


# ---- selection --------------------------------------------------------------------------------

@op("NonZero")
def _nonzero(run, node, x):
    xp = xp_of(x)
    a = raw(x)
    if a.ndim == 0:
        a = a.reshape(1)
    return wrap(xp.stack(xp.nonzero(a)).astype(np.int64).reshape(a.ndim, -1))


@op("Compress")
def _compress(run, node, x, condition):
    cond = host(condition).astype(bool)
    axis = node.attr("axis")
    xp = xp_of(x)
    if axis is None:
        flat = x.reshape((-1,))
        keep = np.nonzero(cond[:flat.shape[0]])[0]
        return flat[xp.asarray(keep)]
    axis = axis_of(axis, x.ndim, "Compress axis")
    keep = np.nonzero(cond[:x.shape[axis]])[0]
    return x[(slice(None),) * axis + (xp.asarray(keep),)]


@op("Trilu")
def _trilu(run, node, x, k=None):
    kk = int(scalar_of(k, 0))
    xp = xp_of(x)
    n, m = x.shape[-2:]
    rows = np.arange(n)[:, None]
    cols = np.arange(m)[None, :]
    keep = (cols - rows >= kk) if node.attr("upper", 1) else (cols - rows <= kk)
    if is_float(x):
        return x * wrap(xp.asarray(keep.astype(raw(x).dtype)))
    return wrap(xp.where(xp.asarray(keep), raw(x), 0).astype(raw(x).dtype))


@op("CumSum")
def _cumsum(run, node, x, axis):
    ax = axis_of(scalar_of(axis), x.ndim, "CumSum axis")
    fn = G.CumSum(ax, bool(node.attr("exclusive", 0)), bool(node.attr("reverse", 0)))
    return fn(x) if is_float(x) else wrap(fn.forward(raw(x)))


@op("TopK")
def _topk(run, node, x, k=None):
    kk = int(scalar_of(k)) if k is not None else int(node.attr("k"))
    axis = axis_of(node.attr("axis", -1), x.ndim, "TopK axis")
    xp = xp_of(x)
    a = raw(x)
    key = -a if node.attr("largest", 1) else a
    if a.dtype.kind == "u" and node.attr("largest", 1):
        key = a.max() - a
    order = xp.argsort(key, axis=axis, kind="stable")
    idx = xp.take(order, xp.arange(kk), axis=axis).astype(np.int64)
    grids = _grids(xp, idx.shape)
    grids[axis] = idx
    return x[tuple(grids)], wrap(idx)


@op("Unique")
def _unique(run, node, x):
    a = host(x)
    axis = node.attr("axis")
    vals, first, inverse, counts = np.unique(a, return_index=True, return_inverse=True, return_counts=True,
                                             axis=axis)
    inverse = inverse.reshape(-1)
    if not node.attr("sorted", 1):  # in the order of first occurrence
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        vals = vals[order] if axis is None else np.take(vals, order, axis=axis)
        first, counts, inverse = first[order], counts[order], rank[inverse]
    out = [vals, first, inverse, counts]
    return tuple(new_array(run, v, v.dtype if i == 0 else np.int64) for i, v in enumerate(out))


@op("ReverseSequence")
def _reverse_sequence(run, node, x, lens):
    b, t = node.attr("batch_axis", 1), node.attr("time_axis", 0)
    xp = xp_of(x)
    n, steps = x.shape[b], x.shape[t]
    lengths = np.asarray(ints(lens))
    pos = np.tile(np.arange(steps)[:, None], (1, n))
    rev = lengths[None, :] - 1 - pos
    pos = np.where(pos < lengths[None, :], rev, pos)
    index = [slice(None)] * x.ndim
    bshape = [1] * x.ndim
    bshape[b] = n
    order = (t, b) if t < b else (b, t)
    pos_ = pos if order == (t, b) else pos.T
    shape = [1] * x.ndim
    shape[order[0]], shape[order[1]] = pos_.shape
    index[t] = xp.asarray(pos_.reshape(shape))
    index[b] = xp.asarray(np.arange(n).reshape(bshape))
    return x[tuple(index)]


@op("DepthToSpace")
def _depth_to_space(run, node, x):
    bs = node.attr("blocksize")
    n, c, h, w = x.shape
    if node.attr("mode", "DCR") == "DCR":
        y = x.reshape((n, bs, bs, c // (bs * bs), h, w)).transpose((0, 3, 4, 1, 5, 2))
    else:
        y = x.reshape((n, c // (bs * bs), bs, bs, h, w)).transpose((0, 1, 4, 2, 5, 3))
    return y.reshape((n, c // (bs * bs), h * bs, w * bs))


@op("SpaceToDepth")
def _space_to_depth(run, node, x):
    bs = node.attr("blocksize")
    n, c, h, w = x.shape
    y = x.reshape((n, c, h // bs, bs, w // bs, bs))
    y = y.transpose((0, 1, 3, 5, 2, 4) if node.attr("mode", "DCR") == "CRD" else (0, 3, 5, 1, 2, 4))
    return y.reshape((n, c * bs * bs, h // bs, w // bs))


@op("CumProd")
def _cumprod(run, node, x, axis):
    """Cumulative product; its gradient is the reversed cumulative sum of g * y divided by x,
    so it is defined where x has no zeros (as PyTorch's)."""
    ax = axis_of(scalar_of(axis), x.ndim, "CumProd axis")
    exclusive, reverse = bool(node.attr("exclusive", 0)), bool(node.attr("reverse", 0))

    def f(xp, a):
        if reverse:
            a = xp.flip(a, ax)
        y = xp.cumprod(a, axis=ax, dtype=a.dtype)
        if exclusive:
            ones = xp.ones_like(xp.take(y, xp.arange(1), axis=ax))
            y = xp.concatenate([ones, xp.take(y, xp.arange(a.shape[ax] - 1), axis=ax)], axis=ax)
        return xp.ascontiguousarray(xp.flip(y, ax)) if reverse else y

    if not is_float(x):
        return wrap(f(xp_of(x), raw(x)))
    return _CumProd(f, G.CumSum(ax, exclusive, not reverse))(x)


class _CumProd(G.Unary):
    def __init__(self, f, cumsum):
        super().__init__(f, None)
        self.cumsum = cumsum

    def backward(self, g):
        x, y = self._saved
        return self.cumsum.forward(g * y) / x


@op("CenterCropPad")
def _center_crop_pad(run, node, x, shape):
    target = ints(shape)
    axes = node.attr("axes")
    axes = list(range(x.ndim)) if axes is None else [axis_of(a, x.ndim, "CenterCropPad axis") for a in axes]
    crop = [slice(None)] * x.ndim
    pads = [(0, 0)] * x.ndim
    for a, want in zip(axes, target):
        n = x.shape[a]
        if want < n:
            start = (n - want) // 2
            crop[a] = slice(start, start + want)
        elif want > n:
            before = (want - n) // 2
            pads[a] = (before, want - n - before)
    y = x[tuple(crop)]
    if any(p != (0, 0) for p in pads):
        y = G.PadConstant(pads, 0)(y) if is_float(y) else wrap(G.PadConstant(pads, 0).forward(raw(y)))
    return y


def _per_axis(v, x, axis, block):
    """A scale or zero point shaped to broadcast against x: a scalar, one per entry of
    ``axis``, or (blocked) one per ``block`` entries of it."""
    a = raw(v)
    if a.ndim == 0 or a.size == 1 and block == 0:
        return a.reshape(())
    xp = xp_of(x)
    ax = axis_of(axis, x.ndim, "quantization axis")
    if block:
        a = xp.repeat(a, block, axis=ax)
        a = xp.take(a, xp.arange(x.shape[ax]), axis=ax)
        return a
    shape = [1] * x.ndim
    shape[ax] = a.shape[0]
    return a.reshape(shape)


@op("DequantizeLinear")
def _dequantize(run, node, x, scale, zero=None):
    x, scale, zero = same_side(x, scale, zero)
    axis, block = node.attr("axis", 1), node.attr("block_size", 0)
    s = _per_axis(scale, x, axis, block)
    v = raw(x).astype(np.float32)
    if zero is not None:
        v = v - _per_axis(zero, x, axis, block).astype(np.float32)
    code = node.attr("output_dtype")
    out = onnx_dtype(code) if code else raw(scale).dtype
    return wrap((v * s).astype(out))


@op("QuantizeLinear")
def _quantize(run, node, x, scale, zero=None):
    x, scale, zero = same_side(x, scale, zero)
    axis, block = node.attr("axis", 1), node.attr("block_size", 0)
    xp = xp_of(x)
    code = node.attr("output_dtype")
    out = raw(zero).dtype if zero is not None else (onnx_dtype(code) if code else np.dtype(np.uint8))
    if out.kind not in "iu":
        raise UnsupportedOpError(f"QuantizeLinear to {out}: gpudl quantizes to integer types only")
    v = xp.rint(raw(x).astype(np.float32) / _per_axis(scale, x, axis, block).astype(np.float32))
    if zero is not None:
        v = v + _per_axis(zero, x, axis, block).astype(np.float32)
    info = np.iinfo(out)
    return wrap(xp.clip(v, info.min, info.max).astype(out))
