"""Weight initializers (Keras names). Drawn on the host from gpudl's one generator, so a
seed gives the same weights on NumPy and CuPy; layers move them to their backend."""
from __future__ import annotations

import math

import numpy as np

from . import random as grandom

__all__ = ["get", "compute_fans", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
           "lecun_normal", "zeros", "ones", "orthogonal", "random_normal", "random_uniform"]


def compute_fans(shape):
    """fan_in, fan_out for (in, out) matrices and (out, in, kh, kw) conv kernels."""
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[2:]))
    return shape[1] * receptive, shape[0] * receptive


def glorot_uniform(shape, dtype=np.float32):
    fan_in, fan_out = compute_fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return grandom.uniform(-limit, limit, shape, dtype)


def glorot_normal(shape, dtype=np.float32):
    fan_in, fan_out = compute_fans(shape)
    return _truncated(math.sqrt(2.0 / (fan_in + fan_out)), shape, dtype)


def he_uniform(shape, dtype=np.float32):
    fan_in, _ = compute_fans(shape)
    limit = math.sqrt(6.0 / fan_in)
    return grandom.uniform(-limit, limit, shape, dtype)


def he_normal(shape, dtype=np.float32):
    fan_in, _ = compute_fans(shape)
    return _truncated(math.sqrt(2.0 / fan_in), shape, dtype)


def lecun_normal(shape, dtype=np.float32):
    fan_in, _ = compute_fans(shape)
    return _truncated(math.sqrt(1.0 / fan_in), shape, dtype)


def _truncated(std, shape, dtype):
    # Keras' truncated normal: redraw beyond two standard deviations; 0.8796 corrects the std
    std = std / 0.87962566103423978
    x = grandom.get_rng().normal(0.0, std, size=shape)
    bad = np.abs(x) > 2 * std
    while bad.any():
        x[bad] = grandom.get_rng().normal(0.0, std, size=int(bad.sum()))
        bad = np.abs(x) > 2 * std
    return x.astype(dtype)


def zeros(shape, dtype=np.float32):
    return np.zeros(shape, dtype=dtype)


def ones(shape, dtype=np.float32):
    return np.ones(shape, dtype=dtype)


def orthogonal(shape, dtype=np.float32):
    """Orthogonal rows/columns (Keras' default for recurrent kernels)."""
    rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    cols = shape[-1]
    a = grandom.get_rng().normal(0.0, 1.0, size=(max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return np.ascontiguousarray(q[:rows, :cols].reshape(shape), dtype=dtype)


def random_normal(shape, dtype=np.float32, stddev=0.05):
    return grandom.normal(0.0, stddev, shape, dtype)


def random_uniform(shape, dtype=np.float32, limit=0.05):
    return grandom.uniform(-limit, limit, shape, dtype)


_NAMES = {f.__name__: f for f in (glorot_uniform, glorot_normal, he_uniform, he_normal, lecun_normal,
                                  zeros, ones, orthogonal, random_normal, random_uniform)}
_NAMES.update({"xavier_uniform": glorot_uniform, "xavier_normal": glorot_normal})


def get(init):
    """An initializer from its name or a callable ``(shape, dtype) -> numpy array``."""
    if callable(init):
        return init
    if isinstance(init, str) and init.lower() in _NAMES:
        return _NAMES[init.lower()]
    raise ValueError(f"unknown initializer {init!r}: expected one of {', '.join(sorted(_NAMES))} or a callable")
