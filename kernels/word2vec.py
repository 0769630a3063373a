"""Skip-gram negative sampling on the GPU: the fused loss, its two gradients and the row
gathers/scatters a word2vec step needs.

Pair ``b`` scores its input vector ``u_b`` against ``1 + K`` rows of the output table: its
context ``contexts[b]`` and the samples ``negatives[b, :]``. The forward kernel (one thread a
pair; D is a few hundred at most, so a pair's ``(1 + K) * D`` multiply-adds are one thread's
work) writes the pair's loss and ``coef``, the derivative of that loss with respect to each
score: ``sigmoid(s) - 1`` for the context, ``sigmoid(s)`` for a sample. Everything backward
needs is then in ``coef``:

- ``grad_inputs[b, d] = sum_j coef[b, j] * W[id_bj, d]``: one thread an element, no races;
- ``out[id_bj, d] += scale * coef[b, j] * u[b, d]``: one thread an element of ``u``, with
  atomic adds, since a frequent word is the sample of many pairs of one batch;
- ``rows_scatter_add`` adds each pair's input gradient into the table rows it came from (one
  word for skip-gram, the context words for CBOW), ``rows_gather`` builds CBOW's inputs.

Row ids are int32 (vocabularies are far below 2**31 words); ``-1`` in ``rows_*`` ids marks a
padding slot (CBOW windows shrink at sentence ends). Elementwise kernels walk the B * D
elements with a grid-stride loop and decode (pair, column) in 32-bit arithmetic.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda

from . import _launch

__all__ = ["negative_sampling_forward", "negative_sampling_grad_inputs",
           "negative_sampling_scatter_weights", "rows_gather", "rows_scatter_add", "KERNELS"]

THREADS = 256


def _make(ft):
    """The kernels for float type ``ft``; typed constants keep float32 math in float32."""
    ZERO = ft(0)
    ONE = ft(1)

    @cuda.jit(device=True, inline="always")
    def softplus(z):
        """log(1 + e^z) without overflow."""
        return max(z, ZERO) + math.log1p(math.exp(-abs(z)))

    @cuda.jit(device=True, inline="always")
    def pair_column(i, dims):
        """(pair, column) of element i of a (B, D) array, D = ``dims`` (uint32), in 32 bits."""
        b = np.uint32(i) // dims
        return b, np.uint32(i) - b * dims

    @cuda.jit(device=True, inline="always")
    def sigmoid(s):
        if s >= ZERO:
            return ONE / (ONE + math.exp(-s))
        e = math.exp(s)
        return e / (ONE + e)

    def ns_forward_kernel(u, w, contexts, negatives, losses, coef):
        b = cuda.grid(1)
        if b >= u.shape[0]:
            return
        dims = u.shape[1]
        k = negatives.shape[1]
        total = ZERO
        for j in range(k + 1):
            row = contexts[b] if j == 0 else negatives[b, j - 1]
            s = ZERO
            for d in range(dims):
                s += u[b, d] * w[row, d]
            if j == 0:
                total += softplus(-s)           # -log sigmoid(s)
                coef[b, j] = sigmoid(s) - ONE
            else:
                total += softplus(s)            # -log sigmoid(-s)
                coef[b, j] = sigmoid(s)
        losses[b] = total

    def ns_grad_inputs_kernel(coef, w, contexts, negatives, grad):
        dims = np.uint32(grad.shape[1])
        n = grad.shape[0] * grad.shape[1]
        k = negatives.shape[1]
        for i in range(cuda.grid(1), n, cuda.gridsize(1)):
            b, d = pair_column(i, dims)
            acc = coef[b, 0] * w[contexts[b], d]
            for j in range(k):
                acc += coef[b, j + 1] * w[negatives[b, j], d]
            grad[b, d] = acc

    def ns_scatter_weights_kernel(coef, u, contexts, negatives, scale, out):
        dims = np.uint32(u.shape[1])
        n = u.shape[0] * u.shape[1]
        k = negatives.shape[1]
        for i in range(cuda.grid(1), n, cuda.gridsize(1)):
            b, d = pair_column(i, dims)
            x = scale * u[b, d]
            cuda.atomic.add(out, (contexts[b], d), coef[b, 0] * x)
            for j in range(k):
                cuda.atomic.add(out, (negatives[b, j], d), coef[b, j + 1] * x)

    def rows_gather_kernel(table, ids, mean, out):
        dims = np.uint32(out.shape[1])
        n = out.shape[0] * out.shape[1]
        m = ids.shape[1]
        for i in range(cuda.grid(1), n, cuda.gridsize(1)):
            b, d = pair_column(i, dims)
            acc = ZERO
            count = 0
            for j in range(m):
                row = ids[b, j]
                if row >= 0:
                    acc += table[row, d]
                    count += 1
            if mean != 0 and count > 0:
                acc = acc / ft(count)
            out[b, d] = acc

    def rows_scatter_add_kernel(table, ids, rows, scale, divide):
        dims = np.uint32(rows.shape[1])
        n = rows.shape[0] * rows.shape[1]
        m = ids.shape[1]
        for i in range(cuda.grid(1), n, cuda.gridsize(1)):
            b, d = pair_column(i, dims)
            count = 0
            for j in range(m):
                if ids[b, j] >= 0:
                    count += 1
            x = scale * rows[b, d]
            if divide != 0 and count > 0:
                x = x / ft(count)
            for j in range(m):
                row = ids[b, j]
                if row >= 0:
                    cuda.atomic.add(table, (row, d), x)

    return {"ns_forward": ns_forward_kernel, "ns_grad_inputs": ns_grad_inputs_kernel,
            "ns_scatter_weights": ns_scatter_weights_kernel, "rows_gather": rows_gather_kernel,
            "rows_scatter_add": rows_scatter_add_kernel}


_SIGNATURES = {
    "ns_forward": "void({f}[:, ::1], {f}[:, ::1], int32[::1], int32[:, ::1], {f}[::1], {f}[:, ::1])",
    "ns_grad_inputs": "void({f}[:, ::1], {f}[:, ::1], int32[::1], int32[:, ::1], {f}[:, ::1])",
    "ns_scatter_weights": "void({f}[:, ::1], {f}[:, ::1], int32[::1], int32[:, ::1], {f}, {f}[:, ::1])",
    "rows_gather": "void({f}[:, ::1], int32[:, ::1], int32, {f}[:, ::1])",
    "rows_scatter_add": "void({f}[:, ::1], int32[:, ::1], {f}[:, ::1], {f}, int32)",
}

_kernels = _launch.build_kernels(_make, _SIGNATURES, prefix="w2v_")

#: ``[(pyfunc, [signature, ...]), ...]`` for every kernel of this module
KERNELS = _kernels.listing()


def _check_pairs(op, u, w, contexts, negatives):
    _launch.check_backend(op, u, w, contexts, negatives)
    _launch.check_float(op, inputs=u, output_weights=w)
    _launch.check_int(op, "contexts", contexts, (np.int32,))
    _launch.check_int(op, "negatives", negatives, (np.int32,))
    if u.ndim != 2 or w.ndim != 2 or w.shape[1] != u.shape[1]:
        raise ValueError(f"{op}: inputs must be (B, D) and output_weights (V, D), got shapes "
                         f"{tuple(u.shape)} and {tuple(w.shape)}")
    _launch.check_shape(op, "contexts", contexts, (u.shape[0],))
    if negatives.ndim != 2 or negatives.shape[0] != u.shape[0]:
        raise ValueError(f"{op}: negatives must be ({u.shape[0]}, K), got {tuple(negatives.shape)}")
    _launch.check_32bit(op, elements=u.shape[0] * u.shape[1])


def _elementwise_grid(n):
    threads = _launch.block(THREADS)
    return _launch.stride_blocks(n, threads), threads


def negative_sampling_forward(inputs, output_weights, contexts, negatives):
    """(losses (B,), coef (B, 1 + K)): each pair's loss and its derivative per score."""
    op = "negative_sampling_forward"
    _check_pairs(op, inputs, output_weights, contexts, negatives)
    xp = _launch.array_module(inputs)
    b = inputs.shape[0]
    losses = xp.empty(b, dtype=inputs.dtype)
    coef = xp.empty((b, negatives.shape[1] + 1), dtype=inputs.dtype)
    if b:
        threads = _launch.block(THREADS)
        _launch.launch(_kernels.get(("ns_forward", inputs.dtype)), _launch.blocks(b, threads), threads,
                       inputs, output_weights, contexts, negatives, losses, coef)
    return losses, coef


def negative_sampling_grad_inputs(coef, output_weights, contexts, negatives):
    """(B, D): ``sum_j coef[b, j] * output_weights[id_bj]``, the gradient of the inputs."""
    op = "negative_sampling_grad_inputs"
    _launch.check_backend(op, coef, output_weights, contexts, negatives)
    _launch.check_float(op, coef=coef, output_weights=output_weights)
    _launch.check_int(op, "contexts", contexts, (np.int32,))
    _launch.check_int(op, "negatives", negatives, (np.int32,))
    b, k = negatives.shape
    _launch.check_shape(op, "coef", coef, (b, k + 1))
    _launch.check_shape(op, "contexts", contexts, (b,))
    xp = _launch.array_module(coef)
    grad = xp.empty((b, output_weights.shape[1]), dtype=coef.dtype)
    n = grad.size
    if n:
        _launch.check_32bit(op, elements=n)
        grid, threads = _elementwise_grid(n)
        _launch.launch(_kernels.get(("ns_grad_inputs", coef.dtype)), grid, threads,
                       coef, output_weights, contexts, negatives, grad)
    return grad


def negative_sampling_scatter_weights(coef, inputs, contexts, negatives, scale, out):
    """In place: ``out[id_bj] += scale * coef[b, j] * inputs[b]`` for every pair b and row j
    (``scale=1`` into zeros: the output table's gradient; ``scale=-lr`` into the table: SGD)."""
    op = "negative_sampling_scatter_weights"
    _launch.check_backend(op, coef, inputs, contexts, negatives, out)
    _launch.check_float(op, coef=coef, inputs=inputs, out=out)
    _launch.check_int(op, "contexts", contexts, (np.int32,))
    _launch.check_int(op, "negatives", negatives, (np.int32,))
    b, k = negatives.shape
    _launch.check_shape(op, "coef", coef, (b, k + 1))
    _launch.check_shape(op, "inputs", inputs, (b, out.shape[1]))
    _launch.check_shape(op, "contexts", contexts, (b,))
    n = inputs.size
    if n:
        _launch.check_32bit(op, elements=n)
        grid, threads = _elementwise_grid(n)
        _launch.launch(_kernels.get(("ns_scatter_weights", coef.dtype)), grid, threads,
                       coef, inputs, contexts, negatives, coef.dtype.type(scale), out)
    return out


def rows_gather(table, ids, mean):
    """(B, D): the sum (``mean`` False) or mean of ``table``'s rows ``ids[b, :]``, skipping -1."""
    op = "rows_gather"
    _launch.check_backend(op, table, ids)
    _launch.check_float(op, table=table)
    _launch.check_int(op, "ids", ids, (np.int32,))
    if ids.ndim != 2:
        raise ValueError(f"{op}: ids must be (B, M), got shape {tuple(ids.shape)}")
    xp = _launch.array_module(table)
    out = xp.empty((ids.shape[0], table.shape[1]), dtype=table.dtype)
    n = out.size
    if n:
        _launch.check_32bit(op, elements=n)
        grid, threads = _elementwise_grid(n)
        _launch.launch(_kernels.get(("rows_gather", table.dtype)), grid, threads,
                       table, ids, np.int32(bool(mean)), out)
    return out


def rows_scatter_add(table, ids, rows, scale, divide=False):
    """In place: ``table[ids[b, j]] += scale * rows[b]`` for every id that is not -1, divided
    by the row's count of ids when ``divide`` (word2vec's CBOW with a summed context)."""
    op = "rows_scatter_add"
    _launch.check_backend(op, table, ids, rows)
    _launch.check_float(op, table=table, rows=rows)
    _launch.check_int(op, "ids", ids, (np.int32,))
    if ids.ndim != 2:
        raise ValueError(f"{op}: ids must be (B, M), got shape {tuple(ids.shape)}")
    _launch.check_shape(op, "rows", rows, (ids.shape[0], table.shape[1]))
    n = rows.size
    if n:
        _launch.check_32bit(op, elements=n)
        grid, threads = _elementwise_grid(n)
        _launch.launch(_kernels.get(("rows_scatter_add", table.dtype)), grid, threads,
                       table, ids, rows, table.dtype.type(scale), np.int32(bool(divide)))
    return table
