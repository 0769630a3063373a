"""Batch normalisation kernels against NumPy float64 references (under the simulator, and on
the test device), their accuracy for a large mean, torch.var_mean, and F.batch_norm's CuPy
path against its NumPy path."""
from __future__ import annotations

import numpy as np
import pytest

import gpudl
from gpudl import Tensor
from gpudl import functional as F
from gpudl.backend import to_numpy
from gpudl.kernels import normalization as K
from harness import check_grad

# (shape, channel axis): NCHW, (N, F), a channel axis last, batch 1, one element per channel,
# and an inner extent past the simulator's block (the offset wraps inside the walk)
CASES = [((3, 2, 3, 2), 1), ((5, 3), 1), ((2, 3, 4), -1), ((1, 4, 5), 1), ((1, 1), 1), ((4, 3, 1), 1),
         ((2, 2, 19), 1), ((3, 2, 2), 0)]


def _red(shape, axis):
    ax = axis % len(shape)
    return tuple(i for i in range(len(shape)) if i != ax), ax


def _bshape(shape, ax):
    return tuple(-1 if i == ax else 1 for i in range(len(shape)))


def _ref_forward(x, gamma, beta, axis, eps):
    red, ax = _red(x.shape, axis)
    mu = x.mean(axis=red, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=red, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps)
    if gamma is not None:
        y = y * gamma.reshape(_bshape(x.shape, ax))
    if beta is not None:
        y = y + beta.reshape(_bshape(x.shape, ax))
    return mu.reshape(-1), var.reshape(-1), y


def _ref_backward(g, x, gamma, axis, eps):
    """d(sum(g * y))/dx for y = batch_norm(x) with batch statistics, from the textbook formula."""
    red, ax = _red(x.shape, axis)
    m = np.prod([x.shape[i] for i in red])
    mu = x.mean(axis=red, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=red, keepdims=True)
    inv = 1 / np.sqrt(var + eps)
    xhat = (x - mu) * inv
    dxhat = g if gamma is None else g * gamma.reshape(_bshape(x.shape, ax))
    mean_dxhat = dxhat.sum(axis=red, keepdims=True) / m
    return inv * (dxhat - mean_dxhat - xhat * (dxhat * xhat).sum(axis=red, keepdims=True) / m)


@pytest.mark.parametrize("shape,axis", CASES)
def test_statistics(xp, dtype, rng, poison, tol, shape, axis):
    x = (2 * rng.standard_normal(shape) + 3).astype(dtype)
    poison(x.nbytes, x.nbytes)
    mean, var = K.batch_norm_stats(xp.asarray(x), axis)
    red, _ = _red(shape, axis)
    ref_mean, ref_var = x.astype(np.float64).mean(axis=red), x.astype(np.float64).var(axis=red)
    assert mean.dtype == dtype and var.dtype == dtype and mean.shape == ref_mean.shape
    np.testing.assert_allclose(to_numpy(mean), ref_mean, **tol)
    np.testing.assert_allclose(to_numpy(var), ref_var, rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)


def test_float32_statistics_stay_accurate_for_a_large_mean(xp, rng):
    # mean 1e4, variance 1 over 6000 elements: sum(x^2)/n - mean^2 in float32 would lose every
    # digit of the variance (1e8 against float32's 7 digits)
    x = (1e4 + rng.standard_normal((2, 1, 3000))).astype(np.float32)
    mean, var = K.batch_norm_stats(xp.asarray(x), 1)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(to_numpy(mean), [x64.mean()], rtol=1e-6)
    np.testing.assert_allclose(to_numpy(var), [x64.var()], rtol=2e-3)


@pytest.mark.stand_in_sample(4)
@pytest.mark.parametrize("shape,axis", CASES)
@pytest.mark.parametrize("scale,center", [(True, True), (False, False), (True, False)])
def test_forward_and_backward(xp, dtype, rng, poison, tol, shape, axis, scale, center):
    red, ax = _red(shape, axis)
    c = shape[ax]
    x = (rng.standard_normal(shape) - 1).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    gamma = rng.uniform(0.5, 1.5, c).astype(dtype) if scale else None
    beta = rng.standard_normal(c).astype(dtype) if center else None
    eps = 1e-3
    dev = [None if a is None else xp.asarray(a) for a in (x, g, gamma, beta)]
    dx, dg, dgamma, dbeta = dev
    mean, var = K.batch_norm_stats(dx, axis)
    poison(x.nbytes, x.nbytes)
    y = K.batch_norm_forward(dx, mean, var, dgamma, dbeta, eps, axis)
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    gam64 = None if gamma is None else gamma.astype(np.float64)
    _, _, y_ref = _ref_forward(x64, gam64, None if beta is None else beta.astype(np.float64), axis, eps)
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_allclose(to_numpy(y), y_ref, rtol=1e-4 if dtype == np.float32 else 1e-10,
                               atol=1e-5 if dtype == np.float32 else 1e-12)
    sum_g, sum_gx = K.batch_norm_grad_sums(dg, dx, mean, axis)
    mu = x64.mean(axis=red, keepdims=True)
    np.testing.assert_allclose(to_numpy(sum_g), g64.sum(axis=red), rtol=1e-4 if dtype == np.float32 else 1e-10,
                               atol=1e-5 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(to_numpy(sum_gx), (g64 * (x64 - mu)).sum(axis=red),
                               rtol=1e-4 if dtype == np.float32 else 1e-10, atol=1e-5 if dtype == np.float32 else 1e-12)
    poison(x.nbytes, x.nbytes)
    gx = K.batch_norm_backward(dg, dx, mean, var, dgamma, sum_g, sum_gx, eps, axis)
    np.testing.assert_allclose(to_numpy(gx), _ref_backward(g64, x64, gam64, axis, eps),
                               rtol=1e-3 if dtype == np.float32 else 1e-9, atol=1e-4 if dtype == np.float32 else 1e-11)


def test_launcher_argument_errors(xp):
    x = xp.asarray(np.zeros((4, 3, 2), np.float32))
    with pytest.raises(ValueError, match=r"batch_norm_stats: x must be C-contiguous"):
        K.batch_norm_stats(x.transpose(2, 1, 0))
    with pytest.raises(TypeError, match=r"batch_norm_stats: x must be float32 or float64, got int64"):
        K.batch_norm_stats(xp.asarray(np.zeros((2, 3), np.int64)))
    with pytest.raises(ValueError, match=r"batch_norm_stats: axis must be an integer in \[-3, 3\) for x of shape "
                                         r"\(4, 3, 2\), got 3"):
        K.batch_norm_stats(x, 3)
    with pytest.raises(ValueError, match=r"batch_norm_stats: every channel needs at least one element, got shape "
                                         r"\(0, 3\)"):
        K.batch_norm_stats(xp.asarray(np.zeros((0, 3), np.float32)))
    mean = xp.asarray(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"batch_norm_forward: gamma must have shape \(3,\), got \(2,\)"):
        K.batch_norm_forward(x, mean, mean, xp.asarray(np.ones(2, np.float32)))
    with pytest.raises(TypeError, match=r"batch_norm_forward: var must have the dtype of x \(float32\), got float64"):
        K.batch_norm_forward(x, mean, xp.asarray(np.ones(3)))
    with pytest.raises(ValueError, match=r"batch_norm_grad_sums: g must have shape \(4, 3, 2\), got \(4, 3\)"):
        K.batch_norm_grad_sums(xp.asarray(np.zeros((4, 3), np.float32)), x, mean)


@pytest.mark.torch
@pytest.mark.parametrize("shape,axis", [((3, 2, 3, 2), 1), ((5, 3), 1), ((1, 4, 5), 1)])
def test_statistics_against_torch_var_mean(xp, shape, axis):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(5).standard_normal(shape) * 3 + 1
    mean, var = K.batch_norm_stats(xp.asarray(x), axis)
    red, _ = _red(shape, axis)
    tv, tm = torch.var_mean(torch.tensor(x), dim=red, correction=0)
    np.testing.assert_allclose(to_numpy(mean), tm.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(to_numpy(var), tv.numpy(), rtol=1e-12, atol=1e-14)


# ---- F.batch_norm: the CuPy path (kernels) against the NumPy path ------------------------------

def _run_batch_norm(x, gamma, beta, axis, w):
    ts = [Tensor(a, requires_grad=True) for a in (x, gamma, beta)]
    y, mean, var = F.batch_norm(ts[0], ts[1], ts[2], axis=axis, return_stats=True)
    (y * Tensor(w)).sum().backward()
    return [to_numpy(a) for a in (y.data, mean.data, var.data)] + [to_numpy(t.grad) for t in ts]


@pytest.fixture
def cupy_backend():
    """The CuPy backend active (a skip without one)."""
    if not gpudl.backend.cupy_available():
        pytest.skip("CuPy backend unavailable: no CuPy package or no CUDA GPU here")
    gpudl.set_backend("cupy")


@pytest.mark.gpu
@pytest.mark.parametrize("shape,axis", [((3, 2, 3, 2), 1), ((1, 3), 1), ((2, 3, 4), -1)])
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_batch_norm_cupy_path_equals_numpy_path(cupy_backend, shape, axis, dt, monkeypatch):
    calls = []
    for name in ("batch_norm_stats", "batch_norm_forward", "batch_norm_grad_sums", "batch_norm_backward"):
        real = getattr(K, name)
        monkeypatch.setattr(K, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))
    rng = np.random.default_rng(3)
    c = shape[axis]
    x = (rng.standard_normal(shape) * 2 + 1).astype(dt)
    gamma, beta = rng.uniform(0.5, 1.5, c).astype(dt), rng.standard_normal(c).astype(dt)
    w = rng.standard_normal(shape).astype(dt)
    got = _run_batch_norm(x, gamma, beta, axis, w)
    assert calls == ["batch_norm_stats", "batch_norm_forward", "batch_norm_grad_sums", "batch_norm_backward"]
    gpudl.set_backend("numpy")
    want = _run_batch_norm(x, gamma, beta, axis, w)
    tol = {"rtol": 1e-4, "atol": 1e-5} if dt == np.float32 else {"rtol": 1e-10, "atol": 1e-12}
    for a, b in zip(got, want):
        assert a.dtype == b.dtype == dt
        np.testing.assert_allclose(a, b, **tol)


@pytest.mark.stand_in_sample(1)
@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(1, 2, 2), (3, 2), (2, 2, 1, 2)])
def test_batch_norm_cupy_gradcheck(cupy_backend, shape):
    c = shape[1]
    rng = np.random.default_rng(4)
    check_grad(lambda x, g, b: F.batch_norm(x, g, b), [rng.standard_normal(shape) + 2, rng.uniform(0.5, 1.5, c),
                                                       rng.standard_normal(c)])
