"""Batch normalisation in training mode: per-channel statistics, the normalised output, and
the gradient, in four kernels that each read the large arrays once.

An input is seen as (outer, C, inner) with the channel axis in the middle: NCHW is
(N, C, H*W), (N, F) is (N, F, 1), and any channel axis of a C-contiguous array works the same
way (outer the sizes before it, inner those after).

``bn_stats``: one block per channel (a grid-stride loop over channels) walks that channel's
outer*inner elements, thread t taking elements t, t + blockDim, ... (coalesced along inner for
NCHW); the position (sample, offset) of the next element is stepped by additions, with no
division in the loop. Each thread sums chunks of ``chunk`` elements shifted by the chunk's
first element (so a large mean does not cancel the variance away), turns each chunk into
(count, mean, M2) and merges it into its running triple with Chan, Golub & LeVeque's pairwise
update; a shared-memory tree merges the threads' triples the same way. Rounding error then
grows with the chunk length and the number of chunks per thread, not with outer*inner:
float32 stays accurate for large N*H*W (float64 input accumulates in float64). The variance is
the biased one (M2 / count), as Keras' ``ops.moments``.

``bn_apply``: y = (x - mean) * (gamma / sqrt(var + eps)) + beta, the per-channel factors
computed once per position of a sample (gridDim.x, grid-stride), then applied down the
samples (gridDim.y, block-stride), as kernels/activation.py's per-channel kernels.

``bn_grad_sums``: per channel, sum(g) and sum(g * (x - mean)), with the statistics kernel's
walk, chunks and tree. ``bn_grad_apply``: the input gradient
gx = gamma * inv * (g - sum(g) / M - (x - mean) * inv**2 * sum(g * (x - mean)) / M), with
inv = 1 / sqrt(var + eps) and M = outer * inner: the normalised input is recomputed from x,
never stored.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32, float64, int32, int64, uint32

from . import _launch

__all__ = ["batch_norm_stats", "batch_norm_forward", "batch_norm_grad_sums", "batch_norm_backward",
           "KERNELS", "MAX_THREADS"]

#: largest block of the reduction kernels; their shared-memory trees need a power of two
MAX_THREADS = 256
#: elements a thread sums before merging them into its running statistics (GPU / simulator)
CHUNK = 64
_SIM_CHUNK = 2
THREADS = 256
_NUMBA_FLOAT = {np.dtype(np.float32): float32, np.dtype(np.float64): float64}


def _make(ft, nbt):
    """The kernels for float type ``ft`` (``nbt`` its Numba type, for the shared arrays)."""
    ZERO = ft(0)
    ONE = ft(1)
    BLOCK = MAX_THREADS

    @cuda.jit(device=True, inline="always")
    def first_position(tid, inner, channels, c):
        """Sample, offset and flat address of a thread's first element of channel c."""
        n = int64(uint32(tid) // uint32(inner))
        r = int64(tid) - n * inner
        return n, r, (n * channels + c) * inner + r

    def bn_stats_kernel(x, outer, channels, inner, dn, dr, chunk, mean, var):
        # x: flat (outer * channels * inner,); dn, dr = blockDim // inner, blockDim % inner
        sm_n = cuda.shared.array(BLOCK, int32)
        sm_mean = cuda.shared.array(BLOCK, nbt)
        sm_m2 = cuda.shared.array(BLOCK, nbt)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        a_step = dn * channels * inner + dr     # address step for (dn samples, dr offsets)
        a_wrap = (channels - 1) * inner         # ... and for an offset past inner
        for c in range(cuda.blockIdx.x, channels, cuda.gridDim.x):
            n, r, a = first_position(tid, inner, channels, c)
            count = 0
            mu = ZERO
            m2 = ZERO
            while n < outer:
                pivot = x[a]
                s = ZERO
                ss = ZERO
                k = 0
                while k < chunk and n < outer:
                    v = x[a] - pivot
                    s += v
                    ss += v * v
                    k += 1
                    r += dr
                    n += dn
                    a += a_step
                    if r >= inner:
                        r -= inner
                        n += 1
                        a += a_wrap
                fk = ft(k)
                cm = s / fk                     # the chunk's mean, less the pivot
                cm2 = ss - s * cm               # the chunk's sum of squared deviations
                cm += pivot
                total = count + k
                delta = cm - mu
                frac = fk / ft(total)
                mu += delta * frac
                m2 += cm2 + delta * delta * ft(count) * frac
                count = total
            sm_n[tid] = count
            sm_mean[tid] = mu
            sm_m2[tid] = m2
            cuda.syncthreads()
            width = nt // 2
            while width > 0:
                if tid < width:
                    nb = sm_n[tid + width]
                    if nb > 0:
                        na = sm_n[tid]
                        total = na + nb
                        delta = sm_mean[tid + width] - sm_mean[tid]
                        frac = ft(nb) / ft(total)
                        sm_mean[tid] += delta * frac
                        sm_m2[tid] += sm_m2[tid + width] + delta * delta * ft(na) * frac
                        sm_n[tid] = total
                cuda.syncthreads()
                width //= 2
            if tid == 0:
                mean[c] = sm_mean[0]
                var[c] = max(sm_m2[0], ZERO) / ft(sm_n[0])
            cuda.syncthreads()  # the totals are read before the next channel reuses the arrays

    def bn_grad_sums_kernel(g, x, mean, outer, channels, inner, dn, dr, chunk, sum_g, sum_gx):
        sm_g = cuda.shared.array(BLOCK, nbt)
        sm_gx = cuda.shared.array(BLOCK, nbt)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        a_step = dn * channels * inner + dr
        a_wrap = (channels - 1) * inner
        for c in range(cuda.blockIdx.x, channels, cuda.gridDim.x):
            n, r, a = first_position(tid, inner, channels, c)
            m = mean[c]
            tg = ZERO
            tgx = ZERO
            while n < outer:
                s = ZERO
                sx = ZERO
                k = 0
                while k < chunk and n < outer:
                    gv = g[a]
                    s += gv
                    sx += gv * (x[a] - m)
                    k += 1
                    r += dr
                    n += dn
                    a += a_step
                    if r >= inner:
                        r -= inner
                        n += 1
                        a += a_wrap
                tg += s
                tgx += sx
            sm_g[tid] = tg
            sm_gx[tid] = tgx
            cuda.syncthreads()
            width = nt // 2
            while width > 0:
                if tid < width:
                    sm_g[tid] += sm_g[tid + width]
                    sm_gx[tid] += sm_gx[tid + width]
                cuda.syncthreads()
                width //= 2
            if tid == 0:
                sum_g[c] = sm_g[0]
                sum_gx[c] = sm_gx[0]
            cuda.syncthreads()

    def bn_apply_kernel(x, mean, var, gamma, beta, eps, inner, has_gamma, has_beta, y):
        # x and y (outer, C*inner); gamma / beta are read only with has_gamma / has_beta
        rows, width = x.shape
        q = cuda.grid(1)
        while q < width:
            c = int64(uint32(q) // uint32(inner))
            scale = ONE / math.sqrt(var[c] + eps)
            if has_gamma:
                scale *= gamma[c]
            shift = ZERO
            if has_beta:
                shift = beta[c]
            m = mean[c]
            n = cuda.blockIdx.y
            while n < rows:
                y[n, q] = (x[n, q] - m) * scale + shift
                n += cuda.gridDim.y
            q += cuda.gridsize(1)

    def bn_grad_apply_kernel(g, x, mean, var, gamma, sum_g, sum_gx, eps, inv_count, inner, has_gamma, gx):
        rows, width = x.shape
        q = cuda.grid(1)
        while q < width:
            c = int64(uint32(q) // uint32(inner))
            inv = ONE / math.sqrt(var[c] + eps)
            a = inv
            if has_gamma:
                a *= gamma[c]
            b = sum_g[c] * inv_count
            d = inv * inv * sum_gx[c] * inv_count
            m = mean[c]
            n = cuda.blockIdx.y
            while n < rows:
                gx[n, q] = a * (g[n, q] - b - (x[n, q] - m) * d)
                n += cuda.gridDim.y
            q += cuda.gridsize(1)

    return {"bn_stats": bn_stats_kernel, "bn_grad_sums": bn_grad_sums_kernel,
            "bn_apply": bn_apply_kernel, "bn_grad_apply": bn_grad_apply_kernel}


_SIGNATURES = {
    "bn_stats": "void({f}[::1], int64, int64, int64, int64, int64, int64, {f}[::1], {f}[::1])",
    "bn_grad_sums": "void({f}[::1], {f}[::1], {f}[::1], int64, int64, int64, int64, int64, int64, "
                    "{f}[::1], {f}[::1])",
    "bn_apply": "void({f}[:, ::1], {f}[::1], {f}[::1], {f}[::1], {f}[::1], {f}, int64, int64, int64, "
                "{f}[:, ::1])",
    "bn_grad_apply": "void({f}[:, ::1], {f}[:, ::1], {f}[::1], {f}[::1], {f}[::1], {f}[::1], {f}[::1], "
                     "{f}, {f}, int64, int64, {f}[:, ::1])",
}

_kernels = _launch.KernelSet()
for _dtype, _name in _launch.FLOAT_TYPES.items():
    for _op, _fn in _make(_dtype.type, _NUMBA_FLOAT[_dtype]).items():
        _fn.__name__ = _fn.__qualname__ = f"{_op}_kernel_{_name}"
        _kernels.add((_op, _dtype), _fn, _SIGNATURES[_op].format(f=_name))

#: ``[(pyfunc, [signature, ...]), ...]`` for every kernel of this module
KERNELS = _kernels.listing()


# ---- launchers ---------------------------------------------------------------------------

def _layout(op, x, axis):
    """(outer, C, inner) of x around channel axis ``axis``, checked for the 32-bit decoding."""
    if x.ndim < 1:
        raise ValueError(f"{op}: x must have a channel axis, got shape {tuple(x.shape)}")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"{op}: axis must be an integer in [{-x.ndim}, {x.ndim}) for x of shape "
                         f"{tuple(x.shape)}, got {axis!r}")
    axis = int(axis) % x.ndim
    outer = math.prod(x.shape[:axis])
    channels = x.shape[axis]
    inner = math.prod(x.shape[axis + 1:])
    _launch.check_32bit(op, **{"outer*inner (one channel)": outer * inner, "C*inner (one sample)": channels * inner})
    return outer, channels, inner


def _reduction_threads(count: int) -> int:
    # about four elements per thread, a power of two from a warp up to MAX_THREADS; under the
    # simulator (each thread a Python thread) 4 to 8, so the trees still take several levels
    if _launch.simulated():
        return min(8, max(4, _launch.next_pow2(math.ceil(count / 4))))
    return min(MAX_THREADS, max(32, _launch.next_pow2(math.ceil(count / 4))))


def _chunk() -> int:
    return _SIM_CHUNK if _launch.simulated() else CHUNK


def _launch_reduction(op, dtype, outer, channels, inner, *args):
    threads = _reduction_threads(outer * inner)
    dn, dr = divmod(threads, inner)
    grid = _launch.stride_blocks(channels, 1)  # one block per channel
    _launch.launch(_kernels.get((op, dtype)), grid, threads, *args[:-2], outer, channels, inner, dn, dr,
                   _chunk(), *args[-2:])


def _launch_per_channel(op, dtype, outer, width, *args):
    threads = _launch.block(THREADS)
    grid = (_launch.stride_blocks(width, threads), _launch.grid_dim(outer))
    _launch.launch(_kernels.get((op, dtype)), grid, threads, *args)


def _check_channel_vectors(op, channels, **vectors):
    for name, v in vectors.items():
        _launch.check_shape(op, name, v, (channels,))


def batch_norm_stats(x, axis=1):
    """(mean, var), each (C,) in x's dtype: the mean and the biased variance of every channel
    (axis ``axis``) of the C-contiguous array x, in one pass over x."""
    op = "batch_norm_stats"
    _launch.check_backend(op, x)
    dtype = _launch.check_float(op, x=x)
    outer, channels, inner = _layout(op, x, axis)
    if outer * inner == 0:
        raise ValueError(f"{op}: every channel needs at least one element, got shape {tuple(x.shape)}")
    xp = _launch.array_module(x)
    mean = xp.empty(channels, dtype=dtype)
    var = xp.empty(channels, dtype=dtype)
    if channels:
        _launch_reduction("bn_stats", dtype, outer, channels, inner, x.reshape(-1), mean, var)
    return mean, var


def batch_norm_forward(x, mean, var, gamma=None, beta=None, epsilon=1e-3, axis=1):
    """y = (x - mean) / sqrt(var + epsilon) * gamma + beta along channel axis ``axis``, in one
    pass (gamma / beta None: no scale / no offset); mean, var, gamma, beta are (C,)."""
    op = "batch_norm_forward"
    arrays = {"x": x, "mean": mean, "var": var}
    if gamma is not None:
        arrays["gamma"] = gamma
    if beta is not None:
        arrays["beta"] = beta
    _launch.check_backend(op, *arrays.values())
    dtype = _launch.check_float(op, **arrays)
    outer, channels, inner = _layout(op, x, axis)
    _check_channel_vectors(op, channels, **{k: v for k, v in arrays.items() if k != "x"})
    y = _launch.array_module(x).empty_like(x)
    width = channels * inner
    if outer and width:
        # a missing gamma / beta: any vector of the right type fills its slot (never read)
        _launch_per_channel("bn_apply", dtype, outer, width, x.reshape(outer, width), mean, var,
                            mean if gamma is None else gamma, mean if beta is None else beta,
                            dtype.type(epsilon), inner, int(gamma is not None), int(beta is not None),
                            y.reshape(outer, width))
    return y


def batch_norm_grad_sums(g, x, mean, axis=1):
    """(sum(g), sum(g * (x - mean))) per channel, each (C,), in one pass over g and x."""
    op = "batch_norm_grad_sums"
    _launch.check_backend(op, g, x, mean)
    dtype = _launch.check_float(op, g=g, x=x, mean=mean)
    _launch.check_shape(op, "g", g, x.shape)
    outer, channels, inner = _layout(op, x, axis)
    _check_channel_vectors(op, channels, mean=mean)
    xp = _launch.array_module(x)
    sum_g = xp.zeros(channels, dtype=dtype)
    sum_gx = xp.zeros(channels, dtype=dtype)
    if channels and outer * inner:
        _launch_reduction("bn_grad_sums", dtype, outer, channels, inner, g.reshape(-1), x.reshape(-1), mean,
                          sum_g, sum_gx)
    return sum_g, sum_gx


def batch_norm_backward(g, x, mean, var, gamma, sum_g, sum_gx, epsilon=1e-3, axis=1):
    """The input gradient of batch normalisation with batch statistics, from the forward's x,
    mean and var and :func:`batch_norm_grad_sums`' two sums (gamma None: no scale)."""
    op = "batch_norm_backward"
    arrays = {"g": g, "x": x, "mean": mean, "var": var, "sum_g": sum_g, "sum_gx": sum_gx}
    if gamma is not None:
        arrays["gamma"] = gamma
    _launch.check_backend(op, *arrays.values())
    dtype = _launch.check_float(op, **arrays)
    _launch.check_shape(op, "g", g, x.shape)
    outer, channels, inner = _layout(op, x, axis)
    _check_channel_vectors(op, channels, **{k: v for k, v in arrays.items() if k not in ("g", "x")})
    gx = _launch.array_module(x).empty_like(x)
    width = channels * inner
    if outer and width:
        _launch_per_channel("bn_grad_apply", dtype, outer, width, g.reshape(outer, width),
                            x.reshape(outer, width), mean, var, mean if gamma is None else gamma, sum_g, sum_gx,
                            dtype.type(epsilon), dtype.type(1.0 / (outer * inner)), inner,
                            int(gamma is not None), gx.reshape(outer, width))
    return gx
