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
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Function, Tensor, as_tensor
from ._util import contiguous, on_gpu, require_float

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


_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _steps(cell, like):
    """The (forward, backward) step pair of ``cell`` ("lstm" or "gru") for arrays like
    ``like``: the CUDA kernels on CuPy, the compiled loops on NumPy, else the reference
    steps in this module (also for float16 and other types the kernels are not built for)."""
    if like.dtype not in _KERNEL_DTYPES:
        module = None
    elif on_gpu(like):
        from ..kernels import recurrent as module
    elif cpu_jit_enabled():
        from . import _recurrent_jit as module
    else:
        module = None
    if module is None:
        return globals()[f"_{cell}_forward_step"], globals()[f"_{cell}_backward_step"]
    return getattr(module, f"{cell}_forward_step"), getattr(module, f"{cell}_backward_step")


def _scan_buffers(cell, xw, h0, count):
    """What a sequence op's forward needs: (xp, the forward step of ``cell``, the gate
    buffer shaped like ``xw`` (T, N, k*n), ``count`` state buffers (T, N, n))."""
    xp = backend.get_array_module(xw)
    step, _ = _steps(cell, xw)
    acts = xp.empty(xw.shape, dtype=xw.dtype)
    states = tuple(xp.empty(xw.shape[:2] + (h0.shape[1],), dtype=xw.dtype) for _ in range(count))
    return xp, step, acts, states


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
    """

    def forward(self, xw, h0, c0, U):
        xw, h0, c0 = contiguous(xw), contiguous(h0), contiguous(c0)
        xp, step, acts, (cs, tcs, hs) = _scan_buffers("lstm", xw, h0, 3)
        h, c = h0, c0
        for t in range(xw.shape[0]):
            xp.matmul(h, U, out=acts[t])
            step(acts[t], xw[t], c, cs[t], tcs[t], hs[t])
            h, c = hs[t], cs[t]
        self._saved = (acts, cs, tcs, hs, h0, c0, U)
        return hs, cs[-1]

    def backward(self, dhs, dc_last):
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


def lstm_sequence(xw, h0, c0, U):
    """A whole LSTM sequence from its input projections ``xw`` (T, N, 4*units), time-major
    (``xw[t] = x_t @ W + b``), initial states ``h0``, ``c0`` (N, units) and the recurrent
    kernel ``U`` (units, 4*units): -> (hs, c_T), ``hs`` (T, N, units) every hidden state,
    ``c_T`` the last cell state."""
    _check_cell("lstm_sequence", xw, h0, U, 4, c0, seq=True)
    _check_same_dtype("lstm_sequence", xw=xw, h0=h0, c0=c0, U=U)
    return LSTMSequence()(xw, h0, c0, U)


def lstm_cell(xw_t, h, c, U):
    """One LSTM step from the input projection ``xw_t`` (N, 4*units): -> (h_new, c_new)."""
    _check_cell("lstm_cell", xw_t, h, U, 4, c)
    _check_same_dtype("lstm_cell", xw_t=xw_t, h=h, c=c, U=U)
    xw_t = as_tensor(xw_t)
    hs, c_new = LSTMSequence()(xw_t.reshape(1, *xw_t.shape), h, c, U)
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


class GRUSequence(Function):
    """A whole GRU sequence (reset gate after the recurrent matmul: Keras' reset_after=True,
    cuDNN's and PyTorch's form) as one node: (xw (T, N, 3n), h0, U, b_rec) -> hs (T, N, n).

    Per step: hu = h @ U + b_rec; z, r = sigmoid(xw + hu)[z, r blocks];
    hh = tanh(xw_h + r * hu_h); h = z * h + (1 - z) * hh. As LSTMSequence: preallocated
    buffers, one matmul per step each way, dL/dU and dL/db_rec from all steps at once.
    """

    def forward(self, xw, h0, U, b_rec):
        xw, h0, b_rec = contiguous(xw), contiguous(h0), contiguous(b_rec)
        xp, step, acts, (hhs, hs) = _scan_buffers("gru", xw, h0, 2)
        h = h0
        for t in range(xw.shape[0]):
            xp.matmul(h, U, out=acts[t])
            step(acts[t], xw[t], b_rec, h, hhs[t], hs[t])
            h = hs[t]
        self._saved = (acts, hhs, hs, h0, U)
        return hs

    def backward(self, dhs):
        acts, hhs, hs, h0, U = self._saved
        xp = backend.get_array_module(acts)
        dhs = contiguous(dhs)
        _, step = _steps("gru", acts)
        steps = acts.shape[0]
        dxw, dhu = xp.empty_like(acts), xp.empty_like(acts)
        dh_rec, dh_dir = xp.zeros_like(h0), xp.zeros_like(h0)
        Ut = U.T
        for t in range(steps - 1, -1, -1):
            step(acts[t], hhs[t], hs[t - 1] if t else h0, dhs[t], dh_rec, dh_dir, dxw[t], dhu[t])
            if t or self.needs_grad(1):
                xp.matmul(dhu[t], Ut, out=dh_rec)
        dh0 = dh_rec + dh_dir if self.needs_grad(1) else None
        dU = _recurrent_kernel_grad(h0, hs, dhu) if self.needs_grad(2) else None
        db = None
        if self.needs_grad(3):
            db = dhu.reshape(-1, dhu.shape[-1]).sum(axis=0)
        return dxw, dh0, dU, db


def gru_sequence(xw, h0, U, b_rec=None):
    """A whole GRU sequence, reset gate after the matmul, from its input projections ``xw``
    (T, N, 3*units), time-major, the initial state ``h0`` (N, units), the recurrent kernel
    ``U`` (units, 3*units) and recurrent bias ``b_rec`` (3*units,) (zeros when None):
    -> hs (T, N, units), every hidden state."""
    _check_cell("gru_sequence", xw, h0, U, 3, seq=True)
    b_rec = _recurrent_bias("gru_sequence", U, b_rec)
    _check_same_dtype("gru_sequence", xw=xw, h0=h0, U=U, b_rec=b_rec)
    return GRUSequence()(xw, h0, U, b_rec)


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
    h_new = z * h + (1 - z) * hh.
    """

    def forward(self, xw, h, U):
        xp = backend.get_array_module(xw)
        n = h.shape[1]
        consts = _gate_consts(xp, xw.dtype, n, "gru")
        zr = h @ U[:, :2 * n]
        zr += xw[:, :2 * n]
        _gates(xp, zr, consts)
        z, r = zr[:, :n], zr[:, n:]
        rh = r * h
        hh = rh @ U[:, 2 * n:]
        hh += xw[:, 2 * n:]
        xp.tanh(hh, out=hh)
        h_new = h - hh
        h_new *= z
        h_new += hh
        self._saved = (zr, rh, hh, h, U, consts)
        return h_new

    def backward(self, dh):
        zr, rh, hh, h, U, consts = self._saved
        xp = backend.get_array_module(zr)
        n = h.shape[1]
        z, r = zr[:, :n], zr[:, n:]
        dxw = xp.empty((h.shape[0], 3 * n), dtype=dh.dtype)
        dzr, dpre_h = dxw[:, :2 * n], dxw[:, 2 * n:]
        xp.multiply(dh, h - hh, out=dzr[:, :n])
        xp.multiply(1 - hh * hh, 1 - z, out=dpre_h)
        dpre_h *= dh
        drh = dpre_h @ U[:, 2 * n:].T
        xp.multiply(drh, h, out=dzr[:, n:])
        _gates_grad(zr, dzr, consts)
        dh_prev = None
        if self.inputs[1].requires_grad:
            dh_prev = dzr @ U[:, :2 * n].T
            dh_prev += dh * z
            dh_prev += drh * r
        dU = None
        if self.inputs[2].requires_grad:
            dU = xp.concatenate([h.T @ dzr, rh.T @ dpre_h], axis=1)
        return dxw, dh_prev, dU


def gru_cell(xw_t, h, U, b_rec=None, reset_after=True):
    """One GRU step from the input projection ``xw_t`` (N, 3*units) -> h_new.

    ``reset_after=True`` takes the recurrent bias ``b_rec`` (3*units,) (it sits inside
    ``r * (h @ U_h + b_rec_h)``; zeros when None); ``reset_after=False`` takes none.
    """
    _check_cell("gru_cell", xw_t, h, U, 3)
    if reset_after:
        b_rec = _recurrent_bias("gru_cell", U, b_rec)
        _check_same_dtype("gru_cell", xw_t=xw_t, h=h, U=U, b_rec=b_rec)
        xw_t = as_tensor(xw_t)
        hs = GRUSequence()(xw_t.reshape(1, *xw_t.shape), h, U, b_rec)
        return hs.reshape(hs.shape[1:])
    if b_rec is not None:
        raise ValueError("gru_cell with reset_after=False takes no recurrent bias")
    return GRUCellResetBefore()(xw_t, h, U)


# ---- SimpleRNN -------------------------------------------------------------------------

class SimpleRNNCell(Function):
    """h_new = act(xw_t + h @ U) for act in tanh, relu, sigmoid, linear."""

    def __init__(self, activation="tanh"):
        self.activation = activation

    def forward(self, xw, h, U):
        xp = backend.get_array_module(xw)
        a = h @ U
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
        self._saved = (a, h, U)
        return a

    def backward(self, dh):
        y, h, U = self._saved
        act = self.activation
        if act == "tanh":
            da = dh * (1 - y * y)
        elif act == "relu":
            da = dh * (y > 0)
        elif act == "sigmoid":
            da = dh * y * (1 - y)
        else:
            da = dh
        dh_prev = da @ U.T if self.inputs[1].requires_grad else None
        dU = h.T @ da if self.inputs[2].requires_grad else None
        return da, dh_prev, dU


def simple_rnn_cell(xw_t, h, U, activation="tanh"):
    """One Elman step: ``activation(xw_t + h @ U)``, activation one of RNN_ACTIVATIONS."""
    if activation not in RNN_ACTIVATIONS:
        raise ValueError(f"simple_rnn_cell expected an activation in {', '.join(RNN_ACTIVATIONS)}, "
                         f"got {activation!r}")
    _check_cell("simple_rnn_cell", xw_t, h, U, 1)
    return SimpleRNNCell(activation)(xw_t, h, U)


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


def _check_same_dtype(op, **arrays):
    dtypes = {name: np.dtype(a.dtype) for name, a in arrays.items()}
    if len(set(dtypes.values())) > 1:
        got = ", ".join(f"{name} {dt}" for name, dt in dtypes.items())
        raise TypeError(f"{op} expected one floating-point dtype for all its inputs, got {got}")
