"""ReLU, leaky ReLU and bias + ReLU kernels against NumPy float64 references."""
import numpy as np
import pytest

from gpudl.backend import to_numpy
from gpudl.kernels import activation as A

# (1,), odd sizes, and sizes past 4 * (2 blocks * 32 threads) so the simulator runs both the
# four-wide loop and its tail
SHAPES = [(1,), (7, 3), (2, 3, 5, 7), (1001,)]


def _data(rng, shape, dtype):
    x = rng.standard_normal(shape)
    x.reshape(-1)[::5] = 0.0  # exact zeros: the boundary of every branch
    return x.astype(dtype)


@pytest.mark.parametrize("shape", SHAPES)
def test_relu_forward_backward(xp, dtype, rng, poison, shape):
    x = _data(rng, shape, dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    poison(x.nbytes)
    y = A.relu_forward(xp.asarray(x))
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_array_equal(to_numpy(y), np.maximum(x.astype(np.float64), 0.0))
    poison(x.nbytes)
    gx = A.relu_backward(y, xp.asarray(gy))
    np.testing.assert_array_equal(to_numpy(gx), np.where(x.astype(np.float64) > 0, gy, 0.0))


@pytest.mark.parametrize("shape", SHAPES)
def test_leaky_relu_forward_backward(xp, dtype, rng, poison, tol, shape):
    alpha = 0.1
    x = _data(rng, shape, dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    x64 = x.astype(np.float64)
    poison(x.nbytes)
    y = A.leaky_relu_forward(xp.asarray(x), alpha)
    assert y.dtype == dtype
    np.testing.assert_allclose(to_numpy(y), np.where(x64 > 0, x64, alpha * x64), **tol)
    poison(x.nbytes)
    gx = A.leaky_relu_backward(xp.asarray(x), xp.asarray(gy), alpha)
    np.testing.assert_allclose(to_numpy(gx), np.where(x64 > 0, gy, alpha * gy.astype(np.float64)),
                               **tol)


# (5, 70): more positions than the simulator's 2 x 32 threads, so the grid-stride loop runs
@pytest.mark.parametrize("shape", [(1, 3), (5, 7), (2, 3, 4, 5), (1, 5, 3, 7), (5, 70), (3, 2, 5, 9)])
def test_bias_relu_forward(xp, dtype, rng, poison, tol, shape):
    x = _data(rng, shape, dtype)
    b = rng.standard_normal(shape[1]).astype(dtype)
    poison(x.nbytes)
    y = A.bias_relu_forward(xp.asarray(x), xp.asarray(b))
    bb = b.astype(np.float64).reshape((1, -1) + (1,) * (len(shape) - 2))
    np.testing.assert_allclose(to_numpy(y), np.maximum(x.astype(np.float64) + bb, 0.0), **tol)


@pytest.mark.parametrize("with_bias,relu", [(True, False), (False, True), (False, False)])
def test_bias_relu_forward_options_in_place(xp, dtype, rng, with_bias, relu):
    x = _data(rng, (3, 4, 2, 5), dtype)
    x.reshape(-1)[7] = np.nan
    b = rng.standard_normal(4).astype(dtype)
    want = x.astype(np.float64) + (b.astype(np.float64)[None, :, None, None] if with_bias else 0.0)
    if relu:
        want = np.where(want < 0, 0.0, want)  # NaN kept
    X = xp.asarray(x)
    y = A.bias_relu_forward(X, xp.asarray(b) if with_bias else None, relu=relu, out=X)
    assert y is X
    np.testing.assert_array_equal(to_numpy(y), want.astype(dtype))


@pytest.mark.parametrize("shape", [(2, 3), (3, 4, 2, 5), (2, 3, 9, 4)])
@pytest.mark.parametrize("masked", [False, True])
def test_channel_major(xp, dtype, rng, poison, shape, masked):
    g = rng.standard_normal(shape).astype(dtype)
    y = np.maximum(_data(rng, shape, dtype), 0)
    y.reshape(-1)[3] = np.nan  # not positive: masked out
    want = np.where(y > 0, g, 0.0) if masked else g
    poison(g.nbytes)
    out = A.channel_major(xp.asarray(g), xp.asarray(y) if masked else None)
    assert out.shape == (shape[1], shape[0]) + shape[2:] and out.dtype == dtype
    np.testing.assert_array_equal(to_numpy(out), np.swapaxes(want, 0, 1))


def test_nan_passes_through_forward(xp, dtype):
    x = np.array([np.nan, -1.0, 2.0, -np.inf, np.inf], dtype=dtype)
    y = to_numpy(A.relu_forward(xp.asarray(x)))
    np.testing.assert_array_equal(y, [np.nan, 0.0, 2.0, 0.0, np.inf])
    y = to_numpy(A.leaky_relu_forward(xp.asarray(x), 0.5))
    np.testing.assert_array_equal(y, [np.nan, -0.5, 2.0, -np.inf, np.inf])


def test_empty_input(xp, dtype):
    y = A.relu_forward(xp.zeros((0, 3), dtype=dtype))
    assert y.shape == (0, 3)


# The checks below fail before any launch: they need neither a GPU nor the simulator.

def test_rejects_integer_input():
    with pytest.raises(TypeError, match="float32 or float64, got int64"):
        A.relu_forward(np.arange(4))


def test_rejects_mixed_float_types():
    with pytest.raises(TypeError, match="gy must have the dtype of y"):
        A.relu_backward(np.zeros(3, np.float32), np.zeros(3, np.float64))


def test_rejects_non_contiguous():
    with pytest.raises(ValueError, match="C-contiguous"):
        A.relu_forward(np.zeros((4, 4), np.float32).T)


def test_rejects_wrong_bias_shape():
    with pytest.raises(ValueError, match=r"b must have shape \(3,\), got \(4,\)"):
        A.bias_relu_forward(np.zeros((2, 3), np.float32), np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="got shape"):
        A.bias_relu_forward(np.zeros((2, 3, 4), np.float32), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"out must have shape \(2, 3\), got \(3, 2\)"):
        A.bias_relu_forward(np.zeros((2, 3), np.float32), None, out=np.zeros((3, 2), np.float32))


def test_rejects_a_mask_of_another_shape():
    with pytest.raises(ValueError, match=r"relu_y must have shape \(2, 3\)"):
        A.channel_major(np.zeros((2, 3), np.float32), np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match=r"g must be \(N, C, ...\), got shape \(3,\)"):
        A.channel_major(np.zeros(3, np.float32))


def test_rejects_extents_past_32_bits():
    class Huge:  # only the shape is read before the check
        shape = (1, 2**31)
        ndim = 2
    with pytest.raises(ValueError, match=r"C\*H\*W \(one sample\) must be at most 2\*\*31 - 1"):
        A._per_channel("bias_relu_forward", Huge())


def test_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="gy must have shape"):
        A.relu_backward(np.zeros(3, np.float32), np.zeros(4, np.float32))
