"""Masks in the recurrent layers (Keras' meaning): forward against NumPy loops of the masked
equations, float64 gradient checks, PyTorch's packed sequences, padding that changes nothing,
the mask protocol (compute_mask, Bidirectional, TimeDistributed), the Masking layer, Embedding's
mask, the CuPy path against the NumPy path, and the errors."""

import inspect

import numpy as np
import pytest

import gpudl
from gpudl import backend, layers
from gpudl.layers.masking import Masking
from gpudl.testing import gradcheck
from harness import GRAD

FEATURES, UNITS = 3, 4


# ---- the NumPy reference ------------------------------------------------------------------

def _sig(x):
    return 1 / (1 + np.exp(-x))


ACTS = {"tanh": np.tanh, "relu": lambda a: np.maximum(a, 0), "sigmoid": _sig, "linear": lambda a: a}


def ref_layer(kind, x, params, mask=None, states=None, go_backwards=False, zero_output=False,
              activation="tanh"):
    """``kind`` ("SimpleRNN", "LSTM", "GRU", "GRU-reset-before") over x (N, T, F) with Keras'
    weights (W, U, b): -> (outputs (N, T, units) in processing order, final states). A step whose
    mask (N, T) is 0 keeps the states and outputs the carried h (0 with ``zero_output``)."""
    W, U, b = params
    n, t, _ = x.shape
    u = U.shape[0]
    act = ACTS.get(activation, activation)
    mask = np.ones((n, t), bool) if mask is None else np.asarray(mask) != 0
    states = [np.zeros((n, u)) for _ in range(2 if kind == "LSTM" else 1)] if states is None else list(states)
    outs = []
    for s in (range(t - 1, -1, -1) if go_backwards else range(t)):
        h = states[0]
        if kind == "SimpleRNN":
            new = [act(x[:, s] @ W + h @ U + b)]
        elif kind == "LSTM":
            z = x[:, s] @ W + h @ U + b
            i, f, g, o = _sig(z[:, :u]), _sig(z[:, u:2 * u]), np.tanh(z[:, 2 * u:3 * u]), _sig(z[:, 3 * u:])
            c = f * states[1] + i * g
            new = [o * np.tanh(c), c]
        elif kind == "GRU":
            xw, hu = x[:, s] @ W + b[0], h @ U + b[1]
            z, r = _sig(xw[:, :u] + hu[:, :u]), _sig(xw[:, u:2 * u] + hu[:, u:2 * u])
            new = [z * h + (1 - z) * np.tanh(xw[:, 2 * u:] + r * hu[:, 2 * u:])]
        else:
            xw = x[:, s] @ W + b
            z, r = _sig(xw[:, :u] + h @ U[:, :u]), _sig(xw[:, u:2 * u] + h @ U[:, u:2 * u])
            new = [z * h + (1 - z) * np.tanh(xw[:, 2 * u:] + (r * h) @ U[:, 2 * u:])]
        keep = mask[:, s][:, None]
        states = [np.where(keep, a, old) for a, old in zip(new, states)]
        outs.append(np.where(keep, states[0], 0.0) if zero_output else states[0])
    return np.stack(outs, 1), states


def _make(kind, **kw):
    if kind == "GRU-reset-before":
        return layers.GRU(UNITS, reset_after=False, **kw)
    if kind == "SimpleRNN-relu":
        return layers.SimpleRNN(UNITS, activation="relu", **kw)
    if kind.startswith("Bi-"):
        return layers.Bidirectional(_make(kind[3:], **kw))
    return getattr(layers, kind)(UNITS, **kw)


def _base(kind):
    return {"SimpleRNN-relu": "SimpleRNN"}.get(kind, kind)


def _randomize(layer, seed=1, scale=0.6):
    rng = np.random.default_rng(seed)
    for p in layer.params():
        p.data[...] = rng.uniform(-scale, scale, p.shape)


def _np(layer):
    return [gpudl.to_numpy(p.data).astype(np.float64) for p in layer.params()]


def _x(n=3, t=6, f=FEATURES, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, t, f))


def _mask(n, t, seed=0):
    """Masked steps at the start, inside and at the end of rows; one row never masked."""
    m = np.random.default_rng(seed).random((n, t)) > 0.35
    m[0, 0] = False
    if t > 2:
        m[0, -1], m[0, 1] = False, True
    if n > 1:
        m[-1] = True
    return m


def _lengths_mask(lengths, t):
    return np.arange(t)[None, :] < np.asarray(lengths)[:, None]


KINDS = ["SimpleRNN", "SimpleRNN-relu", "LSTM", "GRU", "GRU-reset-before"]


# ---- forward against the reference ---------------------------------------------------------

@pytest.mark.parametrize("go_backwards", [False, True], ids=["forwards", "backwards"])
@pytest.mark.parametrize("zero_output", [False, True], ids=["carried", "zeros"])
@pytest.mark.parametrize("kind", KINDS)
def test_masked_forward_matches_reference(kind, zero_output, go_backwards):
    x, m = _x(), _mask(3, 6)
    layer = _make(kind, return_sequences=True, return_state=True, zero_output_for_mask=zero_output,
                  go_backwards=go_backwards)
    layer(x)
    _randomize(layer)
    outs = layer(x, mask=m)
    want, states = ref_layer(_base(kind), x, _np(layer), m, go_backwards=go_backwards, zero_output=zero_output,
                             activation="relu" if kind.endswith("relu") else "tanh")
    np.testing.assert_allclose(outs[0].numpy(), want, rtol=1e-12, atol=1e-13)
    for got, s in zip(outs[1:], states):
        np.testing.assert_allclose(got.numpy(), s, rtol=1e-12, atol=1e-13)


def test_masked_custom_activation_takes_the_composed_ops():
    x, m = _x(), _mask(3, 6, seed=2)
    rnn = layers.SimpleRNN(UNITS, activation=lambda a: gpudl.functional.leaky_relu(a, 0.1), return_sequences=True)
    rnn(x)
    _randomize(rnn)
    want, _ = ref_layer("SimpleRNN", x, _np(rnn), m, activation=lambda a: np.where(a > 0, a, 0.1 * a))
    np.testing.assert_allclose(rnn(x, mask=m).numpy(), want, rtol=1e-12, atol=1e-13)
    assert gradcheck(lambda t: rnn(t, mask=m), [x], params=rnn.params(), **GRAD)


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU", "GRU-reset-before"])
def test_last_output_is_the_last_unmasked_steps_state(kind):
    x = _x(t=7, seed=3)
    m = _lengths_mask([7, 4, 1], 7)
    m[1, 2] = False                          # and a gap inside
    seq = _make(kind, return_sequences=True)
    last = _make(kind)
    seq(x), last(x)
    for p, q in zip(last.params(), seq.params()):
        p.data[...] = q.data
    ys = seq(x, mask=m).numpy()
    got = last(x, mask=m).numpy()
    for i, length in enumerate([7, 4, 1]):
        np.testing.assert_array_equal(got[i], ys[i, length - 1])


def test_masks_as_tensors_and_0_1_numbers_mean_the_same():
    x, m = _x(seed=4), _mask(3, 6, seed=4)
    lstm = layers.LSTM(UNITS, return_sequences=True)
    want = lstm(x, mask=m).numpy()
    np.testing.assert_array_equal(lstm(x, mask=gpudl.Tensor(m.astype(np.float64))).numpy(), want)
    np.testing.assert_array_equal(lstm(x, mask=m.astype(np.int64)).numpy(), want)
    np.testing.assert_array_equal(lstm(x, mask=m.tolist()).numpy(), want)


def test_an_all_true_mask_equals_no_mask():
    x = _x(seed=5)
    for kind in KINDS:
        layer = _make(kind, return_sequences=True)
        np.testing.assert_allclose(layer(x, mask=np.ones((3, 6), bool)).numpy(), layer(x).numpy(),
                                   rtol=1e-13, atol=1e-14)


# ---- gradient checks ------------------------------------------------------------------------

GRAD_KINDS = ["SimpleRNN", "LSTM", "GRU", "GRU-reset-before", "Bi-SimpleRNN", "Bi-LSTM", "Bi-GRU",
              "Bi-GRU-reset-before"]
GRID = [pytest.param(kind, steps, batch, seq, id=f"{kind}-T{steps}-N{batch}-{seq}")
        for kind in GRAD_KINDS for steps, batch in ((1, 1), (5, 3), (7, 1))
        for seq in ("last", "seq", "seq-zeros")]


@pytest.mark.parametrize("kind,steps,batch,seq", GRID)
def test_masked_gradcheck(kind, steps, batch, seq):
    kw = {"return_sequences": seq != "last", "zero_output_for_mask": seq == "seq-zeros"}
    layer = _make(kind, **kw)
    x = _x(n=batch, t=steps, seed=steps + batch)
    m = _mask(batch, steps, seed=steps)
    if steps == 1 and batch == 1:
        m[:] = False                                     # the one step masked
    layer(x)
    _randomize(layer, seed=steps)
    assert gradcheck(lambda t: layer(t, mask=m), [x], params=layer.params(), **GRAD)


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU", "GRU-reset-before"])
def test_masked_gradient_reaches_initial_states(kind):
    layer = _make(kind, return_sequences=True)
    k = 2 if kind == "LSTM" else 1
    x, m = _x(t=4, seed=6), _mask(3, 4, seed=6)
    states = [np.random.default_rng(i).normal(size=(3, UNITS)) for i in range(k)]
    layer(x)
    _randomize(layer)
    assert gradcheck(lambda xx, *s: layer(xx, initial_state=list(s), mask=m), [x] + states,
                     params=layer.params(), **GRAD)


# ---- padding changes nothing -----------------------------------------------------------------

PAD_KINDS = ["SimpleRNN", "LSTM", "GRU", "GRU-reset-before", "LSTM-backwards", "Bi-LSTM", "Bi-GRU"]


def _pad_layer(kind):
    if kind == "LSTM-backwards":
        return layers.LSTM(UNITS, return_sequences=True, return_state=True, go_backwards=True)
    return _make(kind, return_sequences=True, return_state=True)


@pytest.mark.parametrize("kind", PAD_KINDS)
def test_padding_changes_nothing(kind):
    """A post-padded batch with its mask gives each sequence's outputs, final states and
    weight gradients as the sequences run one by one, unpadded, whatever the padding holds."""
    lengths, t = [5, 2, 1, 4], 5
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, (4, t, FEATURES))
    m = _lengths_mask(lengths, t)
    x[~m] = rng.uniform(-30, 30, (int((~m).sum()), FEATURES))   # garbage where padded
    layer = _pad_layer(kind)
    layer(x)
    _randomize(layer, seed=8)
    backwards = kind == "LSTM-backwards"
    w_out = rng.normal(size=(4, t, 2 * UNITS if kind.startswith("Bi-") else UNITS))
    w_state = [rng.normal(size=(4, UNITS)) for _ in range(4)]

    def real(y, i, length):  # the real steps of padded row i, in the unpadded run's order
        return y[i, t - length:] if backwards else y[i, :length]

    def loss_of(outs, rows, padded):
        total = 0.0
        for j, (i, length) in enumerate(rows):
            y = real(outs[0], j, length) if padded else outs[0][j]
            total = total + (y * gpudl.Tensor(w_out[i, :length])).sum()
            for s, w in zip(outs[1:], w_state):
                total = total + (s[j] * gpudl.Tensor(w[i])).sum()
        return total

    def grads():
        out = [p.grad.copy() for p in layer.params()]
        for p in layer.params():
            p.grad = None
        return out

    for p in layer.params():
        p.grad = None
    batched = layer(x, mask=m)
    loss_of(batched, list(enumerate(lengths)), True).backward()
    g_batched = grads()
    g_single = None
    for i, length in enumerate(lengths):
        single = layer(x[i:i + 1, :length])
        np.testing.assert_allclose(real(batched[0].numpy(), i, length), single[0].numpy()[0],
                                   rtol=1e-12, atol=1e-13, err_msg=f"outputs of sequence {i}")
        for k, (a, b) in enumerate(zip(batched[1:], single[1:])):
            np.testing.assert_allclose(a.numpy()[i], b.numpy()[0], rtol=1e-12, atol=1e-13,
                                       err_msg=f"state {k} of sequence {i}")
        loss_of(single, [(i, length)], False).backward()
        g = grads()
        g_single = g if g_single is None else [a + b for a, b in zip(g_single, g)]
    for p, a, b in zip(layer.params(), g_batched, g_single):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=p.name)


# ---- PyTorch's packed sequences ---------------------------------------------------------------

def _gru_reorder(a, h):
    """Keras z, r, h blocks along axis 0 -> PyTorch r, z, n."""
    return np.concatenate([a[h:2 * h], a[:h], a[2 * h:]], axis=0)


def _load_torch(torch, module, layer, suffix=""):
    """gpudl's W, U, b (Keras layout) into PyTorch's weight_ih, weight_hh, bias_ih, bias_hh."""
    W, U, b = _np(layer)
    if isinstance(layer, layers.GRU):
        h = U.shape[0]
        values = _gru_reorder(W.T, h), _gru_reorder(U.T, h), _gru_reorder(b[0], h), _gru_reorder(b[1], h)
    else:
        values = W.T, U.T, b, np.zeros_like(b)
    with torch.no_grad():
        for name, v in zip(("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"), values):
            getattr(module, name + suffix).copy_(torch.from_numpy(np.ascontiguousarray(v)))


@pytest.mark.torch
@pytest.mark.parametrize("bidirectional", [False, True], ids=["one-way", "bidirectional"])
@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_masked_layers_match_torch_packed_sequences(kind, bidirectional):
    torch = pytest.importorskip("torch")
    pack = torch.nn.utils.rnn
    lengths, t = [6, 3, 1, 5], 6
    rng = np.random.default_rng(11)
    x = rng.uniform(-1, 1, (4, t, FEATURES))
    m = _lengths_mask(lengths, t)
    x[~m] = 9.0
    module = {"SimpleRNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}[kind](
        FEATURES, UNITS, batch_first=True, bidirectional=bidirectional).double()
    inner = getattr(layers, kind)(UNITS, return_sequences=True, return_state=True, zero_output_for_mask=True)
    g = layers.Bidirectional(inner) if bidirectional else inner
    g(x)
    _randomize(g, seed=12, scale=0.5)
    if bidirectional:
        _load_torch(torch, module, g.forward_layer)
        _load_torch(torch, module, g.backward_layer, suffix="_reverse")
    else:
        _load_torch(torch, module, g)
    xt = torch.from_numpy(x)
    packed = pack.pack_padded_sequence(xt, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
    out, hn = module(packed)
    hn, cn = hn if kind == "LSTM" else (hn, None)
    out, _ = pack.pad_packed_sequence(out, batch_first=True, total_length=t)
    got = g(x, mask=m)
    # every output at a real step equals PyTorch's; padded steps are zeros in both
    np.testing.assert_allclose(got[0].numpy(), out.detach().numpy(), rtol=1e-10, atol=1e-12)
    k = 2 if kind == "LSTM" else 1
    for d in range(2 if bidirectional else 1):
        np.testing.assert_allclose(got[1 + d * k].numpy(), hn[d].detach().numpy(), rtol=1e-10, atol=1e-12)
        if cn is not None:
            np.testing.assert_allclose(got[2 + d * k].numpy(), cn[d].detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_masked_weight_gradients_match_torch_packed_sequences(kind):
    torch = pytest.importorskip("torch")
    pack = torch.nn.utils.rnn
    lengths, t = [2, 5, 4], 5
    rng = np.random.default_rng(13)
    x = rng.uniform(-1, 1, (3, t, FEATURES))
    m = _lengths_mask(lengths, t)
    module = {"SimpleRNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}[kind](
        FEATURES, UNITS, batch_first=True).double()
    g = getattr(layers, kind)(UNITS, return_sequences=True, return_state=True, zero_output_for_mask=True)
    g(x)
    _randomize(g, seed=14, scale=0.5)
    _load_torch(torch, module, g)
    w_out, w_h = rng.normal(size=(3, t, UNITS)), rng.normal(size=(3, UNITS))
    packed = pack.pack_padded_sequence(torch.from_numpy(x), torch.tensor(lengths), batch_first=True,
                                       enforce_sorted=False)
    out, hn = module(packed)
    hn = hn[0] if kind == "LSTM" else hn
    out, _ = pack.pad_packed_sequence(out, batch_first=True, total_length=t)
    ((out * torch.from_numpy(w_out)).sum() + (hn[0] * torch.from_numpy(w_h)).sum()).backward()
    got = g(x, mask=m)
    ((got[0] * gpudl.Tensor(w_out)).sum() + (got[1] * gpudl.Tensor(w_h)).sum()).backward()
    W, U = g.W.grad, g.U.grad
    if kind == "GRU":
        W, U = _gru_reorder(W.T, UNITS), _gru_reorder(U.T, UNITS)
    else:
        W, U = W.T, U.T
    np.testing.assert_allclose(W, module.weight_ih_l0.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(U, module.weight_hh_l0.grad.numpy(), rtol=1e-9, atol=1e-12)


# ---- the mask protocol ---------------------------------------------------------------------------

def test_recurrent_layers_take_a_mask_and_say_what_they_pass_on():
    x, m = _x(), _mask(3, 6)
    for layer in (layers.SimpleRNN(2), layers.LSTM(2), layers.GRU(2), layers.Bidirectional(layers.LSTM(2)),
                  layers.TimeDistributed(layers.Dense(2))):
        assert layer.supports_masking
        assert "mask" in inspect.signature(type(layer).__call__).parameters or \
            "mask" in inspect.signature(type(layer).forward).parameters
    assert layers.LSTM(2, return_sequences=True).compute_mask(x, m) is m
    assert layers.LSTM(2).compute_mask(x, m) is None
    assert layers.LSTM(2).compute_mask(x, None) is None
    got = layers.LSTM(2, return_sequences=True, return_state=True).compute_mask(x, m)
    assert len(got) == 3 and got[0] is m and got[1] is None and got[2] is None
    assert layers.GRU(2, return_state=True).compute_mask(x, m) == [None, None]
    assert layers.GRU(2, return_sequences=True).compute_mask(x, gpudl.Tensor(m)) is not None


def test_bidirectional_compute_mask_follows_keras():
    x, m = _x(), _mask(3, 6)
    assert layers.Bidirectional(layers.GRU(2, return_sequences=True)).compute_mask(x, m) is m
    both = layers.Bidirectional(layers.GRU(2, return_sequences=True), merge_mode=None).compute_mask(x, m)
    assert both[0] is m and both[1] is m
    assert layers.Bidirectional(layers.GRU(2)).compute_mask(x, m) is None
    assert layers.Bidirectional(layers.GRU(2), merge_mode=None).compute_mask(x, m) == [None, None]
    got = layers.Bidirectional(layers.LSTM(2, return_sequences=True, return_state=True)).compute_mask(x, m)
    assert got[0] is m and got[1:] == [None] * 4


def test_bidirectional_passes_the_mask_to_both_directions():
    x, m = _x(t=5, seed=9), _mask(3, 5, seed=9)
    bi = layers.Bidirectional(layers.LSTM(UNITS, return_sequences=True), merge_mode=None)
    bi(x)
    _randomize(bi, seed=3)
    y_f, y_b = bi(x, mask=m)
    want_f, _ = ref_layer("LSTM", x, _np(bi.forward_layer), m)
    want_b, _ = ref_layer("LSTM", x, _np(bi.backward_layer), m, go_backwards=True)
    np.testing.assert_allclose(y_f.numpy(), want_f, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(y_b.numpy(), want_b[:, ::-1], rtol=1e-12, atol=1e-13)


class _MaskRecorder(layers.Layer):
    """A pointwise layer that takes a mask and records the one it got."""

    def forward(self, x, mask=None):
        self.seen = mask
        return x * 2.0


def test_time_distributed_passes_the_mask_on_and_to_an_inner_layer_that_takes_one():
    x, m = _x(), _mask(3, 6)
    inner = _MaskRecorder()
    td = layers.TimeDistributed(inner)
    y = td(x, mask=m)
    np.testing.assert_array_equal(y.numpy(), 2 * x)
    np.testing.assert_array_equal(inner.seen, m.reshape(18))
    assert td.compute_mask(x, m) is m
    dense = layers.TimeDistributed(layers.Dense(2))
    assert dense(x, mask=m).shape == (3, 6, 2)       # Dense takes no mask: it is not passed
    with pytest.raises(ValueError, match=r"TimeDistributed 'time_distributed' expected a mask of shape "
                                         r"\(3, 6, \.\.\.\) \(batch, timesteps, \.\.\.\), got shape \(6, 3\)"):
        td(x, mask=m.T)


# ---- Masking ------------------------------------------------------------------------------------

def test_masking_zeroes_masked_steps_and_computes_the_mask(backend_name):
    x = _x(seed=10)
    x[0, 2] = 0.0
    x[1, 4:] = -1.0
    for value, dead in ((0.0, [(0, 2)]), (-1.0, [(1, 4), (1, 5)])):
        layer = Masking(mask_value=value)
        xb = gpudl.Tensor(backend.to_backend(x))
        y = layer(xb)
        mask = layer.compute_mask(xb)
        assert backend.backend_of(mask) == backend_name and mask.dtype == np.bool_
        want_mask = np.ones((3, 6), bool)
        for i, j in dead:
            want_mask[i, j] = False
        np.testing.assert_array_equal(gpudl.to_numpy(mask), want_mask)
        np.testing.assert_array_equal(gpudl.to_numpy(y.data), x * want_mask[..., None])


def test_masking_gradient_and_config():
    x = _x(seed=11)
    x[2, 1] = 0.5
    layer = Masking(0.5)
    xt = gpudl.Tensor(x, requires_grad=True)
    g = np.random.default_rng(1).normal(size=x.shape)
    layer(xt).backward(g)
    want = g.copy()
    want[2, 1] = 0.0                               # a masked step passes no gradient
    np.testing.assert_array_equal(xt.grad, want)
    cfg = layer.get_config()
    assert cfg["mask_value"] == 0.5
    clone = Masking.from_config(cfg)
    assert clone.mask_value == 0.5 and clone.get_config() == cfg
    assert layers.get_layer_class("Masking") is Masking


def test_masking_then_lstm_equals_lstm_with_the_mask():
    x = _x(seed=12)
    m = _lengths_mask([6, 2, 4], 6)
    x[~m] = 0.0
    lstm = layers.LSTM(UNITS, return_sequences=True)
    masking = Masking()
    y = lstm(masking(x), mask=masking.compute_mask(x))
    np.testing.assert_array_equal(y.numpy(), lstm(x, mask=m).numpy())


def test_masking_errors():
    with pytest.raises(ValueError, match=r"Masking expected a number for mask_value, got 'pad'"):
        Masking("pad")
    with pytest.raises(ValueError, match=r"Masking 'masking' expected input of rank 3, got shape \(2, 3\)"):
        Masking()(np.zeros((2, 3)))


# ---- Embedding's mask ---------------------------------------------------------------------------

def test_embedding_mask_feeds_a_recurrent_layer():
    ids = np.array([[3, 1, 4, 0, 0], [2, 0, 0, 0, 0], [5, 5, 2, 1, 3]])
    emb = layers.Embedding(6, FEATURES, mask_zero=True)
    gru = layers.GRU(UNITS, return_sequences=True)
    x = emb(ids)
    mask = emb.compute_mask(ids)
    np.testing.assert_array_equal(mask, ids != 0)
    np.testing.assert_array_equal(emb.last_mask, ids != 0)
    np.testing.assert_array_equal(emb.compute_mask(gpudl.Tensor(ids.astype(np.float32))), ids != 0)
    y = gru(x, mask=mask).numpy()
    want, _ = ref_layer("GRU", x.numpy().astype(np.float64), _np(gru), mask)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    assert gru.compute_mask(x, mask) is mask


def test_embedding_compute_mask_refuses_out_of_range_ids():
    emb = layers.Embedding(4, 2, mask_zero=True)
    with pytest.raises(ValueError, match=r"Embedding 'embedding' expected ids in \[0, 4\).*got id 7"):
        emb.compute_mask(np.array([[1, 7]]))
    with pytest.raises(ValueError, match=r"Embedding 'embedding' expected ids in \[0, 4\).*got id -1"):
        emb.compute_mask(np.array([[-1, 2]]))
    assert layers.Embedding(4, 2).compute_mask(np.array([[1, 7]])) is None


# ---- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,name", [("SimpleRNN", "simple_rnn"), ("LSTM", "lstm"), ("GRU", "gru")])
def test_mask_shape_error_names_layer_expected_and_got(kind, name):
    layer = getattr(layers, kind)(2)
    with pytest.raises(ValueError) as e:
        layer(_x(), mask=np.ones((3, 5), bool))
    assert str(e.value) == (f"{kind} '{name}' expected a mask of shape (3, 6) (batch, timesteps), "
                            "got shape (3, 5)")
    with pytest.raises(ValueError, match=rf"{kind} '{name}' expected a mask of shape \(3, 6\).*got shape \(3, 6, 1\)"):
        layer(_x(), mask=np.ones((3, 6, 1), bool))
    with pytest.raises(TypeError, match=rf"{kind} '{name}' expected a boolean or 0/1 mask, got dtype <U1"):
        layer(_x(), mask=np.full((3, 6), "x"))


def test_bidirectional_mask_error_names_the_wrapper():
    with pytest.raises(ValueError, match=r"Bidirectional 'bidirectional' expected a mask of shape \(3, 6\) "
                                         r"\(batch, timesteps\), got shape \(6,\)"):
        layers.Bidirectional(layers.GRU(2))(_x(), mask=np.ones(6, bool))


# ---- the CuPy path against the NumPy path ---------------------------------------------------------

@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU", "GRU-reset-before", "Bi-LSTM"])
def test_masked_layers_agree_across_backends(kind, backend_name):
    x, m = _x(n=2, t=4, seed=13), _mask(2, 4, seed=13)

    def run(name):
        gpudl.set_backend(name)
        layer = _make(kind, return_sequences=True, zero_output_for_mask=True)
        xb = gpudl.Tensor(backend.to_backend(x), requires_grad=True)
        layer(xb)
        _randomize(layer, seed=2)
        y = layer(xb, mask=backend.to_backend(m))
        (y * gpudl.Tensor(backend.to_backend(np.linspace(-1, 1, y.size).reshape(y.shape)))).sum().backward()
        assert y.backend == name
        return [gpudl.to_numpy(y.data), gpudl.to_numpy(xb.grad)] + [gpudl.to_numpy(p.grad) for p in layer.params()]

    got = run(backend_name)
    want = run("numpy")
    for i, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=f"output {i}")
