"""One harness for every op test: forward against a NumPy float64 reference, backward
against float64 central differences, on the backend under test."""
from __future__ import annotations

import importlib.util

import numpy as np

import gpudl
from gpudl import backend
from gpudl.testing import gradcheck

GRAD = dict(eps=1e-6, atol=1e-5, rtol=1e-3)
#: on gpudl's CuPy stand-in every forward pass runs the kernels in Numba's simulator (about a
#: millisecond a thread): difference a sample of elements there; NumPy and a real GPU check all
_spec = importlib.util.find_spec("cupy")
TEST_DEVICE = _spec is not None and _spec.origin is not None and "fakecupy" in _spec.origin
TEST_DEVICE_ELEMENTS = 4


def rand(shape, seed=0, low=-1.0, high=1.0, away_from=None, margin=0.05):
    """float64 test data; ``away_from`` (a value such as 0 for ReLU) keeps |x - v| >= margin."""
    x = np.random.default_rng(seed).uniform(low, high, size=shape)
    if away_from is not None:
        d = x - away_from
        x = np.where(np.abs(d) < margin, away_from + np.sign(d + 1e-300) * margin, x)
    return x


def check_forward(fn, ref, inputs, dtype=np.float32, rtol=1e-4, atol=1e-5):
    """fn(*Tensors) on the active backend in ``dtype`` against ref(*float64 arrays)."""
    tensors = [gpudl.Tensor(np.asarray(x, dtype=dtype), dtype=dtype) for x in inputs]
    got = gpudl.to_numpy(fn(*tensors))
    want = ref(*[np.asarray(x, dtype=np.float64) for x in inputs])
    assert got.dtype == dtype, f"expected output dtype {dtype}, got {got.dtype}"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    return got


def check_grad(fn, inputs, params=()):
    """float64 gradcheck on the active backend (inputs are moved there)."""
    xs = [gpudl.Tensor(backend.to_backend(np.asarray(x, dtype=np.float64)), dtype=np.float64)
          for x in inputs]
    sample = TEST_DEVICE_ELEMENTS if TEST_DEVICE and backend.get_backend() == "cupy" else None
    assert gradcheck(fn, xs, params=params, elements=sample, **GRAD)


def check_op(fn, ref, inputs, rtol=1e-4, atol=1e-5, grad=True):
    """Forward in float32 and float64 against the reference, then gradcheck in float64."""
    check_forward(fn, ref, inputs, np.float32, rtol=rtol, atol=atol)
    check_forward(fn, ref, inputs, np.float64, rtol=1e-10, atol=1e-12)
    if grad:
        check_grad(fn, inputs)
