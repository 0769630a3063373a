"""Merge layers (Keras 3's ``keras.layers.merging``): each is called on a list of tensors.

``Concatenate(axis=-1)`` joins them along ``axis`` (counted with the batch axis, as Keras: -1 is
the last); ``Add``, ``Subtract`` (exactly two inputs), ``Multiply``, ``Average``, ``Maximum`` and
``Minimum`` combine them elementwise. Elementwise inputs have one rank and one batch size, and
on every other axis one size, or 1 where an input is broadcast (NumPy's rule; the gradient of
a broadcast input is summed back over that axis by the autograd).

Every merge composes ops that already have their gradients (``+``, ``-``, ``*``, ``/``,
``gpudl.autograd.concatenate``, ``stack`` and the ``max`` reduction); none writes a backward.

Masks (Keras' ``compute_mask``): ``layer(inputs, mask=[m1, m2, ...])`` records
``layer.compute_mask(inputs, mask)`` in ``last_mask``. The elementwise merges keep a position
where every input that has a mask keeps it (logical AND; None when no input has one);
``Concatenate`` follows Keras' ``Concatenate.compute_mask``: a missing mask counts as all
kept, a mask of lower rank than its input is repeated along the input's last axis, the masks
are concatenated along ``axis`` and the result keeps a position where any entry of its last
axis is kept.
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import backend
from ..autograd import Tensor, concatenate, stack
from .base import Layer

__all__ = ["Concatenate", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"]


def _shown(shapes):
    """The shapes as Keras prints them: the batch axis as None when all inputs agree on it."""
    batches = {s[0] for s in shapes if len(s)}
    if len(batches) > 1:
        return "[" + ", ".join(str(tuple(s)) for s in shapes) + "]"
    return "[" + ", ".join(str((None,) + tuple(s[1:])) if len(s) else "()" for s in shapes) + "]"


class _Merge(Layer):
    """What every merge layer shares: the list of inputs, their checks, the masks."""

    supports_masking = True
    #: how many inputs the layer takes: at least ``min_inputs``, at most ``max_inputs``
    min_inputs = 2
    max_inputs = None

    def __init__(self, name=None):
        super().__init__(name)
        self.last_mask = None

    # ---- call -----------------------------------------------------------------------
    def __call__(self, inputs, mask=None):
        """``layer([a, b, ...])``; ``mask=[ma, mb, ...]`` (None entries allowed) records the
        output's mask in ``last_mask``."""
        tensors = self._as_tensors(inputs)
        shapes = [t.shape for t in tensors]
        if not self.built:
            self.dtype = tensors[0].dtype
            self.build(shapes)
            self.built = True
        self._check_shapes(shapes)
        if tensors[0].dtype != self.dtype:
            tensors = [t.astype(self.dtype) if t.requires_grad else Tensor._wrap(t.data.astype(self.dtype))
                       for t in tensors]
        out = self._merge(tensors)
        self.last_mask = None if mask is None else self.compute_mask(tensors, mask)
        return out

    def _as_tensors(self, inputs):
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f"{self.describe()} expected a list of {self._how_many()} input tensors, "
                             f"got {type(inputs).__name__}")
        n = len(inputs)
        if n < self.min_inputs or (self.max_inputs is not None and n > self.max_inputs):
            raise ValueError(f"{self.describe()} expected a list of {self._how_many()} input tensors, "
                             f"got a list of {n}")
        tensors = []
        for x in inputs:
            if isinstance(x, Tensor):
                t = x
            elif isinstance(x, np.ndarray) or backend.is_cupy_array(x):
                t = Tensor._wrap(x)  # keep its backend: a mix is reported below
            else:
                t = Tensor(x)
            tensors.append(t)
        backend.check_same_backend([t.data for t in tensors], self.describe())
        kinds = [t.dtype for t in tensors]
        for dt in kinds:
            if dt.kind not in "fiub":
                raise TypeError(f"{self.describe()} expected numeric inputs, got dtypes {[str(d) for d in kinds]}")
        floats = {dt for dt in kinds if dt.kind == "f"}
        if len(floats) > 1:
            raise TypeError(f"{self.describe()} expected inputs of one floating dtype, got dtypes "
                            f"{[str(d) for d in kinds]}")
        # integer inputs compute in the float type of the others (the default float alone)
        target = floats.pop() if floats else np.dtype(backend.default_dtype)
        return [t if t.dtype == target else Tensor._wrap(t.data.astype(target)) for t in tensors]

    def _how_many(self) -> str:
        if self.max_inputs == self.min_inputs:
            return f"exactly {self.min_inputs}"
        return f"at least {self.min_inputs}"

    def build(self, shapes):
        """Nothing to create: the shapes are checked on every call."""

    # ---- shapes ---------------------------------------------------------------------
    def _check_shapes(self, shapes):
        """One rank (>= 1) and one batch size; elsewhere equal sizes or 1 (broadcast)."""
        ranks = {len(s) for s in shapes}
        ok = len(ranks) == 1 and 0 not in ranks and len({s[0] for s in shapes}) == 1
        if ok:
            for axis in range(1, len(shapes[0])):
                if len({s[axis] for s in shapes} - {1}) > 1:
                    ok = False
                    break
        if not ok:
            raise ValueError(f"{self.describe()} expected inputs of one rank and batch size with matching "
                             f"shapes (or size 1 on an axis, broadcast), got shapes {_shown(shapes)}")

    @staticmethod
    def _out_shape(tensors):
        return tuple(max(sizes) for sizes in zip(*(t.shape for t in tensors)))

    def _merge(self, tensors):
        raise NotImplementedError(f"{type(self).__name__} must define _merge")

    # ---- masks ----------------------------------------------------------------------
    def _check_masks(self, inputs, mask):
        if not isinstance(mask, (list, tuple)):
            raise ValueError(f"{self.describe()} expected mask as a list (one entry per input, None "
                             f"for an input without one), got {type(mask).__name__}")
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f"{self.describe()} expected inputs as a list, got {type(inputs).__name__}")
        if len(mask) != len(inputs):
            raise ValueError(f"{self.describe()} expected one mask per input ({len(inputs)}), "
                             f"got {len(mask)} masks")
        return [None if m is None else (m.data if isinstance(m, Tensor) else m) for m in mask]

    def compute_mask(self, inputs, mask=None):
        """The positions kept by every input that has a mask (logical AND); None if none has one."""
        if mask is None:
            return None
        masks = [m for m in self._check_masks(inputs, mask) if m is not None]
        if not masks:
            return None
        out = masks[0].astype(bool)
        for m in masks[1:]:
            out = out & m.astype(bool)
        return out


class Concatenate(_Merge):
    """Join the inputs along ``axis`` (with the batch axis counted: -1 is the last); every
    other axis must match."""

    def __init__(self, axis=-1, name=None):
        super().__init__(name)
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise ValueError(f"Concatenate expected an integer axis, got {axis!r}")
        self.axis = int(axis)

    def _check_shapes(self, shapes):
        ranks = {len(s) for s in shapes}
        rank = len(shapes[0])
        if len(ranks) == 1 and rank > 0 and not -rank <= self.axis < rank:
            raise ValueError(f"{self.describe()} expected an axis in [{-rank}, {rank}) for inputs of rank "
                             f"{rank}, got axis={self.axis}")
        ok = len(ranks) == 1 and rank > 0
        if ok:
            ax = self.axis % rank
            rest = {tuple(n for i, n in enumerate(s) if i != ax) for s in shapes}
            ok = len(rest) == 1
        if not ok:
            raise ValueError(f"{self.describe()} expected inputs with matching shapes except on axis "
                             f"{self.axis}, got shapes {_shown(shapes)}")

    def _merge(self, tensors):
        return concatenate(tensors, axis=self.axis % tensors[0].ndim)

    def compute_mask(self, inputs, mask=None):
        """Keras' rule: missing masks are all kept, masks are brought to their input's shape,
        concatenated along ``axis``, then reduced with ``any`` over the last axis."""
        if mask is None:
            return None
        masks = self._check_masks(inputs, mask)
        if all(m is None for m in masks):
            return None
        full = []
        for x, m in zip(inputs, masks):
            data = x.data if isinstance(x, Tensor) else x
            xp = backend.get_array_module(data)
            if m is None:
                full.append(xp.ones(data.shape, dtype=bool))
            elif m.ndim < data.ndim:
                full.append(xp.broadcast_to(xp.expand_dims(m.astype(bool), -1), data.shape))
            else:
                full.append(m.astype(bool))
        xp = backend.get_array_module(*full)
        return xp.concatenate(full, axis=self.axis).any(axis=-1)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class Add(_Merge):
    """The sum of the inputs."""

    def _merge(self, tensors):
        out = tensors[0]
        for t in tensors[1:]:
            out = out + t
        return out


class Subtract(_Merge):
    """``inputs[0] - inputs[1]`` (exactly two inputs)."""

    max_inputs = 2

    def _merge(self, tensors):
        return tensors[0] - tensors[1]


class Multiply(_Merge):
    """The elementwise product of the inputs."""

    def _merge(self, tensors):
        out = tensors[0]
        for t in tensors[1:]:
            out = out * t
        return out


class Average(_Merge):
    """The elementwise mean of the inputs."""

    def _merge(self, tensors):
        out = tensors[0]
        for t in tensors[1:]:
            out = out + t
        return out / float(len(tensors))


def _broadcast(tensors, shape):
    """Each tensor at ``shape``: a broadcast one through ``+ zeros`` (its gradient is then summed
    back over the broadcast axes by Add's backward)."""
    out = []
    for t in tensors:
        if t.shape != shape:
            xp = backend.get_array_module(t.data)
            t = t + Tensor._wrap(xp.zeros(shape, dtype=t.dtype))
        out.append(t)
    return out


class Maximum(_Merge):
    """The elementwise maximum of the inputs; tied inputs share the gradient equally (as
    ``torch.maximum``)."""

    def _merge(self, tensors):
        return stack(_broadcast(tensors, self._out_shape(tensors)), axis=0).max(axis=0)


class Minimum(_Merge):
    """The elementwise minimum of the inputs; tied inputs share the gradient equally."""

    def _merge(self, tensors):
        negated = [-t for t in _broadcast(tensors, self._out_shape(tensors))]
        return -stack(negated, axis=0).max(axis=0)
