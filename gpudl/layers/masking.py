"""Masking: marks padded timesteps so that the layers after it skip them (Keras 3 semantics)."""
from __future__ import annotations

from .. import backend
from ..autograd import Tensor
from .base import Layer

__all__ = ["Masking"]


class Masking(Layer):
    """(batch, timesteps, features) -> the same, with every timestep whose features all equal
    ``mask_value`` zeroed; its mask, ``any(x != mask_value)`` over the features (batch,
    timesteps), goes to the next layers (recurrent layers carry their states over the
    masked steps). As Keras: ``outputs = x * mask[..., None]``.
    """

    input_ndim = 3
    supports_masking = True

    def __init__(self, mask_value=0.0, name=None):
        if isinstance(mask_value, bool) or not isinstance(mask_value, (int, float)):
            raise ValueError(f"Masking expected a number for mask_value, got {mask_value!r}")
        super().__init__(name)
        self.mask_value = float(mask_value)

    def _mask(self, x):
        a = x.data if isinstance(x, Tensor) else x
        xp = backend.get_array_module(a)
        return xp.any(a != self.mask_value, axis=-1)

    def forward(self, x):
        keep = self._mask(x)
        return x * Tensor._wrap(keep[..., None].astype(x.dtype))

    def compute_mask(self, x, mask=None):
        """``any(x != mask_value)`` over the last axis: a boolean (batch, timesteps) array on
        x's backend (the mask that came in is replaced, as in Keras)."""
        return self._mask(x)

    def get_config(self):
        return {"name": self.name, "mask_value": self.mask_value}
