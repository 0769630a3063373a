"""Shape ops that layers use: flatten."""
from __future__ import annotations

import numpy as np

from ..autograd import as_tensor

__all__ = ["flatten"]


def flatten(x):
    """(N, ...) -> (N, prod(...))."""
    x = as_tensor(x)
    if x.ndim < 1:
        raise ValueError(f"flatten expected input with a batch axis, got shape {x.shape}")
    return x.reshape(x.shape[0], int(np.prod(x.shape[1:], dtype=np.int64)))
