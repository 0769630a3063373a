"""Dropout (Lecture I): each unit dropped with probability ``rate`` while training.

The tutorial multiplies the weights by (1 - p) at test time; gpudl uses the equivalent
inverted form (kept activations scaled by 1/(1 - rate) while training), so testing is
the identity and needs no rescaling.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from .. import random as grandom
from ..autograd import Function, as_tensor
from ._util import require_float, scalar

__all__ = ["dropout"]


def _keep_mask(shape, rate, xp, dtype):
    if xp is np:
        u = grandom.get_rng().random(shape, dtype=np.float32)
    else:  # draw on the device, seeded from the shared host generator (reproducible)
        u = xp.random.default_rng(grandom.mask_seed()).random(shape, dtype=xp.float32)
    # the mask scaled in place in u's buffer: two passes, no float temporaries
    xp.multiply(u >= np.float32(rate), np.float32(1.0 / (1.0 - rate)), out=u)
    return u if u.dtype == dtype else u.astype(dtype)


class Dropout(Function):
    def __init__(self, rate):
        self.rate = rate

    def forward(self, x):
        xp = backend.get_array_module(x)
        self._saved = _keep_mask(x.shape, self.rate, xp, x.dtype)
        return x * self._saved

    def backward(self, g):
        return g * self._saved


def dropout(x, rate, training=True):
    """Drop a fraction ``rate`` of the activations while training; identity otherwise."""
    require_float(x, "dropout")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout expected a rate in [0, 1), got {rate!r}")
    x = as_tensor(x)
    if not training or rate == 0.0:
        return x
    return Dropout(float(rate))(x)
