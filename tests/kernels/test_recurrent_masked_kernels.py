"""The masked LSTM and GRU step kernels (a mask row and a recurrent dropout multiplier) against
the NumPy reference steps, evaluated in float64."""
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


def _mask_and_multiplier(rng, batch, n, dtype, ones=False):
    m = (rng.random(batch) > 0.5).astype(dtype)
    m[0] = 0                      # one masked row at least, and an unmasked one if there are two
    if batch > 1:
        m[-1] = 1
    if ones:
        return m, np.ones((batch, n), dtype)
    return m, ((rng.random((batch, n)) > 0.3) / 0.7).astype(dtype)


@pytest.mark.parametrize("alias", [False, True], ids=["hr", "hr-is-h"])
@pytest.mark.parametrize("batch,n", SHAPES)
def test_masked_lstm_steps_match_reference(xp, dtype, rng, tol, batch, n, alias):
    z0 = rng.uniform(-4, 4, (batch, 4 * n)).astype(dtype)
    xw = rng.uniform(-2, 2, (batch, 4 * n)).astype(dtype)
    c_prev, h_prev = (rng.uniform(-2, 2, (batch, n)).astype(dtype) for _ in range(2))
    dh, dh_rec, dh_skip, dc = (rng.uniform(-1, 1, (batch, n)).astype(dtype) for _ in range(4))
    m, Rm = _mask_and_multiplier(rng, batch, n, dtype, ones=alias)
    f64 = [a.astype(np.float64) for a in (z0, xw, c_prev, h_prev, m, Rm, dh, dh_rec, dh_skip, dc)]

    z_ref = f64[0].copy()
    c_ref, tc_ref, h_ref, hr_ref = (np.empty((batch, n)) for _ in range(4))
    R._lstm_forward_step_masked(z_ref, *f64[1:6], c_ref, tc_ref, h_ref, hr_ref)
    dz_ref, skip_ref, dc_ref = np.empty_like(z_ref), f64[8].copy(), f64[9].copy()
    R._lstm_backward_step_masked(z_ref, f64[2], tc_ref, f64[4], f64[5], f64[6], f64[7], skip_ref,
                                 dc_ref, dz_ref, dc_ref)

    z, xw_d, cp_d, hp_d, m_d, R_d = _put(xp, z0, xw, c_prev, h_prev, m, Rm)
    c, tc, h = (_nan(xp, (batch, n), dtype) for _ in range(3))
    hr = h if alias else _nan(xp, (batch, n), dtype)
    K.lstm_forward_step_masked(z, xw_d, cp_d, hp_d, m_d, R_d, c, tc, h, hr)
    for got, want, what in ((z, z_ref, "gates"), (c, c_ref, "c"), (tc, tc_ref, "tanh c"), (h, h_ref, "h"),
                            (hr, hr_ref, "h * R")):
        assert got.dtype == dtype, what
        np.testing.assert_allclose(to_numpy(got), want, err_msg=what, **tol)
    masked = m == 0
    np.testing.assert_array_equal(to_numpy(h)[masked], h_prev[masked])  # carried exactly
    np.testing.assert_array_equal(to_numpy(c)[masked], c_prev[masked])

    # backward with dc_prev = dc, in place, as the sequence op runs it
    dz = _nan(xp, (batch, 4 * n), dtype)
    dc_d, dh_d, dhr_d, skip_d = _put(xp, dc, dh, dh_rec, dh_skip)
    K.lstm_backward_step_masked(z, cp_d, tc, m_d, R_d, dh_d, dhr_d, skip_d, dc_d, dz, dc_d)
    for got, want, what in ((dz, dz_ref, "dz"), (dc_d, dc_ref, "dc_prev"), (skip_d, skip_ref, "dh_skip")):
        np.testing.assert_allclose(to_numpy(got), want, err_msg=what, **tol)
    np.testing.assert_array_equal(to_numpy(dz)[masked], 0)


@pytest.mark.parametrize("batch,n", SHAPES)
def test_masked_gru_steps_match_reference(xp, dtype, rng, tol, batch, n):
    hu0 = rng.uniform(-3, 3, (batch, 3 * n)).astype(dtype)
    xw = rng.uniform(-2, 2, (batch, 3 * n)).astype(dtype)
    b_rec = rng.uniform(-1, 1, 3 * n).astype(dtype)
    h_prev, dh, dh_rec, dh_dir = (rng.uniform(-1, 1, (batch, n)).astype(dtype) for _ in range(4))
    m, Rm = _mask_and_multiplier(rng, batch, n, dtype)
    f64 = [a.astype(np.float64) for a in (hu0, xw, b_rec, h_prev, m, Rm, dh, dh_rec, dh_dir)]

    hu_ref = f64[0].copy()
    hh_ref, h_ref, hr_ref = (np.empty((batch, n)) for _ in range(3))
    R._gru_forward_step_masked(hu_ref, *f64[1:6], hh_ref, h_ref, hr_ref)
    dxw_ref, dhu_ref, dir_ref = np.empty_like(hu_ref), np.empty_like(hu_ref), f64[8].copy()
    R._gru_backward_step_masked(hu_ref, hh_ref, f64[3], f64[4], f64[5], f64[6], f64[7], dir_ref,
                                dxw_ref, dhu_ref)

    hu, xw_d, b_d, hp_d, m_d, R_d = _put(xp, hu0, xw, b_rec, h_prev, m, Rm)
    hh, h, hr = (_nan(xp, (batch, n), dtype) for _ in range(3))
    K.gru_forward_step_masked(hu, xw_d, b_d, hp_d, m_d, R_d, hh, h, hr)
    for got, want, what in ((hu, hu_ref, "z, r, hu_h"), (hh, hh_ref, "candidate"), (h, h_ref, "h"),
                            (hr, hr_ref, "h * R")):
        assert got.dtype == dtype, what
        np.testing.assert_allclose(to_numpy(got), want, err_msg=what, **tol)
    np.testing.assert_array_equal(to_numpy(h)[m == 0], h_prev[m == 0])

    dxw, dhu = _nan(xp, (batch, 3 * n), dtype), _nan(xp, (batch, 3 * n), dtype)
    dh_d, dhr_d, dir_d = _put(xp, dh, dh_rec, dh_dir)
    K.gru_backward_step_masked(hu, hh, hp_d, m_d, R_d, dh_d, dhr_d, dir_d, dxw, dhu)
    for got, want, what in ((dxw, dxw_ref, "dxw"), (dhu, dhu_ref, "dhu"), (dir_d, dir_ref, "dh_dir")):
        np.testing.assert_allclose(to_numpy(got), want, err_msg=what, **tol)


def test_masked_launchers_check_the_mask_and_multiplier(xp):
    f32 = np.float32
    z, xw = xp.zeros((2, 8), f32), xp.zeros((2, 8), f32)
    c_prev, h_prev, Rm, c, tc, h = (xp.zeros((2, 2), f32) for _ in range(6))
    with pytest.raises(ValueError, match=r"lstm_forward_step_masked: m must have shape \(2,\), got \(3,\)"):
        K.lstm_forward_step_masked(z, xw, c_prev, h_prev, xp.ones(3, f32), Rm, c, tc, h, h)
    with pytest.raises(ValueError, match=r"lstm_forward_step_masked: R must have shape \(2, 2\), got \(2, 3\)"):
        K.lstm_forward_step_masked(z, xw, c_prev, h_prev, xp.ones(2, f32), xp.ones((2, 3), f32), c, tc, h, h)
    with pytest.raises(TypeError, match=r"gru_backward_step_masked: m must have the dtype of .*got float64"):
        K.gru_backward_step_masked(xp.zeros((2, 6), f32), c, h_prev, xp.ones(2, np.float64), Rm, c, c, c,
                                   xp.zeros((2, 6), f32), xp.zeros((2, 6), f32))
    with pytest.raises(ValueError, match=r"gru_forward_step_masked: m must be C-contiguous"):
        K.gru_forward_step_masked(xp.zeros((2, 6), f32), xp.zeros((2, 6), f32), xp.zeros(6, f32), h_prev,
                                  xp.ones(4, f32)[::2], Rm, c, h, h)
