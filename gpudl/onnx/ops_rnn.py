"""ONNX LSTM, GRU and RNN on gpudl's fused recurrent ops.

ONNX lays the gates of W (D, gates*H, F), R (D, gates*H, H) and B (D, 2*gates*H) out per
direction; the LSTM's are i, o, f, c where gpudl's (Keras') are i, f, c, o, so W and R are
re-ordered by indexing (differentiable: an imported model trains the ONNX tensors
themselves). The input projection of all steps is one matmul, then the whole sequence runs
in ``lstm_sequence`` / ``gru_sequence`` (reset after, ONNX's ``linear_before_reset=1``), or
step by step for GRU with the reset before and for RNN.

``sequence_lens`` masks the steps past each sequence's end (states carried, outputs zero);
the reverse direction reads each sequence's own steps backwards. Activations other than the
defaults, ``clip``, ``input_forget`` and peepholes run a composed step of autograd ops.
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..autograd import stack
from . import functions as G
from ._values import host, raw, same_side, wrap, xp_of
from .runtime import UnsupportedOpError, op

_DEFAULTS = {"LSTM": ["sigmoid", "tanh", "tanh"], "GRU": ["sigmoid", "tanh"], "RNN": ["tanh"]}
_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
#: ONNX's LSTM gates (i, o, f, c) in gpudl's order (i, f, c, o)
_LSTM_ORDER = (0, 2, 3, 1)


class _Setup:
    """Sizes, directions, activations and the per-direction tensors of one recurrent node."""

    def __init__(self, node, x, w, r, b, seq_lens):
        self.kind = node.op
        self.layout = int(node.attr("layout", 0))
        self.x = x.transpose((1, 0, 2)) if self.layout else x  # time-major (T, N, F)
        self.steps, self.batch = self.x.shape[:2]
        self.hidden = int(node.attr("hidden_size") or r.shape[-1])
        direction = node.attr("direction", "forward")
        self.dirs = ["forward", "reverse"] if direction == "bidirectional" else [direction]
        acts = [a.lower() for a in (node.attr("activations") or _DEFAULTS[self.kind] * len(self.dirs))]
        per = len(_DEFAULTS[self.kind])
        self.acts = [acts[i * per:(i + 1) * per] for i in range(len(self.dirs))]
        self.alphas = list(node.attr("activation_alpha") or [])
        self.betas = list(node.attr("activation_beta") or [])
        self.clip = node.attr("clip")
        self.w, self.r, self.b = w, r, b
        self.lens = None
        if seq_lens is not None:
            lens = host(seq_lens).astype(np.int64)
            if (lens != self.steps).any():
                self.lens = lens

    def mask(self, xp, dtype):
        """(T, N) 1/0 for steps inside each sequence, or None without sequence_lens."""
        if self.lens is None:
            return None
        return xp.asarray((np.arange(self.steps)[:, None] < self.lens[None, :]).astype(dtype))

    def reverse_index(self, xp):
        """(time index, batch index) reading each sequence's own steps backwards."""
        t = np.arange(self.steps)[:, None]
        lens = np.full(self.batch, self.steps) if self.lens is None else self.lens
        pos = np.where(t < lens[None, :], lens[None, :] - 1 - t, t)
        return xp.asarray(pos), xp.asarray(np.arange(self.batch)[None, :])

    def bias(self, d, width):
        """(input bias, recurrent bias) of direction d, zeros without B."""
        if self.b is None:
            xp = xp_of(self.x)
            zero = wrap(xp.zeros(width, dtype=raw(self.x).dtype))
            return zero, zero
        return self.b[d, :width], self.b[d, width:]


def _initial(init, d, s, xp, dtype):
    if init is None:
        return wrap(xp.zeros((s.batch, s.hidden), dtype=dtype))
    return init[:, d] if s.layout else init[d]


def _outputs(s, ys, hs, cs=None):
    """ONNX outputs from per-direction sequences (T, N, H) and final states (N, H)."""
    y = stack(ys, axis=1)  # (T, D, N, H)
    yh = stack(hs, axis=0)  # (D, N, H)
    yc = stack(cs, axis=0) if cs is not None else None
    if s.layout:
        y = y.transpose((2, 0, 1, 3))
        yh = yh.transpose((1, 0, 2))
        yc = yc.transpose((1, 0, 2)) if yc is not None else None
    return (y, yh) if yc is None else (y, yh, yc)


def _run_direction(s, d, xw, step_all):
    """Run one direction over the time-major projections ``xw`` with ``step_all(xw, mask)``
    -> (sequence (T, N, H), final state(s)); reverse directions read backwards."""
    xp = xp_of(xw)
    m = s.mask(xp, raw(xw).dtype)
    reverse = s.dirs[d] == "reverse"
    if reverse:
        ti, bi = s.reverse_index(xp)
        xw = xw[ti, bi]
    seq, finals = step_all(xw, m)
    if reverse:
        seq = seq[ti, bi]
    if m is not None:
        seq = seq * wrap(m[:, :, None])
    return seq, finals


def _fast(s, kind):
    if s.clip is not None or any(a != b for acts in s.acts for a, b in zip(acts, _DEFAULTS[kind])):
        return False
    return True


@op("LSTM")
def _lstm(run, node, x, w, r, b=None, seq_lens=None, init_h=None, init_c=None, p=None):
    x, w, r, b, init_h, init_c, p = same_side(x, w, r, b, init_h, init_c, p)
    s = _Setup(node, x, w, r, b, seq_lens)
    xp, dt, n = xp_of(x), raw(x).dtype, s.hidden
    peep = p is not None and bool(xp.any(raw(p) != 0))
    fast = _fast(s, "LSTM") and not node.attr("input_forget", 0) and not peep
    order = np.concatenate([np.arange(n) + k * n for k in _LSTM_ORDER])
    ys, hs, cs = [], [], []
    for d in range(len(s.dirs)):
        h0, c0 = _initial(init_h, d, s, xp, dt), _initial(init_c, d, s, xp, dt)
        bw, br = s.bias(d, 4 * n)
        if fast:
            idx = xp.asarray(order)
            xw = F.linear(s.x, w[d][idx].T, (bw + br)[idx])
            u = r[d][idx].T

            def step_all(xw_, m, h0=h0, c0=c0, u=u):
                seq, c = F.lstm_sequence(xw_, h0, c0, u, mask=m)
                return seq, (seq[-1], c)
        else:
            xw = F.linear(s.x, w[d].T, bw + br)

            def step_all(xw_, m, d=d, h0=h0, c0=c0):
                return _composed_lstm(s, node, d, xw_, m, h0, c0, r[d].T, p)
        seq, (h_last, c_last) = _run_direction(s, d, xw, step_all)
        ys.append(seq)
        hs.append(h_last)
        cs.append(c_last)
    return _outputs(s, ys, hs, cs)


@op("GRU")
def _gru(run, node, x, w, r, b=None, seq_lens=None, init_h=None):
    x, w, r, b, init_h = same_side(x, w, r, b, init_h)
    s = _Setup(node, x, w, r, b, seq_lens)
    xp, dt, n = xp_of(x), raw(x).dtype, s.hidden
    after = bool(node.attr("linear_before_reset", 0))
    fast = _fast(s, "GRU")
    ys, hs = [], []
    for d in range(len(s.dirs)):
        h0 = _initial(init_h, d, s, xp, dt)
        bw, br = s.bias(d, 3 * n)
        u = r[d].T
        if fast and after:
            xw = F.linear(s.x, w[d].T, bw)

            def step_all(xw_, m, h0=h0, u=u, br=br):
                seq = F.gru_sequence(xw_, h0, u, br, mask=m)
                return seq, (seq[-1],)
        elif fast:
            xw = F.linear(s.x, w[d].T, bw + br)

            def step_all(xw_, m, h0=h0, u=u):
                return _stepwise(xw_, m, h0, lambda xt, h, mt: F.gru_cell(xt, h, u, reset_after=False, mask=mt))
        else:
            xw = F.linear(s.x, w[d].T, bw)

            def step_all(xw_, m, d=d, h0=h0, u=u, br=br):
                return _composed_gru(s, d, xw_, m, h0, u, br, after)
        seq, (h_last,) = _run_direction(s, d, xw, step_all)
        ys.append(seq)
        hs.append(h_last)
    return _outputs(s, ys, hs)


@op("RNN")
def _rnn(run, node, x, w, r, b=None, seq_lens=None, init_h=None):
    x, w, r, b, init_h = same_side(x, w, r, b, init_h)
    s = _Setup(node, x, w, r, b, seq_lens)
    xp, dt, n = xp_of(x), raw(x).dtype, s.hidden
    ys, hs = [], []
    for d in range(len(s.dirs)):
        h0 = _initial(init_h, d, s, xp, dt)
        bw, br = s.bias(d, n)
        xw = F.linear(s.x, w[d].T, bw + br)
        u = r[d].T
        act = s.acts[d][0]
        if s.clip is None and act in ("tanh", "relu", "sigmoid"):
            def cell(xt, h, mt, u=u, act=act):
                return F.simple_rnn_cell(xt, h, u, act, mask=mt)
        else:
            f = _activation(act, s, 0)

            def cell(xt, h, mt, u=u, f=f):
                return _keep(f(_clip(s, xt + h @ u)), h, mt)
        seq, (h_last,) = _run_direction(s, d, xw, lambda xw_, m, h0=h0, cell=cell: _stepwise(xw_, m, h0, cell))
        ys.append(seq)
        hs.append(h_last)
    return _outputs(s, ys, hs)


def _stepwise(xw, m, h0, cell):
    """A cell applied step by step: -> (sequence (T, N, H), (last h,))."""
    h, out = h0, []
    for t in range(xw.shape[0]):
        h = cell(xw[t], h, None if m is None else m[t])
        out.append(h)
    return stack(out, axis=0), (h,)


def _keep(new, old, mt):
    """The new state where the step is inside its sequence, the old one after its end."""
    if mt is None:
        return new
    return G.Where(raw(mt)[:, None] != 0)(new, old)


def _clip(s, z):
    return z if s.clip is None else G.Clip(-float(s.clip), float(s.clip))(z)


def _composed_lstm(s, node, d, xw, m, h0, c0, u, p):
    n = s.hidden
    f, g, h_act = (_activation(a, s, k) for k, a in enumerate(s.acts[d]))
    pi = po = pf = None
    if p is not None:
        pi, po, pf = p[d, :n], p[d, n:2 * n], p[d, 2 * n:]
    couple = bool(node.attr("input_forget", 0))
    h, c, out = h0, c0, []
    for t in range(xw.shape[0]):
        z = xw[t] + h @ u
        zi, zo, zf, zc = z[:, :n], z[:, n:2 * n], z[:, 2 * n:3 * n], z[:, 3 * n:]
        i = f(_clip(s, zi + c * pi if pi is not None else zi))
        fg = (1 - i) if couple else f(_clip(s, zf + c * pf if pf is not None else zf))
        c_new = fg * c + i * g(_clip(s, zc))
        o = f(_clip(s, zo + c_new * po if po is not None else zo))
        h_new = o * h_act(c_new)
        mt = None if m is None else m[t]
        h, c = _keep(h_new, h, mt), _keep(c_new, c, mt)
        out.append(h)
    return stack(out, axis=0), (h, c)


def _composed_gru(s, d, xw, m, h0, u, br, after):
    n = s.hidden
    f, g = (_activation(a, s, k) for k, a in enumerate(s.acts[d]))
    h, out = h0, []
    for t in range(xw.shape[0]):
        hu = h @ u[:, :2 * n] + br[:2 * n]
        z = f(_clip(s, xw[t][:, :n] + hu[:, :n]))
        rg = f(_clip(s, xw[t][:, n:2 * n] + hu[:, n:]))
        if after:
            cand = g(_clip(s, xw[t][:, 2 * n:] + rg * (h @ u[:, 2 * n:] + br[2 * n:])))
        else:
            cand = g(_clip(s, xw[t][:, 2 * n:] + (rg * h) @ u[:, 2 * n:] + br[2 * n:]))
        h_new = (1 - z) * cand + z * h
        h = _keep(h_new, h, None if m is None else m[t])
        out.append(h)
    return stack(out, axis=0), (h,)


def _activation(name, s, k):
    """An ONNX recurrent activation by name, taking its alpha/beta from the node's lists."""
    alpha = s.alphas[k] if k < len(s.alphas) else None
    beta = s.betas[k] if k < len(s.betas) else None

    def ab(default_a, default_b=None):
        return (default_a if alpha is None else alpha), (default_b if beta is None else beta)

    def u(f, df):
        return lambda v: G.Unary(lambda xp, x: f(xp, x).astype(x.dtype, copy=False),
                                 lambda xp, x, y: df(xp, x, y).astype(x.dtype, copy=False))(v)
    if name == "sigmoid":
        return F.sigmoid
    if name == "tanh":
        return F.tanh
    if name == "relu":
        return F.relu
    if name == "affine":
        a, b = ab(1.0, 0.0)
        return u(lambda xp, x: a * x + b, lambda xp, x, y: xp.full(x.shape, a))
    if name == "leakyrelu":
        a, _ = ab(0.01)
        return lambda v: F.leaky_relu(v, a)
    if name == "thresholdedrelu":
        a, _ = ab(1.0)
        return u(lambda xp, x: xp.where(x > a, x, 0), lambda xp, x, y: xp.where(x > a, 1.0, 0.0))
    if name == "scaledtanh":
        a, b = ab(1.0, 1.0)
        return u(lambda xp, x: a * xp.tanh(b * x), lambda xp, x, y: a * b * (1 - xp.tanh(b * x) ** 2))
    if name == "hardsigmoid":
        a, b = ab(0.2, 0.5)
        return u(lambda xp, x: xp.clip(a * x + b, 0, 1),
                 lambda xp, x, y: xp.where((a * x + b > 0) & (a * x + b < 1), a, 0.0))
    if name == "elu":
        a, _ = ab(1.0)
        return u(lambda xp, x: xp.where(x > 0, x, a * xp.expm1(xp.minimum(x, 0))),
                 lambda xp, x, y: xp.where(x > 0, 1.0, a * xp.exp(xp.minimum(x, 0))))
    if name == "softsign":
        return u(lambda xp, x: x / (1 + xp.abs(x)), lambda xp, x, y: 1 / (1 + xp.abs(x)) ** 2)
    if name == "softplus":
        return u(lambda xp, x: xp.logaddexp(0, x), lambda xp, x, y: 1 - xp.exp(-y))
    raise UnsupportedOpError(f"recurrent activation {name!r} is not one ONNX defines")
