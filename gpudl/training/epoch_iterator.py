"""Batches for one epoch after another, from arrays, a ``gpudl.data.Dataset`` or an iterable.

Keras' split (``trainers/data_adapters`` + ``epoch_iterator.py``): an adapter knows one kind of
data (how many batches, batch ``i``); the EpochIterator owns the epoch loop's position: the
shuffle drawn from gpudl's generator at each epoch's start (so a checkpoint's generator state
regenerates it), the batch to start from on a mid-epoch resume, and the check of every batch
that came from user code. A malformed batch is refused before any step runs on it, with its
index in the message.
"""
from __future__ import annotations

import collections.abc
import concurrent.futures
import math
import warnings

import numpy as np

from .. import backend
from ..autograd import Tensor
from ..data import Dataset
from .structure import first, leaves, map_leaves

__all__ = ["as_array", "ArrayAdapter", "DatasetAdapter", "IterableAdapter", "EpochIterator", "get_adapter",
           "unpack", "check_batch"]


def as_array(a, what):
    """A numpy or cupy array with a batch axis from an array, Tensor or nested list (None stays
    None); a clear error for anything else."""
    if isinstance(a, Tensor):
        a = a.data
    if a is None:
        return None
    if not (isinstance(a, np.ndarray) or backend.is_cupy_array(a)):
        try:
            a = np.asarray(a)
        except Exception as exc:
            raise TypeError(f"{what}: expected an array, got {type(a).__name__} ({exc})") from None
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{what}: expected a numeric array, got dtype {a.dtype}")
    if a.ndim == 0:
        raise ValueError(f"{what}: expected an array with a batch axis, got a scalar")
    return a


def unpack(batch, what="batch"):
    """(x, y, sample_weight) from ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``."""
    if isinstance(batch, (tuple, list)):
        if not 1 <= len(batch) <= 3:
            raise ValueError(f"{what}: expected (x,), (x, y) or (x, y, sample_weight), got a "
                             f"{type(batch).__name__} of {len(batch)} items")
        batch = tuple(batch) + (None,) * (3 - len(batch))
        return batch
    return batch, None, None


def check_batch(batch, index, input_shape=None, finite=True, need_y=True, standardize=None):
    """The batch as arrays, or a clear error naming batch ``index``: rank and trailing shape of
    x against the model's input, matching lengths, numeric dtypes, and (unless the run answers
    NaN itself, with TerminateOnNaN) finite values. Reads host arrays only; a device batch's
    values are not read back (its shape and dtype are checked all the same)."""
    where = f"batch {index}"
    x, y, sw = unpack(batch, where)
    if x is None:
        raise ValueError(f"{where}: x is None")
    if standardize is not None:
        x, y, sw = standardize(x, y, sw, where)  # lists/dicts for several inputs or outputs
    else:
        x, y, sw = as_array(x, f"{where}: x"), as_array(y, f"{where}: y"), as_array(sw, f"{where}: sample_weight")
    if need_y and y is None:
        raise ValueError(f"{where}: expected (x, y) or (x, y, sample_weight), got x alone")
    shapes = input_shape if isinstance(input_shape, list) else [input_shape]
    for a, shape in zip(leaves(x), shapes):
        if shape is not None and tuple(a.shape[1:]) != tuple(shape):
            raise ValueError(f"{where}: expected x of shape (N, {', '.join(map(str, shape))}), "
                             f"got {tuple(a.shape)}")
    x0 = first(x)
    if len(x0) == 0:
        raise ValueError(f"{where}: empty (x has shape {tuple(x0.shape)})")
    for name, a in [("x", v) for v in leaves(x)[1:]] + [("y", v) for v in leaves(y)] + \
            [("sample_weight", v) for v in leaves(sw)]:
        if a is not None and len(a) != len(x0):
            raise ValueError(f"{where}: x has {len(x0)} samples but {name} has {len(a)}")
    for a in leaves(sw):
        if a is not None and a.ndim != 1:
            raise ValueError(f"{where}: sample_weight expected shape ({len(x0)},), got {tuple(a.shape)}")
    if finite:
        for name, a in [("x", v) for v in leaves(x)] + [("y", v) for v in leaves(y)] + \
                [("sample_weight", v) for v in leaves(sw)]:
            if a is not None and a.dtype.kind == "f" and not backend.is_cupy_array(a) \
                    and not np.isfinite(a).all():
                bad = int((~np.isfinite(a)).sum())
                raise ValueError(f"{where}: {name} holds {bad} NaN or infinite values "
                                 "(add callbacks.TerminateOnNaN() to let training meet them)")
    return x, y, sw


class ArrayAdapter:
    """Arrays already placed where the model runs; batches of ``batch_size`` in the epoch's order."""

    checked = True  # validated as a whole before training

    def __init__(self, x, y=None, sample_weight=None, batch_size=32, shuffle=True):
        self.x, self.y, self.sw = x, y, sample_weight
        self.n = len(first(x))
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.steps = math.ceil(self.n / batch_size)
        self._order = None
        # (rank, size) in a data-parallel fit: get(b) gives that rank's share of batch b
        self.part = None

    def begin_epoch(self, rng) -> None:
        perm = rng.permutation(self.n) if self.shuffle else None
        # the epoch's order goes to the data's device once, not a slice of it per step
        if perm is not None and backend.is_cupy_array(first(self.x)):
            perm = backend.to_backend(perm, "cupy")
        self._order = perm

    def _take(self, a, lo, hi):
        if a is None:
            return None
        if self._order is None:
            return map_leaves(lambda v: v[lo:hi], a)
        idx = self._order[lo:hi]
        return map_leaves(lambda v: v[idx], a)

    def batch_len(self, b) -> int:
        """Samples in (global) batch ``b``."""
        return min((b + 1) * self.batch_size, self.n) - b * self.batch_size

    def get(self, b):
        lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, self.n)
        if self.part is not None:
            from ..distributed.reduce import share
            plo, phi = share(hi - lo, *self.part)
            lo, hi = lo + plo, lo + phi
        return self._take(self.x, lo, hi), self._take(self.y, lo, hi), self._take(self.sw, lo, hi)

    def end_epoch(self) -> None:
        pass


class DatasetAdapter:
    """A ``gpudl.data.Dataset``: batch ``i`` is ``ds[i]``; ``shuffle`` reorders the batches
    (from gpudl's generator, so the order resumes exactly); ``workers > 1`` reads ahead."""

    checked = False

    def __init__(self, ds, shuffle=False, steps=None):
        n = len(ds)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"{type(ds).__name__}: expected len() to be a positive number of batches, got {n!r}")
        self.ds = ds
        self.shuffle = shuffle
        self.steps = int(n) if steps is None else min(int(steps), int(n))
        self._order = None
        self._pool = None
        self._ahead = {}

    def begin_epoch(self, rng) -> None:
        n = len(self.ds)
        self._order = rng.permutation(n) if self.shuffle else np.arange(n)
        self._ahead.clear()
        workers = getattr(self.ds, "workers", 1)
        if workers > 1 and self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="gpudl-data")

    def get(self, b):
        if self._pool is None:
            return self.ds[int(self._order[b])]
        depth = getattr(self.ds, "max_queue_size", 10)
        for j in range(b, min(b + depth, self.steps)):
            if j not in self._ahead:
                self._ahead[j] = self._pool.submit(self.ds.__getitem__, int(self._order[j]))
        return self._ahead.pop(b).result()

    def end_epoch(self) -> None:
        for f in self._ahead.values():
            f.cancel()
        self._ahead.clear()
        self.ds.on_epoch_end()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


class IterableAdapter:
    """A generator or other iterable of batches. With ``steps`` (Keras' steps_per_epoch) an
    epoch is that many batches drawn from one continuing iterator; without it an epoch is
    one pass (an iterable that is not an iterator starts afresh each epoch; an exhausted generator
    ends training with a warning, as Keras does)."""

    checked = False

    def __init__(self, data, steps=None):
        self.data = data
        self.steps = None if steps is None else int(steps)
        self.reiterable = not isinstance(data, collections.abc.Iterator)
        self._it = None
        self.exhausted = False

    def begin_epoch(self, rng) -> None:
        if self._it is None or (self.steps is None and self.reiterable):
            self._it = iter(self.data)

    def __iter__(self):
        b = 0
        while self.steps is None or b < self.steps:
            try:
                batch = next(self._it)
            except StopIteration:
                if self.steps is not None or b == 0:
                    self.exhausted = True
                    warnings.warn("gpudl: the input ran out of data: training stops here. Pass "
                                  "steps_per_epoch of at most the number of batches it gives per "
                                  "epoch, or a generator that repeats", RuntimeWarning, stacklevel=4)
                return
            yield b, batch
            b += 1

    def end_epoch(self) -> None:
        pass


def get_adapter(x, y=None, sample_weight=None, batch_size=32, shuffle=True, steps=None, what="fit"):
    """The adapter for ``x``: arrays (with ``y``), a Dataset, or an iterable of batches."""
    if isinstance(x, Dataset):
        _only_x(y, sample_weight, what, "a gpudl.data.Dataset")
        return DatasetAdapter(x, shuffle=shuffle if what == "fit" else False, steps=steps)
    if isinstance(x, (np.ndarray, Tensor, list, tuple, dict)) or backend.is_cupy_array(x):
        return None  # arrays (a list is array data, as in Keras): validated and placed by the trainer
    if isinstance(x, collections.abc.Iterable) and not isinstance(x, (str, bytes, dict)):
        _only_x(y, sample_weight, what, "a generator or iterable of batches")
        return IterableAdapter(x, steps)
    return None


def _only_x(y, sample_weight, what, kind):
    if y is not None or sample_weight is not None:
        raise ValueError(f"{what}: x is {kind}, which carries its own targets and weights; "
                         "pass y=None and sample_weight=None")


class EpochIterator:
    """Yields ``(batch_index, batch)`` for one epoch of an adapter, from ``start`` on.

    ``begin(state)`` draws the epoch's order from gpudl's generator (after recording the
    generator's state in the TrainingState, so a checkpoint can regenerate it).
    """

    def __init__(self, adapter):
        self.adapter = adapter

    @property
    def steps(self):
        return self.adapter.steps

    def begin(self, rng):
        self.adapter.begin_epoch(rng)

    def batches(self, start=0):
        a = self.adapter
        if isinstance(a, IterableAdapter):
            for b, batch in a:
                if b >= start:
                    yield b, batch
            return
        for b in range(start, a.steps):
            yield b, a.get(b)

    def end(self):
        self.adapter.end_epoch()

    def close(self):
        close = getattr(self.adapter, "close", None)
        if close is not None:
            close()
