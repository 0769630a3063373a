"""Recurrent layers against PyTorch's nn.RNN / nn.LSTM / nn.GRU (batch_first=True).

Mapping gpudl (Keras layout) -> PyTorch, for ``units`` = H:

- every layer: ``weight_ih_l0 = W.T``, ``weight_hh_l0 = U.T`` (PyTorch stores (gates*H, in));
- SimpleRNN, LSTM: one bias in gpudl, two in PyTorch: ``bias_ih_l0 = b``, ``bias_hh_l0 = 0``;
- LSTM gate order is the same (Keras i, f, c, o = PyTorch i, f, g, o);
- GRU gate blocks are reordered: Keras z, r, h -> PyTorch r, z, n, on rows of the transposed
  weights and on both biases; ``b[0]`` (input bias) -> ``bias_ih_l0``, ``b[1]`` (recurrent
  bias) -> ``bias_hh_l0`` (reset_after=True is PyTorch's GRU);
- Bidirectional: the backward layer's weights go to the ``*_reverse`` parameters; PyTorch's
  last-state output is ``h_n`` (forward, backward), its sequence output ``out`` equals
  gpudl's concat with ``return_sequences=True``.
"""

import numpy as np
import pytest

import gpudl
from gpudl import layers

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch

N, T, FEAT, H = 3, 7, 5, 6


def _gru_reorder(a, h):
    """Keras z, r, h blocks along axis 0 -> PyTorch r, z, n."""
    return np.concatenate([a[h:2 * h], a[:h], a[2 * h:]], axis=0)


def to_torch(W, U, b, gru):
    """PyTorch's (weight_ih, weight_hh, bias_ih, bias_hh) from gpudl's W, U, b arrays
    (also maps gradients, which share the parameters' layout)."""
    W, U, b = (gpudl.to_numpy(a).astype(np.float64) for a in (W, U, b))
    if gru:
        h = U.shape[0]
        return _gru_reorder(W.T, h), _gru_reorder(U.T, h), _gru_reorder(b[0], h), _gru_reorder(b[1], h)
    return W.T, U.T, b, np.zeros_like(b)


def torch_weights(layer):
    return to_torch(layer.W.data, layer.U.data, layer.b.data, isinstance(layer, layers.GRU))


def _load(module, layer, suffix=""):
    names = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
    with torch.no_grad():
        for name, value in zip(names, torch_weights(layer)):
            getattr(module, name + suffix).copy_(torch.from_numpy(value))


def _make(kind, units, seq, bidirectional=False):
    if kind == "SimpleRNN":
        g = layers.SimpleRNN(units, return_sequences=seq)
        t = torch.nn.RNN(FEAT, units, batch_first=True, nonlinearity="tanh", bidirectional=bidirectional)
    elif kind == "SimpleRNN-relu":
        g = layers.SimpleRNN(units, activation="relu", return_sequences=seq)
        t = torch.nn.RNN(FEAT, units, batch_first=True, nonlinearity="relu", bidirectional=bidirectional)
    elif kind == "LSTM":
        g = layers.LSTM(units, return_sequences=seq)
        t = torch.nn.LSTM(FEAT, units, batch_first=True, bidirectional=bidirectional)
    else:
        g = layers.GRU(units, return_sequences=seq)
        t = torch.nn.GRU(FEAT, units, batch_first=True, bidirectional=bidirectional)
    return g, t.double()


def _randomize(layer, seed):
    rng = np.random.default_rng(seed)
    for p in layer.params():
        p.data[...] = rng.uniform(-0.5, 0.5, p.shape)


def _x(seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (N, T, FEAT))


KINDS = ["SimpleRNN", "SimpleRNN-relu", "LSTM", "GRU"]


@pytest.mark.parametrize("seq", [False, True], ids=["last", "sequences"])
@pytest.mark.parametrize("kind", KINDS)
def test_matches_torch(kind, seq):
    x = _x()
    g, t = _make(kind, H, seq)
    g(x)
    _randomize(g, seed=3)
    _load(t, g)
    out, _ = t(torch.from_numpy(x))
    want = out.detach().numpy()
    got = g(x).numpy()
    np.testing.assert_allclose(got, want if seq else want[:, -1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_match_torch(kind):
    """The same loss gives the same weight and input gradients (one BPTT, two libraries)."""
    x = _x(1)
    g, t = _make(kind, H, True)
    g(x)
    _randomize(g, seed=4)
    _load(t, g)
    w = np.random.default_rng(9).normal(size=(N, T, H))
    xt = torch.from_numpy(x).requires_grad_(True)
    (t(xt)[0] * torch.from_numpy(w)).sum().backward()
    xg = gpudl.Tensor(x, requires_grad=True)
    (g(xg) * gpudl.Tensor(w)).sum().backward()
    np.testing.assert_allclose(xg.grad, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    mapped = to_torch(g.W.grad, g.U.grad, g.b.grad, kind == "GRU")
    np.testing.assert_allclose(mapped[0], t.weight_ih_l0.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(mapped[1], t.weight_hh_l0.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(mapped[2], t.bias_ih_l0.grad.numpy(), rtol=1e-9, atol=1e-12)
    if kind == "GRU":
        np.testing.assert_allclose(mapped[3], t.bias_hh_l0.grad.numpy(), rtol=1e-9, atol=1e-12)
    else:  # one gpudl bias stands for PyTorch's two, whose gradients are equal
        np.testing.assert_allclose(mapped[2], t.bias_hh_l0.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_initial_states_match_torch(kind):
    x = _x(2)
    g, t = _make(kind, H, True)
    g(x)
    _randomize(g, seed=5)
    _load(t, g)
    rng = np.random.default_rng(6)
    h0 = rng.normal(size=(N, H))
    c0 = rng.normal(size=(N, H))
    if kind == "LSTM":
        out, _ = t(torch.from_numpy(x), (torch.from_numpy(h0)[None], torch.from_numpy(c0)[None]))
        got = g(x, initial_state=[gpudl.Tensor(h0), gpudl.Tensor(c0)])
    else:
        out, _ = t(torch.from_numpy(x), torch.from_numpy(h0)[None])
        got = g(x, initial_state=[gpudl.Tensor(h0)])
    np.testing.assert_allclose(got.numpy(), out.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seq", [False, True], ids=["last", "sequences"])
@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_bidirectional_matches_torch(kind, seq):
    x = _x(3)
    g, t = _make(kind, H, seq, bidirectional=True)
    bi = layers.Bidirectional(g)
    y = bi(x)
    assert y.shape == ((N, T, 2 * H) if seq else (N, 2 * H))
    _randomize(bi, seed=7)
    _load(t, bi.forward_layer)
    _load(t, bi.backward_layer, suffix="_reverse")
    out, hn = t(torch.from_numpy(x))
    if kind == "LSTM":
        hn = hn[0]
    want = out.detach().numpy() if seq else torch.cat([hn[0], hn[1]], dim=-1).detach().numpy()
    np.testing.assert_allclose(bi(x).numpy(), want, rtol=1e-10, atol=1e-12)


def test_float32_lstm_matches_torch_float32():
    x = _x(4).astype(np.float32)
    g = layers.LSTM(H, return_sequences=True)
    g(x)
    t = torch.nn.LSTM(FEAT, H, batch_first=True)
    with torch.no_grad():
        for name, value in zip(("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"), torch_weights(g)):
            getattr(t, name).copy_(torch.from_numpy(value.astype(np.float32)))
    want = t(torch.from_numpy(x))[0].detach().numpy()
    np.testing.assert_allclose(g(x).numpy(), want, rtol=1e-5, atol=1e-6)
