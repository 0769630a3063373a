"""Compiled CPU loops for the LSTM and GRU steps' elementwise work (NumPy backend only).

A step of an LSTM is one matmul ``h @ U`` and then about twenty elementwise passes (four
gate activations, the cell update, tanh of the cell...). NumPy runs each pass separately
and its float32 ``tanh``/``exp`` are scalar loops on AVX2 machines (about 2.7 ns per
element), so those passes, not the matmuls, dominated a training step. Here each step's
elementwise work is one loop over the batch that LLVM vectorises: forward reads the
matmul result and the input projection once and writes gates, cell and hidden state;
backward likewise produces the gate gradients and the carried cell gradient in one pass.

float32 uses a rational approximation of tanh (the [13/6] minimax form used by Eigen and
XLA; absolute error below 3e-7 on the whole line, exactly +-1 from |x| = 9 on, as the
correctly rounded tanh; NaN propagates); float64 keeps the C library's tanh, so float64 gradient checks
test these loops at full precision. Imported lazily: ``import gpudl`` never loads numba.

The ``*_masked`` loops are the same steps for masked sequences and recurrent dropout: a mask
row (0 = carry the states, and pass their gradient straight back) and the recurrent dropout
multiplier R, whose product with h they write for the next step's matmul.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

_F = np.float32
_CLAMP = _F(7.90531110763549805)
_A13, _A11, _A9 = _F(-2.76076847742355e-16), _F(2.00018790482477e-13), _F(-8.60467152213735e-11)
_A7, _A5, _A3 = _F(5.12229709037114e-08), _F(1.48572235717979e-05), _F(6.37261928875436e-04)
_A1 = _F(4.89352455891786e-03)
_B6, _B4, _B2 = _F(1.19825839466702e-06), _F(1.18534705686654e-04), _F(2.26843463243900e-03)
_B0 = _F(4.89352518554385e-03)
_HALF32, _ONE32 = _F(0.5), _F(1.0)
_SATURATE = _F(9.0)  # float32 tanh rounds to exactly +-1 from here on


def _tanh(x):
    """tanh for the compiled loops (plain Python only as a stand-in for the overload)."""
    return math.tanh(x)


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


def _one(x):
    """1 in the type of ``x`` (a bare ``1`` would promote float32 math to float64)."""
    return 1.0


@overload(_tanh)
def _tanh_overload(x):
    if x == types.float32:
        def tanh32(x):
            # clamp without touching NaN (a comparison with NaN is false): NaN stays NaN
            xc = _CLAMP if x > _CLAMP else x
            xc = -_CLAMP if xc < -_CLAMP else xc
            x2 = xc * xc
            p = x2 * _A13 + _A11
            p = x2 * p + _A9
            p = x2 * p + _A7
            p = x2 * p + _A5
            p = x2 * p + _A3
            p = x2 * p + _A1
            q = x2 * _B6 + _B4
            q = x2 * q + _B2
            q = x2 * q + _B0
            y = xc * p / q
            # exact saturation, as the correctly rounded tanh: a gate at 1 keeps the memory
            y = _ONE32 if x >= _SATURATE else y
            return -_ONE32 if x <= -_SATURATE else y
        return tanh32
    if isinstance(x, types.Float):
        return lambda x: math.tanh(x)
    return None


@overload(_sigmoid)
def _sigmoid_overload(x):
    # sigmoid(x) = (tanh(x / 2) + 1) / 2: no overflow, one code path for both dtypes
    if x == types.float32:
        return lambda x: _HALF32 * _tanh(_HALF32 * x) + _HALF32
    if isinstance(x, types.Float):
        return lambda x: 0.5 * _tanh(0.5 * x) + 0.5
    return None


@overload(_one)
def _one_overload(x):
    if x == types.float32:
        return lambda x: _ONE32
    return lambda x: 1.0


# error_model="numpy": division never raises, so the loops stay branch-free and vectorise
_jit = njit(cache=True, error_model="numpy", fastmath={"contract"})


@_jit
def lstm_forward_step(z, xw, c_prev, c, tc, h):
    """One LSTM step after the matmul. In: ``z`` = h_prev @ U (N, 4n), ``xw`` (N, 4n),
    ``c_prev`` (N, n). Out: ``z`` overwritten with the gates i, f, g, o; ``c`` = f*c_prev +
    i*g; ``tc`` = tanh(c); ``h`` = o * tc.

    Written as short passes over one row at a time, each touching at most three arrays:
    LLVM vectorises a loop only when it can rule out overlap between the arrays it writes
    and reads with a few runtime checks, and one loop over all seven arrays has too many
    (it ran at scalar speed, slower than NumPy)."""
    rows, n = c.shape
    for r in range(rows):
        zr, xr, cp, cr, tr, hr = z[r], xw[r], c_prev[r], c[r], tc[r], h[r]
        for k in range(2 * n):
            zr[k] = _sigmoid(zr[k] + xr[k])
        for k in range(n):
            zr[2 * n + k] = _tanh(zr[2 * n + k] + xr[2 * n + k])
        for k in range(n):
            zr[3 * n + k] = _sigmoid(zr[3 * n + k] + xr[3 * n + k])
        for k in range(n):
            cr[k] = zr[n + k] * cp[k] + zr[k] * zr[2 * n + k]
        for k in range(n):
            tr[k] = _tanh(cr[k])
        for k in range(n):
            hr[k] = zr[3 * n + k] * tr[k]


@_jit
def lstm_backward_step(act, c_prev, tc, dh_out, dh_rec, dc, dz, dc_prev):
    """The gradients of one step. ``dh_out + dh_rec`` is dL/dh (from this step's output and
    from the next step), ``dc`` is dL/dc. Writes dL/dz into ``dz`` (N, 4n) and dL/dc_prev
    into ``dc_prev`` (which may be ``dc`` itself). Passes per row, as in the forward."""
    rows, n = tc.shape
    d = np.empty(n, dtype=tc.dtype)
    for r in range(rows):
        ar, cp, tr, dzr = act[r], c_prev[r], tc[r], dz[r]
        ho, hr, dcr, dcp = dh_out[r], dh_rec[r], dc[r], dc_prev[r]
        for k in range(n):
            d[k] = ho[k] + hr[k]                                # dL/dh
        for k in range(n):
            o = ar[3 * n + k]
            dzr[3 * n + k] = d[k] * tr[k] * o * (_one(o) - o)  # output gate
        for k in range(n):
            t = tr[k]
            d[k] = d[k] * ar[3 * n + k] * (_one(t) - t * t) + dcr[k]  # dL/dc, all paths
        for k in range(n):
            i, f, g = ar[k], ar[n + k], ar[2 * n + k]
            dzr[k] = d[k] * g * i * (_one(i) - i)
            dzr[n + k] = d[k] * cp[k] * f * (_one(f) - f)
            dzr[2 * n + k] = d[k] * i * (_one(g) - g * g)
        for k in range(n):
            dcp[k] = d[k] * ar[n + k]


@_jit
def gru_forward_step(hu, xw, b_rec, h_prev, hh, h):
    """One GRU step (reset gate after the matmul) after the matmul. In: ``hu`` = h_prev @ U
    (N, 3n), ``xw`` (N, 3n), ``b_rec`` (3n,). Out: ``hu`` overwritten with z, r and
    hu_h = (h_prev @ U + b_rec)[h block]; ``hh`` = tanh(xw_h + r * hu_h); ``h`` = hh +
    z * (h_prev - hh). Passes per row, as in the LSTM step."""
    rows, n = h.shape
    for r in range(rows):
        ur, xr, hp, hhr, hr = hu[r], xw[r], h_prev[r], hh[r], h[r]
        for k in range(3 * n):
            ur[k] += b_rec[k]
        for k in range(2 * n):
            ur[k] = _sigmoid(ur[k] + xr[k])
        for k in range(n):
            hhr[k] = _tanh(xr[2 * n + k] + ur[n + k] * ur[2 * n + k])
        for k in range(n):
            hr[k] = hhr[k] + ur[k] * (hp[k] - hhr[k])


@_jit
def gru_backward_step(act, hh, h_prev, dh_out, dh_rec, dh_dir, dxw, dhu):
    """The gradients of one GRU step. dL/dh is ``dh_out + dh_rec + dh_dir`` (this step's
    output, the next step's matmul path, the next step's direct ``z * h`` path). Writes
    dL/dxw and dL/d(h_prev @ U + b_rec) into ``dxw`` and ``dhu`` (N, 3n), and this step's
    direct path dL/dh * z into ``dh_dir`` (in place)."""
    rows, n = hh.shape
    d = np.empty(n, dtype=hh.dtype)
    for r in range(rows):
        ar, tr, hp, dxr, dur = act[r], hh[r], h_prev[r], dxw[r], dhu[r]
        ho, hrc, hd = dh_out[r], dh_rec[r], dh_dir[r]
        for k in range(n):
            d[k] = ho[k] + hrc[k] + hd[k]
        for k in range(n):
            z, t = ar[k], tr[k]
            dxr[2 * n + k] = d[k] * (_one(z) - z) * (_one(t) - t * t)      # candidate
        for k in range(n):
            dur[2 * n + k] = dxr[2 * n + k] * ar[n + k]                    # through r * hu_h
        for k in range(n):
            z, t, rg = ar[k], tr[k], ar[n + k]
            dxr[n + k] = d[k] * (_one(z) - z) * (_one(t) - t * t) * ar[2 * n + k] * rg * (_one(rg) - rg)
        for k in range(n):
            z = ar[k]
            dxr[k] = d[k] * (hp[k] - tr[k]) * z * (_one(z) - z)           # update gate
        for k in range(2 * n):
            dur[k] = dxr[k]
        for k in range(n):
            hd[k] = d[k] * ar[k]


# ---- masked steps: a mask row (N,) selects carried states, R (N, n) the recurrent dropout ----

@_jit
def lstm_forward_step_masked(z, xw, c_prev, h_prev, m, R, c, tc, h, hr):
    """lstm_forward_step, then a row whose ``m`` is 0 keeps ``c_prev`` and ``h_prev``;
    ``hr`` = h * R, the next step's matmul input (``hr`` may be ``h`` itself when R is all
    ones). The select is per row: the passes inside a row stay branch-free."""
    rows, n = c.shape
    for r in range(rows):
        zr, xr, cp, cr, tr, hrow = z[r], xw[r], c_prev[r], c[r], tc[r], h[r]
        for k in range(2 * n):
            zr[k] = _sigmoid(zr[k] + xr[k])
        for k in range(n):
            zr[2 * n + k] = _tanh(zr[2 * n + k] + xr[2 * n + k])
        for k in range(n):
            zr[3 * n + k] = _sigmoid(zr[3 * n + k] + xr[3 * n + k])
        for k in range(n):
            cr[k] = zr[n + k] * cp[k] + zr[k] * zr[2 * n + k]
        for k in range(n):
            tr[k] = _tanh(cr[k])
        if m[r] != 0:
            for k in range(n):
                hrow[k] = zr[3 * n + k] * tr[k]
        else:
            hp = h_prev[r]
            for k in range(n):
                cr[k] = cp[k]
            for k in range(n):
                hrow[k] = hp[k]
        rr, hrr = R[r], hr[r]
        for k in range(n):
            hrr[k] = hrow[k] * rr[k]


@_jit
def lstm_backward_step_masked(act, c_prev, tc, m, R, dh_out, dh_rec, dh_skip, dc, dz, dc_prev):
    """The gradients of a masked step. dL/dh is ``dh_out + dh_rec * R + dh_skip``; an
    unmasked row writes what lstm_backward_step does and zeroes ``dh_skip``; a masked row
    writes dz = 0, dc_prev = dc and dL/dh into ``dh_skip`` (its states were carried)."""
    rows, n = tc.shape
    d = np.empty(n, dtype=tc.dtype)
    for r in range(rows):
        ar, cp, tr, dzr = act[r], c_prev[r], tc[r], dz[r]
        ho, hr, rr, sk, dcr, dcp = dh_out[r], dh_rec[r], R[r], dh_skip[r], dc[r], dc_prev[r]
        for k in range(n):
            d[k] = ho[k] + hr[k] * rr[k] + sk[k]
        if m[r] != 0:
            for k in range(n):
                o = ar[3 * n + k]
                dzr[3 * n + k] = d[k] * tr[k] * o * (_one(o) - o)
            for k in range(n):
                t = tr[k]
                d[k] = d[k] * ar[3 * n + k] * (_one(t) - t * t) + dcr[k]
            for k in range(n):
                i, f, g = ar[k], ar[n + k], ar[2 * n + k]
                dzr[k] = d[k] * g * i * (_one(i) - i)
                dzr[n + k] = d[k] * cp[k] * f * (_one(f) - f)
                dzr[2 * n + k] = d[k] * i * (_one(g) - g * g)
            for k in range(n):
                dcp[k] = d[k] * ar[n + k]
            for k in range(n):
                sk[k] = 0
        else:
            for k in range(4 * n):
                dzr[k] = 0
            for k in range(n):
                dcp[k] = dcr[k]
            for k in range(n):
                sk[k] = d[k]


@_jit
def gru_forward_step_masked(hu, xw, b_rec, h_prev, m, R, hh, h, hr):
    """gru_forward_step (``hu`` = (h_prev * R) @ U on entry), then a row whose ``m`` is 0
    keeps ``h_prev``; ``hr`` = h * R as in the masked LSTM step."""
    rows, n = h.shape
    for r in range(rows):
        ur, xr, hp, hhr, hrow = hu[r], xw[r], h_prev[r], hh[r], h[r]
        for k in range(3 * n):
            ur[k] += b_rec[k]
        for k in range(2 * n):
            ur[k] = _sigmoid(ur[k] + xr[k])
        for k in range(n):
            hhr[k] = _tanh(xr[2 * n + k] + ur[n + k] * ur[2 * n + k])
        if m[r] != 0:
            for k in range(n):
                hrow[k] = hhr[k] + ur[k] * (hp[k] - hhr[k])
        else:
            for k in range(n):
                hrow[k] = hp[k]
        rr, hrr = R[r], hr[r]
        for k in range(n):
            hrr[k] = hrow[k] * rr[k]


@_jit
def gru_backward_step_masked(act, hh, h_prev, m, R, dh_out, dh_rec, dh_dir, dxw, dhu):
    """The gradients of a masked GRU step: dL/dh = ``dh_out + dh_rec * R + dh_dir``; an
    unmasked row as gru_backward_step; a masked row writes dxw = dhu = 0 and dL/dh whole
    into ``dh_dir`` (its state was carried)."""
    rows, n = hh.shape
    d = np.empty(n, dtype=hh.dtype)
    for r in range(rows):
        ar, tr, hp, dxr, dur = act[r], hh[r], h_prev[r], dxw[r], dhu[r]
        ho, hrc, rr, hd = dh_out[r], dh_rec[r], R[r], dh_dir[r]
        for k in range(n):
            d[k] = ho[k] + hrc[k] * rr[k] + hd[k]
        if m[r] != 0:
            for k in range(n):
                z, t = ar[k], tr[k]
                dxr[2 * n + k] = d[k] * (_one(z) - z) * (_one(t) - t * t)
            for k in range(n):
                dur[2 * n + k] = dxr[2 * n + k] * ar[n + k]
            for k in range(n):
                z, t, rg = ar[k], tr[k], ar[n + k]
                dxr[n + k] = d[k] * (_one(z) - z) * (_one(t) - t * t) * ar[2 * n + k] * rg * (_one(rg) - rg)
            for k in range(n):
                z = ar[k]
                dxr[k] = d[k] * (hp[k] - tr[k]) * z * (_one(z) - z)
            for k in range(2 * n):
                dur[k] = dxr[k]
            for k in range(n):
                hd[k] = d[k] * ar[k]
        else:
            for k in range(3 * n):
                dxr[k] = 0
            for k in range(3 * n):
                dur[k] = 0
            for k in range(n):
                hd[k] = d[k]
