"""The fused recurrent ops: lstm_sequence / lstm_cell and gru_sequence / gru_cell against
NumPy float64 loops, float64 gradient checks, and the compiled CPU step loops against
their NumPy twins (float32 with the rational tanh, float64 with the C library's), with
the compiled path on and off."""

import numpy as np
import pytest

import gpudl
from gpudl import functional as F
from gpudl.functional import recurrent as R
from harness import GRAD, rand
from gpudl.testing import gradcheck

numba = pytest.importorskip("numba")
from gpudl.functional import _recurrent_jit as J  # noqa: E402


@pytest.fixture(params=["compiled", "numpy"])
def cpu_jit(request, monkeypatch):
    """Run the test with the compiled step loops and again with the NumPy twins."""
    monkeypatch.setattr(R, "_cpu_jit", request.param == "compiled")
    return request.param


def _sig(x):
    return 1 / (1 + np.exp(-x))


def ref_lstm_sequence(xw, h0, c0, U):
    n = h0.shape[1]
    h, c, hs = h0, c0, []
    for t in range(xw.shape[0]):
        z = xw[t] + h @ U
        i, f, g, o = _sig(z[:, :n]), _sig(z[:, n:2 * n]), np.tanh(z[:, 2 * n:3 * n]), _sig(z[:, 3 * n:])
        c = f * c + i * g
        h = o * np.tanh(c)
        hs.append(h)
    return np.stack(hs), c


def _inputs(steps, batch, n, seed=0):
    return (rand((steps, batch, 4 * n), seed, -2, 2), rand((batch, n), seed + 1),
            rand((batch, n), seed + 2), rand((n, 4 * n), seed + 3))


# ---- the compiled loops against the NumPy twins ------------------------------------------

@pytest.mark.parametrize("x", [0.0, 1e-8, -1e-3, 0.5, -3.0, 7.9, 8.0, -9.5, 20.0, 1e4, -1e30])
def test_float32_tanh_close_everywhere_and_saturates(x):
    # the rational tanh through the forward step's cell path: c_prev = x, f = 1, i = 0
    z = np.zeros((1, 4), np.float32)
    z[0, 1] = 60.0   # forget gate saturated at 1
    z[0, 0] = -60.0  # input gate at 0
    c_prev = np.array([[x]], np.float32)
    c, tc, h = (np.empty((1, 1), np.float32) for _ in range(3))
    J.lstm_forward_step(z, np.zeros_like(z), c_prev, c, tc, h)
    assert z[0, 1] == 1.0 and z[0, 0] == 0.0, "sigmoid must saturate exactly at +-60"
    assert abs(float(tc[0, 0]) - np.tanh(np.float64(np.float32(x)))) < 3e-7
    assert abs(float(tc[0, 0])) <= 1.0
    if abs(x) >= 9:
        assert tc[0, 0] == np.sign(x), "float32 tanh rounds to exactly +-1 there"


def test_non_finite_values_propagate_through_the_compiled_step():
    z = np.zeros((2, 8), np.float32)
    xw = np.zeros_like(z)
    xw[0, 2] = np.nan       # the input gate of row 0
    xw[1, 4] = np.inf       # the candidate of row 1: tanh(inf) = 1, finite
    c_prev = np.zeros((2, 2), np.float32)
    c_prev[1, 1] = np.nan
    c, tc, h = (np.empty((2, 2), np.float32) for _ in range(3))
    J.lstm_forward_step(z, xw, c_prev, c, tc, h)
    assert np.isnan(h[0, 0]) and np.isnan(c[0, 0]), "a NaN gate must give a NaN state, not a clamped one"
    assert z[1, 4] == 1.0 and np.isfinite(h[1, 0])
    assert np.isnan(h[1, 1]) and np.isfinite(h[0, 1])


@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-6), (np.float64, 1e-13)])
@pytest.mark.parametrize("batch,n", [(1, 1), (3, 5), (17, 33)])
def test_compiled_steps_match_numpy_twins(dtype, tol, batch, n):
    rng = np.random.default_rng(batch * n)
    z0 = rng.uniform(-4, 4, (batch, 4 * n)).astype(dtype)
    xw = rng.uniform(-2, 2, (batch, 4 * n)).astype(dtype)
    c_prev = rng.uniform(-2, 2, (batch, n)).astype(dtype)
    dh, dh_rec, dc = (rng.uniform(-1, 1, (batch, n)).astype(dtype) for _ in range(3))

    def run(fwd, bwd):
        z = z0.copy()
        c, tc, h = (np.empty((batch, n), dtype) for _ in range(3))
        fwd(z, xw, c_prev, c, tc, h)
        dz = np.empty_like(z)
        dc_prev = dc.copy()
        bwd(z, c_prev, tc, dh, dh_rec, dc_prev, dz, dc_prev)  # in place, as the sequence op does
        return z, c, tc, h, dz, dc_prev
    _compare_twins("lstm", run, dtype, tol, ("gates", "c", "tanh c", "h", "dz", "dc_prev"))


def _compare_twins(cell, run, dtype, tol, names):
    """run(forward_step, backward_step) -> arrays, with the compiled loops and the NumPy
    twins: the same dtype out, the same values within ``tol``."""
    jit = run(getattr(J, f"{cell}_forward_step"), getattr(J, f"{cell}_backward_step"))
    twin = run(getattr(R, f"_{cell}_forward_step"), getattr(R, f"_{cell}_backward_step"))
    for a, b, what in zip(jit, twin, names):
        assert a.dtype == dtype and b.dtype == dtype, what
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=what)


# ---- the sequence op -------------------------------------------------------------------

@pytest.mark.parametrize("steps,batch,n", [(1, 1, 1), (5, 3, 4), (12, 2, 3)])
def test_lstm_sequence_forward_matches_loop(cpu_jit, steps, batch, n):
    xw, h0, c0, U = _inputs(steps, batch, n)
    want_hs, want_c = ref_lstm_sequence(xw, h0, c0, U)
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 2e-5)):
        hs, c = F.lstm_sequence(*(gpudl.Tensor(a.astype(dtype)) for a in (xw, h0, c0, U)))
        assert hs.dtype == dtype and c.dtype == dtype and hs.shape == (steps, batch, n)
        np.testing.assert_allclose(hs.numpy(), want_hs, rtol=tol, atol=tol)
        np.testing.assert_allclose(c.numpy(), want_c, rtol=tol, atol=tol)


@pytest.mark.parametrize("steps,batch,n", [(1, 1, 2), (5, 3, 2), (12, 1, 3)])
def test_lstm_sequence_gradcheck(cpu_jit, steps, batch, n):
    arrays = _inputs(steps, batch, n, seed=steps)
    xs = [gpudl.Tensor(a, requires_grad=True) for a in arrays]
    assert gradcheck(lambda *t: F.lstm_sequence(*t)[0], xs, **GRAD)   # every hidden state
    assert gradcheck(lambda *t: F.lstm_sequence(*t)[1], xs, **GRAD)   # the last cell state

    def both(*t):  # gradient arriving through hs and c_T at once
        hs, c = F.lstm_sequence(*t)
        return hs[-1] * 2.0 + c
    assert gradcheck(both, xs, **GRAD)


def test_lstm_sequence_last_state_only_gradcheck(cpu_jit):
    arrays = _inputs(6, 2, 3, seed=9)
    xs = [gpudl.Tensor(a, requires_grad=True) for a in arrays]
    assert gradcheck(lambda *t: F.lstm_sequence(*t)[0][-1], xs, **GRAD)


def test_lstm_cell_is_one_step_of_the_sequence(cpu_jit):
    xw, h0, c0, U = _inputs(1, 3, 4, seed=5)
    h, c = F.lstm_cell(xw[0], h0, c0, U)
    want_hs, want_c = ref_lstm_sequence(xw, h0, c0, U)
    np.testing.assert_allclose(h.numpy(), want_hs[0], rtol=1e-12)
    np.testing.assert_allclose(c.numpy(), want_c, rtol=1e-12)
    xs = [gpudl.Tensor(a, requires_grad=True) for a in (xw[0], h0, c0, U)]
    assert gradcheck(lambda *t: F.lstm_cell(*t)[0] + F.lstm_cell(*t)[1], xs, **GRAD)


def test_gradient_skips_inputs_that_need_none(cpu_jit):
    xw, h0, c0, U = _inputs(4, 2, 3)
    x = gpudl.Tensor(xw, requires_grad=True)
    hs, _ = F.lstm_sequence(x, gpudl.Tensor(h0), gpudl.Tensor(c0), gpudl.Tensor(U))
    hs.sum().backward()
    assert x.grad.shape == xw.shape and np.all(np.isfinite(x.grad))


@pytest.mark.parametrize("args,match", [
    (((5, 2, 12), (2, 3), (2, 3), (3, 12)), None),  # the valid control
    (((5, 2, 11), (2, 3), (2, 3), (3, 12)), r"lstm_sequence expected xw of shape \(steps >= 1, 2, 12\) for state \(2, 3\), got \(5, 2, 11\)"),
    (((0, 2, 12), (2, 3), (2, 3), (3, 12)), r"steps >= 1.*got \(0, 2, 12\)"),
    (((2, 12), (2, 3), (2, 3), (3, 12)), r"got \(2, 12\)"),
    (((5, 2, 12), (2, 3), (2, 3), (3, 9)), r"expected U of shape \(3, 12\) for 3 units, got \(3, 9\)"),
    (((5, 2, 12), (2, 3), (2, 4), (3, 12)), r"cell state c of shape \(2, 3\), got \(2, 4\)"),
])
def test_lstm_sequence_shape_errors(args, match):
    tensors = [gpudl.Tensor(np.zeros(s)) for s in args]
    if match is None:
        hs, c = F.lstm_sequence(*tensors)
        assert hs.shape == (5, 2, 3) and c.shape == (2, 3)
        return
    with pytest.raises(ValueError, match=match):
        F.lstm_sequence(*tensors)


def test_lstm_sequence_mixed_dtypes_error():
    xw, h0, c0, U = _inputs(2, 2, 3)
    with pytest.raises(TypeError, match=r"one floating-point dtype.*xw float32, h0 float64, c0 float64, U float32"):
        F.lstm_sequence(gpudl.Tensor(xw.astype(np.float32)), gpudl.Tensor(h0), gpudl.Tensor(c0),
                        gpudl.Tensor(U.astype(np.float32)))


def test_cpu_jit_can_be_switched_off_by_environment(monkeypatch):
    monkeypatch.setattr(R, "_cpu_jit", None)
    monkeypatch.setenv("GPUDL_CPU_JIT", "0")
    assert R.cpu_jit_enabled() is False
    assert R._steps("lstm", np.zeros(1)) == (R._lstm_forward_step, R._lstm_backward_step)
    assert R._steps("gru", np.zeros(1)) == (R._gru_forward_step, R._gru_backward_step)
    monkeypatch.setattr(R, "_cpu_jit", None)
    monkeypatch.setenv("GPUDL_CPU_JIT", "1")
    assert R.cpu_jit_enabled() is True
    assert R._steps("lstm", np.zeros(1)) == (J.lstm_forward_step, J.lstm_backward_step)
    assert R._steps("gru", np.zeros(1)) == (J.gru_forward_step, J.gru_backward_step)


# ---- GRU (reset gate after the matmul) ------------------------------------------------------

def ref_gru_sequence(xw, h0, U, b_rec):
    n = h0.shape[1]
    h, hs = h0, []
    for t in range(xw.shape[0]):
        hu = h @ U + b_rec
        z, r = _sig(xw[t, :, :n] + hu[:, :n]), _sig(xw[t, :, n:2 * n] + hu[:, n:2 * n])
        hh = np.tanh(xw[t, :, 2 * n:] + r * hu[:, 2 * n:])
        h = z * h + (1 - z) * hh
        hs.append(h)
    return np.stack(hs)


def _gru_inputs(steps, batch, n, seed=0):
    return (rand((steps, batch, 3 * n), seed, -2, 2), rand((batch, n), seed + 1),
            rand((n, 3 * n), seed + 2), rand((3 * n,), seed + 3))


@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-6), (np.float64, 1e-13)])
@pytest.mark.parametrize("batch,n", [(1, 1), (3, 5), (17, 33)])
def test_compiled_gru_steps_match_numpy_twins(dtype, tol, batch, n):
    rng = np.random.default_rng(batch + n)
    hu0 = rng.uniform(-3, 3, (batch, 3 * n)).astype(dtype)
    xw = rng.uniform(-2, 2, (batch, 3 * n)).astype(dtype)
    b_rec = rng.uniform(-1, 1, 3 * n).astype(dtype)
    h_prev = rng.uniform(-1, 1, (batch, n)).astype(dtype)
    dh, dh_rec, dh_dir = (rng.uniform(-1, 1, (batch, n)).astype(dtype) for _ in range(3))

    def run(fwd, bwd):
        hu = hu0.copy()
        hh, h = np.empty((batch, n), dtype), np.empty((batch, n), dtype)
        fwd(hu, xw, b_rec, h_prev, hh, h)
        dxw, dhu, d_dir = np.empty_like(hu), np.empty_like(hu), dh_dir.copy()
        bwd(hu, hh, h_prev, dh, dh_rec, d_dir, dxw, dhu)
        return hu, hh, h, dxw, dhu, d_dir
    _compare_twins("gru", run, dtype, tol, ("gates", "candidate", "h", "dxw", "dhu", "dh_dir"))


@pytest.mark.parametrize("steps,batch,n", [(1, 1, 1), (5, 3, 4), (12, 2, 3)])
def test_gru_sequence_forward_matches_loop(cpu_jit, steps, batch, n):
    xw, h0, U, b = _gru_inputs(steps, batch, n)
    want = ref_gru_sequence(xw, h0, U, b)
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 2e-5)):
        hs = F.gru_sequence(*(gpudl.Tensor(a.astype(dtype)) for a in (xw, h0, U, b)))
        assert hs.dtype == dtype and hs.shape == (steps, batch, n)
        np.testing.assert_allclose(hs.numpy(), want, rtol=tol, atol=tol)
    no_bias = F.gru_sequence(gpudl.Tensor(xw), gpudl.Tensor(h0), gpudl.Tensor(U))
    np.testing.assert_allclose(no_bias.numpy(), ref_gru_sequence(xw, h0, U, 0 * b), rtol=1e-12)


@pytest.mark.parametrize("steps,batch,n", [(1, 1, 2), (5, 3, 2), (12, 1, 3)])
def test_gru_sequence_gradcheck(cpu_jit, steps, batch, n):
    xs = [gpudl.Tensor(a, requires_grad=True) for a in _gru_inputs(steps, batch, n, seed=steps)]
    assert gradcheck(lambda *t: F.gru_sequence(*t), xs, **GRAD)
    assert gradcheck(lambda *t: F.gru_sequence(*t)[-1], xs, **GRAD)


def test_gru_cell_is_one_step_of_the_sequence(cpu_jit):
    xw, h0, U, b = _gru_inputs(1, 3, 4, seed=5)
    h = F.gru_cell(xw[0], h0, U, b)
    np.testing.assert_allclose(h.numpy(), ref_gru_sequence(xw, h0, U, b)[0], rtol=1e-12)
    xs = [gpudl.Tensor(a, requires_grad=True) for a in (xw[0], h0, U, b)]
    assert gradcheck(lambda *t: F.gru_cell(*t), xs, **GRAD)


def test_gru_sequence_errors():
    xw, h0, U, b = _gru_inputs(3, 2, 4)
    with pytest.raises(ValueError, match=r"gru_sequence expected the recurrent bias b_rec of shape \(12,\), got \(8,\)"):
        F.gru_sequence(gpudl.Tensor(xw), gpudl.Tensor(h0), gpudl.Tensor(U), gpudl.Tensor(b[:8]))
    with pytest.raises(ValueError, match=r"gru_sequence expected xw of shape \(steps >= 1, 2, 12\).*got \(3, 2, 8\)"):
        F.gru_sequence(gpudl.Tensor(xw[..., :8]), gpudl.Tensor(h0), gpudl.Tensor(U))
    with pytest.raises(TypeError, match=r"one floating-point dtype.*b_rec float32"):
        F.gru_sequence(gpudl.Tensor(xw), gpudl.Tensor(h0), gpudl.Tensor(U), gpudl.Tensor(b.astype(np.float32)))


# ---- one answer on every path ----------------------------------------------------------------

@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_sequence_ops_agree_across_paths(cell, backend_name, monkeypatch):
    """Forward and every gradient on the backend under test (NumPy: the compiled loops;
    CuPy: the array twins on the GPU) against the NumPy twins, float64."""
    from gpudl import backend
    arrays = _inputs(6, 3, 4, seed=2) if cell == "lstm" else _gru_inputs(6, 3, 4, seed=2)
    op = F.lstm_sequence if cell == "lstm" else F.gru_sequence
    weight = np.random.default_rng(7).uniform(-1, 1, (6, 3, 4))

    def run(name):
        xs = [gpudl.Tensor(backend.to_backend(a, name), requires_grad=True) for a in arrays]
        out = op(*xs)
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
    for g, w, what in zip(got, want, ["hs", "d xw", "d h0", "d c0" if cell == "lstm" else "d U",
                                      "d U" if cell == "lstm" else "d b_rec"]):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12, err_msg=what)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_float16_takes_the_reference_steps(cell):
    """No kernel is built for float16: the ops run the reference steps and stay float16."""
    arrays = _inputs(4, 2, 3, seed=4) if cell == "lstm" else _gru_inputs(4, 2, 3, seed=4)
    op = F.lstm_sequence if cell == "lstm" else F.gru_sequence
    assert R._steps(cell, np.zeros(1, np.float16))[0] is getattr(R, f"_{cell}_forward_step")
    xs = [gpudl.Tensor(a.astype(np.float16), requires_grad=True) for a in arrays]
    out = op(*xs)
    hs = out[0] if isinstance(out, tuple) else out
    want = ref_lstm_sequence(*arrays)[0] if cell == "lstm" else ref_gru_sequence(*arrays)
    assert hs.dtype == np.float16
    np.testing.assert_allclose(hs.numpy().astype(np.float64), want, rtol=2e-2, atol=2e-2)
    hs.sum().backward()
    assert all(x.grad.dtype == np.float16 and np.all(np.isfinite(x.grad)) for x in xs)


def test_an_unusable_numba_falls_back_with_a_warning(monkeypatch):
    import sys
    monkeypatch.setattr(R, "_cpu_jit", None)
    monkeypatch.delenv("GPUDL_CPU_JIT", raising=False)
    monkeypatch.delattr(sys.modules["gpudl.functional"], "_recurrent_jit", raising=False)
    monkeypatch.setitem(sys.modules, "gpudl.functional._recurrent_jit", None)  # import fails
    with pytest.warns(RuntimeWarning, match="compiled LSTM/GRU loops are unavailable"):
        assert R.cpu_jit_enabled() is False
    xw, h0, c0, U = _inputs(3, 2, 2)
    hs, _ = F.lstm_sequence(xw, h0, c0, U)
    np.testing.assert_allclose(hs.numpy(), ref_lstm_sequence(xw, h0, c0, U)[0], rtol=1e-12)
