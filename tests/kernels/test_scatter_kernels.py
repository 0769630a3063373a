"""The fixed-order scatter-add kernel against np.add.at, and backend.scatter_add's
deterministic route (under the simulator on NumPy arrays; for real on a GPU)."""
import numpy as np
import pytest

import gpudl
from gpudl import backend
from gpudl.backend import to_numpy
from gpudl.kernels import scatter as K

# (rows, row shape, number of ids): repeated ids, a 1-wide row, multi-axis rows, more
# (segment, column) pairs than the simulator's 2 blocks x 32 threads
CASES = [(5, (3,), 9), (4, (), 7), (6, (2, 3), 11), (50, (4,), 200), (1, (5,), 3)]


@pytest.mark.parametrize("rows,tail,m", CASES)
def test_segment_scatter_add_equals_add_at(xp, dtype, rng, rows, tail, m):
    out = rng.standard_normal((rows,) + tail).astype(dtype)
    index = rng.integers(0, rows, m)
    values = rng.standard_normal((m,) + tail).astype(dtype)
    expected = out.copy()
    np.add.at(expected, index, values)
    got = xp.asarray(out)
    K.segment_scatter_add(got, xp.asarray(index), xp.asarray(values))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(to_numpy(got), expected, rtol=tol, atol=tol)


def test_repeated_runs_give_the_same_bits(xp, rng):
    index = rng.integers(0, 3, 500)
    values = (rng.standard_normal((500, 4)) * 10.0 ** rng.integers(-4, 4, (500, 1))).astype(np.float32)
    results = []
    for _ in range(3):
        out = xp.zeros((3, 4), np.float32)
        K.segment_scatter_add(out, xp.asarray(index), xp.asarray(values))
        results.append(to_numpy(out))
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_negative_ids_count_from_the_end(xp):
    out = xp.zeros((4, 2), np.float64)
    K.segment_scatter_add(out, xp.asarray(np.array([-1, 0, -1])), xp.asarray(np.ones((3, 2))))
    np.testing.assert_array_equal(to_numpy(out), [[1, 1], [0, 0], [0, 0], [2, 2]])


def test_bad_arguments_are_named(xp):
    out = xp.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match=r"expected values of shape \(3, 2\)"):
        K.segment_scatter_add(out, xp.asarray(np.array([0, 1, 2])), xp.zeros((3, 3), np.float32))
    with pytest.raises(TypeError, match="expected an integer index, got dtype float"):
        K.segment_scatter_add(out, xp.asarray(np.array([0.0, 1.0])), xp.zeros((2, 2), np.float32))


@pytest.mark.gpu
def test_backend_scatter_add_takes_the_fixed_order_path_when_deterministic(xp, rng, monkeypatch):
    if xp is np:
        pytest.skip("backend.scatter_add sends NumPy arrays to np.add.at, deterministic already")
    calls = []
    real = K.segment_scatter_add
    monkeypatch.setattr(K, "segment_scatter_add", lambda *a: calls.append(1) or real(*a))
    index = rng.integers(0, 6, 40)
    values = rng.standard_normal((40, 3)).astype(np.float32)
    expected = np.zeros((6, 3), np.float32)
    np.add.at(expected, index, values)
    old = gpudl.set_deterministic(True)
    try:
        out = xp.zeros((6, 3), np.float32)
        backend.scatter_add(out, xp.asarray(index), xp.asarray(values))
        # a tuple of id arrays over the two leading axes
        out2 = xp.zeros((2, 3, 3), np.float32)
        i, j = index % 2, index % 3
        backend.scatter_add(out2, (xp.asarray(i), xp.asarray(j)), xp.asarray(values))
    finally:
        gpudl.set_deterministic(old)
    assert len(calls) == 2
    np.testing.assert_allclose(to_numpy(out), expected, rtol=1e-5, atol=1e-5)
    expected2 = np.zeros((2, 3, 3), np.float32)
    np.add.at(expected2, (i, j), values)
    np.testing.assert_allclose(to_numpy(out2), expected2, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
def test_embedding_gradient_is_the_same_deterministic_or_not(xp, rng):
    if xp is np:
        pytest.skip("the NumPy backend's gradient is np.add.at either way")
    from gpudl import layers
    ids = rng.integers(0, 10, (8, 5))
    grads = []
    for flag in (False, True):
        old = gpudl.set_deterministic(flag)
        try:
            gpudl.set_seed(0)
            layer = layers.Embedding(10, 4)
            y = layer(gpudl.Tensor(xp.asarray(ids)))
            (y * y).sum().backward()
            grads.append(to_numpy(layer.params()[0].grad))
        finally:
            gpudl.set_deterministic(old)
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-5, atol=1e-6)
