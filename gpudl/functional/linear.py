"""Fully connected layer's op: ``x @ W + b``.

The products go through ``_threads.gemm``: plain matmul, except inside a training loop that
runs gpudl's CPU pool (a CNN's), where they are split over that pool with BLAS held to one
thread, so no BLAS worker spins on the cores the next convolution wants.
"""
from __future__ import annotations

from ..autograd import Function, as_tensor
from ._threads import gemm
from ._util import require_float

__all__ = ["linear"]


class Linear(Function):
    """One op for x@W+b: saves a pass over the output compared with matmul then add."""

    def forward(self, x, W, b=None):
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])
        y = gemm(x2, W)
        if b is not None:
            y += b
        self._saved = (x2, W, lead, b is not None)
        return y.reshape(lead + (W.shape[1],))

    def backward(self, g):
        x2, W, lead, has_b = self._saved
        g2 = g.reshape(-1, g.shape[-1])
        # the first layer's input (the data) needs no gradient: skip that product
        gx = gemm(g2, W.T).reshape(lead + (W.shape[0],)) if self.needs_grad(0) else None
        gW = gemm(x2.T, g2)
        if has_b:
            return gx, gW, g2.sum(axis=0)
        return gx, gW


def linear(x, W, b=None):
    """``x @ W + b`` with x (..., in), W (in, out), b (out,)."""
    require_float(x, "linear")
    x = as_tensor(x)
    W = as_tensor(W, like=x)
    if W.ndim != 2:
        raise ValueError(f"linear expected W of rank 2 (in, out), got shape {W.shape}")
    if x.ndim < 1 or x.shape[-1] != W.shape[0]:
        raise ValueError(f"linear expected x with last axis {W.shape[0]} (W is {W.shape}), got shape {x.shape}")
    if b is None:
        return Linear()(x, W)
    b = as_tensor(b, like=x)
    if b.shape != (W.shape[1],):
        raise ValueError(f"linear expected b of shape ({W.shape[1]},), got {b.shape}")
    return Linear()(x, W, b)
