"""Shape layers on NCHW and (N, ...): global pooling, UpSampling2D, Reshape, Permute.

Each composes autograd ops (mean, fancy indexing, broadcasting, matmul, reshape, transpose);
none writes its own backward.
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..autograd import Tensor
from .base import InputSpec, Layer

__all__ = ["GlobalAveragePooling2D", "GlobalMaxPooling2D", "UpSampling2D", "Reshape", "Permute"]


class _GlobalPooling2D(Layer):
    input_ndim = 4

    def __init__(self, keepdims=False, name=None):
        super().__init__(name)
        self.keepdims = bool(keepdims)

    def build(self, x):
        self.input_spec = InputSpec(ndim=4)

    def get_config(self):
        return {"name": self.name, "keepdims": self.keepdims}


class GlobalAveragePooling2D(_GlobalPooling2D):
    """(N, C, H, W) -> (N, C): the mean over H and W (``keepdims``: (N, C, 1, 1))."""

    def forward(self, x):
        return x.mean(axis=(2, 3), keepdims=self.keepdims)


class GlobalMaxPooling2D(_GlobalPooling2D):
    """(N, C, H, W) -> (N, C): the maximum over H and W. The gradient goes to the argmax
    position only, the first one (row-major) on ties, as a max-pool's does."""

    def forward(self, x):
        n, c, h, w = x.shape
        flat = x.reshape(n * c, h * w)
        xp = backend.get_array_module(x.data)
        idx = flat.data.argmax(axis=1)  # first maximum on ties
        y = flat[xp.arange(n * c), idx]  # fancy GetItem: the gradient lands on idx alone
        return y.reshape((n, c, 1, 1) if self.keepdims else (n, c))


def _pair(layer, arg, v):
    if isinstance(v, int) and not isinstance(v, bool):
        v = (v, v)
    if not (isinstance(v, (tuple, list)) and len(v) == 2
            and all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in v)):
        raise ValueError(f"{layer} expected {arg} as a positive integer or a pair of them, got {v!r}")
    return tuple(int(k) for k in v)


def _bilinear_matrix(n_in, n_out):
    """(n_out, n_in) weights of half-pixel-centred linear interpolation, no antialiasing: the
    rule of TF's ``resize_bilinear(half_pixel_centers=True)`` / ``jax.image.resize``, which
    Keras 3's ``ops.image.resize(..., interpolation="bilinear", antialias=False)`` runs."""
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    a = np.zeros((n_out, n_in))
    a[np.arange(n_out), lo] += 1 - frac
    a[np.arange(n_out), hi] += frac
    return a


class UpSampling2D(Layer):
    """(N, C, H, W) -> (N, C, H*sh, W*sw). ``"nearest"`` repeats each pixel (Keras'
    ``ops.repeat`` on both axes); ``"bilinear"`` interpolates with half-pixel centres and no
    antialiasing (Keras 3's ``ops.image.resize``)."""

    input_ndim = 4

    def __init__(self, size=2, interpolation="nearest", name=None):
        super().__init__(name)
        self.size = _pair("UpSampling2D", "size", size)
        if interpolation not in ("nearest", "bilinear"):
            raise ValueError(f"UpSampling2D expected interpolation 'nearest' or 'bilinear', got {interpolation!r}")
        self.interpolation = interpolation
        self._mats = {}

    def build(self, x):
        self.input_spec = InputSpec(ndim=4)

    def forward(self, x):
        n, c, h, w = x.shape
        sh, sw = self.size
        if self.interpolation == "nearest":
            ones = Tensor._wrap(backend.get_array_module(x.data).ones((1, 1, 1, sh, 1, sw), dtype=x.dtype))
            # broadcasting repeats; its backward sums each sh x sw block back onto its pixel
            return (x.reshape(n, c, h, 1, w, 1) * ones).reshape(n, c, h * sh, w * sw)
        ah, awt = self._matrices(h, w, x)
        return (ah @ x) @ awt

    def _matrices(self, h, w, x):
        key = (h, w, str(x.dtype), backend.backend_of(x.data))
        if key not in self._mats:
            sh, sw = self.size
            on = backend.backend_of(x.data)
            ah = backend.to_backend(_bilinear_matrix(h, h * sh).astype(x.dtype), on)
            awt = backend.to_backend(np.ascontiguousarray(_bilinear_matrix(w, w * sw).T).astype(x.dtype), on)
            self._mats = {key: (Tensor._wrap(ah), Tensor._wrap(awt))}
        return self._mats[key]

    def get_config(self):
        return {"name": self.name, "size": list(self.size), "interpolation": self.interpolation}


class Reshape(Layer):
    """(N, ...) -> (N, *target_shape); one entry of ``target_shape`` may be -1 (inferred). The
    batch axis is not part of ``target_shape``."""

    input_min_ndim = 1

    def __init__(self, target_shape, name=None):
        super().__init__(name)
        if isinstance(target_shape, int) and not isinstance(target_shape, bool):
            target_shape = (target_shape,)
        ok = isinstance(target_shape, (tuple, list)) and all(
            isinstance(k, int) and not isinstance(k, bool) and (k >= 1 or k == -1) for k in target_shape)
        if not ok or sum(1 for k in target_shape if k == -1) > 1:
            raise ValueError("Reshape expected target_shape as a tuple of positive integers with at most one -1 "
                             f"(batch axis excluded), got {target_shape!r}")
        self.target_shape = tuple(int(k) for k in target_shape)

    def _resolve(self, in_shape):
        size = math.prod(in_shape[1:])
        known = math.prod(k for k in self.target_shape if k != -1)
        if -1 in self.target_shape:
            if known == 0 or size % known:
                raise ValueError(f"{self.describe()} cannot reshape input of shape {tuple(in_shape)} ({size} values "
                                 f"per sample) into target_shape {self.target_shape}")
            return tuple(size // known if k == -1 else k for k in self.target_shape)
        if known != size:
            raise ValueError(f"{self.describe()} cannot reshape input of shape {tuple(in_shape)} ({size} values per "
                             f"sample) into target_shape {self.target_shape} ({known} values)")
        return self.target_shape

    def build(self, x):
        self._resolve(x.shape)
        self.input_spec = InputSpec(ndim=x.ndim, axes={i: n for i, n in enumerate(x.shape) if i > 0})

    def forward(self, x):
        return x.reshape((x.shape[0],) + self._resolve(x.shape))

    def get_config(self):
        return {"name": self.name, "target_shape": list(self.target_shape)}


class Permute(Layer):
    """Reorder the non-batch axes: ``dims`` is a permutation of 1..k (1-based, batch axis
    excluded, as Keras), e.g. Permute((2, 1)) swaps the two axes of (N, A, B)."""

    input_min_ndim = 2

    def __init__(self, dims, name=None):
        super().__init__(name)
        ok = isinstance(dims, (tuple, list)) and all(isinstance(d, int) and not isinstance(d, bool) for d in dims)
        if not ok or not dims or sorted(dims) != list(range(1, len(dims) + 1)):
            raise ValueError(f"Permute expected dims as a permutation of 1..k (1-based, batch axis excluded), "
                             f"got {dims!r}")
        self.dims = tuple(int(d) for d in dims)

    def build(self, x):
        if x.ndim - 1 != len(self.dims):
            raise ValueError(f"{self.describe()} with dims {self.dims} expected input of rank {len(self.dims) + 1}, "
                             f"got shape {x.shape}")
        self.input_spec = InputSpec(ndim=x.ndim)

    def forward(self, x):
        return x.transpose((0,) + self.dims)

    def get_config(self):
        return {"name": self.name, "dims": list(self.dims)}
