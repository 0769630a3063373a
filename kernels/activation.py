"""ReLU, leaky ReLU, and the two per-channel passes of a convolution, as CUDA kernels.

Each elementwise kernel walks its array with a grid-stride loop that issues four independent
loads before any store, so a thread keeps several memory requests in flight and a modest grid
reaches close to copy bandwidth. NaN passes through the forward kernels (as in ``torch.relu``).

The per-channel kernels see an (N, C, ...) array as (N, C*inner): a thread takes positions q of
a sample with a grid-stride loop (gridDim.x), decodes the channel q // inner of each once, and
walks that position through the samples with a block-stride loop over gridDim.y, so an integer
division runs once per position, not per element. ``bias_relu_forward`` is the convolution's
epilogue (bias, then ReLU, in place on the product's output: one pass where an add and a ReLU
would take two); ``channel_major`` is the copy of a gradient to (C, N, ...) that the
convolution's weight-gradient product wants, with the ReLU's backward in the same pass.
"""
from __future__ import annotations

import math

from numba import cuda, int64, uint32

from . import _launch

__all__ = [
    "relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
    "bias_relu_forward", "channel_major", "KERNELS",
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

    def bias_relu_forward_kernel(x, b, inner, use_bias, relu, y):
        # x and y are (N, C*inner), possibly one array; b is read only with use_bias
        batch, width = x.shape
        q = cuda.grid(1)
        while q < width:
            bias = ZERO
            if use_bias:
                bias = b[int64(uint32(q) // uint32(inner))]
            n = cuda.blockIdx.y
            while n < batch:
                v = x[n, q] + bias
                if relu and v < ZERO:   # NaN is kept, as by relu_forward
                    v = ZERO
                y[n, q] = v
                n += cuda.gridDim.y
            q += cuda.gridsize(1)

    def channel_major_kernel(g, y, inner, use_mask, out):
        # g and y (N, C*inner) to out (C, N*inner); y (the ReLU's output) is read with use_mask
        batch, width = g.shape
        q = cuda.grid(1)
        while q < width:
            c = int64(uint32(q) // uint32(inner))
            r = q - c * inner
            n = cuda.blockIdx.y
            while n < batch:
                v = g[n, q]
                if use_mask and not y[n, q] > ZERO:
                    v = ZERO
                out[c, n * inner + r] = v
                n += cuda.gridDim.y
            q += cuda.gridsize(1)

    return {
        "relu_forward": relu_forward_kernel,
        "relu_backward": relu_backward_kernel,
        "leaky_relu_forward": leaky_relu_forward_kernel,
        "leaky_relu_backward": leaky_relu_backward_kernel,
        "bias_relu_forward": bias_relu_forward_kernel,
        "channel_major": channel_major_kernel,
    }


_SIGNATURES = {
    "relu_forward": "void({f}[::1], {f}[::1], int64)",
    "relu_backward": "void({f}[::1], {f}[::1], {f}[::1], int64)",
    "leaky_relu_forward": "void({f}[::1], {f}, {f}[::1], int64)",
    "leaky_relu_backward": "void({f}[::1], {f}[::1], {f}, {f}[::1], int64)",
    "bias_relu_forward": "void({f}[:, ::1], {f}[::1], int64, int64, int64, {f}[:, ::1])",
    "channel_major": "void({f}[:, ::1], {f}[:, ::1], int64, int64, {f}[:, ::1])",
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


def _per_channel(op, x, name="x"):
    """(N, C*inner) view of x (N, C, ...), and inner; checks what the kernels decode in 32 bits."""
    if x.ndim < 2:
        raise ValueError(f"{op}: {name} must be (N, C, ...), got shape {tuple(x.shape)}")
    width = math.prod(x.shape[1:])
    _launch.check_32bit(op, **{"C*H*W (one sample)": width})
    return x.reshape(x.shape[0], width), math.prod(x.shape[2:])


def _launch_per_channel(op, dtype, view, *args):
    N, width = view.shape
    if N == 0 or width == 0:
        return
    threads = _launch.block(THREADS)
    grid = (_launch.stride_blocks(width, threads), _launch.grid_dim(N))
    _launch.launch(_kernels.get((op, dtype)), grid, threads, *args)


def bias_relu_forward(x, b, relu=True, out=None):
    """y = max(x + b, 0) with b (C,) along axis 1 of x (N, C) or (N, C, H, W), in one pass.

    b None adds no bias; relu=False leaves out the ReLU (NaN is kept, as by relu_forward).
    ``out`` (x's shape and dtype, C-contiguous) receives y; ``out=x`` works in place.
    """
    op = "bias_relu_forward"
    arrays = {"x": x} if b is None else {"x": x, "b": b}
    if out is not None:
        arrays["out"] = out
    _launch.check_backend(op, *arrays.values())
    dtype = _launch.check_float(op, **arrays)
    if x.ndim not in (2, 4):
        raise ValueError(f"{op}: x must be (N, C) or (N, C, H, W), got shape {tuple(x.shape)}")
    if b is not None:
        _launch.check_shape(op, "b", b, (x.shape[1],))
    if out is None:
        out = _launch.array_module(x).empty_like(x)
    else:
        _launch.check_shape(op, "out", out, x.shape)
    view, inner = _per_channel(op, x)
    # b None: any float array of the right type fills its slot (the kernel does not read it)
    b_arg = view.reshape(-1) if b is None else b
    _launch_per_channel(op, dtype, view, view, b_arg, inner, int(b is not None), int(bool(relu)),
                        out.reshape(view.shape))
    return out


def channel_major(g, relu_y=None):
    """(C, N, ...) copy of g (N, C, ...), zero where relu_y (a ReLU's output, g's shape) is
    not positive: the ReLU's backward and the move to channel-major order in one pass."""
    op = "channel_major"
    arrays = {"g": g} if relu_y is None else {"g": g, "relu_y": relu_y}
    _launch.check_backend(op, *arrays.values())
    dtype = _launch.check_float(op, **arrays)
    if relu_y is not None:
        _launch.check_shape(op, "relu_y", relu_y, g.shape)
    view, inner = _per_channel(op, g, "g")
    out = _launch.array_module(g).empty((g.shape[1], g.shape[0]) + tuple(g.shape[2:]), dtype=dtype)
    mask = view if relu_y is None else relu_y.reshape(view.shape)
    _launch_per_channel(op, dtype, view, view, mask, inner, int(relu_y is not None),
                        out.reshape(g.shape[1], -1))
    return out
