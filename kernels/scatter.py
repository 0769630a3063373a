"""Scatter-addition in a fixed order: ``out[index[i]] += values[i]`` without atomics.

``cupyx.scatter_add`` adds repeated indices with atomics, so the order of the additions (and
so the float rounding of an embedding's gradient) varies from run to run. Under
``gpudl.set_deterministic(True)`` the gradient takes this path instead: the rows are sorted by
index once (a deterministic sort, so equal indices keep one order every run), each run of
equal indices becomes a segment, and one thread per (segment, column) sums its segment's rows
in order and adds the total to its output row. Segments have distinct indices, so no two
threads write the same element. The cost is the sort and a pass over the values, against the
atomics' one pass.
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from . import _launch

__all__ = ["segment_scatter_add", "KERNELS"]

THREADS = 256


def _make(ft):
    ZERO = ft(0)

    def segment_sum_kernel(values, order, starts, rows, out, n_seg, width):
        # one (segment, column) per step of a grid-stride loop; consecutive threads take
        # consecutive columns, so reads of a row and writes to out are coalesced
        i = cuda.grid(1)
        step = cuda.gridsize(1)
        total_work = n_seg * width
        while i < total_work:
            s = i // width
            d = i - s * width
            acc = ZERO
            for j in range(starts[s], starts[s + 1]):
                acc += values[order[j], d]
            out[rows[s], d] += acc
            i += step

    return {"segment_sum": segment_sum_kernel}


_SIGNATURES = {
    "segment_sum": "void({f}[:, ::1], int64[::1], int64[::1], int64[::1], {f}[:, ::1], int64, int64)",
}

_kernels = _launch.build_kernels(_make, _SIGNATURES)

#: ``[(pyfunc, [signature, ...]), ...]`` for every kernel of this module
KERNELS = _kernels.listing()


def segment_scatter_add(out, index, values):
    """``out[index] += values`` with repeated indices summed in a fixed order (``np.add.at``'s
    result, to rounding). out (R, ...); index an integer array; values index.shape + out.shape[1:]."""
    op = "segment_scatter_add"
    _launch.check_backend(op, out, values)
    xp = _launch.array_module(out)
    if not out.flags.c_contiguous:
        raise ValueError(f"{op} expected a C-contiguous out (it is updated in place)")
    values = xp.ascontiguousarray(values, dtype=out.dtype)
    dtype = _launch.check_float(op, out=out, values=values)
    index = xp.asarray(index)
    if index.dtype.kind not in "iu":
        raise TypeError(f"{op} expected an integer index, got dtype {index.dtype}")
    tail = tuple(out.shape[1:])
    if tuple(values.shape) != tuple(index.shape) + tail:
        raise ValueError(f"{op} expected values of shape {tuple(index.shape) + tail} (index shape + out's "
                         f"row shape), got {tuple(values.shape)}")
    m = int(index.size)
    if m == 0:
        return out
    flat = index.reshape(-1).astype(np.int64)
    n_rows = out.shape[0]
    # negative ids count from the end, as in NumPy; past the end wraps as CuPy's indexing does,
    # so no thread ever writes outside out
    flat = flat % n_rows
    order = xp.argsort(flat, kind="stable") if xp is np else xp.argsort(flat)
    order = xp.ascontiguousarray(order.astype(np.int64))
    sidx = flat[order]
    boundaries = xp.nonzero(sidx[1:] != sidx[:-1])[0] + 1
    starts = xp.concatenate([xp.zeros(1, np.int64), boundaries.astype(np.int64), xp.full(1, m, np.int64)])
    rows = xp.ascontiguousarray(sidx[starts[:-1]])
    width = int(np.prod(tail, dtype=np.int64)) if tail else 1
    vals = xp.ascontiguousarray(values.reshape(m, width))
    out2 = out.reshape(n_rows, width)
    n_seg = int(rows.shape[0])
    kernel = _kernels.get(("segment_sum", dtype))
    threads = _launch.block(THREADS)
    _launch.launch(kernel, _launch.stride_blocks(n_seg * width, threads), threads,
                   vals, order, xp.ascontiguousarray(starts), rows, out2, n_seg, width)
    return out
