"""Lecture II's recurrent cells as fused ops, and the ops that feed them.

Every step computes its gates from one matmul ``h_prev @ U`` added to the step's
precomputed input projection ``xw_t`` (the layer does ``x @ W + b`` for all steps in one
matmul), and has an analytic backward.

- LSTM and GRU (reset after): one Function for the whole sequence (``lstm_sequence``,
  ``gru_sequence``). Its backward is backpropagation through time over preallocated
  buffers, with dL/dU from all steps in one matmul; each step's elementwise work runs as
  CUDA kernels on CuPy, compiled loops on NumPy (numba), else the reference steps here.
  ``lstm_cell`` / ``gru_cell`` are one step of the same op, for hand-written loops.
- SimpleRNN and GRU (reset before): one Function per step; backpropagation through time
  is the autograd walking the chain of step nodes.

Weight layout (Keras', the same on NumPy and CuPy): ``W`` (features, k*units), ``U``
(units, k*units), gate blocks of ``units`` columns in the order

- LSTM: i, f, c, o (input, forget, cell candidate, output), k = 4;
- GRU: z, r, h (update, reset, candidate), k = 3; ``h = z * h_prev + (1 - z) * h_cand``;
- SimpleRNN: k = 1.

Masks and recurrent dropout (every op and cell takes both, optionally):

- ``mask`` (steps, batch) for a sequence, (batch,) for a cell, boolean or 0/1: at a step
  whose mask is 0 a row keeps its states (h_t = h_{t-1}, c_t = c_{t-1}) and its gradient
  flows straight to the previous state. The select runs inside the step kernels and loops.
- ``recurrent_mask`` (batch, units), a constant multiplier (a dropout mask already scaled by
  1/(1 - rate)): the recurrent matmul reads ``h_{t-1} * recurrent_mask``; the carried state
  (and GRU's ``z * h_{t-1}``) is not dropped.

Without either, the ops run the unmasked steps unchanged.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Function, Tensor, as_tensor
from ._util import contiguous, on_gpu, raw, require_float

__all__ = ["unstack", "lstm_cell", "lstm_sequence", "gru_cell", "gru_sequence", "simple_rnn_cell",
           "RNN_ACTIVATIONS", "cpu_jit_enabled"]

#: activations the fused SimpleRNN cell knows the derivative of (others: composed ops)
RNN_ACTIVATIONS = ("tanh", "relu", "sigmoid", "linear")

_consts: dict = {}


def _gate_consts(xp, dtype, units, kind):
    """Per-column constants, cached: one tanh serves sigmoid and tanh gates alike, since
    sigmoid(x) = (tanh(x / 2) + 1) / 2. ``scale`` multiplies the pre-activation, then
    ``act = tanh(.) * mul + add``; ``lo`` gives the derivative as ``(1 - act) * (act + lo)``
    (a(1-a) for a sigmoid gate, 1 - a^2 for a tanh gate)."""
    key = (xp.__name__, np.dtype(dtype).str, units, kind)
    got = _consts.get(key)
    if got is None:
        # which blocks are tanh: LSTM's cell candidate (block 2); GRU's z, r are sigmoid
        tanh_blocks = {"lstm": (False, False, True, False), "gru": (False, False)}[kind]
        is_tanh = np.repeat(np.array(tanh_blocks), units)
        half = np.where(is_tanh, 1.0, 0.5)
        scale = xp.asarray(half.astype(dtype))
        mul = scale  # 0.5 for sigmoid, 1 for tanh: the same numbers
        add = xp.asarray(np.where(is_tanh, 0.0, 0.5).astype(dtype))
        lo = xp.asarray(np.where(is_tanh, 1.0, 0.0).astype(dtype))
        got = _consts[key] = (scale, mul, add, lo)
    return got


def _gates(xp, z, consts):
    """In place: pre-activations z -> gate activations."""
    scale, mul, add, _ = consts
    z *= scale
    xp.tanh(z, out=z)
    z *= mul
    z += add
    return z


def _gates_grad(act, dact, consts):
    """In place on dact: multiply by each gate's derivative, from its activation."""
    lo = consts[3]
    d = 1 - act
    d *= act + lo
    dact *= d
    return dact


class Unstack(Function):
    """(T, ...) -> T arrays of shape (...): one node for all steps, so the backward
    writes one stacked gradient instead of T full-size zero arrays."""

    def forward(self, x):
        self.shape = x.shape
        return tuple(x[t] for t in range(x.shape[0]))

    def backward(self, *gys):
        xp = backend.get_array_module(*gys)
        return xp.stack(gys, axis=0)


def unstack(x):
    """Split along axis 0 into a tuple of Tensors (each step of a time-major sequence)."""
    x = as_tensor(x)
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"unstack expected an input with a non-empty axis 0, got shape {x.shape}")
    return Unstack()(x)


# ---- LSTM -----------------------------------------------------------------------------

_cpu_jit = None


def cpu_jit_enabled() -> bool:
    """Whether the NumPy backend runs the LSTM step's elementwise work as compiled loops
    (numba installed, and ``GPUDL_CPU_JIT`` not set to 0). Decided once, on first use."""
    global _cpu_jit
    if _cpu_jit is None:
        import os
        if os.environ.get("GPUDL_CPU_JIT", "1").strip().lower() in ("0", "false", "no", "off"):
            _cpu_jit = False
        else:
            try:
                import numba  # noqa: F401
            except ImportError:
                _cpu_jit = False
            else:
                try:
                    from . import _recurrent_jit  # noqa: F401  (sets up numba's disk cache)
                    _cpu_jit = True
                except Exception as exc:  # numba present but unusable here: say so, go on
                    import warnings
                    warnings.warn(f"gpudl: the compiled LSTM/GRU loops are unavailable ({exc}); "
                                  "using the NumPy steps", RuntimeWarning, stacklevel=2)
                    _cpu_jit = False
    return _cpu_jit


def _lstm_forward_step(z, xw, c_prev, c, tc, h):
    """The LSTM step's elementwise work in array operations: the reference that the compiled
    CPU loops (_recurrent_jit) and the CUDA kernels (gpudl.kernels.recurrent) are tested
    against, and the NumPy path without numba. ``z`` holds h_prev @ U on entry, the gates
    i, f, g, o on exit."""
    xp = backend.get_array_module(z)
    n = c.shape[1]
    z += xw
    _gates(xp, z, _gate_consts(xp, z.dtype, n, "lstm"))
    i, f, g, o = z[:, :n], z[:, n:2 * n], z[:, 2 * n:3 * n], z[:, 3 * n:]
    xp.multiply(f, c_prev, out=c)
    c += i * g
    xp.tanh(c, out=tc)
    xp.multiply(o, tc, out=h)


def _lstm_backward_step(act, c_prev, tc, dh_out, dh_rec, dc, dz, dc_prev):
    """The reference backward step (``dc_prev`` may be ``dc``), as _lstm_forward_step."""
    xp = backend.get_array_module(act)
    n = tc.shape[1]
    i, f, g, o = act[:, :n], act[:, n:2 * n], act[:, 2 * n:3 * n], act[:, 3 * n:]
    dh = dh_out + dh_rec
    xp.multiply(dh, tc, out=dz[:, 3 * n:])           # d o
    dct = 1 - tc * tc
    dct *= o
    dct *= dh
    dct += dc                                         # dL/dc through h and from step t+1
    xp.multiply(dct, g, out=dz[:, :n])               # d i
    xp.multiply(dct, c_prev, out=dz[:, n:2 * n])     # d f
    xp.multiply(dct, i, out=dz[:, 2 * n:3 * n])      # d g
    xp.multiply(dct, f, out=dc_prev)
    _gates_grad(act, dz, _gate_consts(xp, act.dtype, n, "lstm"))


def _lstm_forward_step_masked(z, xw, c_prev, h_prev, m, R, c, tc, h, hr):
    """The masked LSTM step's reference: _lstm_forward_step, then rows whose ``m`` (N,) is 0
    keep ``c_prev`` and ``h_prev``; ``hr`` = h * R (R (N, n) the recurrent dropout
    multiplier), the next step's matmul input (``hr`` may be ``h`` when R is all ones)."""
    xp = backend.get_array_module(z)
    _lstm_forward_step(z, xw, c_prev, c, tc, h)
    keep = (m != 0)[:, None]
    c[...] = xp.where(keep, c, c_prev)
    h[...] = xp.where(keep, h, h_prev)
    xp.multiply(h, R, out=hr)


def _lstm_backward_step_masked(act, c_prev, tc, m, R, dh_out, dh_rec, dh_skip, dc, dz, dc_prev):
    """The masked backward step's reference. dL/dh is ``dh_out + dh_rec * R + dh_skip``
    (``dh_rec`` = dL/d(h * R) from the next step's matmul, ``dh_skip`` what the next step
    passed straight through); a masked row writes dz = 0, dc_prev = dc and passes dL/dh on
    in ``dh_skip``, an unmasked one sets ``dh_skip`` to 0."""
    xp = backend.get_array_module(act)
    keep = (m != 0)[:, None]
    d = dh_rec * R
    d += dh_skip
    dh = dh_out + d
    dc_in = dc.copy()  # dc_prev may be dc
    _lstm_backward_step(act, c_prev, tc, dh_out, d, dc, dz, dc_prev)
    dz[...] = xp.where(keep, dz, 0)
    dc_prev[...] = xp.where(keep, dc_prev, dc_in)
    dh_skip[...] = xp.where(keep, 0, dh)


_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _steps(cell, like, masked=False):
    """The (forward, backward) step pair of ``cell`` ("lstm" or "gru") for arrays like
    ``like``: the CUDA kernels on CuPy, the compiled loops on NumPy, else the reference
    steps in this module (also for float16 and other types the kernels are not built for).
    ``masked``: the steps that also take a mask and a recurrent dropout multiplier."""
    if like.dtype not in _KERNEL_DTYPES:
        module = None
    elif on_gpu(like):
        from ..kernels import recurrent as module
    elif cpu_jit_enabled():
        from . import _recurrent_jit as module
    else:
        module = None
    tail = "_masked" if masked else ""
    if module is None:
        return globals()[f"_{cell}_forward_step{tail}"], globals()[f"_{cell}_backward_step{tail}"]
    return getattr(module, f"{cell}_forward_step{tail}"), getattr(module, f"{cell}_backward_step{tail}")


def _scan_buffers(cell, xw, h0, count, masked=False):
    """What a sequence op's forward needs: (xp, the forward step of ``cell``, the gate
    buffer shaped like ``xw`` (T, N, k*n), ``count`` state buffers (T, N, n))."""
    xp = backend.get_array_module(xw)
    step, _ = _steps(cell, xw, masked)
    acts = xp.empty(xw.shape, dtype=xw.dtype)
    states = tuple(xp.empty(xw.shape[:2] + (h0.shape[1],), dtype=xw.dtype) for _ in range(count))
    return xp, step, acts, states


def _mask_operands(xp, xw, h0, mask, rec_mask):
    """What the masked steps read: the mask (T, N) and the multiplier R (N, n) (ones for
    the one not given), h0 * R, and whether R drops anything."""
    steps, rows = xw.shape[:2]
    m = xp.ones((steps, rows), dtype=xw.dtype) if mask is None else mask
    if rec_mask is None:
        return m, xp.ones(h0.shape, dtype=xw.dtype), h0, False
    return m, rec_mask, h0 * rec_mask, True


def _recurrent_kernel_grad(h0, hs, dz):
    """dL/dU = sum over steps t of h_{t-1}^T @ dz[t]: all steps but the first in one matmul
    over (T-1)*N rows, instead of T small ones."""
    n, width = h0.shape[1], dz.shape[2]
    dU = h0.T @ dz[0]
    if dz.shape[0] > 1:
        dU += hs[:-1].reshape(-1, n).T @ dz[1:].reshape(-1, width)
    return dU


class LSTMSequence(Function):
    """A whole LSTM sequence as one node: (xw (T, N, 4n), h0, c0, U) -> (hs (T, N, n), c_T).

    Per step t: z = xw[t] + h @ U; i, f, o = sigmoid; g = tanh; c = f*c + i*g;
    h = o*tanh(c). Forward writes every step into preallocated (T, ...) buffers; backward
    walks the steps in reverse with one matmul per step for dL/dh, then gets dL/dU from
    all steps at once, ``H_prev^T @ dZ`` over T*N rows: one large matmul instead of T
    small ones. dL/dxw is the stacked dZ itself.

    ``mask`` (T, N) and ``rec_mask`` (N, n), arrays of xw's dtype (or None), select the
    masked steps (module docstring): the matmul reads h * rec_mask, a masked row carries
    its states, and dL/dU is then ``(H_prev * R)^T @ dZ``.
    """

    def __init__(self, mask=None, rec_mask=None):
        self.mask, self.rec_mask = mask, rec_mask

    def forward(self, xw, h0, c0, U):
        xw, h0, c0 = contiguous(xw), contiguous(h0), contiguous(c0)
        if self.mask is not None or self.rec_mask is not None:
            return self._forward_masked(xw, h0, c0, U)
        xp, step, acts, (cs, tcs, hs) = _scan_buffers("lstm", xw, h0, 3)
        h, c = h0, c0
        for t in range(xw.shape[0]):
            xp.matmul(h, U, out=acts[t])
            step(acts[t], xw[t], c, cs[t], tcs[t], hs[t])
            h, c = hs[t], cs[t]
        self._saved = (acts, cs, tcs, hs, h0, c0, U)
        return hs, cs[-1]

    def _forward_masked(self, xw, h0, c0, U):
        xp, step, acts, (cs, tcs, hs) = _scan_buffers("lstm", xw, h0, 3, masked=True)
        m, R, hr0, dropped = _mask_operands(xp, xw, h0, self.mask, self.rec_mask)
        hrs = xp.empty_like(hs) if dropped else hs  # without dropout h * R is h itself
        h, c, hr = h0, c0, hr0
        for t in range(xw.shape[0]):
            xp.matmul(hr, U, out=acts[t])
            step(acts[t], xw[t], c, h, m[t], R, cs[t], tcs[t], hs[t], hrs[t])
            h, c, hr = hs[t], cs[t], hrs[t]
        self._saved = (acts, cs, tcs, hrs, hr0, c0, U, m, R, dropped)
        return hs, cs[-1]

    def backward(self, dhs, dc_last):
        if len(self._saved) == 10:
            return self._backward_masked(dhs, dc_last)
        acts, cs, tcs, hs, h0, c0, U = self._saved
        xp = backend.get_array_module(acts)
        dhs = contiguous(dhs)
        _, step = _steps("lstm", acts)
        steps = acts.shape[0]
        dz = xp.empty_like(acts)
        dh_rec = xp.zeros_like(h0)
        dc = dc_last.astype(acts.dtype, copy=True)    # updated in place, step by step
        Ut = U.T
        for t in range(steps - 1, -1, -1):
            step(acts[t], cs[t - 1] if t else c0, tcs[t], dhs[t], dh_rec, dc, dz[t], dc)
            if t or self.needs_grad(1):
                xp.matmul(dz[t], Ut, out=dh_rec)
        dU = _recurrent_kernel_grad(h0, hs, dz) if self.needs_grad(3) else None
        return (dz, dh_rec if self.needs_grad(1) else None,
                dc if self.needs_grad(2) else None, dU)

    def _backward_masked(self, dhs, dc_last):
        acts, cs, tcs, hrs, hr0, c0, U, m, R, dropped = self._saved
        xp = backend.get_array_module(acts)
        dhs = contiguous(dhs)
        _, step = _steps("lstm", acts, masked=True)
        dz = xp.empty_like(acts)
        dh_rec, dh_skip = xp.zeros_like(hr0), xp.zeros_like(hr0)
        dc = dc_last.astype(acts.dtype, copy=True)
        Ut = U.T
        for t in range(acts.shape[0] - 1, -1, -1):
            step(acts[t], cs[t - 1] if t else c0, tcs[t], m[t], R, dhs[t], dh_rec, dh_skip, dc, dz[t], dc)
            if t or self.needs_grad(1):
                xp.matmul(dz[t], Ut, out=dh_rec)
        dh0 = None
        if self.needs_grad(1):
            dh0 = dh_rec * R if dropped else dh_rec
            dh0 += dh_skip
        dU = _recurrent_kernel_grad(hr0, hrs, dz) if self.needs_grad(3) else None
        return dz, dh0, dc if self.needs_grad(2) else None, dU


def lstm_sequence(xw, h0, c0, U, mask=None, recurrent_mask=None):
    """A whole LSTM sequence from its input projections ``xw`` (T, N, 4*units), time-major
    (``xw[t] = x_t @ W + b``), initial states ``h0``, ``c0`` (N, units) and the recurrent
    kernel ``U`` (units, 4*units): -> (hs, c_T), ``hs`` (T, N, units) every hidden state,
    ``c_T`` the last cell state.

    ``mask`` (T, N), boolean or 0/1: masked steps carry the states (``hs[t]`` is then the
    carried h, ``c_T`` the last carried c). ``recurrent_mask`` (N, units): the constant
    multiplier of h in the recurrent matmul (recurrent dropout)."""
    _check_cell("lstm_sequence", xw, h0, U, 4, c0, seq=True)
    _check_same_dtype("lstm_sequence", xw=xw, h0=h0, c0=c0, U=U)
    m, r = _check_masks("lstm_sequence", xw, h0, mask, recurrent_mask, seq=True)
    return LSTMSequence(m, r)(xw, h0, c0, U)


def lstm_cell(xw_t, h, c, U, mask=None, recurrent_mask=None):
    """One LSTM step from the input projection ``xw_t`` (N, 4*units): -> (h_new, c_new).
    ``mask`` (N,) and ``recurrent_mask`` (N, units) as in lstm_sequence."""
    _check_cell("lstm_cell", xw_t, h, U, 4, c)
    _check_same_dtype("lstm_cell", xw_t=xw_t, h=h, c=c, U=U)
    m, r = _check_masks("lstm_cell", xw_t, h, mask, recurrent_mask)
    xw_t = as_tensor(xw_t)
    hs, c_new = LSTMSequence(None if m is None else m.reshape(1, -1), r)(xw_t.reshape(1, *xw_t.shape), h, c, U)
    return hs.reshape(hs.shape[1:]), c_new


# ---- GRU ------------------------------------------------------------------------------

def _gru_forward_step(hu, xw, b_rec, h_prev, hh, h):
    """The GRU step's reference, as _lstm_forward_step: ``hu`` holds h_prev @ U on entry;
    z, r and hu_h (with the recurrent bias) on exit."""
    xp = backend.get_array_module(hu)
    n = h.shape[1]
    hu += b_rec
    zr = hu[:, :2 * n]
    zr += xw[:, :2 * n]
    _gates(xp, zr, _gate_consts(xp, hu.dtype, n, "gru"))
    xp.multiply(hu[:, n:2 * n], hu[:, 2 * n:], out=hh)
    hh += xw[:, 2 * n:]
    xp.tanh(hh, out=hh)
    xp.subtract(h_prev, hh, out=h)
    h *= hu[:, :n]
    h += hh


def _gru_backward_step(act, hh, h_prev, dh_out, dh_rec, dh_dir, dxw, dhu):
    """The reference GRU backward step, as _lstm_forward_step."""
    xp = backend.get_array_module(act)
    n = hh.shape[1]
    z, r, hu_h = act[:, :n], act[:, n:2 * n], act[:, 2 * n:]
    d = dh_out + dh_rec
    d += dh_dir
    dpre_h = dxw[:, 2 * n:]
    xp.multiply(hh, hh, out=dpre_h)
    xp.subtract(1, dpre_h, out=dpre_h)
    dpre_h *= 1 - z
    dpre_h *= d                                       # d (candidate pre-activation)
    xp.multiply(dpre_h, r, out=dhu[:, 2 * n:])
    xp.multiply(dpre_h, hu_h, out=dxw[:, n:2 * n])    # d r
    xp.multiply(h_prev - hh, d, out=dxw[:, :n])       # d z
    _gates_grad(act[:, :2 * n], dxw[:, :2 * n], _gate_consts(xp, act.dtype, n, "gru"))
    dhu[:, :2 * n] = dxw[:, :2 * n]
    xp.multiply(d, z, out=dh_dir)


def _gru_forward_step_masked(hu, xw, b_rec, h_prev, m, R, hh, h, hr):
    """The masked GRU step's reference, as _lstm_forward_step_masked: ``hu`` holds
    (h_prev * R) @ U on entry; rows whose ``m`` is 0 keep ``h_prev``; ``hr`` = h * R."""
    xp = backend.get_array_module(hu)
    _gru_forward_step(hu, xw, b_rec, h_prev, hh, h)
    h[...] = xp.where((m != 0)[:, None], h, h_prev)
    xp.multiply(h, R, out=hr)


def _gru_backward_step_masked(act, hh, h_prev, m, R, dh_out, dh_rec, dh_dir, dxw, dhu):
    """The masked GRU backward step's reference: dL/dh = dh_out + dh_rec * R + dh_dir; a
    masked row writes dxw = dhu = 0 and passes dL/dh on whole in ``dh_dir``."""
    xp = backend.get_array_module(act)
    keep = (m != 0)[:, None]
    d = dh_rec * R
    dh = dh_out + d
    dh += dh_dir
    _gru_backward_step(act, hh, h_prev, dh_out, d, dh_dir, dxw, dhu)
    dxw[...] = xp.where(keep, dxw, 0)
    dhu[...] = xp.where(keep, dhu, 0)
    dh_dir[...] = xp.where(keep, dh_dir, dh)


class GRUSequence(Function):
    """A whole GRU sequence (reset gate after the recurrent matmul: Keras' reset_after=True,
    cuDNN's and PyTorch's form) as one node: (xw (T, N, 3n), h0, U, b_rec) -> hs (T, N, n).

    Per step: hu = h @ U + b_rec; z, r = sigmoid(xw + hu)[z, r blocks];
    hh = tanh(xw_h + r * hu_h); h = z * h + (1 - z) * hh. As LSTMSequence: preallocated
    buffers, one matmul per step each way, dL/dU and dL/db_rec from all steps at once;
    ``mask`` and ``rec_mask`` as there (hu = (h * R) @ U + b_rec; ``z * h`` keeps h whole).
    """

    def __init__(self, mask=None, rec_mask=None):
        self.mask, self.rec_mask = mask, rec_mask

    def forward(self, xw, h0, U, b_rec):
        xw, h0, b_rec = contiguous(xw), contiguous(h0), contiguous(b_rec)
        if self.mask is not None or self.rec_mask is not None:
            return self._forward_masked(xw, h0, U, b_rec)
        xp, step, acts, (hhs, hs) = _scan_buffers("gru", xw, h0, 2)
        h = h0
        for t in range(xw.shape[0]):
            xp.matmul(h, U, out=acts[t])
            step(acts[t], xw[t], b_rec, h, hhs[t], hs[t])
            h = hs[t]
        self._saved = (acts, hhs, hs, h0, U)
        return hs

    def _forward_masked(self, xw, h0, U, b_rec):
        xp, step, acts, (hhs, hs) = _scan_buffers("gru", xw, h0, 2, masked=True)
        m, R, hr0, dropped = _mask_operands(xp, xw, h0, self.mask, self.rec_mask)
        hrs = xp.empty_like(hs) if dropped else hs
        h, hr = h0, hr0
        for t in range(xw.shape[0]):
            xp.matmul(hr, U, out=acts[t])
            step(acts[t], xw[t], b_rec, h, m[t], R, hhs[t], hs[t], hrs[t])
            h, hr = hs[t], hrs[t]
        self._saved = (acts, hhs, hs, h0, U, hrs, hr0, m, R, dropped)
        return hs

    def backward(self, dhs):
        masked = len(self._saved) == 10
        acts, hhs, hs, h0, U = self._saved[:5]
        xp = backend.get_array_module(acts)
        dhs = contiguous(dhs)
        _, step = _steps("gru", acts, masked)
        steps = acts.shape[0]
        dxw, dhu = xp.empty_like(acts), xp.empty_like(acts)
        dh_rec, dh_dir = xp.zeros_like(h0), xp.zeros_like(h0)
        Ut = U.T
        if masked:
            hrs, hr0, m, R, dropped = self._saved[5:]
        for t in range(steps - 1, -1, -1):
            h_prev = hs[t - 1] if t else h0
            if masked:
                step(acts[t], hhs[t], h_prev, m[t], R, dhs[t], dh_rec, dh_dir, dxw[t], dhu[t])
            else:
                step(acts[t], hhs[t], h_prev, dhs[t], dh_rec, dh_dir, dxw[t], dhu[t])
            if t or self.needs_grad(1):
                xp.matmul(dhu[t], Ut, out=dh_rec)
        dh0 = dU = db = None
        if self.needs_grad(1):
            dh0 = dh_rec * R if masked and dropped else dh_rec
            dh0 = dh0 + dh_dir
        if self.needs_grad(2):
            dU = _recurrent_kernel_grad(hr0, hrs, dhu) if masked else _recurrent_kernel_grad(h0, hs, dhu)
        if self.needs_grad(3):
            db = dhu.reshape(-1, dhu.shape[-1]).sum(axis=0)
        return dxw, dh0, dU, db


def gru_sequence(xw, h0, U, b_rec=None, mask=None, recurrent_mask=None):
    """A whole GRU sequence, reset gate after the matmul, from its input projections ``xw``
    (T, N, 3*units), time-major, the initial state ``h0`` (N, units), the recurrent kernel
    ``U`` (units, 3*units) and recurrent bias ``b_rec`` (3*units,) (zeros when None):
    -> hs (T, N, units), every hidden state. ``mask`` (T, N) and ``recurrent_mask``
    (N, units) as in lstm_sequence."""
    _check_cell("gru_sequence", xw, h0, U, 3, seq=True)
    b_rec = _recurrent_bias("gru_sequence", U, b_rec)
    _check_same_dtype("gru_sequence", xw=xw, h0=h0, U=U, b_rec=b_rec)
    m, r = _check_masks("gru_sequence", xw, h0, mask, recurrent_mask, seq=True)
    return GRUSequence(m, r)(xw, h0, U, b_rec)


def _recurrent_bias(op, U, b_rec):
    if b_rec is None:
        return Tensor._wrap(backend.get_array_module(U.data).zeros(U.shape[1], dtype=U.dtype))
    if tuple(b_rec.shape) != (U.shape[1],):
        raise ValueError(f"{op} expected the recurrent bias b_rec of shape ({U.shape[1]},), "
                         f"got {tuple(b_rec.shape)}")
    return b_rec


class GRUCellResetBefore(Function):
    """GRU step with the reset gate applied to the state before its matmul (Keras'
    reset_after=False, the original GRU): (xw_t, h, U) -> h_new.

    z, r = sigmoid(xw_zr + h @ U_zr); hh = tanh(xw_h + (r * h) @ U_h);
    h_new = z * h + (1 - z) * hh. With ``rec_mask`` R both matmuls read h * R; with
    ``mask`` (N,) a row whose mask is 0 keeps h.
    """

    def __init__(self, mask=None, rec_mask=None):
        self.mask, self.rec_mask = mask, rec_mask

    def forward(self, xw, h, U):
        xp = backend.get_array_module(xw)
        n = h.shape[1]
        consts = _gate_consts(xp, xw.dtype, n, "gru")
        hr = h if self.rec_mask is None else h * self.rec_mask
        zr = hr @ U[:, :2 * n]
        zr += xw[:, :2 * n]
        _gates(xp, zr, consts)
        z, r = zr[:, :n], zr[:, n:]
        rh = r * hr
        hh = rh @ U[:, 2 * n:]
        hh += xw[:, 2 * n:]
        xp.tanh(hh, out=hh)
        h_new = h - hh
        h_new *= z
        h_new += hh
        keep = None if self.mask is None else (self.mask != 0)[:, None]
        if keep is not None:
            h_new = xp.where(keep, h_new, h)
        self._saved = (zr, rh, hh, h, hr, U, consts, keep)
        return h_new

    def backward(self, dh_out):
        zr, rh, hh, h, hr, U, consts, keep = self._saved
        xp = backend.get_array_module(zr)
        n = h.shape[1]
        z, r = zr[:, :n], zr[:, n:]
        dh = dh_out if keep is None else xp.where(keep, dh_out, 0)
        dxw = xp.empty((h.shape[0], 3 * n), dtype=dh.dtype)
        dzr, dpre_h = dxw[:, :2 * n], dxw[:, 2 * n:]
        xp.multiply(dh, h - hh, out=dzr[:, :n])
        xp.multiply(1 - hh * hh, 1 - z, out=dpre_h)
        dpre_h *= dh
        drh = dpre_h @ U[:, 2 * n:].T
        xp.multiply(drh, hr, out=dzr[:, n:])
        _gates_grad(zr, dzr, consts)
        dh_prev = None
        if self.inputs[1].requires_grad:
            dh_prev = dzr @ U[:, :2 * n].T
            dh_prev += drh * r
            if self.rec_mask is not None:
                dh_prev *= self.rec_mask
            dh_prev += dh * z
            if keep is not None:
                dh_prev += xp.where(keep, 0, dh_out)
        dU = None
        if self.inputs[2].requires_grad:
            dU = xp.concatenate([hr.T @ dzr, rh.T @ dpre_h], axis=1)
        return dxw, dh_prev, dU


def gru_cell(xw_t, h, U, b_rec=None, reset_after=True, mask=None, recurrent_mask=None):
    """One GRU step from the input projection ``xw_t`` (N, 3*units) -> h_new.

    ``reset_after=True`` takes the recurrent bias ``b_rec`` (3*units,) (it sits inside
    ``r * (h @ U_h + b_rec_h)``; zeros when None); ``reset_after=False`` takes none.
    ``mask`` (N,) and ``recurrent_mask`` (N, units) as in lstm_sequence.
    """
    _check_cell("gru_cell", xw_t, h, U, 3)
    m, r = _check_masks("gru_cell", xw_t, h, mask, recurrent_mask)
    if reset_after:
        b_rec = _recurrent_bias("gru_cell", U, b_rec)
        _check_same_dtype("gru_cell", xw_t=xw_t, h=h, U=U, b_rec=b_rec)
        xw_t = as_tensor(xw_t)
        op = GRUSequence(None if m is None else m.reshape(1, -1), r)
        hs = op(xw_t.reshape(1, *xw_t.shape), h, U, b_rec)
        return hs.reshape(hs.shape[1:])
    if b_rec is not None:
        raise ValueError("gru_cell with reset_after=False takes no recurrent bias")
    return GRUCellResetBefore(m, r)(xw_t, h, U)


# ---- SimpleRNN -------------------------------------------------------------------------

class SimpleRNNCell(Function):
    """h_new = act(xw_t + h @ U) for act in tanh, relu, sigmoid, linear; with ``rec_mask``
    R the matmul reads h * R, with ``mask`` (N,) a row whose mask is 0 keeps h."""

    def __init__(self, activation="tanh", mask=None, rec_mask=None):
        self.activation = activation
        self.mask, self.rec_mask = mask, rec_mask

    def forward(self, xw, h, U):
        xp = backend.get_array_module(xw)
        hr = h if self.rec_mask is None else h * self.rec_mask
        a = hr @ U
        a += xw
        act = self.activation
        if act == "tanh":
            xp.tanh(a, out=a)
        elif act == "relu":
            xp.maximum(a, 0, out=a)
        elif act == "sigmoid":
            half = xw.dtype.type(0.5)
            a *= half
            xp.tanh(a, out=a)
            a *= half
            a += half
        keep = None if self.mask is None else (self.mask != 0)[:, None]
        self._saved = (a, hr, U, keep)
        return a if keep is None else xp.where(keep, a, h)

    def backward(self, dh):
        y, hr, U, keep = self._saved
        xp = backend.get_array_module(y)
        act = self.activation
        if act == "tanh":
            da = dh * (1 - y * y)
        elif act == "relu":
            da = dh * (y > 0)
        elif act == "sigmoid":
            da = dh * y * (1 - y)
        else:
            da = dh
        if keep is not None:
            da = xp.where(keep, da, 0)
        dh_prev = None
        if self.inputs[1].requires_grad:
            dh_prev = da @ U.T
            if self.rec_mask is not None:
                dh_prev *= self.rec_mask
            if keep is not None:
                dh_prev += xp.where(keep, 0, dh)
        dU = hr.T @ da if self.inputs[2].requires_grad else None
        return da, dh_prev, dU


def simple_rnn_cell(xw_t, h, U, activation="tanh", mask=None, recurrent_mask=None):
    """One Elman step: ``activation(xw_t + h @ U)``, activation one of RNN_ACTIVATIONS.
    ``mask`` (N,) and ``recurrent_mask`` (N, units) as in lstm_sequence."""
    if activation not in RNN_ACTIVATIONS:
        raise ValueError(f"simple_rnn_cell expected an activation in {', '.join(RNN_ACTIVATIONS)}, "
                         f"got {activation!r}")
    _check_cell("simple_rnn_cell", xw_t, h, U, 1)
    m, r = _check_masks("simple_rnn_cell", xw_t, h, mask, recurrent_mask)
    return SimpleRNNCell(activation, m, r)(xw_t, h, U)


def _check_cell(op, xw, h, U, k, c=None, seq=False):
    """Shapes of one step (``xw`` (N, k*n)) or, with ``seq``, of a sequence (T, N, k*n)."""
    require_float(xw, op)
    n = h.shape[-1]
    if len(U.shape) != 2 or tuple(U.shape) != (n, k * n):
        raise ValueError(f"{op} expected U of shape ({n}, {k * n}) for {n} units, got {tuple(U.shape)}")
    if len(h.shape) != 2:
        raise ValueError(f"{op} expected the state h of rank 2 (batch, units), got shape {tuple(h.shape)}")
    want = (h.shape[0], k * n)
    if seq:
        if len(xw.shape) != 3 or xw.shape[0] < 1 or tuple(xw.shape[1:]) != want:
            raise ValueError(f"{op} expected xw of shape (steps >= 1, {want[0]}, {want[1]}) for state "
                             f"{tuple(h.shape)}, got {tuple(xw.shape)}")
    elif tuple(xw.shape) != want:
        raise ValueError(f"{op} expected xw_t of shape {want} for state {tuple(h.shape)}, "
                         f"got {tuple(xw.shape)}")
    if c is not None and tuple(c.shape) != tuple(h.shape):
        raise ValueError(f"{op} expected the cell state c of shape {tuple(h.shape)}, got {tuple(c.shape)}")


def _check_masks(op, xw, h, mask, rec_mask, seq=False):
    """The mask ((steps, batch) with ``seq``, else (batch,); boolean or numbers, nonzero =
    keep) and the recurrent multiplier (batch, units) as C-contiguous arrays of xw's dtype
    on its backend, or None. Shapes and backends only: values are never read."""
    ref = raw(xw)
    dtype = ref.dtype
    out = []
    for name, a, want in (("mask", mask, (tuple(xw.shape[:2]) if seq else (h.shape[0],))),
                          ("recurrent_mask", rec_mask, tuple(h.shape))):
        if a is None:
            out.append(None)
            continue
        a = raw(a)
        if not hasattr(a, "shape") or not hasattr(a, "dtype"):
            a = backend.get_array_module(ref).asarray(a)
        what = "(steps, batch)" if name == "mask" and seq else ("(batch,)" if name == "mask" else "(batch, units)")
        if tuple(a.shape) != want:
            raise ValueError(f"{op} expected {name} of shape {want} {what}, got {tuple(a.shape)}")
        if a.dtype.kind not in "biuf":
            raise TypeError(f"{op} expected a boolean or numeric {name}, got dtype {a.dtype}")
        backend.check_same_backend([ref, a], op)
        if name == "mask":
            a = a != 0
        out.append(a.astype(dtype, order="C", copy=False))
    return tuple(out)


def _check_same_dtype(op, **arrays):
    dtypes = {name: np.dtype(a.dtype) for name, a in arrays.items()}
    if len(set(dtypes.values())) > 1:
        got = ", ".join(f"{name} {dt}" for name, dt in dtypes.items())
        raise TypeError(f"{op} expected one floating-point dtype for all its inputs, got {got}")
