"""The dropout kernel against the vectorised NumPy mask, bit for bit, and F.dropout's GPU
branch against its CPU paths (under the simulator: NumPy arrays through the kernel)."""
import importlib

import numpy as np
import pytest

import gpudl
from gpudl import Tensor
from gpudl import functional as F
from gpudl import random as grandom
from gpudl.backend import to_numpy
from gpudl.kernels import _launch
from gpudl.kernels import dropout as K

D = importlib.import_module("gpudl.functional.dropout")

# (1,), odd sizes, and sizes past 4 * (2 blocks * 32 threads) so the simulator runs both the
# four-wide loop and its tail
SHAPES = [(1,), (7, 3), (5, 41), (3, 2, 5, 7), (1001,)]
KEYS = [0, 0xDEADBEEFCAFEF00D, (1 << 64) - 1]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("rate", [0.2, 0.5, 0.9])
@pytest.mark.parametrize("offset", [0, 3])
def test_kernel_equals_keep_mask(xp, dtype, rng, poison, shape, rate, offset):
    key = KEYS[(len(shape) + offset) % len(KEYS)]
    base = offset * int(np.prod(shape[1:]))
    x = rng.standard_normal(shape).astype(dtype)
    start, threshold = D.mask_params(key, rate, base)
    scale = D.dropout_scale(rate, dtype)
    poison(x.nbytes)
    y = K.dropout_apply(xp.asarray(x), start, threshold, scale)
    assert y.dtype == dtype and y.shape == x.shape
    keep = D.keep_mask(shape, key, rate, base)
    expected = x * (keep.astype(dtype) * scale)
    np.testing.assert_array_equal(to_numpy(y), expected)
    assert np.array_equal(to_numpy(y) != 0, keep)


def test_kernel_mask_of_a_slice_is_the_slice_of_the_mask(xp, dtype):
    # rows [k, k + m) with counter base k * units: the full batch's rows
    shape, k, m, rate, key = (9, 4, 5), 3, 4, 0.5, 12345
    units = 20
    ones = np.ones(shape, dtype=dtype)
    full = K.dropout_apply(xp.asarray(ones), *D.mask_params(key, rate, 0), D.dropout_scale(rate, dtype))
    part = K.dropout_apply(xp.asarray(ones[k:k + m]), *D.mask_params(key, rate, k * units),
                           D.dropout_scale(rate, dtype))
    np.testing.assert_array_equal(to_numpy(part), to_numpy(full)[k:k + m])


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the simulator's 0 * inf
def test_nan_and_inf_propagate_as_a_multiply(xp, dtype):
    # y = x * m: a dropped NaN or inf stays NaN (as x * mask on the CPU paths)
    x = np.array([np.nan, np.inf, -np.inf, 1.0] * 16, dtype=dtype)
    start, threshold = D.mask_params(7, 0.5)
    y = to_numpy(K.dropout_apply(xp.asarray(x), start, threshold, D.dropout_scale(0.5, dtype)))
    keep = D.keep_mask(x.shape, 7, 0.5)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(y, x * (keep.astype(dtype) * D.dropout_scale(0.5, dtype)))


def test_empty(xp, dtype):
    y = K.dropout_apply(xp.asarray(np.ones((0, 3), dtype=dtype)), 1, 2, 2.0)
    assert y.shape == (0, 3)


def test_bad_inputs(xp):
    with pytest.raises(TypeError, match="dropout_apply: x must be float32 or float64"):
        K.dropout_apply(xp.asarray(np.ones(4, dtype=np.int32)), 1, 2, 2.0)
    with pytest.raises(ValueError, match="dropout_apply: x must be C-contiguous"):
        K.dropout_apply(xp.asarray(np.ones((4, 3), dtype=np.float32)).T, 1, 2, 2.0)


# ---- F.dropout's GPU branch (the kernel) equals its CPU paths -----------------------------------

def _dropout_fwd_bwd(x, w, rate, offset, seed):
    gpudl.set_seed(seed)
    xt = Tensor(x.copy(), requires_grad=True)
    y = F.dropout(xt, rate, sample_offset=offset)
    (y * Tensor(w)).sum().backward()
    return y.numpy(), xt.grad


@pytest.mark.skipif(not _launch.simulated(),
                    reason="runs the kernel under Numba's simulator (NUMBA_ENABLE_CUDASIM=1)")
@pytest.mark.parametrize("cpu", ["compiled", "vectorised"])
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("shape,offset", [((6, 5), 0), ((4, 3, 7), 2), ((3, 40), 11)])
def test_gpu_branch_equals_cpu_branch(monkeypatch, cpu, dt, shape, offset):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape).astype(dt)
    w = rng.standard_normal(shape).astype(dt)
    if cpu == "vectorised":
        monkeypatch.setattr(D, "_cpu_loop", False)
    elif D._compiled_loop() is None:
        pytest.skip("numba's compiled CPU loop is unavailable here")
    y_cpu, g_cpu = _dropout_fwd_bwd(x, w, 0.4, offset, 3)
    monkeypatch.setattr(D, "on_gpu", lambda *a: True)
    y_gpu, g_gpu = _dropout_fwd_bwd(x, w, 0.4, offset, 3)
    np.testing.assert_array_equal(y_gpu, y_cpu)
    np.testing.assert_array_equal(g_gpu, g_cpu)
    assert np.array_equal(y_gpu != 0, g_gpu != 0)  # backward recomputed forward's mask


@pytest.mark.skipif(not _launch.simulated(),
                    reason="runs the kernel under Numba's simulator (NUMBA_ENABLE_CUDASIM=1)")
def test_gpu_branch_draws_one_key(monkeypatch):
    monkeypatch.setattr(D, "on_gpu", lambda *a: True)
    gpudl.set_seed(4)
    F.dropout(Tensor(np.ones((4, 4), dtype=np.float32)), 0.5)
    after = grandom.get_rng().random()
    gpudl.set_seed(4)
    grandom.mask_key()
    assert grandom.get_rng().random() == after
