"""Maxout kernels against a NumPy float64 reference."""
import numpy as np
import pytest

from gpudl.backend import to_numpy
from gpudl.kernels import maxout as M


def _reference(x, pieces):
    """y, idx by reshaping axis 1 into (C, pieces): the first max wins, as in np.argmax."""
    n, cp = x.shape[:2]
    g = x.astype(np.float64).reshape((n, cp // pieces, pieces) + x.shape[2:])
    return g.max(axis=2), g.argmax(axis=2)


def _reference_backward(gy, idx, pieces):
    n, c = gy.shape[:2]
    gx = np.zeros((n, c, pieces) + gy.shape[2:])
    np.put_along_axis(gx, np.expand_dims(idx.astype(np.int64), 2),
                      np.expand_dims(gy.astype(np.float64), 2), axis=2)
    return gx.reshape((n, c * pieces) + gy.shape[2:])


CASES = [
    ((2, 12, 3, 2), 4),   # NCHW
    ((1, 6), 3),          # dense layer, batch 1
    ((3, 10, 5), 2),      # odd inner size
    ((2, 3, 3), 1),       # one piece: identity
    ((2, 8, 33), 2),      # more outputs than the simulator's grid: the stride loop
    ((2, 390, 2), 130),   # past int8's 127 pieces: an int32 argmax
    ((1, 254, 70), 127),  # the most an int8 argmax holds, and the stride loop over groups
]


@pytest.mark.parametrize("shape,pieces", CASES)
def test_forward_backward(xp, dtype, rng, poison, shape, pieces):
    # small integers: many ties, all exactly representable
    x = rng.integers(-3, 4, shape).astype(dtype)
    poison(x.nbytes // pieces, x.size // pieces)
    y, idx = M.maxout_forward(xp.asarray(x), pieces)
    ry, ridx = _reference(x, pieces)
    assert y.dtype == dtype and idx.dtype == (np.int8 if pieces <= 127 else np.int32)
    np.testing.assert_array_equal(to_numpy(y), ry)
    np.testing.assert_array_equal(to_numpy(idx), ridx)

    gy = rng.standard_normal(ry.shape).astype(dtype)
    poison(x.nbytes)
    gx = M.maxout_backward(xp.asarray(gy), idx, pieces)
    assert gx.shape == x.shape and gx.dtype == dtype
    np.testing.assert_array_equal(to_numpy(gx), _reference_backward(gy, ridx, pieces))


def test_first_max_wins_ties(xp, dtype):
    x = np.array([[1.0, 3.0, 3.0, 0.0, 2.0, 2.0, 2.0, 2.0]], dtype=dtype)
    y, idx = M.maxout_forward(xp.asarray(x), 4)
    np.testing.assert_array_equal(to_numpy(y), [[3.0, 2.0]])
    np.testing.assert_array_equal(to_numpy(idx), [[1, 0]])


def test_nan_wins_its_group(xp, dtype):
    x = np.array([[1.0, np.nan, 5.0, np.nan, 0.0, 1.0]], dtype=dtype)
    y, idx = M.maxout_forward(xp.asarray(x), 3)
    ry, ridx = _reference(x, 3)
    np.testing.assert_array_equal(to_numpy(y), ry)      # [nan, 1]
    np.testing.assert_array_equal(to_numpy(idx), ridx)  # [1, 2]


def test_argmax_dtype_widens_past_127_pieces():
    assert [M.argmax_dtype(k) for k in (1, 127, 128, 100000)] == [np.int8, np.int8, np.int32, np.int32]


def test_rejects_bad_pieces():
    x = np.zeros((2, 6), np.float32)
    with pytest.raises(ValueError, match="divisible by pieces=4"):
        M.maxout_forward(x, 4)
    with pytest.raises(ValueError, match="pieces must be a positive int, got 0"):
        M.maxout_forward(x, 0)
    with pytest.raises(TypeError, match="pieces must be an int"):
        M.maxout_forward(x, 2.0)


def test_rejects_bad_idx():
    gy = np.zeros((2, 3), np.float32)
    with pytest.raises(TypeError, match="idx must have dtype int8, got int32"):
        M.maxout_backward(gy, np.zeros((2, 3), np.int32), 2)
    with pytest.raises(TypeError, match="idx must have dtype int32, got int8"):
        M.maxout_backward(gy, np.zeros((2, 3), np.int8), 130)
    with pytest.raises(ValueError, match="idx must have shape"):
        M.maxout_backward(gy, np.zeros((2, 4), np.int8), 2)
