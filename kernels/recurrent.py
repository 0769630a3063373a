"""The LSTM and GRU steps' elementwise work, one CUDA kernel each way per cell.

The recurrent matmul of a step (``h @ U`` forward, ``dz @ U.T`` backward) stays on cuBLAS;
everything between two matmuls, about fifteen elementwise passes when written with array
operations, is one kernel here: one thread per (row, unit) reads that unit's gate
pre-activations from every gate block and writes the gates, the states and the gradients.
A sequence of T steps is then 2T launches each way instead of about 30T.

The formulas and the in/out contract are those of gpudl.functional.recurrent's NumPy twins
(``_lstm_forward_step`` and friends), which the tests hold these kernels to. Sigmoid is
``(tanh(x/2) + 1) / 2``: no overflow, NaN kept.

The ``*_masked`` kernels are the same steps with two more operands, read in the same pass:
a mask row ``m`` (N,) (0 = the row carries its states through this step, forward; its
gradient goes straight to the previous state, backward) and the recurrent dropout
multiplier ``R`` (N, n) (the next matmul reads ``h * R``, written here as ``hr``).
"""
from __future__ import annotations

import math

from numba import cuda

from . import _launch

__all__ = ["lstm_forward_step", "lstm_backward_step", "gru_forward_step", "gru_backward_step",
           "lstm_forward_step_masked", "lstm_backward_step_masked", "gru_forward_step_masked",
           "gru_backward_step_masked", "KERNELS"]

THREADS = 256


def _make(ft):
    """The kernels for float type ``ft``; typed constants keep float32 math in float32."""
    HALF, ONE, ZERO = ft(0.5), ft(1), ft(0)

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

    def lstm_forward_masked_kernel(z, xw, c_prev, h_prev, m, R, c, tc, h, hr, n, total):
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
            cp = c_prev[r, k]
            cn = f * cp + i * g
            t = math.tanh(cn)
            keep = m[r] != ZERO
            hv = o * t if keep else h_prev[r, k]
            c[r, k] = cn if keep else cp
            tc[r, k] = t
            h[r, k] = hv
            hr[r, k] = hv * R[r, k]    # hr may be h (R all ones): the same value again
            idx += step

    def lstm_backward_masked_kernel(act, c_prev, tc, m, R, dh_out, dh_rec, dh_skip, dc, dz, dc_prev,
                                    n, total):
        idx = cuda.grid(1)
        step = cuda.gridsize(1)
        while idx < total:
            r = idx // n
            k = idx - r * n
            d = dh_out[r, k] + dh_rec[r, k] * R[r, k] + dh_skip[r, k]
            dcv = dc[r, k]                 # read before dc_prev (may be dc) is written
            if m[r] != ZERO:
                i = act[r, k]
                f = act[r, n + k]
                g = act[r, 2 * n + k]
                o = act[r, 3 * n + k]
                t = tc[r, k]
                dct = d * o * (ONE - t * t) + dcv
                dz[r, k] = dct * g * i * (ONE - i)
                dz[r, n + k] = dct * c_prev[r, k] * f * (ONE - f)
                dz[r, 2 * n + k] = dct * i * (ONE - g * g)
                dz[r, 3 * n + k] = d * t * o * (ONE - o)
                dc_prev[r, k] = dct * f
                dh_skip[r, k] = ZERO
            else:                          # the states were carried: so is their gradient
                dz[r, k] = ZERO
                dz[r, n + k] = ZERO
                dz[r, 2 * n + k] = ZERO
                dz[r, 3 * n + k] = ZERO
                dc_prev[r, k] = dcv
                dh_skip[r, k] = d
            idx += step

    def gru_forward_masked_kernel(hu, xw, b_rec, h_prev, m, R, hh, h, hr, n, total):
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
            hp = h_prev[r, k]
            hv = cand + zg * (hp - cand) if m[r] != ZERO else hp
            h[r, k] = hv
            hr[r, k] = hv * R[r, k]
            idx += step

    def gru_backward_masked_kernel(act, hh, h_prev, m, R, dh_out, dh_rec, dh_dir, dxw, dhu, n, total):
        idx = cuda.grid(1)
        step = cuda.gridsize(1)
        while idx < total:
            r = idx // n
            k = idx - r * n
            d = dh_out[r, k] + dh_rec[r, k] * R[r, k] + dh_dir[r, k]
            if m[r] != ZERO:
                zg = act[r, k]
                rg = act[r, n + k]
                hu_h = act[r, 2 * n + k]
                t = hh[r, k]
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
            else:
                dxw[r, k] = ZERO
                dxw[r, n + k] = ZERO
                dxw[r, 2 * n + k] = ZERO
                dhu[r, k] = ZERO
                dhu[r, n + k] = ZERO
                dhu[r, 2 * n + k] = ZERO
                dh_dir[r, k] = d
            idx += step

    return {
        "lstm_forward": lstm_forward_kernel,
        "lstm_backward": lstm_backward_kernel,
        "gru_forward": gru_forward_kernel,
        "gru_backward": gru_backward_kernel,
        "lstm_forward_masked": lstm_forward_masked_kernel,
        "lstm_backward_masked": lstm_backward_masked_kernel,
        "gru_forward_masked": gru_forward_masked_kernel,
        "gru_backward_masked": gru_backward_masked_kernel,
    }


_M = "{f}[:, ::1]"
_V = "{f}[::1]"
_SIGNATURES = {
    "lstm_forward": f"void({', '.join([_M] * 6)}, int64, int64)",
    "lstm_backward": f"void({', '.join([_M] * 8)}, int64, int64)",
    "gru_forward": f"void({_M}, {_M}, {{f}}[::1], {_M}, {_M}, {_M}, int64, int64)",
    "gru_backward": f"void({', '.join([_M] * 8)}, int64, int64)",
    "lstm_forward_masked": f"void({', '.join([_M] * 4)}, {_V}, {', '.join([_M] * 5)}, int64, int64)",
    "lstm_backward_masked": f"void({', '.join([_M] * 3)}, {_V}, {', '.join([_M] * 7)}, int64, int64)",
    "gru_forward_masked": f"void({_M}, {_M}, {_V}, {_M}, {_V}, {', '.join([_M] * 4)}, int64, int64)",
    "gru_backward_masked": f"void({', '.join([_M] * 3)}, {_V}, {', '.join([_M] * 6)}, int64, int64)",
}

_kernels = _launch.build_kernels(_make, _SIGNATURES)

#: ``[(pyfunc, [signature, ...]), ...]`` for every kernel of this module
KERNELS = _kernels.listing()


def _check(op, gates, wide, narrow, vectors=None, rows_vectors=None):
    """Backend, dtype, contiguity and shapes: ``wide`` arrays (N, gates*n), ``narrow``
    (N, n), ``vectors`` (gates*n,), ``rows_vectors`` (N,). Returns (n, N*n)."""
    arrays = {**wide, **narrow, **(vectors or {}), **(rows_vectors or {})}
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
    for name, a in (rows_vectors or {}).items():
        _launch.check_shape(op, name, a, (rows,))
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


def lstm_forward_step_masked(z, xw, c_prev, h_prev, m, R, c, tc, h, hr):
    """lstm_forward_step, then rows whose mask ``m`` (N,) is 0 keep ``c_prev`` and
    ``h_prev``; ``hr`` = h * R (R (N, n)), the next step's matmul input (may be ``h``)."""
    n, total = _check("lstm_forward_step_masked", 4, {"z": z, "xw": xw},
                      {"c_prev": c_prev, "h_prev": h_prev, "R": R, "c": c, "tc": tc, "h": h, "hr": hr},
                      rows_vectors={"m": m})
    _run("lstm_forward_masked", z.dtype, n, total, z, xw, c_prev, h_prev, m, R, c, tc, h, hr)


def lstm_backward_step_masked(act, c_prev, tc, m, R, dh_out, dh_rec, dh_skip, dc, dz, dc_prev):
    """lstm_backward_step with dL/dh = dh_out + dh_rec * R + dh_skip; rows whose mask is 0
    write dz = 0, dc_prev = dc and pass dL/dh on in ``dh_skip`` (0 there for the others)."""
    n, total = _check("lstm_backward_step_masked", 4, {"act": act, "dz": dz},
                      {"c_prev": c_prev, "tc": tc, "R": R, "dh_out": dh_out, "dh_rec": dh_rec,
                       "dh_skip": dh_skip, "dc": dc, "dc_prev": dc_prev}, rows_vectors={"m": m})
    _run("lstm_backward_masked", act.dtype, n, total, act, c_prev, tc, m, R, dh_out, dh_rec, dh_skip,
         dc, dz, dc_prev)


def gru_forward_step_masked(hu, xw, b_rec, h_prev, m, R, hh, h, hr):
    """gru_forward_step (``hu`` = (h_prev * R) @ U), then rows whose mask is 0 keep
    ``h_prev``; ``hr`` = h * R."""
    n, total = _check("gru_forward_step_masked", 3, {"hu": hu, "xw": xw},
                      {"h_prev": h_prev, "R": R, "hh": hh, "h": h, "hr": hr}, {"b_rec": b_rec},
                      rows_vectors={"m": m})
    _run("gru_forward_masked", hu.dtype, n, total, hu, xw, b_rec, h_prev, m, R, hh, h, hr)


def gru_backward_step_masked(act, hh, h_prev, m, R, dh_out, dh_rec, dh_dir, dxw, dhu):
    """gru_backward_step with dL/dh = dh_out + dh_rec * R + dh_dir; rows whose mask is 0
    write dxw = dhu = 0 and dL/dh into ``dh_dir``."""
    n, total = _check("gru_backward_step_masked", 3, {"act": act, "dxw": dxw, "dhu": dhu},
                      {"hh": hh, "h_prev": h_prev, "R": R, "dh_out": dh_out, "dh_rec": dh_rec,
                       "dh_dir": dh_dir}, rows_vectors={"m": m})
    _run("gru_backward_masked", act.dtype, n, total, act, hh, h_prev, m, R, dh_out, dh_rec, dh_dir, dxw, dhu)
