"""ReLU, leaky ReLU and the fused bias + ReLU epilogue, as elementwise CUDA kernels.

Each kernel walks its array with a grid-stride loop that issues four independent loads before
any store, so a thread keeps several memory requests in flight and a modest grid reaches close to
copy bandwidth. NaN passes through the forward kernels (as in ``torch.relu``).
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from . import _launch

__all__ = [
    "relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
    "bias_relu_forward", "KERNELS",
]

THREADS = 256


def _make(ft):
    """The kernels for float type ``ft``; typed constants keep float32 math in float32."""
    ZERO = ft(0)

    def relu_forward_kernel(x, y, n):
        i = cuda.grid(1)
        step = cuda.gridsize(1)
        while i + 3 * step < n:
            a = x[i]
            b = x[i + step]
            c = x[i + 2 * step]
            d = x[i + 3 * step]
            y[i] = ZERO if a < ZERO else a
            y[i + step] = ZERO if b < ZERO else b
            y[i + 2 * step] = ZERO if c < ZERO else c
            y[i + 3 * step] = ZERO if d < ZERO else d
            i += 4 * step
        while i < n:
            a = x[i]
            y[i] = ZERO if a < ZERO else a
            i += step

    def relu_backward_kernel(y, gy, gx, n):
        i = cuda.grid(1)
        step = cuda.gridsize(1)
        while i + 3 * step < n:
            ya = y[i]
            yb = y[i + step]
            yc = y[i + 2 * step]
            yd = y[i + 3 * step]
            ga = gy[i]
            gb = gy[i + step]
            gc = gy[i + 2 * step]
            gd = gy[i + 3 * step]
            gx[i] = ga if ya > ZERO else ZERO
            gx[i + step] = gb if yb > ZERO else ZERO
            gx[i + 2 * step] = gc if yc > ZERO else ZERO
            gx[i + 3 * step] = gd if yd > ZERO else ZERO
            i += 4 * step
        while i < n:
            gx[i] = gy[i] if y[i] > ZERO else ZERO
            i += step

    def leaky_relu_forward_kernel(x, alpha, y, n):
        i = cuda.grid(1)
        step = cuda.gridsize(1)
        while i + 3 * step < n:
            a = x[i]
            b = x[i + step]
            c = x[i + 2 * step]
            d = x[i + 3 * step]
            y[i] = a if a > ZERO else alpha * a
            y[i + step] = b if b > ZERO else alpha * b
            y[i + 2 * step] = c if c > ZERO else alpha * c
            y[i + 3 * step] = d if d > ZERO else alpha * d
            i += 4 * step
        while i < n:
            a = x[i]
            y[i] = a if a > ZERO else alpha * a
            i += step

    def leaky_relu_backward_kernel(x, gy, alpha, gx, n):
        i = cuda.grid(1)
        step = cuda.gridsize(1)
        while i + 3 * step < n:
            xa = x[i]
            xb = x[i + step]
            xc = x[i + 2 * step]
            xd = x[i + 3 * step]
            ga = gy[i]
            gb = gy[i + step]
            gc = gy[i + 2 * step]
            gd = gy[i + 3 * step]
            gx[i] = ga if xa > ZERO else alpha * ga
            gx[i + step] = gb if xb > ZERO else alpha * gb
            gx[i + 2 * step] = gc if xc > ZERO else alpha * gc
            gx[i + 3 * step] = gd if xd > ZERO else alpha * gd
            i += 4 * step
        while i < n:
            g = gy[i]
            gx[i] = g if x[i] > ZERO else alpha * g
            i += step

    def bias_relu_forward_kernel(x, b, channels, inner, y, n):
        # x is (N, C, inner) flattened; element i belongs to channel (i // inner) % C
        i = cuda.grid(1)
        step = cuda.gridsize(1)
        while i < n:
            v = x[i] + b[(i // inner) % channels]
            y[i] = ZERO if v < ZERO else v
            i += step

    return {
        "relu_forward": relu_forward_kernel,
        "relu_backward": relu_backward_kernel,
        "leaky_relu_forward": leaky_relu_forward_kernel,
        "leaky_relu_backward": leaky_relu_backward_kernel,
        "bias_relu_forward": bias_relu_forward_kernel,
    }


_SIGNATURES = {
    "relu_forward": "void({f}[::1], {f}[::1], int64)",
    "relu_backward": "void({f}[::1], {f}[::1], {f}[::1], int64)",
    "leaky_relu_forward": "void({f}[::1], {f}, {f}[::1], int64)",
    "leaky_relu_backward": "void({f}[::1], {f}[::1], {f}, {f}[::1], int64)",
    "bias_relu_forward": "void({f}[::1], {f}[::1], int64, int64, {f}[::1], int64)",
}

_kernels = _launch.build_kernels(_make, _SIGNATURES)

#: ``[(pyfunc, [signature, ...]), ...]`` for every kernel of this module
KERNELS = _kernels.listing()


def _elementwise(op, out_like, *args):
    """Launch kernel ``op`` over ``out_like.size`` items; ``args`` end with the output."""
    n = out_like.size
    if n == 0:
        return
    kernel = _kernels.get((op, out_like.dtype))
    threads = _launch.block(THREADS)
    _launch.launch(kernel, _launch.stride_blocks(n, threads), threads, *args, n)


def _flat(a):
    return a.reshape(-1)


def relu_forward(x):
    """y = max(x, 0) (NaN kept)."""
    _launch.check_backend("relu_forward", x)
    _launch.check_float("relu_forward", x=x)
    xp = _launch.array_module(x)
    y = xp.empty_like(x)
    _elementwise("relu_forward", x, _flat(x), _flat(y))
    return y


def relu_backward(y, gy):
    """gx = gy where y > 0 else 0 (y the forward output)."""
    _launch.check_backend("relu_backward", y, gy)
    _launch.check_float("relu_backward", y=y, gy=gy)
    _launch.check_shape("relu_backward", "gy", gy, y.shape)
    xp = _launch.array_module(y)
    gx = xp.empty_like(gy)
    _elementwise("relu_backward", y, _flat(y), _flat(gy), _flat(gx))
    return gx


def leaky_relu_forward(x, alpha):
    """y = x where x > 0 else alpha * x."""
    _launch.check_backend("leaky_relu_forward", x)
    dtype = _launch.check_float("leaky_relu_forward", x=x)
    xp = _launch.array_module(x)
    y = xp.empty_like(x)
    _elementwise("leaky_relu_forward", x, _flat(x), dtype.type(alpha), _flat(y))
    return y


def leaky_relu_backward(x, gy, alpha):
    """gx = gy where x > 0 else alpha * gy (x the forward input)."""
    _launch.check_backend("leaky_relu_backward", x, gy)
    dtype = _launch.check_float("leaky_relu_backward", x=x, gy=gy)
    _launch.check_shape("leaky_relu_backward", "gy", gy, x.shape)
    xp = _launch.array_module(x)
    gx = xp.empty_like(gy)
    _elementwise("leaky_relu_backward", x, _flat(x), _flat(gy), dtype.type(alpha), _flat(gx))
    return gx


def bias_relu_forward(x, b):
    """y = max(x + b, 0) with b (C,) broadcast over axis 1 of x (N, C) or (N, C, H, W)."""
    _launch.check_backend("bias_relu_forward", x, b)
    _launch.check_float("bias_relu_forward", x=x, b=b)
    if x.ndim not in (2, 4):
        raise ValueError(
            f"bias_relu_forward: x must be (N, C) or (N, C, H, W), got shape {tuple(x.shape)}")
    _launch.check_shape("bias_relu_forward", "b", b, (x.shape[1],))
    xp = _launch.array_module(x)
    y = xp.empty_like(x)
    channels = x.shape[1]
    inner = x.size // (x.shape[0] * channels) if x.size else 1
    _elementwise("bias_relu_forward", x, _flat(x), b, channels, inner, _flat(y))
    return y
