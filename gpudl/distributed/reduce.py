"""The fused gradient allreduce (one flat buffer, one collective per step), parameter
broadcast, and the allreduce of epoch logs and metric states.

Weighting: a rank holding ``m`` samples of a global batch of ``B`` scales its gradient by
``m / B`` before the sum. Its loss is the mean over its ``m`` samples plus the penalties
(L1/L2, ``add_loss``), so the weighted sum is the gradient of the global mean plus the
penalties' gradient counted once (the shares sum to one): an uneven split and an uneven last
batch give the single-process gradient exactly, up to rounding. A rank whose share is empty
contributes zeros with weight 0.
"""
from __future__ import annotations

import numpy as np

from .. import backend

__all__ = ["GradientReducer", "share", "broadcast_arrays", "average_arrays", "combine_states"]


def share(n: int, rank: int, size: int) -> tuple[int, int]:
    """``[lo, hi)``: rank's rows of ``n`` split over ``size`` ranks, the first ``n % size``
    ranks one row more (every rank's offset a pure function of n, rank and size)."""
    base, extra = divmod(int(n), int(size))
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def _buffer_dtype(arrays):
    return np.result_type(*[a.dtype for a in arrays]) if arrays else np.dtype(np.float32)


class GradientReducer:
    """Sums weighted gradients over the ranks through one flat buffer per step.

    The layout (each parameter's gradient, then one presence flag per parameter, then the
    extra scalars) is the same on every rank, so a parameter without a gradient on some rank
    contributes zeros; it is given None afterwards only if no rank had one (as a
    single-process step leaves it alone). The buffer is kept between steps.
    """

    def __init__(self, comm):
        self.comm = comm
        self._buf = None
        self._key = None
        self.bytes_per_step = 0

    def _layout(self, params, n_extra):
        key = (tuple((tuple(p.shape), np.dtype(p.dtype).str) for p in params), n_extra,
               backend.is_cupy_array(params[0].data) if params else False)
        if key != self._key:
            sizes = [int(np.prod(p.shape)) for p in params]
            offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int).tolist()
            xp = backend.get_array_module(params[0].data) if params else np
            total = offsets[-1] + len(params) + n_extra
            self._buf = xp.empty(total, dtype=_buffer_dtype([p.data for p in params]))
            self._offsets, self._key = offsets, key
            self.bytes_per_step = self._buf.nbytes
        return self._buf, self._offsets

    def reduce(self, params, grads, weight, extras=()):
        """``(grads, extras)`` summed over the ranks, each rank's scaled by its ``weight``.

        ``grads[i]`` is an array or None; ``extras`` scalars (0-d arrays or floats) summed
        with the same weight, in the same collective (the batch's loss)."""
        params = list(params)
        buf, off = self._layout(params, len(extras))
        xp = backend.get_array_module(buf)
        t = buf.dtype.type
        k = len(params)
        present = np.zeros(k, dtype=buf.dtype)
        for i, g in enumerate(grads):
            seg = buf[off[i]:off[i + 1]]
            if g is None:
                seg.fill(0)
                continue
            present[i] = 1
            xp.multiply(g.reshape(-1), t(weight), out=seg)
        n = off[-1]
        flags = buf[n:n + k]
        flags.fill(1)  # scalar writes on the device: no host array crosses over per step
        for i in np.flatnonzero(present == 0):
            flags[int(i)] = 0
        for j, e in enumerate(extras):
            if weight:
                xp.multiply(e, t(weight), out=buf[n + k + j:n + k + j + 1].reshape(()))
            else:
                buf[n + k + j] = 0  # weight 0: never 0 * inf = NaN
        self.comm.allreduce(buf)
        # every rank had every gradient (the usual case): nothing to read back from the device
        everyone = present.all() and weight > 0
        flags = None if everyone else backend.to_numpy(buf[n:n + k])
        out = []
        for i, p in enumerate(params):
            if flags is not None and flags[i] == 0:
                out.append(None)
            else:
                out.append(buf[off[i]:off[i + 1]].reshape(p.shape))
        return out, [buf[n + k + j] for j in range(len(extras))]


def _flat_groups(arrays):
    """Indices of ``arrays`` grouped by (dtype, backend): one buffer per group."""
    groups = {}
    for i, a in enumerate(arrays):
        groups.setdefault((np.dtype(a.dtype).str, backend.is_cupy_array(a)), []).append(i)
    return list(groups.values())


def broadcast_arrays(comm, arrays, root=0):
    """Overwrite each array in place with root's, one collective per dtype."""
    for idx in _flat_groups(arrays):
        xp = backend.get_array_module(arrays[idx[0]])
        buf = xp.concatenate([arrays[i].reshape(-1) for i in idx]) if idx else None
        comm.bcast(buf, root)
        o = 0
        for i in idx:
            a = arrays[i]
            a[...] = buf[o:o + a.size].reshape(a.shape)
            o += a.size


def average_arrays(comm, arrays):
    """Replace each array in place by its mean over the ranks (moving statistics)."""
    for idx in _flat_groups(arrays):
        xp = backend.get_array_module(arrays[idx[0]])
        buf = xp.concatenate([arrays[i].reshape(-1) for i in idx])
        comm.allreduce(buf)
        buf /= buf.dtype.type(comm.size)
        o = 0
        for i in idx:
            a = arrays[i]
            a[...] = buf[o:o + a.size].reshape(a.shape)
            o += a.size


def combine_states(states):
    """Sum a list (one per rank, in rank order) of nested states: numbers, host arrays, lists,
    dicts and None (a rank that saw nothing). Summed in rank order on every rank, so every
    rank gets the same bits."""
    present = [s for s in states if s is not None]
    if not present:
        return None
    first = present[0]
    if isinstance(first, dict):
        keys = list(first)
        for s in present[1:]:
            if list(s) != keys:
                raise ValueError(f"distributed: ranks hold metric states with different entries, {keys} "
                                 f"and {list(s)}")
        return {k: combine_states([s[k] for s in present]) for k in keys}
    if isinstance(first, (list, tuple)):
        return [combine_states([s[i] for s in present]) for i in range(len(first))]
    total = first
    for s in present[1:]:
        total = total + s
    return total
