"""Numerical gradient checking (float64 central differences) for ops and layers."""
from __future__ import annotations

import numpy as np

from . import backend
from .autograd import Tensor
from .errors import GradcheckError

__all__ = ["gradcheck", "numerical_grad"]


def _as_float64_tensor(x):
    if isinstance(x, Tensor):
        if x.dtype != np.float64:
            raise TypeError(f"gradcheck needs float64 inputs, got a tensor of dtype {x.dtype}")
        x.requires_grad = True
        return x
    arr = np.asarray(backend.to_numpy(x))
    if arr.dtype != np.float64:
        raise TypeError(f"gradcheck needs float64 inputs, got dtype {arr.dtype}")
    return Tensor(arr, requires_grad=True, dtype=np.float64)


def numerical_grad(f, x: Tensor, eps: float = 1e-6, indices=None):
    """d f() / d x by central differences, perturbing x.data in place (restored after).

    ``indices``: flat positions to difference (the rest of the result stays 0); default all.
    """
    xp = backend.get_array_module(x.data)
    if not x.data.flags.c_contiguous:
        x.data = xp.ascontiguousarray(x.data)  # perturbations must reach the array fn reads
    g = xp.zeros_like(x.data)
    flat = x.data.reshape(-1)  # a view: writes reach x.data
    gflat = g.reshape(-1)
    for i in (range(flat.size) if indices is None else indices):
        i = int(i)
        old = flat[i].item()
        flat[i] = old + eps
        fp = float(f())
        flat[i] = old - eps
        fm = float(f())
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return g


def gradcheck(fn, inputs, params=(), eps=1e-6, atol=1e-5, rtol=1e-3, seed=0, elements=None) -> bool:
    """Check the autograd gradients of ``fn(*inputs)`` against central differences.

    ``inputs``: float64 arrays or Tensors; ``params``: extra Tensors (a layer's parameters)
    whose gradients are checked too. The output is reduced with fixed random weights, so
    every output element's gradient counts. ``elements``: difference only that many elements
    of each input, drawn at random with ``seed`` (PyTorch's fast mode has the same aim: each
    difference costs two forward passes). Returns True, or raises GradcheckError naming the
    input, the element and both values.
    """
    tensors = [_as_float64_tensor(x) for x in inputs]
    params = list(params)
    for p in params:
        if p.dtype != np.float64:
            raise TypeError(f"gradcheck needs float64 parameters, got {p.name or 'a parameter'} of dtype {p.dtype}")
    checked = tensors + params
    for t in checked:
        t.grad = None

    out = fn(*tensors)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    xp = backend.get_array_module(out.data)
    w = np.random.default_rng(seed).standard_normal(out.shape)
    w = xp.asarray(w) if xp is not np else w

    def scalar_loss():
        from .autograd import no_grad
        with no_grad():
            y = fn(*tensors)
        return (y.data * w).sum()

    (out * Tensor._wrap(w)).sum().backward()
    for k, t in enumerate(checked):
        label = f"input {k}" if k < len(tensors) else f"parameter {t.name or k - len(tensors)}"
        analytic = t.grad if t.grad is not None else xp.zeros_like(t.data)
        picked = None
        if elements is not None and elements < t.size:
            picked = np.random.default_rng(seed + k).choice(t.size, size=elements, replace=False)
        numeric = numerical_grad(scalar_loss, t, eps, picked)
        a, n = backend.to_numpy(analytic), backend.to_numpy(numeric)
        bad = ~np.isclose(a, n, atol=atol, rtol=rtol)
        if picked is not None:
            bad &= np.isin(np.arange(a.size), picked).reshape(a.shape)
        if bad.any():
            i = np.unravel_index(np.argmax(np.abs(a - n) * bad), a.shape) if a.ndim else ()
            raise GradcheckError(
                f"gradcheck failed for {label} (shape {a.shape}): {int(bad.sum())} of {a.size} elements differ; "
                f"at index {tuple(int(j) for j in i)} analytic {a[i]!r} vs numerical {n[i]!r} "
                f"(atol {atol}, rtol {rtol})")
    return True
