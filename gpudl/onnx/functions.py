"""Differentiable ops ONNX graphs need beyond gpudl.functional: elementwise math with its
derivative, selection (Where, Maximum, Clip), broadcasting, tiling, padding, scatters,
cumulative sums, products and Einsum.

Each is a gpudl Function on raw arrays of either backend (``xp`` from the inputs), so a
graph that uses them trains as any gpudl model does.
"""
from __future__ import annotations

import string

import numpy as np

from .. import backend
from ..autograd import Function, unbroadcast

__all__ = ["Unary", "Where", "Maximum", "Minimum", "Clip", "BroadcastTo", "Tile", "PadConstant",
           "ScatterElements", "ScatterND", "CumSum", "ReduceProd", "Einsum", "erf"]


class Unary(Function):
    """y = f(x) with dy/dx = df(x, y), both on raw arrays with the array module ``xp``."""

    def __init__(self, f, df):
        self.f, self.df = f, df

    def forward(self, x):
        xp = backend.get_array_module(x)
        y = self.f(xp, x)
        self._saved = (x, y)
        return y

    def backward(self, g):
        x, y = self._saved
        return g * self.df(backend.get_array_module(x), x, y)


def erf(xp, x):
    """The error function on either backend: SciPy's on the host when it is installed,
    else Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7, under float32's step)."""
    if xp is np:
        try:
            from scipy.special import erf as _erf  # noqa: PLC0415  (optional: exact on the host)
            return _erf(x).astype(x.dtype, copy=False)
        except ImportError:
            pass
    a = xp.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    y = 1.0 - poly * xp.exp(-a * a)
    return (xp.sign(x) * y).astype(x.dtype, copy=False)


class Where(Function):
    """``where(cond, a, b)`` with broadcasting; cond is held, not differentiated."""

    def __init__(self, cond):
        self.cond = cond

    def forward(self, a, b):
        xp = backend.get_array_module(a, b)
        self.a_shape, self.b_shape = a.shape, b.shape
        return xp.where(self.cond, a, b)

    def backward(self, g):
        xp = backend.get_array_module(g)
        zero = g.dtype.type(0)
        ga = unbroadcast(xp.where(self.cond, g, zero), self.a_shape) if self.needs_grad(0) else None
        gb = unbroadcast(xp.where(self.cond, zero, g), self.b_shape) if self.needs_grad(1) else None
        return ga, gb


class Maximum(Function):
    """Elementwise max of two arrays; on a tie each side gets half the gradient (PyTorch)."""

    pick = staticmethod(lambda xp, a, b: xp.maximum(a, b))
    sign = 1

    def forward(self, a, b):
        xp = backend.get_array_module(a, b)
        self.a_shape, self.b_shape = a.shape, b.shape
        self._saved = (a, b)
        return self.pick(xp, a, b)

    def backward(self, g):
        a, b = self._saved
        xp = backend.get_array_module(g)
        d = (a - b) * self.sign
        wa = xp.where(d > 0, 1.0, xp.where(d == 0, 0.5, 0.0)).astype(g.dtype)
        return unbroadcast(g * wa, self.a_shape), unbroadcast(g * (1 - wa), self.b_shape)


class Minimum(Maximum):
    pick = staticmethod(lambda xp, a, b: xp.minimum(a, b))
    sign = -1


class Clip(Function):
    """Clamp to [lo, hi] (either may be None); the gradient passes where lo <= x <= hi."""

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def forward(self, x):
        xp = backend.get_array_module(x)
        keep = xp.ones(x.shape, dtype=bool)
        y = x
        if self.lo is not None:
            keep &= x >= self.lo
            y = xp.maximum(y, x.dtype.type(self.lo))
        if self.hi is not None:
            keep &= x <= self.hi
            y = xp.minimum(y, x.dtype.type(self.hi))
        self._saved = keep
        return y if y is not x else x.copy()

    def backward(self, g):
        return g * self._saved


class BroadcastTo(Function):
    """NumPy broadcasting to ``shape`` (ONNX Expand); the gradient is summed back."""

    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        xp = backend.get_array_module(x)
        self.in_shape = x.shape
        return xp.ascontiguousarray(xp.broadcast_to(x, self.shape))

    def backward(self, g):
        return unbroadcast(g, self.in_shape)


class Tile(Function):
    """Repeat the whole array ``reps[i]`` times along axis i."""

    def __init__(self, reps):
        self.reps = tuple(int(r) for r in reps)

    def forward(self, x):
        xp = backend.get_array_module(x)
        self.in_shape = x.shape
        return xp.tile(x, self.reps)

    def backward(self, g):
        inter = []
        for r, n in zip(self.reps, self.in_shape):
            inter += [r, n]
        g = g.reshape(inter)
        return g.sum(axis=tuple(range(0, len(inter), 2)))


class PadConstant(Function):
    """Pad with a constant: ``pads`` per axis as (before, after), each >= 0."""

    def __init__(self, pads, value=0.0):
        self.pads = [(int(a), int(b)) for a, b in pads]
        self.value = value

    def forward(self, x):
        xp = backend.get_array_module(x)
        shape = tuple(n + a + b for n, (a, b) in zip(x.shape, self.pads))
        out = xp.full(shape, self.value, dtype=x.dtype)
        self.inner = tuple(slice(a, a + n) for n, (a, _) in zip(x.shape, self.pads))
        out[self.inner] = x
        return out

    def backward(self, g):
        return g[self.inner]


class ScatterElements(Function):
    """ONNX ScatterElements: ``data`` with ``updates`` written at ``indices`` along ``axis``
    (``reduction`` none, add, mul, max or min). Gradients for reduction "none" and "add"."""

    def __init__(self, indices, axis, reduction="none"):
        self.indices, self.axis, self.reduction = indices, axis, reduction

    def _index(self, xp, shape):
        idx = self.indices
        idx = xp.where(idx < 0, idx + shape[self.axis], idx)
        grids = list(xp.meshgrid(*[xp.arange(n) for n in idx.shape], indexing="ij"))
        grids[self.axis] = idx
        return tuple(grids)

    def forward(self, data, updates):
        xp = backend.get_array_module(data)
        self.where = self._index(xp, data.shape)
        return _scatter(xp, data, self.where, updates, self.reduction)

    def backward(self, g):
        return _scatter_backward(self, g)


class ScatterND(ScatterElements):
    """ONNX ScatterND: ``updates`` written at the index tuples in the last axis of ``indices``."""

    def __init__(self, indices, reduction="none"):
        super().__init__(indices, 0, reduction)

    def _index(self, xp, shape):
        idx = self.indices
        k = idx.shape[-1]
        dims = xp.asarray(np.array(shape[:k]).reshape((1,) * (idx.ndim - 1) + (k,)))
        idx = xp.where(idx < 0, idx + dims, idx)
        return tuple(idx[..., i] for i in range(k))


def _scatter(xp, data, where, updates, reduction):
    out = data.copy()
    if reduction == "none":
        out[where] = updates
    elif reduction == "add":
        backend.scatter_add(out, where, updates)
    elif reduction in ("mul", "max", "min"):
        if xp is not np:
            raise NotImplementedError(f"Scatter with reduction '{reduction}' runs on the host only")
        {"mul": np.multiply, "max": np.maximum, "min": np.minimum}[reduction].at(out, where, updates)
    else:
        raise ValueError(f"Scatter expected reduction none, add, mul, max or min, got {reduction!r}")
    return out


def _scatter_backward(fn, g):
    if fn.reduction not in ("none", "add"):
        raise NotImplementedError(f"Scatter with reduction '{fn.reduction}' has no gradient")
    gd = g
    if fn.reduction == "none":
        gd = g.copy()
        gd[fn.where] = 0
    return gd, g[fn.where]


class CumSum(Function):
    """Cumulative sum along ``axis``; ``exclusive`` leaves each element out of its own sum,
    ``reverse`` sums from the end."""

    def __init__(self, axis, exclusive=False, reverse=False):
        self.axis, self.exclusive, self.reverse = axis, exclusive, reverse

    def _run(self, x, reverse):
        xp = backend.get_array_module(x)
        ax = self.axis
        if reverse:
            x = xp.flip(x, ax)
        y = xp.cumsum(x, axis=ax, dtype=x.dtype)
        if self.exclusive:
            y = y - x
        return xp.ascontiguousarray(xp.flip(y, ax)) if reverse else y

    def forward(self, x):
        return self._run(x, self.reverse)

    def backward(self, g):
        return self._run(g, not self.reverse)


class ReduceProd(Function):
    """Product over ``axes``; the gradient is the product of the other factors (exact with zeros)."""

    def __init__(self, axes, keepdims):
        self.axes, self.keepdims = tuple(axes), keepdims

    def forward(self, x):
        self._saved = x
        return x.prod(axis=self.axes, keepdims=self.keepdims)

    def backward(self, g):
        x = self._saved
        xp = backend.get_array_module(x)
        rest = [i for i in range(x.ndim) if i not in self.axes]
        perm = rest + list(self.axes)
        xt = x.transpose(perm)
        lead = xt.shape[:len(rest)]
        flat = xt.reshape(lead + (-1,))
        ones = xp.ones(lead + (1,), dtype=x.dtype)
        left = xp.cumprod(xp.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
        right = xp.flip(xp.cumprod(xp.flip(xp.concatenate([flat[..., 1:], ones], axis=-1), -1), axis=-1), -1)
        others = (left * right).reshape(xt.shape)
        shape = [1 if i in self.axes else n for i, n in enumerate(x.shape)]
        gk = g.reshape(shape).transpose(perm)
        return (gk * others).transpose(np.argsort(perm))


class Einsum(Function):
    """``einsum(equation, *operands)``; each operand's gradient is the einsum of the output
    gradient with the other operands (a letter only that operand sums over is broadcast back)."""

    def __init__(self, equation):
        self.equation = equation.replace(" ", "")

    def forward(self, *xs):
        xp = backend.get_array_module(*xs)
        self.subs, self.out = _einsum_parts(self.equation, [x.shape for x in xs])
        self._saved = xs
        return xp.asarray(xp.einsum(f"{','.join(self.subs)}->{self.out}", *xs))

    def backward(self, g):
        xs = self._saved
        xp = backend.get_array_module(g)
        grads = []
        for i, (x, sub) in enumerate(zip(xs, self.subs)):
            if not self.needs_grad(i):
                grads.append(None)
                continue
            if len(set(sub)) != len(sub):
                raise NotImplementedError(f"Einsum '{self.equation}': no gradient for an operand with a "
                                          "repeated index (a diagonal)")
            others = [(s, o) for j, (s, o) in enumerate(zip(self.subs, xs)) if j != i]
            seen = set(self.out).union(*[set(s) for s, _ in others]) if others else set(self.out)
            kept = "".join(c for c in sub if c in seen)
            eq = ",".join([self.out] + [s for s, _ in others]) + "->" + kept
            gi = xp.einsum(eq, g, *[o for _, o in others])
            if kept != sub:  # letters only this operand had: summed in forward, broadcast back
                shape = [x.shape[k] if c in seen else 1 for k, c in enumerate(sub)]
                order = [kept.index(c) for c in sub if c in seen]
                gi = xp.broadcast_to(gi.transpose(order).reshape(shape), x.shape)
            grads.append(xp.ascontiguousarray(gi).astype(x.dtype, copy=False))
        return tuple(grads)


def _einsum_parts(equation, shapes):
    """Operand subscripts and the output's, with '...' spelt out as letters."""
    lhs, arrow, rhs = equation.partition("->")
    subs = lhs.split(",")
    if len(subs) != len(shapes):
        raise ValueError(f"Einsum '{equation}' names {len(subs)} operands, got {len(shapes)}")
    used = set(equation)
    spare = [c for c in string.ascii_letters if c not in used]
    ell = max((len(s) - (len(sub) - 3) for sub, s in zip(subs, shapes) if "..." in sub), default=0)
    fill = "".join(spare[:ell])
    out_subs = []
    for sub, shape in zip(subs, shapes):
        if "..." in sub:
            n = len(shape) - (len(sub) - 3)
            sub = sub.replace("...", fill[ell - n:] if n else "")
        if len(sub) != len(shape):
            raise ValueError(f"Einsum '{equation}': subscripts '{sub}' do not match an operand of shape {shape}")
        out_subs.append(sub)
    if not arrow:  # implicit output: the letters seen once, sorted, after the broadcast axes
        counts = {}
        for s in out_subs:
            for c in s:
                counts[c] = counts.get(c, 0) + 1
        rhs = fill + "".join(sorted(c for c, k in counts.items() if k == 1 and c not in fill))
    else:
        rhs = rhs.replace("...", fill)
    return out_subs, rhs

