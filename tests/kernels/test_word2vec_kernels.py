"""Word2vec kernels (negative-sampling loss, its gradients, row gathers and scatters) against
NumPy float64 references."""
import numpy as np
import pytest

import gpudl
from gpudl import Tensor
from gpudl import functional as F
from gpudl.backend import to_numpy
from gpudl.kernels import _launch
from gpudl.kernels import word2vec as W


def _reference(u, w, contexts, negatives):
    """(losses, coef) in float64, written out pair by pair."""
    u, w = u.astype(np.float64), w.astype(np.float64)
    b, k = negatives.shape
    losses = np.zeros(b)
    coef = np.zeros((b, k + 1))
    for i in range(b):
        s = u[i] @ w[contexts[i]]
        losses[i] = np.logaddexp(0, -s)
        coef[i, 0] = 1 / (1 + np.exp(-s)) - 1
        for j, n in enumerate(negatives[i]):
            s = u[i] @ w[n]
            losses[i] += np.logaddexp(0, s)
            coef[i, j + 1] = 1 / (1 + np.exp(-s))
    return losses, coef


# (pairs, dims, vocabulary, samples): one of each, odd sizes, more pairs than the simulator's
# grid covers in one sweep (so the grid-stride loops wrap)
SHAPES = [(1, 1, 1, 1), (5, 3, 7, 2), (70, 9, 13, 5)]


def _pairs(rng, dtype, shape):
    b, d, v, k = shape
    u = rng.standard_normal((b, d)).astype(dtype)
    w = rng.standard_normal((v, d)).astype(dtype)
    contexts = rng.integers(0, v, b).astype(np.int32)
    negatives = rng.integers(0, v, (b, k)).astype(np.int32)
    return u, w, contexts, negatives


@pytest.mark.parametrize("shape", SHAPES)
def test_forward(xp, dtype, rng, poison, tol, shape):
    u, w, c, n = _pairs(rng, dtype, shape)
    poison(u.nbytes, u.nbytes)
    losses, coef = W.negative_sampling_forward(xp.asarray(u), xp.asarray(w), xp.asarray(c), xp.asarray(n))
    ref_losses, ref_coef = _reference(u, w, c, n)
    assert losses.dtype == dtype and coef.shape == ref_coef.shape
    np.testing.assert_allclose(to_numpy(losses), ref_losses, **tol)
    np.testing.assert_allclose(to_numpy(coef), ref_coef, **tol)


def test_forward_stays_finite_for_large_scores(xp, dtype, rng):
    u, w, c, n = _pairs(rng, dtype, (4, 3, 5, 2))
    u = (200 * u).astype(dtype)
    losses, coef = W.negative_sampling_forward(xp.asarray(u), xp.asarray(w), xp.asarray(c), xp.asarray(n))
    ref_losses, ref_coef = _reference(u, w, c, n)
    assert np.isfinite(to_numpy(losses)).all()
    np.testing.assert_allclose(to_numpy(losses), ref_losses, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(to_numpy(coef), ref_coef, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
def test_grad_inputs(xp, dtype, rng, poison, tol, shape):
    u, w, c, n = _pairs(rng, dtype, shape)
    coef = rng.standard_normal((shape[0], shape[3] + 1)).astype(dtype)
    poison(u.nbytes)
    got = W.negative_sampling_grad_inputs(xp.asarray(coef), xp.asarray(w), xp.asarray(c), xp.asarray(n))
    ids = np.concatenate([c[:, None], n], axis=1)
    want = np.einsum("bj,bjd->bd", coef.astype(np.float64), w.astype(np.float64)[ids])
    np.testing.assert_allclose(to_numpy(got), want, **tol)


@pytest.mark.parametrize("shape", SHAPES)
def test_scatter_weights_adds_every_repeat(xp, dtype, rng, tol, shape):
    u, w, c, n = _pairs(rng, dtype, shape)
    n[:, 0] = 0   # one row sampled by every pair: the atomic adds must all land
    coef = rng.standard_normal((shape[0], shape[3] + 1)).astype(dtype)
    out = xp.asarray(w.copy())
    W.negative_sampling_scatter_weights(xp.asarray(coef), xp.asarray(u), xp.asarray(c), xp.asarray(n), -0.5, out)
    want = w.astype(np.float64)
    ids = np.concatenate([c[:, None], n], axis=1)
    np.add.at(want, ids.reshape(-1), (-0.5 * coef[:, :, None] * u[:, None, :]).reshape(-1, shape[1]))
    np.testing.assert_allclose(to_numpy(out), want, rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)


@pytest.mark.parametrize("mean", [True, False])
def test_rows_gather_skips_padding(xp, dtype, rng, tol, mean):
    table = rng.standard_normal((6, 5)).astype(dtype)
    ids = np.array([[1, 2, -1, 4], [3, -1, -1, -1], [-1, -1, -1, -1], [0, 0, 5, 5]], dtype=np.int32)
    got = to_numpy(W.rows_gather(xp.asarray(table), xp.asarray(ids), mean))
    for b, row in enumerate(ids):
        rows = table.astype(np.float64)[row[row >= 0]]
        want = rows.sum(axis=0) if len(rows) else np.zeros(5)
        if mean and len(rows):
            want = want / len(rows)
        np.testing.assert_allclose(got[b], want, **tol)


@pytest.mark.parametrize("divide", [False, True])
def test_rows_scatter_add(xp, dtype, rng, tol, divide):
    table = rng.standard_normal((6, 5)).astype(dtype)
    ids = np.array([[1, 2, -1], [1, -1, -1], [-1, -1, -1], [5, 5, 0]], dtype=np.int32)
    rows = rng.standard_normal((4, 5)).astype(dtype)
    out = xp.asarray(table.copy())
    W.rows_scatter_add(out, xp.asarray(ids), xp.asarray(rows), 0.25, divide)
    want = table.astype(np.float64)
    for b, row in enumerate(ids):
        kept = row[row >= 0]
        for r in kept:
            want[r] += 0.25 * rows[b] / (len(kept) if divide else 1)
    np.testing.assert_allclose(to_numpy(out), want, **tol)


def test_launchers_name_bad_arguments(xp, rng):
    u, w, c, n = _pairs(rng, np.float32, (3, 2, 4, 2))
    with pytest.raises(TypeError, match="negatives must have dtype int32, got int64"):
        W.negative_sampling_forward(xp.asarray(u), xp.asarray(w), xp.asarray(c), xp.asarray(n.astype(np.int64)))
    with pytest.raises(TypeError, match="output_weights must have the dtype of inputs"):
        W.negative_sampling_forward(xp.asarray(u), xp.asarray(w.astype(np.float64)), xp.asarray(c), xp.asarray(n))
    with pytest.raises(ValueError, match=r"contexts must have shape \(3,\)"):
        W.negative_sampling_forward(xp.asarray(u), xp.asarray(w), xp.asarray(c[:2]), xp.asarray(n))


def test_op_on_the_array_module(xp, dtype, rng, tol):
    """F.negative_sampling_loss on xp arrays (the kernels on CuPy): loss and both gradients."""
    gpudl.set_backend("cupy" if xp is not np else "numpy")
    u, w, c, n = _pairs(rng, dtype, (7, 4, 6, 3))
    ut = Tensor(xp.asarray(u), requires_grad=True)
    wt = Tensor(xp.asarray(w), requires_grad=True)
    loss = F.negative_sampling_loss(ut, wt, xp.asarray(c), xp.asarray(n), reduction="mean")
    loss.backward()
    ref_losses, coef = _reference(u, w, c, n)
    ids = np.concatenate([c[:, None], n], axis=1)
    gu = np.einsum("bj,bjd->bd", coef, w.astype(np.float64)[ids]) / 7
    gw = np.zeros(w.shape)
    np.add.at(gw, ids.reshape(-1), (coef[:, :, None] * u[:, None, :]).reshape(-1, 4) / 7)
    np.testing.assert_allclose(float(to_numpy(loss.data)), ref_losses.mean(), **tol)
    np.testing.assert_allclose(to_numpy(ut.grad), gu, **tol)
    np.testing.assert_allclose(to_numpy(wt.grad), gw, **tol)


@pytest.mark.skipif(not _launch.simulated(), reason="runs the kernels under Numba's simulator (NUMBA_ENABLE_CUDASIM=1)")
@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
def test_op_gpu_branch_matches_numpy_branch(monkeypatch, rng, reduction):
    """The op's kernel branch, forced on host arrays under the simulator, gives the NumPy
    branch's loss and gradients (argument order, saved state, returned gradients)."""
    from gpudl.functional import negative_sampling
    u, w, c, n = _pairs(rng, np.float64, (9, 5, 7, 3))
    results = []
    for gpu in (False, True):
        monkeypatch.setattr(negative_sampling, "on_gpu", lambda *a, gpu=gpu: gpu)
        ut, wt = Tensor(u.copy(), requires_grad=True), Tensor(w.copy(), requires_grad=True)
        y = F.negative_sampling_loss(ut, wt, c.astype(np.int64), n.astype(np.int64), reduction=reduction)
        weights = np.random.default_rng(0).standard_normal(y.shape)
        (y * Tensor(weights)).sum().backward()
        results.append((y.numpy(), ut.grad, wt.grad))
    for cpu, gpu in zip(*results):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-12, atol=1e-13)
