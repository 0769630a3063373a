"""LSTM and GRU step kernels against the NumPy reference steps, evaluated in float64."""
import numpy as np
import pytest

from gpudl.backend import to_numpy
from gpudl.functional import recurrent as R
from gpudl.kernels import recurrent as K

# (batch, units): one unit, odd sizes, and 200 items > 2 blocks * 32 threads so the
# simulator runs the grid-stride loop past its first lap
SHAPES = [(1, 1), (3, 5), (5, 40)]


def _nan(xp, shape, dtype):
    """An output buffer full of NaN: an element the kernel forgets to write shows up."""
    return xp.full(shape, np.nan, dtype=dtype)


def _put(xp, *arrays):
    return [xp.asarray(a) for a in arrays]


@pytest.mark.parametrize("batch,n", SHAPES)
def test_lstm_steps_match_reference(xp, dtype, rng, tol, batch, n):
    z0 = rng.uniform(-4, 4, (batch, 4 * n)).astype(dtype)
    xw = rng.uniform(-2, 2, (batch, 4 * n)).astype(dtype)
    c_prev = rng.uniform(-2, 2, (batch, n)).astype(dtype)
    dh, dh_rec, dc = (rng.uniform(-1, 1, (batch, n)).astype(dtype) for _ in range(3))

    # the reference, in float64 from the same inputs
    z_ref = z0.astype(np.float64)
    c_ref, tc_ref, h_ref = (np.empty((batch, n)) for _ in range(3))
    R._lstm_forward_step(z_ref, xw.astype(np.float64), c_prev.astype(np.float64), c_ref, tc_ref, h_ref)
    dz_ref, dcp_ref = np.empty_like(z_ref), np.empty((batch, n))
    R._lstm_backward_step(z_ref, c_prev.astype(np.float64), tc_ref, dh.astype(np.float64),
                          dh_rec.astype(np.float64), dc.astype(np.float64), dz_ref, dcp_ref)

    z, xw_d, cp_d = _put(xp, z0, xw, c_prev)
    c, tc, h = (_nan(xp, (batch, n), dtype) for _ in range(3))
    K.lstm_forward_step(z, xw_d, cp_d, c, tc, h)
    for got, want, what in ((z, z_ref, "gates"), (c, c_ref, "c"), (tc, tc_ref, "tanh c"), (h, h_ref, "h")):
        assert got.dtype == dtype, what
        np.testing.assert_allclose(to_numpy(got), want, err_msg=what, **tol)

    # backward with dc_prev = dc, in place, as the sequence op runs it
    dz = _nan(xp, (batch, 4 * n), dtype)
    dcd, dh_d, dhr_d = _put(xp, dc, dh, dh_rec)
    K.lstm_backward_step(z, cp_d, tc, dh_d, dhr_d, dcd, dz, dcd)
    np.testing.assert_allclose(to_numpy(dz), dz_ref, err_msg="dz", **tol)
    np.testing.assert_allclose(to_numpy(dcd), dcp_ref, err_msg="dc_prev", **tol)


@pytest.mark.parametrize("batch,n", SHAPES)
def test_gru_steps_match_reference(xp, dtype, rng, tol, batch, n):
    hu0 = rng.uniform(-3, 3, (batch, 3 * n)).astype(dtype)
    xw = rng.uniform(-2, 2, (batch, 3 * n)).astype(dtype)
    b_rec = rng.uniform(-1, 1, 3 * n).astype(dtype)
    h_prev = rng.uniform(-1, 1, (batch, n)).astype(dtype)
    dh, dh_rec, dh_dir = (rng.uniform(-1, 1, (batch, n)).astype(dtype) for _ in range(3))
    f64 = [a.astype(np.float64) for a in (hu0, xw, b_rec, h_prev, dh, dh_rec, dh_dir)]

    hu_ref = f64[0].copy()
    hh_ref, h_ref = np.empty((batch, n)), np.empty((batch, n))
    R._gru_forward_step(hu_ref, f64[1], f64[2], f64[3], hh_ref, h_ref)
    dxw_ref, dhu_ref, dir_ref = np.empty_like(hu_ref), np.empty_like(hu_ref), f64[6].copy()
    R._gru_backward_step(hu_ref, hh_ref, f64[3], f64[4], f64[5], dir_ref, dxw_ref, dhu_ref)

    hu, xw_d, b_d, hp_d = _put(xp, hu0, xw, b_rec, h_prev)
    hh, h = _nan(xp, (batch, n), dtype), _nan(xp, (batch, n), dtype)
    K.gru_forward_step(hu, xw_d, b_d, hp_d, hh, h)
    for got, want, what in ((hu, hu_ref, "z, r, hu_h"), (hh, hh_ref, "candidate"), (h, h_ref, "h")):
        assert got.dtype == dtype, what
        np.testing.assert_allclose(to_numpy(got), want, err_msg=what, **tol)

    dxw, dhu = _nan(xp, (batch, 3 * n), dtype), _nan(xp, (batch, 3 * n), dtype)
    dh_d, dhr_d, dir_d = _put(xp, dh, dh_rec, dh_dir)
    K.gru_backward_step(hu, hh, hp_d, dh_d, dhr_d, dir_d, dxw, dhu)
    for got, want, what in ((dxw, dxw_ref, "dxw"), (dhu, dhu_ref, "dhu"), (dir_d, dir_ref, "dh_dir")):
        np.testing.assert_allclose(to_numpy(got), want, err_msg=what, **tol)


def test_nan_propagates_through_the_lstm_kernel(xp):
    z = np.zeros((1, 4), np.float32)
    xw = np.zeros_like(z)
    xw[0, 1] = np.nan  # the forget gate
    z_d, xw_d, cp = _put(xp, z, xw, np.ones((1, 1), np.float32))
    c, tc, h = (_nan(xp, (1, 1), np.float32) for _ in range(3))
    c.fill(0)
    K.lstm_forward_step(z_d, xw_d, cp, c, tc, h)
    assert np.isnan(to_numpy(h)[0, 0]) and np.isnan(to_numpy(c)[0, 0])


def test_launchers_check_shapes_dtypes_and_layout(xp):
    f32 = np.float32
    z, xw = xp.zeros((2, 8), f32), xp.zeros((2, 8), f32)
    c_prev, c, tc, h = (xp.zeros((2, 2), f32) for _ in range(4))
    with pytest.raises(ValueError, match=r"lstm_forward_step: xw must have shape \(2, 8\), got \(2, 6\)"):
        K.lstm_forward_step(z, xp.zeros((2, 6), f32), c_prev, c, tc, h)
    with pytest.raises(TypeError, match=r"lstm_forward_step: h must have the dtype of z \(float32\), got float64"):
        K.lstm_forward_step(z, xw, c_prev, c, tc, xp.zeros((2, 2), np.float64))
    with pytest.raises(ValueError, match=r"lstm_forward_step: c_prev must be C-contiguous"):
        K.lstm_forward_step(z, xw, xp.zeros((2, 4), f32)[:, ::2], c, tc, h)
    hu, xw3 = xp.zeros((2, 6), f32), xp.zeros((2, 6), f32)
    with pytest.raises(ValueError, match=r"gru_forward_step: b_rec must have shape \(6,\), got \(5,\)"):
        K.gru_forward_step(hu, xw3, xp.zeros(5, f32), c_prev, c, h)
