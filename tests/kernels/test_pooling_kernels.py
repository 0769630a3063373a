"""Max-pooling kernels against a NumPy float64 reference with -inf padding."""
import numpy as np
import pytest

from gpudl.backend import to_numpy
from gpudl.kernels import pooling as P


def _windows(x, kernel, stride, pads):
    """(N, C, Ho, Wo, kh*kw) view of the -inf padded input, in float64."""
    top, bottom, left, right = pads
    xp_ = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (top, bottom), (left, right)),
                 constant_values=-np.inf)
    kh, kw = kernel
    Ho = (xp_.shape[2] - kh) // stride[0] + 1
    Wo = (xp_.shape[3] - kw) // stride[1] + 1
    win = np.empty(x.shape[:2] + (Ho, Wo, kh * kw))
    for ki in range(kh):
        for kj in range(kw):
            win[..., ki * kw + kj] = xp_[:, :, ki:ki + stride[0] * Ho:stride[0],
                                         kj:kj + stride[1] * Wo:stride[1]]
    return win


def _ref_backward(gy, idx, x_shape, kernel, stride, pads):
    """Scatter each window's gradient to its argmax (the kernel gathers)."""
    top, bottom, left, right = pads
    N, C, H, W = x_shape
    kh, kw = kernel
    gxp = np.zeros((N, C, H + top + bottom, W + left + right))
    n, c = np.meshgrid(np.arange(N), np.arange(C), indexing="ij")
    for i in range(gy.shape[2]):
        for j in range(gy.shape[3]):
            k = idx[:, :, i, j]
            np.add.at(gxp, (n, c, i * stride[0] + k // kw, j * stride[1] + k % kw),
                      gy[:, :, i, j].astype(np.float64))
    return gxp[:, :, top:top + H, left:left + W]


# (x shape, kernel, stride, pads (top, bottom, left, right))
CASES = [
    ((2, 3, 4, 6), (2, 2), (2, 2), (0, 0, 0, 0)),   # the common 2x2 / 2
    ((1, 2, 5, 5), (3, 3), (2, 2), (1, 1, 1, 1)),   # batch 1, overlapping windows, padding
    ((2, 2, 5, 6), (3, 2), (2, 1), (1, 0, 0, 1)),   # asymmetric kernel, stride and pads
    ((1, 1, 7, 3), (3, 3), (1, 1), (2, 1, 0, 2)),   # stride 1: every pixel in many windows
    ((1, 1, 4, 4), (2, 2), (2, 2), (2, 0, 0, 0)),   # a window made only of padding
    ((3, 3, 7, 8), (2, 2), (3, 3), (0, 1, 1, 0)),   # stride past the kernel; more samples and
                                                    # channels than the simulator's grid
]
IDS = ["2x2s2", "3x3s2-pad1", "asymmetric", "3x3s1", "all-padding-window", "stride-over-kernel"]


@pytest.mark.parametrize("x_shape,kernel,stride,pads", CASES, ids=IDS)
def test_forward_backward(xp, dtype, rng, poison, tol, x_shape, kernel, stride, pads):
    # small integers: ties in most windows, which the first max must win
    x = rng.integers(-2, 3, x_shape).astype(dtype)
    win = _windows(x, kernel, stride, pads)
    ref_y, ref_idx = win.max(axis=-1), win.argmax(axis=-1)
    poison(ref_y.size * dtype.itemsize, ref_y.size * 4)
    y, idx = P.max_pool2d_forward(xp.asarray(x), kernel, stride, pads)
    assert y.dtype == dtype and idx.dtype == np.int32
    np.testing.assert_array_equal(to_numpy(y), ref_y)
    np.testing.assert_array_equal(to_numpy(idx), ref_idx)

    gy = rng.standard_normal(ref_y.shape).astype(dtype)
    poison(x.nbytes)
    gx = P.max_pool2d_backward(xp.asarray(gy), idx, x_shape, kernel, stride, pads)
    assert gx.shape == x_shape and gx.dtype == dtype
    np.testing.assert_allclose(to_numpy(gx),
                               _ref_backward(gy, ref_idx, x_shape, kernel, stride, pads), **tol)


def test_nan_wins_its_window(xp, dtype):
    x = np.array([[[[1.0, np.nan, 5.0, 2.0],
                    [7.0, 3.0, 0.0, 1.0]]]], dtype=dtype)
    y, idx = P.max_pool2d_forward(xp.asarray(x), 2, 2, (0, 0, 0, 0))
    np.testing.assert_array_equal(to_numpy(y), [[[[np.nan, 5.0]]]])
    np.testing.assert_array_equal(to_numpy(idx), [[[[1, 0]]]])


def test_rejects_bad_input():
    x = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(ValueError, match="does not fit"):
        P.max_pool2d_forward(x, 5, 1, (0, 0, 0, 0))
    with pytest.raises(ValueError, match="NCHW"):
        P.max_pool2d_forward(np.zeros((4, 4), np.float32), 2, 2, (0, 0, 0, 0))
    with pytest.raises(ValueError, match="kernel and stride must be positive"):
        P.max_pool2d_forward(x, 2, 0, (0, 0, 0, 0))
    gy = np.zeros((1, 1, 2, 2), np.float32)
    with pytest.raises(TypeError, match="idx must have dtype int32, got int64"):
        P.max_pool2d_backward(gy, np.zeros((1, 1, 2, 2), np.int64), x.shape, 2, 2, (0, 0, 0, 0))
    with pytest.raises(ValueError, match=r"gy must have shape \(1, 1, 2, 2\)"):
        P.max_pool2d_backward(np.zeros((1, 1, 3, 2), np.float32), np.zeros((1, 1, 3, 2), np.int32),
                              x.shape, 2, 2, (0, 0, 0, 0))


def test_rejects_an_image_past_32_bit_positions():
    with pytest.raises(ValueError, match=r"H\*W must be at most 2\*\*31 - 1"):
        P._geometry("max_pool2d_forward", (1, 1, 65536, 32768), (65536, 32768), 1, (0, 0, 0, 0))
