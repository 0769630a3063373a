"""L1 / L2 weight penalties (Lecture I). A regularizer maps a weight Tensor to a scalar
Tensor added to the loss, so its gradient reaches the weights through the autograd."""
from __future__ import annotations

import math
import numbers

__all__ = ["Regularizer", "L1", "L2", "L1L2", "get"]


def _check(cls, arg, v):
    # NaN passes a plain `v < 0` test and would turn every loss, and so every weight, into NaN
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
        raise ValueError(f"{cls} expected a non-negative number, got {v!r} for {arg} "
                         "(a penalty factor must be finite and >= 0)")
    return float(v)


class Regularizer:
    def __call__(self, w):
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"class": type(self).__name__, "config": dict(vars(self))}


class L1(Regularizer):
    """l * sum(|w|)."""

    def __init__(self, l1=0.01):
        self.l1 = _check("L1", "l1", l1)

    def __call__(self, w):
        return w.abs().sum() * self.l1


class L2(Regularizer):
    """l * sum(w^2) (Keras' convention: no 1/2)."""

    def __init__(self, l2=0.01):
        self.l2 = _check("L2", "l2", l2)

    def __call__(self, w):
        return (w * w).sum() * self.l2


class L1L2(Regularizer):
    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _check("L1L2", "l1", l1)
        self.l2 = _check("L1L2", "l2", l2)

    def __call__(self, w):
        out = None
        if self.l1:
            out = w.abs().sum() * self.l1
        if self.l2:
            sq = (w * w).sum() * self.l2
            out = sq if out is None else out + sq
        return out if out is not None else (w * 0.0).sum()


_CLASSES = {"l1": L1, "l2": L2, "l1l2": L1L2, "l1_l2": L1L2}


def get(reg):
    """None, a Regularizer, a name ('l1', 'l2', 'l1l2') or a saved config dict."""
    if reg is None or isinstance(reg, Regularizer):
        return reg
    if isinstance(reg, str) and reg.lower() in _CLASSES:
        return _CLASSES[reg.lower()]()
    if isinstance(reg, dict) and reg.get("class") in ("L1", "L2", "L1L2"):
        return {"L1": L1, "L2": L2, "L1L2": L1L2}[reg["class"]](**reg.get("config", {}))
    if callable(reg):
        return reg
    raise ValueError(f"unknown regularizer {reg!r}: expected one of 'l1', 'l2', 'l1l2', "
                     "a gpudl.regularizers object or a callable")
