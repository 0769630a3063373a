"""The LSTM and GRU steps' elementwise work, one CUDA kernel each way per cell.

The recurrent matmul of a step (``h @ U`` forward, ``dz @ U.T`` backward) stays on cuBLAS;
everything between two matmuls, about fifteen elementwise passes when written with array
operations, is one kernel here: one thread per (row, unit) reads that unit's gate
pre-activations from every gate block and writes the gates, the states and the gradients.
A sequence of T steps is then 2T launches each way instead of about 30T.

The formulas and the in/out contract are those of gpudl.functional.recurrent's NumPy twins
(``_lstm_forward_step`` and friends), which the tests hold these kernels to. Sigmoid is
``(tanh(x/2) + 1) / 2``: no overflow, NaN kept.
"""
from __future__ import annotations

import math

from numba import cuda

from . import _launch

__all__ = ["lstm_forward_step", "lstm_backward_step", "gru_forward_step", "gru_backward_step", "KERNELS"]

THREADS = 256


def _make(ft):
    """The kernels for float type ``ft``; typed constants keep float32 math in float32."""
    HALF, ONE = ft(0.5), ft(1)

    def lstm_forward_kernel(z, xw, c_prev, c, tc, h, n, total):
        idx = cuda.grid(1)
        step = cuda.gridsize(1)
        while idx < total:
            r = idx // n
            k = idx - r * n
            i = HALF * math.tanh(HALF * (z[r, k] + xw[r, k])) + HALF
            f = HALF * math.tanh(HALF * (z[r, n + k] + xw[r, n + k])) + HALF
            g = math.tanh(z[r, 2 * n + k] + xw[r, 2 * n + k])
            o = HALF * math.tanh(HALF * (z[r, 3 * n + k] + xw[r, 3 * n + k])) + HALF
            z[r, k] = i
            z[r, n + k] = f
            z[r, 2 * n + k] = g
            z[r, 3 * n + k] = o
            cn = f * c_prev[r, k] + i * g
            t = math.tanh(cn)
            c[r, k] = cn
            tc[r, k] = t
            h[r, k] = o * t
            idx += step

    def lstm_backward_kernel(act, c_prev, tc, dh_out, dh_rec, dc, dz, dc_prev, n, total):
        idx = cuda.grid(1)
        step = cuda.gridsize(1)
        while idx < total:
            r = idx // n
            k = idx - r * n
            i = act[r, k]
            f = act[r, n + k]
            g = act[r, 2 * n + k]
            o = act[r, 3 * n + k]
            t = tc[r, k]
            d = dh_out[r, k] + dh_rec[r, k]
            dct = d * o * (ONE - t * t) + dc[r, k]   # read before dc_prev (may be dc) is written
            dz[r, k] = dct * g * i * (ONE - i)
            dz[r, n + k] = dct * c_prev[r, k] * f * (ONE - f)
            dz[r, 2 * n + k] = dct * i * (ONE - g * g)
            dz[r, 3 * n + k] = d * t * o * (ONE - o)
            dc_prev[r, k] = dct * f
            idx += step

    def gru_forward_kernel(hu, xw, b_rec, h_prev, hh, h, n, total):
        idx = cuda.grid(1)
        step = cuda.gridsize(1)
        while idx < total:
            r = idx // n
            k = idx - r * n
            zg = HALF * math.tanh(HALF * (hu[r, k] + b_rec[k] + xw[r, k])) + HALF
            rg = HALF * math.tanh(HALF * (hu[r, n + k] + b_rec[n + k] + xw[r, n + k])) + HALF
            hu_h = hu[r, 2 * n + k] + b_rec[2 * n + k]
            cand = math.tanh(xw[r, 2 * n + k] + rg * hu_h)
            hu[r, k] = zg
            hu[r, n + k] = rg
            hu[r, 2 * n + k] = hu_h
            hh[r, k] = cand
            h[r, k] = cand + zg * (h_prev[r, k] - cand)
            idx += step

    def gru_backward_kernel(act, hh, h_prev, dh_out, dh_rec, dh_dir, dxw, dhu, n, total):
        idx = cuda.grid(1)
        step = cuda.gridsize(1)
        while idx < total:
            r = idx // n
            k = idx - r * n
            zg = act[r, k]
            rg = act[r, n + k]
            hu_h = act[r, 2 * n + k]
            t = hh[r, k]
            d = dh_out[r, k] + dh_rec[r, k] + dh_dir[r, k]
            dpre_h = d * (ONE - zg) * (ONE - t * t)
            dr = dpre_h * hu_h * rg * (ONE - rg)
            dzg = d * (h_prev[r, k] - t) * zg * (ONE - zg)
            dxw[r, k] = dzg
            dxw[r, n + k] = dr
            dxw[r, 2 * n + k] = dpre_h
            dhu[r, k] = dzg
            dhu[r, n + k] = dr
            dhu[r, 2 * n + k] = dpre_h * rg
            dh_dir[r, k] = d * zg
            idx += step

    return {
        "lstm_forward": lstm_forward_kernel,
        "lstm_backward": lstm_backward_kernel,
        "gru_forward": gru_forward_kernel,
        "gru_backward": gru_backward_kernel,
    }


_M = "{f}[:, ::1]"
_SIGNATURES = {
    "lstm_forward": f"void({', '.join([_M] * 6)}, int64, int64)",
    "lstm_backward": f"void({', '.join([_M] * 8)}, int64, int64)",
    "gru_forward": f"void({_M}, {_M}, {{f}}[::1], {_M}, {_M}, {_M}, int64, int64)",
    "gru_backward": f"void({', '.join([_M] * 8)}, int64, int64)",
}

_kernels = _launch.build_kernels(_make, _SIGNATURES)

#: ``[(pyfunc, [signature, ...]), ...]`` for every kernel of this module
KERNELS = _kernels.listing()


def _check(op, gates, wide, narrow, vectors=None):
    """Backend, dtype, contiguity and shapes: ``wide`` arrays (N, gates*n), ``narrow``
    (N, n), ``vectors`` (gates*n,). Returns (n, N*n)."""
    arrays = {**wide, **narrow, **(vectors or {})}
    _launch.check_backend(op, *arrays.values())
    _launch.check_float(op, **arrays)
    first = next(iter(narrow))
    ref = narrow[first]
    if ref.ndim != 2:
        raise ValueError(f"{op}: {first} must be (batch, units), got shape {tuple(ref.shape)}")
    rows, n = ref.shape
    for name, a in narrow.items():
        _launch.check_shape(op, name, a, (rows, n))
    for name, a in wide.items():
        _launch.check_shape(op, name, a, (rows, gates * n))
    for name, a in (vectors or {}).items():
        _launch.check_shape(op, name, a, (gates * n,))
    return n, rows * n


def _run(op, dtype, n, total, *arrays):
    if total == 0:
        return
    threads = _launch.block(THREADS)
    _launch.launch(_kernels.get((op, dtype)), _launch.stride_blocks(total, threads), threads,
                   *arrays, n, total)


def lstm_forward_step(z, xw, c_prev, c, tc, h):
    """In: ``z`` = h_prev @ U (N, 4n), ``xw`` (N, 4n), ``c_prev`` (N, n). Out, in place:
    ``z`` the gates i, f, g, o; ``c`` = f*c_prev + i*g; ``tc`` = tanh(c); ``h`` = o*tc."""
    n, total = _check("lstm_forward_step", 4, {"z": z, "xw": xw},
                      {"c_prev": c_prev, "c": c, "tc": tc, "h": h})
    _run("lstm_forward", z.dtype, n, total, z, xw, c_prev, c, tc, h)


def lstm_backward_step(act, c_prev, tc, dh_out, dh_rec, dc, dz, dc_prev):
    """dL/dz into ``dz`` (N, 4n) and dL/dc_prev into ``dc_prev`` (may be ``dc``), from the
    gates ``act``, dL/dh = dh_out + dh_rec and dL/dc = dc."""
    n, total = _check("lstm_backward_step", 4, {"act": act, "dz": dz},
                      {"c_prev": c_prev, "tc": tc, "dh_out": dh_out, "dh_rec": dh_rec,
                       "dc": dc, "dc_prev": dc_prev})
    _run("lstm_backward", act.dtype, n, total, act, c_prev, tc, dh_out, dh_rec, dc, dz, dc_prev)


def gru_forward_step(hu, xw, b_rec, h_prev, hh, h):
    """In: ``hu`` = h_prev @ U (N, 3n), ``xw`` (N, 3n), ``b_rec`` (3n,). Out, in place:
    ``hu`` = z, r, hu_h (+ b_rec); ``hh`` = tanh(xw_h + r*hu_h); ``h`` = hh + z*(h_prev - hh)."""
    n, total = _check("gru_forward_step", 3, {"hu": hu, "xw": xw},
                      {"h_prev": h_prev, "hh": hh, "h": h}, {"b_rec": b_rec})
    _run("gru_forward", hu.dtype, n, total, hu, xw, b_rec, h_prev, hh, h)


def gru_backward_step(act, hh, h_prev, dh_out, dh_rec, dh_dir, dxw, dhu):
    """dL/dxw and dL/d(h_prev @ U + b_rec) into ``dxw``, ``dhu`` (N, 3n); dL/dh * z into
    ``dh_dir`` (in place), from dL/dh = dh_out + dh_rec + dh_dir."""
    n, total = _check("gru_backward_step", 3, {"act": act, "dxw": dxw, "dhu": dhu},
                      {"hh": hh, "h_prev": h_prev, "dh_out": dh_out, "dh_rec": dh_rec, "dh_dir": dh_dir})
    _run("gru_backward", act.dtype, n, total, act, hh, h_prev, dh_out, dh_rec, dh_dir, dxw, dhu)
