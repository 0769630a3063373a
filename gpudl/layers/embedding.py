"""Embedding: integer ids -> rows of a learned table (Keras 3 semantics)."""
from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Tensor
from .base import Layer
from .core import _positive_int

__all__ = ["Embedding"]


class Embedding(Layer):
    """(N, T) integer ids -> (N, T, output_dim) rows of ``embeddings`` (input_dim, output_dim),
    initialised uniform(-0.05, 0.05) (Keras' ``embeddings_initializer="uniform"``).

    The lookup is ``embeddings[ids]``: autograd's GetItem, whose backward accumulates repeated
    ids with ``backend.scatter_add``. ``mask_zero=True``: ``compute_mask(ids)`` is ``ids != 0``
    (Keras' ``compute_mask``) and each call records it in ``last_mask``; id 0 stays a normal row
    of the table, as in Keras, so ``input_dim`` must count it.

    Ids must be integers: a floating array is refused with a TypeError unless it holds whole
    numbers, since Sequential's fit/predict cast x to the model's float dtype before the first
    layer sees it (Keras' Embedding casts non-integer input to int32 likewise). On host arrays
    the ids are also checked against [0, input_dim) (on the device that would cost a sync on
    every call; out-of-range ids there are the caller's to avoid).
    """

    input_min_ndim = 1

    def __init__(self, input_dim, output_dim, mask_zero=False, name=None):
        super().__init__(name)
        self.input_dim = _positive_int("Embedding", "input_dim", input_dim)
        self.output_dim = _positive_int("Embedding", "output_dim", output_dim)
        self.mask_zero = bool(mask_zero)
        self.last_mask = None

    def _ids(self, x):
        a = x.data if isinstance(x, Tensor) else x
        if not (isinstance(a, np.ndarray) or backend.is_cupy_array(a)):
            a = np.asarray(a)
        if a.dtype.kind == "b" or a.dtype.kind not in "iuf":
            raise TypeError(f"{self.describe()} expected integer ids, got dtype {a.dtype}")
        on_host = isinstance(a, np.ndarray)
        if a.dtype.kind == "f":
            xp = backend.get_array_module(a)
            whole = xp.isfinite(a).all() & (a == xp.floor(a)).all()  # one read on the device
            if not bool(whole):
                raise TypeError(f"{self.describe()} expected integer ids, got dtype {a.dtype} with "
                                "fractional or non-finite values: pass an int32/int64 array")
            a = a.astype(np.int64)
        if a.ndim < 1:
            raise ValueError(f"{self.describe()} expected ids with a batch axis, got shape {a.shape}")
        if on_host and a.size:
            lo, hi = int(a.min()), int(a.max())
            if lo < 0 or hi >= self.input_dim:
                bad = lo if lo < 0 else hi
                raise ValueError(f"{self.describe()} expected ids in [0, {self.input_dim}) (input_dim="
                                 f"{self.input_dim}), got id {bad}")
        return a

    def __call__(self, x, **kwargs):
        ids = self._ids(x)
        if not self.built:
            self.dtype = np.dtype(backend.default_dtype)
            self.add_param("embeddings", (self.input_dim, self.output_dim), "random_uniform",
                           like=Tensor._wrap(ids))
            self.built = True
        else:
            backend.check_same_backend([ids, self.embeddings.data], self.describe())
        self._last_input = x
        return self.forward(ids)

    def forward(self, ids):
        if self.mask_zero:
            self.last_mask = ids != 0  # ids already checked by __call__
        return self.embeddings[ids]

    def compute_mask(self, x, mask=None):
        """The mask of the output: ``ids != 0`` when ``mask_zero`` (a boolean array of the ids'
        shape, (batch, timesteps) for sequences, on x's backend), else None. A mask that came
        in is replaced, as in Keras. The ids are checked as a call checks them."""
        if not self.mask_zero:
            return None
        if x is getattr(self, "_last_input", None) and self.last_mask is not None:
            return self.last_mask  # the call just made it: no second check and compare of the ids
        return self._ids(x) != 0

    def get_config(self):
        return {"name": self.name, "input_dim": self.input_dim, "output_dim": self.output_dim,
                "mask_zero": self.mask_zero}
