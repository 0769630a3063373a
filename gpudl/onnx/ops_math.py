"""ONNX elementwise math, activations, reductions and matrix products on gpudl ops.

Float inputs go through differentiable ops (gpudl.functional, the autograd's operators,
``gpudl.onnx.functions``); integer and boolean ones are plain array arithmetic, as nothing
differentiates them.
"""
from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..autograd import Abs, Exp, Log, Max, Mean, Neg, Sum
from . import functions as G
from ._values import axis_of, ints, is_float, raw, same_side, scalar_of, wrap, xp_of
from .runtime import UnsupportedOpError, op

# ---- binary arithmetic ------------------------------------------------------------------


def _int_div(xp, a, b):
    """Integer division truncating toward zero (C's, as ONNX runtimes compute it)."""
    if a.dtype.kind == "u":
        return xp.floor_divide(a, b)
    q = xp.floor_divide(a, b)
    fix = (a - q * b != 0) & ((a < 0) != (b < 0))
    return q + fix.astype(q.dtype)


_RAW_BINARY = {
    "Add": lambda xp, a, b: a + b, "Sub": lambda xp, a, b: a - b, "Mul": lambda xp, a, b: a * b,
    "Div": _int_div,
}
_FLOAT_BINARY = {
    "Add": lambda a, b: a + b, "Sub": lambda a, b: a - b, "Mul": lambda a, b: a * b, "Div": lambda a, b: a / b,
}


@op("Add", "Sub", "Mul", "Div")
def _arith(run, node, a, b):
    a, b = same_side(a, b)
    if is_float(a) and is_float(b):
        if a.dtype != b.dtype:
            raise TypeError(f"{node.op} expected inputs of one type, got {a.dtype} and {b.dtype}")
        return _FLOAT_BINARY[node.op](a, b)
    xa, xb = raw(a), raw(b)
    return wrap(_RAW_BINARY[node.op](xp_of(a), xa, xb).astype(xa.dtype, copy=False))


@op("Pow")
def _pow(run, node, a, b):
    a, b = same_side(a, b)
    if is_float(a):
        return a ** (b if b.dtype == a.dtype else wrap(raw(b).astype(a.dtype)))
    xp = xp_of(a)
    return wrap(xp.power(raw(a), raw(b).astype(raw(a).dtype)))


@op("Mod")
def _mod(run, node, a, b):
    a, b = same_side(a, b)
    xp = xp_of(a)
    fmod = node.attr("fmod", 0)
    return wrap(xp.fmod(raw(a), raw(b)) if fmod else xp.mod(raw(a), raw(b)))


_COMPARE = {"Equal": "equal", "Less": "less", "LessOrEqual": "less_equal", "Greater": "greater",
            "GreaterOrEqual": "greater_equal", "And": "logical_and", "Or": "logical_or", "Xor": "logical_xor",
            "BitwiseAnd": "bitwise_and", "BitwiseOr": "bitwise_or", "BitwiseXor": "bitwise_xor"}


@op(*_COMPARE)
def _compare(run, node, a, b):
    a, b = same_side(a, b)
    xp = xp_of(a, b)
    return wrap(getattr(xp, _COMPARE[node.op])(raw(a), raw(b)))


@op("Not")
def _not(run, node, x):
    return wrap(xp_of(x).logical_not(raw(x)))


@op("BitwiseNot")
def _bitwise_not(run, node, x):
    return wrap(xp_of(x).invert(raw(x)))


@op("BitShift")
def _bitshift(run, node, a, b):
    a, b = same_side(a, b)
    xp = xp_of(a)
    fn = xp.left_shift if node.attr("direction") == "LEFT" else xp.right_shift
    return wrap(fn(raw(a), raw(b)).astype(raw(a).dtype, copy=False))


@op("Where")
def _where(run, node, cond, a, b):
    cond, a, b = same_side(cond, a, b)
    if is_float(a) and (a.requires_grad or b.requires_grad):
        return G.Where(raw(cond).astype(bool))(a, b)
    return wrap(xp_of(a).where(raw(cond), raw(a), raw(b)))


def _fold(values, pair):
    out = values[0]
    for v in values[1:]:
        out = pair(out, v)
    return out


@op("Max", "Min")
def _max_min(run, node, *xs):
    xs = same_side(*xs)
    if is_float(xs[0]):
        fn = G.Maximum if node.op == "Max" else G.Minimum
        return _fold(xs, lambda a, b: fn()(a, b))
    xp = xp_of(*xs)
    pick = xp.maximum if node.op == "Max" else xp.minimum
    return wrap(_fold([raw(x) for x in xs], pick))


@op("Sum", "Mean")
def _sum_mean(run, node, *xs):
    xs = same_side(*xs)
    if not is_float(xs[0]):
        total = _fold([raw(x) for x in xs], lambda a, b: a + b)
        return wrap(total // len(xs) if node.op == "Mean" else total)
    total = _fold(xs, lambda a, b: a + b)
    if node.op == "Mean":
        total = total * _const(1.0 / len(xs), total)
    return total


# ---- unary math -------------------------------------------------------------------------

def _u(f, df):
    return lambda x: G.Unary(f, df)(x)


def _zero_grad(f):
    return _u(f, lambda xp, x, y: xp.zeros_like(x))


_SQRT2PI = 2.0 / math.sqrt(math.pi)

_UNARY = {
    "Sqrt": _u(lambda xp, x: xp.sqrt(x), lambda xp, x, y: 0.5 / y),
    "Reciprocal": _u(lambda xp, x: 1 / x, lambda xp, x, y: -y * y),
    "Sin": _u(lambda xp, x: xp.sin(x), lambda xp, x, y: xp.cos(x)),
    "Cos": _u(lambda xp, x: xp.cos(x), lambda xp, x, y: -xp.sin(x)),
    "Tan": _u(lambda xp, x: xp.tan(x), lambda xp, x, y: 1 + y * y),
    "Asin": _u(lambda xp, x: xp.arcsin(x), lambda xp, x, y: 1 / xp.sqrt(1 - x * x)),
    "Acos": _u(lambda xp, x: xp.arccos(x), lambda xp, x, y: -1 / xp.sqrt(1 - x * x)),
    "Atan": _u(lambda xp, x: xp.arctan(x), lambda xp, x, y: 1 / (1 + x * x)),
    "Sinh": _u(lambda xp, x: xp.sinh(x), lambda xp, x, y: xp.cosh(x)),
    "Cosh": _u(lambda xp, x: xp.cosh(x), lambda xp, x, y: xp.sinh(x)),
    "Asinh": _u(lambda xp, x: xp.arcsinh(x), lambda xp, x, y: 1 / xp.sqrt(x * x + 1)),
    "Acosh": _u(lambda xp, x: xp.arccosh(x), lambda xp, x, y: 1 / xp.sqrt(x * x - 1)),
    "Atanh": _u(lambda xp, x: xp.arctanh(x), lambda xp, x, y: 1 / (1 - x * x)),
    "Erf": _u(G.erf, lambda xp, x, y: _SQRT2PI * xp.exp(-x * x)),
    "Softplus": _u(lambda xp, x: xp.logaddexp(x.dtype.type(0), x),
                   lambda xp, x, y: 1 - xp.exp(-y)),
    "Softsign": _u(lambda xp, x: x / (1 + xp.abs(x)), lambda xp, x, y: 1 / (1 + xp.abs(x)) ** 2),
    "Sigmoid": F.sigmoid, "Tanh": F.tanh,
    "Exp": lambda x: Exp()(x), "Log": lambda x: Log()(x),
    "Floor": _zero_grad(lambda xp, x: xp.floor(x)), "Ceil": _zero_grad(lambda xp, x: xp.ceil(x)),
    "Round": _zero_grad(lambda xp, x: xp.round(x)),
}
_RAW_UNARY = {"Abs": "abs", "Neg": "negative", "Sign": "sign"}


@op(*_UNARY)
def _unary(run, node, x):
    if not is_float(x):
        raise TypeError(f"{node.op} expected a floating-point input, got {x.dtype}")
    return _UNARY[node.op](x)


@op("Abs", "Neg", "Sign")
def _abs_neg_sign(run, node, x):
    if is_float(x):
        if node.op == "Abs":
            return Abs()(x)
        if node.op == "Neg":
            return Neg()(x)
        return _zero_grad(lambda xp, v: xp.sign(v))(x)
    return wrap(getattr(xp_of(x), _RAW_UNARY[node.op])(raw(x)))


@op("IsNaN")
def _isnan(run, node, x):
    return wrap(xp_of(x).isnan(raw(x)))


@op("IsInf")
def _isinf(run, node, x):
    a, xp = raw(x), xp_of(x)
    pos = (a == xp.inf) if node.attr("detect_positive", 1) else xp.zeros(a.shape, bool)
    neg = (a == -xp.inf) if node.attr("detect_negative", 1) else xp.zeros(a.shape, bool)
    return wrap(pos | neg)


# ---- activations ------------------------------------------------------------------------

@op("Relu")
def _relu(run, node, x):
    if is_float(x):
        return F.relu(x)
    return wrap(xp_of(x).maximum(raw(x), 0).astype(raw(x).dtype))


@op("LeakyRelu")
def _leaky(run, node, x):
    return F.leaky_relu(x, float(node.attr("alpha", 0.01)))


@op("PRelu")
def _prelu(run, node, x, slope):
    x, slope = same_side(x, slope)
    if not is_float(x):
        xp = xp_of(x)
        return wrap(xp.where(raw(x) > 0, raw(x), raw(x) * raw(slope)).astype(raw(x).dtype))
    if run.opset.get("", 17) < 7 and slope.ndim == 1 and x.ndim > 2:  # PRelu-6: one slope per channel
        slope = slope.reshape((slope.shape[0],) + (1,) * (x.ndim - 2))
    return G.Where(raw(x) > 0)(x, x * slope)


def _elu_like(alpha, scale=1.0):
    def f(xp, x):
        return scale * xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, 0)))

    def df(xp, x, y):
        return scale * xp.where(x > 0, 1.0, alpha * xp.exp(xp.minimum(x, 0)))
    return f, df


@op("Elu", "Selu", "Celu")
def _elu(run, node, x):
    if node.op == "Elu":
        f, df = _elu_like(float(node.attr("alpha", 1.0)))
    elif node.op == "Selu":
        f, df = _elu_like(float(node.attr("alpha", 1.67326319217681884765625)),
                          float(node.attr("gamma", 1.05070102214813232421875)))
    else:
        alpha = float(node.attr("alpha", 1.0))

        def f(xp, v):
            return xp.maximum(v, 0) + xp.minimum(0, alpha * xp.expm1(xp.minimum(v, 0) / alpha))

        def df(xp, v, y):
            return xp.where(v > 0, 1.0, xp.exp(xp.minimum(v, 0) / alpha))
    return _typed(f, df)(x)


def _typed(f, df):
    """A Unary whose results keep the input's float type (Python-float scalars promote none)."""
    return G.Unary(lambda xp, x: f(xp, x).astype(x.dtype, copy=False),
                   lambda xp, x, y: df(xp, x, y).astype(x.dtype, copy=False))


@op("HardSigmoid", "HardSwish")
def _hard_sigmoid(run, node, x):
    alpha = float(node.attr("alpha", 0.2)) if node.op == "HardSigmoid" else 1.0 / 6
    beta = float(node.attr("beta", 0.5)) if node.op == "HardSigmoid" else 0.5

    def hs(xp, v):
        return xp.clip(alpha * v + beta, 0, 1)

    def dhs(xp, v):
        z = alpha * v + beta
        return xp.where((z > 0) & (z < 1), alpha, 0.0)
    if node.op == "HardSigmoid":
        return _typed(hs, lambda xp, v, y: dhs(xp, v))(x)
    return _typed(lambda xp, v: v * hs(xp, v), lambda xp, v, y: hs(xp, v) + v * dhs(xp, v))(x)


@op("Mish")
def _mish(run, node, x):
    def f(xp, v):
        return v * xp.tanh(xp.logaddexp(0, v))

    def df(xp, v, y):
        t = xp.tanh(xp.logaddexp(0, v))
        sig = 0.5 * (xp.tanh(0.5 * v) + 1)
        return t + v * (1 - t * t) * sig
    return _typed(f, df)(x)


@op("Gelu")
def _gelu(run, node, x):
    if node.attr("approximate", "none") == "tanh":
        c = math.sqrt(2 / math.pi)

        def f(xp, v):
            return 0.5 * v * (1 + xp.tanh(c * (v + 0.044715 * v ** 3)))

        def df(xp, v, y):
            t = xp.tanh(c * (v + 0.044715 * v ** 3))
            return 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * c * (1 + 3 * 0.044715 * v * v)
        return _typed(f, df)(x)

    def f(xp, v):
        return 0.5 * v * (1 + G.erf(xp, v / math.sqrt(2)))

    def df(xp, v, y):
        return 0.5 * (1 + G.erf(xp, v / math.sqrt(2))) + v * xp.exp(-0.5 * v * v) / math.sqrt(2 * math.pi)
    return _typed(f, df)(x)


@op("ThresholdedRelu")
def _thresholded(run, node, x):
    alpha = float(node.attr("alpha", 1.0))
    return _typed(lambda xp, v: xp.where(v > alpha, v, 0), lambda xp, v, y: xp.where(v > alpha, 1.0, 0.0))(x)


@op("Shrink")
def _shrink(run, node, x):
    lambd, bias = float(node.attr("lambd", 0.5)), float(node.attr("bias", 0.0))
    if not is_float(x):
        a, xp = raw(x), xp_of(x)
        return wrap(xp.where(a < -lambd, a + bias, xp.where(a > lambd, a - bias, 0)).astype(a.dtype))
    return _typed(lambda xp, v: xp.where(v < -lambd, v + bias, xp.where(v > lambd, v - bias, 0)),
                  lambda xp, v, y: xp.where(xp.abs(v) > lambd, 1.0, 0.0))(x)


@op("Swish")
def _swish(run, node, x):
    alpha = float(node.attr("alpha", 1.0))

    def f(xp, v):
        return v * 0.5 * (xp.tanh(0.5 * alpha * v) + 1)

    def df(xp, v, y):
        s = 0.5 * (xp.tanh(0.5 * alpha * v) + 1)
        return s + alpha * v * s * (1 - s)
    return _typed(f, df)(x)


@op("Clip")
def _clip(run, node, x, lo=None, hi=None):
    if lo is None and hi is None and ("min" in node.attrs or "max" in node.attrs):
        lo_v, hi_v = node.attr("min"), node.attr("max")
    else:
        lo_v, hi_v = scalar_of(lo), scalar_of(hi)
    if is_float(x):
        return G.Clip(lo_v, hi_v)(x)
    a = raw(x)
    return wrap(xp_of(x).clip(a, lo_v, hi_v).astype(a.dtype))


# ---- reductions ---------------------------------------------------------------------------

_REDUCE_AXES_INPUT = {"ReduceSum": 13}  # the others take axes as an input from opset 18


def _reduce_axes(run, node, x, axes_in):
    since = _REDUCE_AXES_INPUT.get(node.op, 18)
    if run.opset.get("", 17) >= since:
        axes = None if axes_in is None else ints(axes_in)
    else:
        axes = node.attr("axes")
    if not axes:
        if node.attr("noop_with_empty_axes", 0):
            return None
        return tuple(range(x.ndim))
    return tuple(sorted({axis_of(a, x.ndim, f"{node.op} axis") for a in axes}))


_EMPTY = {"ReduceSum": 0.0, "ReduceMean": np.nan, "ReduceProd": 1.0, "ReduceMax": -np.inf, "ReduceMin": np.inf,
          "ReduceL1": 0.0, "ReduceL2": 0.0, "ReduceLogSum": -np.inf, "ReduceLogSumExp": -np.inf,
          "ReduceSumSquare": 0.0}


@op(*_EMPTY)
def _reduce(run, node, x, axes_in=None):
    axes = _reduce_axes(run, node, x, axes_in)
    if axes is None:
        return x
    keep = bool(node.attr("keepdims", 1))
    if any(x.shape[a] == 0 for a in axes):
        return _empty_reduce(node.op, x, axes, keep)
    if not is_float(x):
        return _reduce_raw(node.op, x, axes, keep)
    return _REDUCE[node.op](x, axes, keep)


def _empty_reduce(name, x, axes, keep):
    xp = xp_of(x)
    shape = tuple(1 if i in axes else n for i, n in enumerate(x.shape)) if keep else \
        tuple(n for i, n in enumerate(x.shape) if i not in axes)
    value = _EMPTY[name]
    dt = raw(x).dtype
    if dt.kind == "b":
        value = name == "ReduceMin"  # all() of nothing is True, any() of nothing False
    elif dt.kind != "f" and not np.isfinite(value):
        info = np.iinfo(dt)
        value = info.min if value < 0 else info.max
    return wrap(xp.full(shape, value, dtype=dt))


def _reduce_raw(name, x, axes, keep):
    a, xp = raw(x), xp_of(x)
    fns = {"ReduceSum": lambda: a.sum(axis=axes, keepdims=keep), "ReduceMax": lambda: a.max(axis=axes, keepdims=keep),
           "ReduceMin": lambda: a.min(axis=axes, keepdims=keep), "ReduceProd": lambda: a.prod(axis=axes, keepdims=keep),
           "ReduceL1": lambda: xp.abs(a).sum(axis=axes, keepdims=keep),
           "ReduceSumSquare": lambda: (a * a).sum(axis=axes, keepdims=keep),
           "ReduceMean": lambda: a.sum(axis=axes, keepdims=keep) // int(np.prod([a.shape[i] for i in axes])),
           "ReduceL2": lambda: xp.sqrt((a * a).sum(axis=axes, keepdims=keep)),
           "ReduceLogSum": lambda: xp.log(a.sum(axis=axes, keepdims=keep)),
           "ReduceLogSumExp": lambda: xp.log(xp.exp(a).sum(axis=axes, keepdims=keep))}
    return wrap(xp.asarray(fns[name]()).astype(a.dtype))


def _logsumexp(x, axes, keep):
    m = wrap(raw(x.max(axis=axes, keepdims=True)))  # the shift carries no gradient
    xp = xp_of(x)
    m = wrap(xp.where(xp.isfinite(raw(m)), raw(m), 0).astype(raw(m).dtype))
    s = Log()(Exp()(x - m).sum(axis=axes, keepdims=True)) + m
    return s if keep else s.reshape(tuple(n for i, n in enumerate(s.shape) if i not in axes))


_REDUCE = {
    "ReduceSum": lambda x, ax, k: Sum(ax, k)(x),
    "ReduceMean": lambda x, ax, k: Mean(ax, k)(x),
    "ReduceMax": lambda x, ax, k: Max(ax, k)(x),
    "ReduceMin": lambda x, ax, k: -Max(ax, k)(-x),
    "ReduceProd": lambda x, ax, k: G.ReduceProd(ax, k)(x),
    "ReduceL1": lambda x, ax, k: Sum(ax, k)(Abs()(x)),
    "ReduceL2": lambda x, ax, k: _UNARY["Sqrt"](Sum(ax, k)(x * x)),
    "ReduceSumSquare": lambda x, ax, k: Sum(ax, k)(x * x),
    "ReduceLogSum": lambda x, ax, k: Log()(Sum(ax, k)(x)),
    "ReduceLogSumExp": _logsumexp,
}


@op("ArgMax", "ArgMin")
def _argmax(run, node, x):
    a, xp = raw(x), xp_of(x)
    axis = axis_of(node.attr("axis", 0), a.ndim, f"{node.op} axis")
    keep = node.attr("keepdims", 1)
    fn = xp.argmax if node.op == "ArgMax" else xp.argmin
    if node.attr("select_last_index", 0):
        idx = a.shape[axis] - 1 - fn(xp.flip(a, axis), axis=axis)
    else:
        idx = fn(a, axis=axis)
    idx = idx.astype(np.int64)
    return wrap(xp.expand_dims(idx, axis) if keep else idx)


# ---- matrix products ----------------------------------------------------------------------

@op("MatMul")
def _matmul(run, node, a, b):
    a, b = same_side(a, b)
    if is_float(a):
        return a @ b
    return wrap(raw(a) @ raw(b))


@op("Gemm")
def _gemm(run, node, a, b, c=None):
    a, b, c = same_side(a, b, c)
    alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
    if not is_float(a):
        y = (raw(a).T if node.attr("transA", 0) else raw(a)) @ (raw(b).T if node.attr("transB", 0) else raw(b))
        y = alpha * y if alpha != 1 else y
        if c is not None:
            y = y + (beta * raw(c) if beta != 1 else raw(c))
        return wrap(y.astype(raw(a).dtype, copy=False))
    if node.attr("transA", 0):
        a = a.T
    if node.attr("transB", 0):
        b = b.T
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"Gemm expected 2-d A and B, got shapes {a.shape} and {b.shape}")
    bias = c if (c is not None and beta == 1.0 and c.shape == (b.shape[1],)) else None
    y = F.linear(a, b, bias) if alpha == 1.0 else F.linear(a, b) * _const(alpha, a)
    if c is not None and bias is None:
        y = y + (c * _const(beta, a) if beta != 1.0 else c)
    return y


def _const(v, like):
    return wrap(xp_of(like).asarray(v, dtype=raw(like).dtype))


@op("Einsum")
def _einsum(run, node, *xs):
    xs = same_side(*xs)
    eq = node.attr("equation")
    if all(is_float(x) for x in xs):
        return G.Einsum(eq)(*xs)
    subs, out = G._einsum_parts(eq.replace(" ", ""), [x.shape for x in xs])
    return wrap(xp_of(*xs).einsum(f"{','.join(subs)}->{out}", *[raw(x) for x in xs]))


@op("Det")
def _det(run, node, x):
    xp = xp_of(x)
    if x.requires_grad:
        raise UnsupportedOpError("Det has no gradient in gpudl: run it on values that need none")
    return wrap(xp.linalg.det(raw(x)).astype(raw(x).dtype))

