"""Fused softmax + cross-entropy: loss, gradient and a non-finite flag in one kernel.

One block per row (a grid-stride loop over rows). Pass 1 reads the row once with the online
softmax: each thread keeps a running max m and sum s of exp(x - m), rescaling s when the max
grows, and notes any NaN/Inf logit (x - x is not 0) on the way. A shared-memory tree combines
the threads' (m, s). Pass 2 re-reads the row (now in cache) and writes the gradient
(softmax - t) / N; with dense targets it also sums t * (x - m) for the loss, so no large logit
is ever subtracted from another large number: the loss stays finite and exact for logits of
magnitude 1e4.

The flag (one int32) is a bit mask: 1 when a logit is NaN or Inf, 2 when a class id lies
outside [0, C). A bad class id is never used as an index: its row's loss is NaN and its gradient
the plain softmax / N.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32, float64

from . import _launch

__all__ = ["softmax_cross_entropy", "KERNELS", "FLAG_NONFINITE", "FLAG_BAD_LABEL"]

FLAG_NONFINITE = 1
FLAG_BAD_LABEL = 2

#: largest block; the shared-memory tree needs a power of two no larger than this
MAX_THREADS = 256
_NUMBA_FLOAT = {np.dtype(np.float32): float32, np.dtype(np.float64): float64}


def _make(ft, nbt):
    ZERO = ft(0)
    ONE = ft(1)
    NEG_INF = ft(-np.inf)
    NAN = ft(np.nan)
    BLOCK = MAX_THREADS

    @cuda.jit(device=True, inline="always")
    def row_stats(x, n, sm_m, sm_s, flag):
        """Row n's max m and sum of exp(x - m), the block's threads together; flags a
        NaN/Inf logit. Pass 1: each thread's online max / sum-exp over its columns, four loads
        in flight per step, then a shared-memory tree combines the threads' (m, s)."""
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        cols = x.shape[1]
        m = NEG_INF
        s = ZERO
        check = ZERO
        j = tid
        while j + 3 * nt < cols:
            a = x[n, j]
            b = x[n, j + nt]
            c = x[n, j + 2 * nt]
            d = x[n, j + 3 * nt]
            check += (a - a) + (b - b) + (c - c) + (d - d)
            mv = max(max(a, b), max(c, d))
            if mv > m:
                s = s * math.exp(m - mv)
                m = mv
            s += math.exp(a - m) + math.exp(b - m) + math.exp(c - m) + math.exp(d - m)
            j += 4 * nt
        while j < cols:
            a = x[n, j]
            check += a - a
            if a > m:
                s = s * math.exp(m - a)
                m = a
            s += math.exp(a - m)
            j += nt
        if check != ZERO:  # NaN: some logit was NaN or +-Inf
            cuda.atomic.or_(flag, 0, FLAG_NONFINITE)
        sm_m[tid] = m
        sm_s[tid] = s
        cuda.syncthreads()
        width = nt // 2
        while width > 0:
            if tid < width:
                m1 = sm_m[tid]
                m2 = sm_m[tid + width]
                if m2 > m1:
                    sm_s[tid] = sm_s[tid] * math.exp(m1 - m2) + sm_s[tid + width]
                    sm_m[tid] = m2
                elif m2 == m1:  # also two empty parts (both -inf)
                    sm_s[tid] = sm_s[tid] + sm_s[tid + width]
                else:
                    sm_s[tid] = sm_s[tid] + sm_s[tid + width] * math.exp(m2 - m1)
            cuda.syncthreads()
            width //= 2
        m = sm_m[0]
        s = sm_s[0]
        cuda.syncthreads()  # everyone has read the totals before the shared arrays are reused
        return m, s

    def softmax_ce_ids_kernel(x, labels, inv_n, grad, row_loss, flag):
        sm_m = cuda.shared.array(BLOCK, nbt)
        sm_s = cuda.shared.array(BLOCK, nbt)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        cols = x.shape[1]
        for n in range(cuda.blockIdx.x, x.shape[0], cuda.gridDim.x):
            m, s = row_stats(x, n, sm_m, sm_s, flag)
            inv_s = ONE / s
            label = labels[n]
            # pass 2: gradient; a label outside [0, cols) matches no column
            for j in range(tid, cols, nt):
                p = math.exp(x[n, j] - m) * inv_s
                if j == label:
                    p -= ONE
                grad[n, j] = p * inv_n
            if tid == 0:
                if 0 <= label < cols:
                    row_loss[n] = math.log(s) - (x[n, label] - m)
                else:
                    row_loss[n] = NAN
                    cuda.atomic.or_(flag, 0, FLAG_BAD_LABEL)

    def softmax_ce_dense_kernel(x, t, inv_n, grad, row_loss, flag):
        sm_m = cuda.shared.array(BLOCK, nbt)
        sm_s = cuda.shared.array(BLOCK, nbt)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        cols = x.shape[1]
        for n in range(cuda.blockIdx.x, x.shape[0], cuda.gridDim.x):
            m, s = row_stats(x, n, sm_m, sm_s, flag)
            inv_s = ONE / s
            # pass 2: gradient, and the sums of t * (x - m) and of t for the loss
            tx = ZERO
            tsum = ZERO
            for j in range(tid, cols, nt):
                shifted = x[n, j] - m
                tj = t[n, j]
                grad[n, j] = (math.exp(shifted) * inv_s - tj) * inv_n
                tx += tj * shifted
                tsum += tj
            sm_m[tid] = tx
            sm_s[tid] = tsum
            cuda.syncthreads()
            width = nt // 2
            while width > 0:
                if tid < width:
                    sm_m[tid] += sm_m[tid + width]
                    sm_s[tid] += sm_s[tid + width]
                cuda.syncthreads()
                width //= 2
            if tid == 0:
                # -sum t * log_softmax = sum t * (log s - (x - m))
                row_loss[n] = sm_s[0] * math.log(s) - sm_m[0]
            cuda.syncthreads()

    return {"ids": softmax_ce_ids_kernel, "dense": softmax_ce_dense_kernel}


_kernels = _launch.KernelSet()
for _dtype, _name in _launch.FLOAT_TYPES.items():
    _fns = _make(_dtype.type, _NUMBA_FLOAT[_dtype])
    for _kind, _fn in _fns.items():
        _fn.__name__ = _fn.__qualname__ = f"softmax_ce_{_kind}_kernel_{_name}"
    for _label in ("int32", "int64"):
        _kernels.add(("ids", _dtype, np.dtype(_label)), _fns["ids"],
                     f"void({_name}[:, ::1], {_label}[::1], {_name}, {_name}[:, ::1], "
                     f"{_name}[::1], int32[::1])")
    _kernels.add(("dense", _dtype), _fns["dense"],
                 f"void({_name}[:, ::1], {_name}[:, ::1], {_name}, {_name}[:, ::1], "
                 f"{_name}[::1], int32[::1])")

#: ``[(pyfunc, [signature, ...]), ...]`` for every kernel of this module
KERNELS = _kernels.listing()


def _threads(cols: int) -> int:
    # about eight columns per thread, a power of two between a warp and MAX_THREADS; under the
    # simulator (each thread a Python thread, each barrier a rendezvous of them all) from 4:
    # the tree and the four-wide loads take the same paths with fewer threads
    low = 4 if _launch.simulated() else 32
    return min(MAX_THREADS, max(low, _launch.next_pow2(math.ceil(cols / 8))))


def softmax_cross_entropy(logits, labels):
    """(loss, grad, flag) for logits (N, C) and labels: class ids (N,) or targets (N, C).

    loss: 0-d array, the mean over rows of -sum(t * log_softmax(logits)).
    grad: (N, C), (softmax - t) / N, the gradient of that mean.
    flag: (1,) int32 on the device, FLAG_NONFINITE | FLAG_BAD_LABEL bits (0 when all is well);
    read it when convenient, no sync happens here.
    """
    op = "softmax_cross_entropy"
    _launch.check_backend(op, logits, labels)
    if getattr(logits, "ndim", None) != 2:
        raise ValueError(f"{op}: logits must be (N, C), got shape {getattr(logits, 'shape', None)}")
    rows, cols = logits.shape
    if getattr(labels, "dtype", None) is not None and labels.dtype.kind in "iu":
        _launch.check_float(op, logits=logits)
        _launch.check_int(op, "labels", labels, (np.int32, np.int64))
        _launch.check_shape(op, "labels", labels, (rows,))
        key = ("ids", logits.dtype, labels.dtype)
    else:
        _launch.check_float(op, logits=logits, labels=labels)
        _launch.check_shape(op, "labels", labels, logits.shape)
        key = ("dense", logits.dtype)
    if rows == 0 or cols == 0:
        raise ValueError(f"{op}: logits must have at least one row and one column, "
                         f"got shape {tuple(logits.shape)}")
    xp = _launch.array_module(logits)
    grad = xp.empty_like(logits)
    row_loss = xp.empty(rows, dtype=logits.dtype)
    flag = xp.zeros(1, dtype=np.int32)
    threads = _threads(cols)
    grid = _launch.stride_blocks(rows, 1)
    _launch.launch(_kernels.get(key), grid, threads,
                   logits, labels, logits.dtype.type(1.0 / rows), grad, row_loss, flag)
    loss = row_loss.mean(keepdims=True).reshape(())
    return loss, grad, flag
