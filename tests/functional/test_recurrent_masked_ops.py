"""The fused recurrent ops with a mask and a recurrent dropout multiplier: lstm_sequence,
gru_sequence and the cells against NumPy float64 loops of the masked equations, float64
gradient checks, the compiled masked steps against their NumPy twins, the unmasked path
left as it was, one answer on every backend, and the argument errors."""

import numpy as np
import pytest

import gpudl
from gpudl import backend
from gpudl import functional as F
from gpudl.functional import recurrent as R
from gpudl.testing import gradcheck
from harness import GRAD, rand

numba = pytest.importorskip("numba")
from gpudl.functional import _recurrent_jit as J  # noqa: E402


@pytest.fixture(params=["compiled", "numpy"])
def cpu_jit(request, monkeypatch):
    """Run the test with the compiled step loops and again with the NumPy twins."""
    monkeypatch.setattr(R, "_cpu_jit", request.param == "compiled")
    return request.param


def _sig(x):
    return 1 / (1 + np.exp(-x))


def _keep(m, t):
    return (np.asarray(m[t]) != 0)[:, None]


def ref_lstm(xw, h0, c0, U, mask=None, rmask=None):
    """The masked LSTM in NumPy float64: the matmul reads h * rmask; a masked row keeps h, c."""
    n = h0.shape[1]
    mask = np.ones(xw.shape[:2]) if mask is None else mask
    rmask = 1.0 if rmask is None else rmask
    h, c, hs = h0, c0, []
    for t in range(xw.shape[0]):
        z = xw[t] + (h * rmask) @ U
        i, f, g, o = _sig(z[:, :n]), _sig(z[:, n:2 * n]), np.tanh(z[:, 2 * n:3 * n]), _sig(z[:, 3 * n:])
        c_new = f * c + i * g
        h_new = o * np.tanh(c_new)
        c = np.where(_keep(mask, t), c_new, c)
        h = np.where(_keep(mask, t), h_new, h)
        hs.append(h)
    return np.stack(hs), c


def ref_gru(xw, h0, U, b, mask=None, rmask=None):
    """The masked GRU (reset after): hu = (h * rmask) @ U + b; z * h keeps h whole."""
    n = h0.shape[1]
    mask = np.ones(xw.shape[:2]) if mask is None else mask
    rmask = 1.0 if rmask is None else rmask
    h, hs = h0, []
    for t in range(xw.shape[0]):
        hu = (h * rmask) @ U + b
        z, r = _sig(xw[t, :, :n] + hu[:, :n]), _sig(xw[t, :, n:2 * n] + hu[:, n:2 * n])
        hh = np.tanh(xw[t, :, 2 * n:] + r * hu[:, 2 * n:])
        h = np.where(_keep(mask, t), z * h + (1 - z) * hh, h)
        hs.append(h)
    return np.stack(hs)


def ref_gru_before(xw, h, U, keep, rmask):
    n = h.shape[1]
    hr = h * rmask
    z, r = _sig(xw[:, :n] + hr @ U[:, :n]), _sig(xw[:, n:2 * n] + hr @ U[:, n:2 * n])
    hh = np.tanh(xw[:, 2 * n:] + (r * hr) @ U[:, 2 * n:])
    return np.where(keep[:, None], z * h + (1 - z) * hh, h)


def _mask(steps, batch, seed):
    """A mask with masked steps at the start, inside and at the end of rows, and a row that
    is never masked; batch 1 gets a masked first and last step."""
    m = np.random.default_rng(seed).random((steps, batch)) > 0.35
    m[0, 0] = False
    if steps > 2:
        m[-1, 0] = False
        m[1, 0] = True
    if batch > 1:
        m[:, -1] = True
    return m


def _rmask(batch, n, seed, rate=0.3):
    keep = np.random.default_rng(seed).random((batch, n)) >= rate
    return keep / (1 - rate)


def _lstm_inputs(steps, batch, n, seed=0):
    return (rand((steps, batch, 4 * n), seed, -2, 2), rand((batch, n), seed + 1),
            rand((batch, n), seed + 2), rand((n, 4 * n), seed + 3))


def _gru_inputs(steps, batch, n, seed=0):
    return (rand((steps, batch, 3 * n), seed, -2, 2), rand((batch, n), seed + 1),
            rand((n, 3 * n), seed + 2), rand((3 * n,), seed + 3))


WHICH = ["mask", "recurrent_mask", "both"]


def _masks(which, steps, batch, n, seed):
    m = _mask(steps, batch, seed) if which in ("mask", "both") else None
    r = _rmask(batch, n, seed + 1) if which in ("recurrent_mask", "both") else None
    return m, r


# ---- forward against the NumPy loops ------------------------------------------------------

@pytest.mark.parametrize("which", WHICH)
@pytest.mark.parametrize("steps,batch,n", [(1, 1, 1), (6, 3, 4), (9, 2, 3)])
def test_masked_lstm_sequence_forward(cpu_jit, which, steps, batch, n):
    xw, h0, c0, U = _lstm_inputs(steps, batch, n)
    m, r = _masks(which, steps, batch, n, seed=steps)
    want_hs, want_c = ref_lstm(xw, h0, c0, U, m, r)
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 2e-5)):
        args = [gpudl.Tensor(a.astype(dtype)) for a in (xw, h0, c0, U)]
        hs, c = F.lstm_sequence(*args, mask=m, recurrent_mask=r)
        assert hs.dtype == dtype and c.dtype == dtype
        np.testing.assert_allclose(hs.numpy(), want_hs, rtol=tol, atol=tol)
        np.testing.assert_allclose(c.numpy(), want_c, rtol=tol, atol=tol)


@pytest.mark.parametrize("which", WHICH)
@pytest.mark.parametrize("steps,batch,n", [(1, 1, 1), (6, 3, 4), (9, 2, 3)])
def test_masked_gru_sequence_forward(cpu_jit, which, steps, batch, n):
    xw, h0, U, b = _gru_inputs(steps, batch, n)
    m, r = _masks(which, steps, batch, n, seed=steps + 1)
    want = ref_gru(xw, h0, U, b, m, r)
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 2e-5)):
        hs = F.gru_sequence(*(gpudl.Tensor(a.astype(dtype)) for a in (xw, h0, U, b)), mask=m, recurrent_mask=r)
        assert hs.dtype == dtype
        np.testing.assert_allclose(hs.numpy(), want, rtol=tol, atol=tol)


def test_a_masked_step_carries_the_states_exactly(cpu_jit):
    xw, h0, c0, U = _lstm_inputs(4, 2, 3, seed=3)
    m = np.ones((4, 2), bool)
    m[:, 0] = False            # row 0 never updates
    m[2, 1] = False            # row 1 skips step 2
    hs, c = F.lstm_sequence(xw, h0, c0, U, mask=m)
    hs = hs.numpy()
    np.testing.assert_array_equal(hs[:, 0], np.broadcast_to(h0[0], (4, 3)))
    np.testing.assert_array_equal(c.numpy()[0], c0[0])
    np.testing.assert_array_equal(hs[2, 1], hs[1, 1])
    g = F.gru_sequence(*_gru_inputs(4, 2, 3, seed=3), mask=m).numpy()
    np.testing.assert_array_equal(g[:, 0], np.broadcast_to(_gru_inputs(4, 2, 3, seed=3)[1][0], (4, 3)))
    np.testing.assert_array_equal(g[2, 1], g[1, 1])


def test_a_0_1_float_mask_means_the_boolean_one(cpu_jit):
    xw, h0, c0, U = _lstm_inputs(5, 3, 2, seed=4)
    m = _mask(5, 3, seed=4)
    a = F.lstm_sequence(xw, h0, c0, U, mask=m)[0].numpy()
    b = F.lstm_sequence(xw, h0, c0, U, mask=gpudl.Tensor(m.astype(np.float32)))[0].numpy()
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("act", ["tanh", "relu", "sigmoid", "linear"])
def test_masked_simple_rnn_cell_forward(act):
    xw, h, U = rand((3, 4), 1, -2, 2), rand((3, 4), 2), rand((4, 4), 3)
    keep, r = np.array([True, False, True]), _rmask(3, 4, 4)
    fn = {"tanh": np.tanh, "relu": lambda a: np.maximum(a, 0), "sigmoid": _sig, "linear": lambda a: a}[act]
    want = np.where(keep[:, None], fn(xw + (h * r) @ U), h)
    got = F.simple_rnn_cell(xw, h, U, act, mask=keep, recurrent_mask=r).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_masked_cells_are_one_step_of_the_sequences(cpu_jit):
    keep, r = np.array([False, True, True]), _rmask(3, 4, 5)
    xw, h0, c0, U = _lstm_inputs(1, 3, 4, seed=6)
    h, c = F.lstm_cell(xw[0], h0, c0, U, mask=keep, recurrent_mask=r)
    want_hs, want_c = ref_lstm(xw, h0, c0, U, keep[None], r)
    np.testing.assert_allclose(h.numpy(), want_hs[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c.numpy(), want_c, rtol=1e-12, atol=1e-14)
    gx, gh, gU, gb = _gru_inputs(1, 3, 4, seed=6)
    got = F.gru_cell(gx[0], gh, gU, gb, mask=keep, recurrent_mask=r).numpy()
    np.testing.assert_allclose(got, ref_gru(gx, gh, gU, gb, keep[None], r)[0], rtol=1e-12, atol=1e-14)
    got = F.gru_cell(gx[0], gh, gU, reset_after=False, mask=keep, recurrent_mask=r).numpy()
    np.testing.assert_allclose(got, ref_gru_before(gx[0], gh, gU, keep, r), rtol=1e-12, atol=1e-14)


# ---- gradient checks ------------------------------------------------------------------------

SHAPES = [(1, 1, 2), (6, 3, 2), (9, 1, 3)]


@pytest.mark.parametrize("which", WHICH)
@pytest.mark.parametrize("steps,batch,n", SHAPES)
def test_masked_lstm_sequence_gradcheck(cpu_jit, which, steps, batch, n):
    xs = [gpudl.Tensor(a, requires_grad=True) for a in _lstm_inputs(steps, batch, n, seed=steps)]
    m, r = _masks(which, steps, batch, n, seed=steps + 2)

    def both(*t):  # gradient through every hidden state and the last cell state at once
        hs, c = F.lstm_sequence(*t, mask=m, recurrent_mask=r)
        return hs * 1.5 + c
    assert gradcheck(both, xs, **GRAD)
    assert gradcheck(lambda *t: F.lstm_sequence(*t, mask=m, recurrent_mask=r)[0][-1], xs, **GRAD)


@pytest.mark.parametrize("which", WHICH)
@pytest.mark.parametrize("steps,batch,n", SHAPES)
def test_masked_gru_sequence_gradcheck(cpu_jit, which, steps, batch, n):
    xs = [gpudl.Tensor(a, requires_grad=True) for a in _gru_inputs(steps, batch, n, seed=steps)]
    m, r = _masks(which, steps, batch, n, seed=steps + 3)
    assert gradcheck(lambda *t: F.gru_sequence(*t, mask=m, recurrent_mask=r), xs, **GRAD)
    assert gradcheck(lambda *t: F.gru_sequence(*t, mask=m, recurrent_mask=r)[-1], xs, **GRAD)


@pytest.mark.parametrize("act", ["tanh", "relu", "sigmoid", "linear"])
@pytest.mark.parametrize("batch", [1, 3, 4])
def test_masked_simple_rnn_cell_gradcheck(act, batch):
    keep = np.arange(batch) % 2 == 1  # batch 1: its one row masked
    xs = [gpudl.Tensor(a, requires_grad=True)
          for a in (rand((batch, 3), batch, -2, 2, away_from=0.0), rand((batch, 3), 7), rand((3, 3), 8))]
    r = _rmask(batch, 3, 9)
    assert gradcheck(lambda *t: F.simple_rnn_cell(*t, activation=act, mask=keep, recurrent_mask=r), xs, **GRAD)
    assert gradcheck(lambda *t: F.simple_rnn_cell(*t, activation=act, mask=~keep), xs, **GRAD)


@pytest.mark.parametrize("batch", [1, 2, 4])
def test_masked_gru_reset_before_cell_gradcheck(batch):
    keep = np.arange(batch) % 2 == 0
    xs = [gpudl.Tensor(a, requires_grad=True) for a in (rand((batch, 9), 1, -2, 2), rand((batch, 3), 2),
                                                          rand((3, 9), 3))]
    r = _rmask(batch, 3, 4)
    for m, rm in ((keep, r), (~keep, None), (None, r)):
        assert gradcheck(lambda *t: F.gru_cell(*t, reset_after=False, mask=m, recurrent_mask=rm), xs, **GRAD)


def test_gradient_of_a_fully_masked_sequence_goes_to_the_initial_states(cpu_jit):
    xw, h0, c0, U = (gpudl.Tensor(a, requires_grad=True) for a in _lstm_inputs(3, 2, 2, seed=8))
    hs, c = F.lstm_sequence(xw, h0, c0, U, mask=np.zeros((3, 2), bool))
    (hs.sum() + 2.0 * c.sum()).backward()
    np.testing.assert_array_equal(h0.grad, np.full((2, 2), 3.0))   # three outputs, each h0
    np.testing.assert_array_equal(c0.grad, np.full((2, 2), 2.0))
    assert not xw.grad.any() and not U.grad.any()


# ---- the compiled masked steps against their NumPy twins ------------------------------------

def _step_data(rng, batch, n, k, dtype):
    m = (rng.random(batch) > 0.4).astype(dtype)
    m[0] = 0
    if batch > 1:
        m[-1] = 1
    Rm = (rng.random((batch, n)) > 0.3).astype(dtype) / dtype(0.7)
    return m, Rm


@pytest.mark.parametrize("alias", [False, True], ids=["hr", "hr-is-h"])
@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-6), (np.float64, 1e-13)])
@pytest.mark.parametrize("batch,n", [(1, 1), (3, 5), (17, 33)])
def test_compiled_masked_lstm_steps_match_numpy_twins(dtype, tol, batch, n, alias):
    rng = np.random.default_rng(batch * n + 1)
    z0 = rng.uniform(-4, 4, (batch, 4 * n)).astype(dtype)
    xw = rng.uniform(-2, 2, (batch, 4 * n)).astype(dtype)
    c_prev, h_prev, dh, dh_rec, dh_skip, dc = (rng.uniform(-1, 1, (batch, n)).astype(dtype) for _ in range(6))
    m, Rm = _step_data(rng, batch, n, 4, dtype)
    if alias:
        Rm = np.ones_like(Rm)

    def run(fwd, bwd):
        z = z0.copy()
        c, tc, h = (np.empty((batch, n), dtype) for _ in range(3))
        hr = h if alias else np.empty((batch, n), dtype)
        fwd(z, xw, c_prev, h_prev, m, Rm, c, tc, h, hr)
        dz, d_c, skip = np.empty_like(z), dc.copy(), dh_skip.copy()
        bwd(z, c_prev, tc, m, Rm, dh, dh_rec, skip, d_c, dz, d_c)
        return z, c, tc, h, hr.copy(), dz, d_c, skip
    jit = run(J.lstm_forward_step_masked, J.lstm_backward_step_masked)
    twin = run(R._lstm_forward_step_masked, R._lstm_backward_step_masked)
    for a, b, what in zip(jit, twin, ("gates", "c", "tanh c", "h", "hr", "dz", "dc_prev", "dh_skip")):
        assert a.dtype == dtype and b.dtype == dtype, what
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=what)
    masked = m == 0
    np.testing.assert_array_equal(jit[3][masked], h_prev[masked])
    np.testing.assert_array_equal(jit[5][masked], 0)


@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-6), (np.float64, 1e-13)])
@pytest.mark.parametrize("batch,n", [(1, 1), (3, 5), (17, 33)])
def test_compiled_masked_gru_steps_match_numpy_twins(dtype, tol, batch, n):
    rng = np.random.default_rng(batch + n + 2)
    hu0 = rng.uniform(-3, 3, (batch, 3 * n)).astype(dtype)
    xw = rng.uniform(-2, 2, (batch, 3 * n)).astype(dtype)
    b_rec = rng.uniform(-1, 1, 3 * n).astype(dtype)
    h_prev, dh, dh_rec, dh_dir = (rng.uniform(-1, 1, (batch, n)).astype(dtype) for _ in range(4))
    m, Rm = _step_data(rng, batch, n, 3, dtype)

    def run(fwd, bwd):
        hu = hu0.copy()
        hh, h, hr = (np.empty((batch, n), dtype) for _ in range(3))
        fwd(hu, xw, b_rec, h_prev, m, Rm, hh, h, hr)
        dxw, dhu, d_dir = np.empty_like(hu), np.empty_like(hu), dh_dir.copy()
        bwd(hu, hh, h_prev, m, Rm, dh, dh_rec, d_dir, dxw, dhu)
        return hu, hh, h, hr, dxw, dhu, d_dir
    jit = run(J.gru_forward_step_masked, J.gru_backward_step_masked)
    twin = run(R._gru_forward_step_masked, R._gru_backward_step_masked)
    for a, b, what in zip(jit, twin, ("gates", "candidate", "h", "hr", "dxw", "dhu", "dh_dir")):
        assert a.dtype == dtype and b.dtype == dtype, what
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=what)


# ---- the unmasked path is the one it was -----------------------------------------------------

@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_without_masks_the_masked_steps_never_run(cell, monkeypatch):
    def refuse(*args):
        raise AssertionError("a masked step ran without a mask")
    for module in (J, R):
        prefix = "" if module is J else "_"
        monkeypatch.setattr(module, f"{prefix}{cell}_forward_step_masked", refuse)
        monkeypatch.setattr(module, f"{prefix}{cell}_backward_step_masked", refuse)
    arrays = _lstm_inputs(4, 2, 3) if cell == "lstm" else _gru_inputs(4, 2, 3)
    op = F.lstm_sequence if cell == "lstm" else F.gru_sequence
    xs = [gpudl.Tensor(a, requires_grad=True) for a in arrays]
    out = op(*xs)
    (out[0] if isinstance(out, tuple) else out).sum().backward()
    assert all(x.grad is not None for x in xs)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_an_all_true_mask_and_no_mask_agree(cpu_jit, cell):
    arrays = _lstm_inputs(5, 3, 4, seed=11) if cell == "lstm" else _gru_inputs(5, 3, 4, seed=11)
    op = F.lstm_sequence if cell == "lstm" else F.gru_sequence

    def run(**kw):
        xs = [gpudl.Tensor(a, requires_grad=True) for a in arrays]
        out = op(*xs, **kw)
        hs = out[0] if isinstance(out, tuple) else out
        (hs * gpudl.Tensor(rand(hs.shape, 12))).sum().backward()
        return [hs.numpy()] + [x.grad for x in xs]
    for a, b in zip(run(), run(mask=np.ones((5, 3), bool), recurrent_mask=np.ones((3, 4)))):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)


# ---- one answer on every backend ------------------------------------------------------------------

@pytest.mark.parametrize("which", WHICH)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_masked_sequence_ops_agree_across_paths(cell, which, backend_name, monkeypatch):
    """Forward and every gradient on the backend under test (NumPy: the compiled loops;
    CuPy: the masked kernels) against the NumPy twins, float64."""
    arrays = _lstm_inputs(5, 3, 2, seed=2) if cell == "lstm" else _gru_inputs(5, 3, 2, seed=2)
    op = F.lstm_sequence if cell == "lstm" else F.gru_sequence
    m, r = _masks(which, 5, 3, 2, seed=5)
    weight = rand((5, 3, 2), 7)

    def run(name):
        xs = [gpudl.Tensor(backend.to_backend(a, name), requires_grad=True) for a in arrays]
        kw = {"mask": None if m is None else backend.to_backend(m, name),
              "recurrent_mask": None if r is None else backend.to_backend(r, name)}
        out = op(*xs, **kw)
        hs = out[0] if isinstance(out, tuple) else out
        loss = (hs * gpudl.Tensor(backend.to_backend(weight, name))).sum()
        if isinstance(out, tuple):
            loss = loss + out[1].sum()
        loss.backward()
        return [gpudl.to_numpy(hs.data)] + [gpudl.to_numpy(x.grad) for x in xs]

    got = run(backend_name)
    monkeypatch.setattr(R, "_cpu_jit", False)
    gpudl.set_backend("numpy")
    want = run("numpy")
    for i, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12, err_msg=f"output {i}")


def test_float16_masked_ops_take_the_reference_steps():
    xw, h0, c0, U = _lstm_inputs(4, 2, 3, seed=4)
    m, r = _masks("both", 4, 2, 3, seed=4)
    assert R._steps("lstm", np.zeros(1, np.float16), masked=True)[0] is R._lstm_forward_step_masked
    hs, _ = F.lstm_sequence(*(gpudl.Tensor(a.astype(np.float16)) for a in (xw, h0, c0, U)), mask=m, recurrent_mask=r)
    assert hs.dtype == np.float16
    np.testing.assert_allclose(hs.numpy().astype(np.float64), ref_lstm(xw, h0, c0, U, m, r)[0], rtol=2e-2, atol=2e-2)


# ---- errors --------------------------------------------------------------------------------------

def test_mask_shape_errors_name_op_expected_and_got():
    xw, h0, c0, U = _lstm_inputs(5, 2, 3)
    with pytest.raises(ValueError, match=r"lstm_sequence expected mask of shape \(5, 2\) \(steps, batch\), "
                                         r"got \(2, 5\)"):
        F.lstm_sequence(xw, h0, c0, U, mask=np.ones((2, 5), bool))
    with pytest.raises(ValueError, match=r"lstm_sequence expected recurrent_mask of shape \(2, 3\) "
                                         r"\(batch, units\), got \(2, 4\)"):
        F.lstm_sequence(xw, h0, c0, U, recurrent_mask=np.ones((2, 4)))
    gx, gh, gU, gb = _gru_inputs(5, 2, 3)
    with pytest.raises(ValueError, match=r"gru_sequence expected mask of shape \(5, 2\).*got \(5,\)"):
        F.gru_sequence(gx, gh, gU, gb, mask=np.ones(5, bool))
    with pytest.raises(ValueError, match=r"gru_cell expected mask of shape \(2,\) \(batch,\), got \(3,\)"):
        F.gru_cell(gx[0], gh, gU, reset_after=False, mask=np.ones(3, bool))
    with pytest.raises(ValueError, match=r"simple_rnn_cell expected recurrent_mask of shape \(2, 3\)"):
        F.simple_rnn_cell(np.zeros((2, 3)), gh, np.zeros((3, 3)), recurrent_mask=np.ones((3, 3)))
    with pytest.raises(TypeError, match=r"lstm_cell expected a boolean or numeric mask, got dtype <U1"):
        F.lstm_cell(xw[0], h0, c0, U, mask=np.array(["a", "b"]))
