"""Recurrent layers: forward against NumPy loops of the Keras equations, float64 gradient
checks of backpropagation through time, shapes, states, errors and configs."""

import numpy as np
import pytest

import gpudl
from gpudl import backend, layers
from gpudl.testing import gradcheck
from harness import GRAD

FEATURES, UNITS = 3, 4


# ---- NumPy references (Keras' equations and weight layout) -----------------------------

def _sig(x):
    return 1 / (1 + np.exp(-x))


def ref_simple_rnn(x, W, U, b, h0=None, act=np.tanh):
    n, t, _ = x.shape
    h = np.zeros((n, U.shape[0])) if h0 is None else h0
    hs = []
    for s in range(t):
        h = act(x[:, s] @ W + h @ U + b)
        hs.append(h)
    return np.stack(hs, 1), h


def ref_lstm(x, W, U, b, h0=None, c0=None):
    n, t, _ = x.shape
    u = U.shape[0]
    h = np.zeros((n, u)) if h0 is None else h0
    c = np.zeros((n, u)) if c0 is None else c0
    hs = []
    for s in range(t):
        z = x[:, s] @ W + h @ U + b
        i, f, g, o = _sig(z[:, :u]), _sig(z[:, u:2 * u]), np.tanh(z[:, 2 * u:3 * u]), _sig(z[:, 3 * u:])
        c = f * c + i * g
        h = o * np.tanh(c)
        hs.append(h)
    return np.stack(hs, 1), h, c


def ref_gru(x, W, U, b, reset_after=True, h0=None):
    n, t, _ = x.shape
    u = U.shape[0]
    h = np.zeros((n, u)) if h0 is None else h0
    b_in, b_rec = (b[0], b[1]) if reset_after else (b, np.zeros(3 * u))
    hs = []
    for s in range(t):
        xw = x[:, s] @ W + b_in
        if reset_after:
            hu = h @ U + b_rec
            z = _sig(xw[:, :u] + hu[:, :u])
            r = _sig(xw[:, u:2 * u] + hu[:, u:2 * u])
            hh = np.tanh(xw[:, 2 * u:] + r * hu[:, 2 * u:])
        else:
            z = _sig(xw[:, :u] + h @ U[:, :u])
            r = _sig(xw[:, u:2 * u] + h @ U[:, u:2 * u])
            hh = np.tanh(xw[:, 2 * u:] + (r * h) @ U[:, 2 * u:])
        h = z * h + (1 - z) * hh
        hs.append(h)
    return np.stack(hs, 1), h


def _randomize(layer, seed=1, scale=0.6):
    """Non-trivial weights everywhere (biases too), float64 from a fixed generator."""
    rng = np.random.default_rng(seed)
    for p in layer.params():
        p.data[...] = rng.uniform(-scale, scale, p.shape)


def _np(p):
    return gpudl.to_numpy(p.data).astype(np.float64)


def _x(n=3, t=5, f=FEATURES, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, t, f))


# ---- forward against the references --------------------------------------------------

@pytest.mark.parametrize("act", ["tanh", "relu", "sigmoid", "linear"])
def test_simple_rnn_forward_matches_reference(act):
    x = _x()
    rnn = layers.SimpleRNN(UNITS, activation=act, return_sequences=True)
    rnn(x)
    _randomize(rnn)
    fn = {"tanh": np.tanh, "relu": lambda a: np.maximum(a, 0), "sigmoid": _sig, "linear": lambda a: a}[act]
    want, _ = ref_simple_rnn(x, *map(_np, rnn.params()), act=fn)
    np.testing.assert_allclose(rnn(x).numpy(), want, rtol=1e-12, atol=1e-12)


def test_simple_rnn_custom_activation_uses_composed_ops():
    x = _x()
    rnn = layers.SimpleRNN(UNITS, activation=lambda a: gpudl.functional.leaky_relu(a, 0.1))
    rnn(x)
    _randomize(rnn)
    _, want = ref_simple_rnn(x, *map(_np, rnn.params()), act=lambda a: np.where(a > 0, a, 0.1 * a))
    np.testing.assert_allclose(rnn(x).numpy(), want, rtol=1e-12, atol=1e-12)
    assert gradcheck(lambda t: rnn(t), [x], params=rnn.params(), **GRAD)


def test_lstm_forward_matches_reference_float32_and_float64():
    x = _x()
    lstm = layers.LSTM(UNITS, return_sequences=True)
    lstm(x)
    _randomize(lstm)
    want, _, _ = ref_lstm(x, *map(_np, lstm.params()))
    np.testing.assert_allclose(lstm(x).numpy(), want, rtol=1e-12, atol=1e-12)
    l32 = layers.LSTM(UNITS, return_sequences=True)
    l32(x.astype(np.float32))
    for p, q in zip(l32.params(), lstm.params()):
        p.data[...] = q.data
    got = l32(x.astype(np.float32))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_forward_matches_reference(reset_after):
    x = _x()
    gru = layers.GRU(UNITS, return_sequences=True, reset_after=reset_after)
    gru(x)
    _randomize(gru)
    assert gru.b.shape == ((2, 3 * UNITS) if reset_after else (3 * UNITS,))
    want, _ = ref_gru(x, *map(_np, gru.params()), reset_after=reset_after)
    np.testing.assert_allclose(gru(x).numpy(), want, rtol=1e-12, atol=1e-12)


def test_many_to_one_is_last_step_of_many_to_many():
    x = _x(t=7)
    seq = layers.LSTM(UNITS, return_sequences=True)
    last = layers.LSTM(UNITS)
    seq(x), last(x)
    for p, q in zip(last.params(), seq.params()):
        p.data[...] = q.data
    assert seq(x).shape == (3, 7, UNITS) and last(x).shape == (3, UNITS)
    np.testing.assert_allclose(last(x).numpy(), seq(x).numpy()[:, -1], rtol=0, atol=0)


def test_go_backwards_reads_reversed_and_returns_in_processing_order():
    x = _x(t=6)
    fw = layers.GRU(UNITS, return_sequences=True)
    bw = layers.GRU(UNITS, return_sequences=True, go_backwards=True)
    fw(x), bw(x)
    for p, q in zip(bw.params(), fw.params()):
        p.data[...] = q.data
    np.testing.assert_allclose(bw(x).numpy(), fw(x[:, ::-1].copy()).numpy(), rtol=1e-13, atol=1e-13)


# ---- initial states and returned states ---------------------------------------------

def test_initial_state_and_return_state():
    x = _x()
    rng = np.random.default_rng(5)
    h0, c0 = rng.normal(size=(3, UNITS)), rng.normal(size=(3, UNITS))
    lstm = layers.LSTM(UNITS, return_state=True)
    lstm(x)
    _randomize(lstm)
    out, h, c = lstm(x, initial_state=[gpudl.Tensor(h0), gpudl.Tensor(c0)])
    _, want_h, want_c = ref_lstm(x, *map(_np, lstm.params()), h0=h0, c0=c0)
    np.testing.assert_allclose(out.numpy(), want_h, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h.numpy(), want_h, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c.numpy(), want_c, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_gradient_reaches_initial_state(kind):
    layer = getattr(layers, kind)(UNITS, return_sequences=True)
    k = 2 if kind == "LSTM" else 1
    x = _x(t=4)
    states = [np.random.default_rng(i).normal(size=(3, UNITS)) for i in range(k)]
    layer(x)
    _randomize(layer)
    assert gradcheck(lambda xx, *s: layer(xx, initial_state=list(s)), [x] + states,
                     params=layer.params(), **GRAD)


def test_initial_state_errors_name_layer_and_shapes():
    lstm = layers.LSTM(UNITS)
    x = _x()
    with pytest.raises(ValueError, match=r"LSTM 'lstm' expected initial_state as a list of 2"):
        lstm(x, initial_state=[np.zeros((3, UNITS))])
    with pytest.raises(ValueError, match=r"initial_state\[1\] of shape \(3, 4\) \(batch, units\), got shape \(3, 5\)"):
        lstm(x, initial_state=[np.zeros((3, UNITS)), np.zeros((3, 5))])


# ---- shape errors ------------------------------------------------------------------------

@pytest.mark.parametrize("kind,name", [("SimpleRNN", "simple_rnn"), ("LSTM", "lstm"), ("GRU", "gru")])
def test_rank_error_before_and_after_build(kind, name):
    layer = getattr(layers, kind)(8)
    msg = (f"{kind} '{name}' expected input of rank 3 (batch, timesteps, features), "
           "got shape (32, 28)")
    with pytest.raises(ValueError) as e:
        layer(np.zeros((32, 28), np.float32))
    assert str(e.value) == msg
    layer(np.zeros((2, 3, 28), np.float32))
    with pytest.raises(ValueError) as e:
        layer(np.zeros((32, 28), np.float32))
    assert str(e.value) == msg


def test_feature_size_error_after_build():
    lstm = layers.LSTM(8)
    lstm(np.zeros((2, 3, 28), np.float32))
    with pytest.raises(ValueError) as e:
        lstm(np.zeros((2, 3, 27), np.float32))
    assert str(e.value) == "LSTM 'lstm' expected input with last axis 28, got shape (2, 3, 27)"


def test_wrapper_errors():
    with pytest.raises(ValueError, match="Bidirectional expected a recurrent layer"):
        layers.Bidirectional(layers.Dense(3))
    with pytest.raises(ValueError, match="merge_mode"):
        layers.Bidirectional(layers.LSTM(3), merge_mode="max")
    with pytest.raises(ValueError, match=r"Bidirectional 'bidirectional' expected input of rank 3"):
        layers.Bidirectional(layers.LSTM(3))(np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"TimeDistributed 'time_distributed' expected input of rank >= 3"):
        layers.TimeDistributed(layers.Dense(3))(np.zeros((4, 5)))
    with pytest.raises(ValueError, match="zero|at least one timestep"):
        layers.LSTM(3)(np.zeros((4, 0, 2)))
    with pytest.raises(ValueError, match="positive integer for units"):
        layers.GRU(0)


# ---- gradient checks: every layer, lengths 1/5/12, both output kinds, batch 1 and 3 ------

def _make(kind, seq):
    if kind == "SimpleRNN":
        return layers.SimpleRNN(UNITS, return_sequences=seq)
    if kind == "LSTM":
        return layers.LSTM(UNITS, return_sequences=seq)
    if kind == "GRU":
        return layers.GRU(UNITS, return_sequences=seq)
    if kind == "GRU-reset-before":
        return layers.GRU(UNITS, return_sequences=seq, reset_after=False)
    if kind.startswith("Bi-"):
        inner = kind[3:]
        return layers.Bidirectional(getattr(layers, inner)(UNITS - 1, return_sequences=seq))
    if kind == "TimeDistributed-Dense":
        return layers.TimeDistributed(layers.Dense(UNITS, activation="tanh"))
    raise AssertionError(kind)


KINDS = ["SimpleRNN", "LSTM", "GRU", "GRU-reset-before", "Bi-SimpleRNN", "Bi-LSTM", "Bi-GRU",
         "TimeDistributed-Dense"]


GRID = [pytest.param(kind, steps, seq, batch, id=f"{kind}-T{steps}-{'seq' if seq else 'last'}-N{batch}")
        for kind in KINDS for steps in (1, 5, 12) for seq in (False, True) for batch in (1, 3)
        if seq or kind != "TimeDistributed-Dense"]  # TimeDistributed always returns every step


@pytest.mark.parametrize("kind,steps,seq,batch", GRID)
def test_gradcheck(kind, steps, seq, batch):
    layer = _make(kind, seq)
    x = _x(n=batch, t=steps, seed=steps + batch)
    y = layer(x)
    want = (batch, steps) if seq else (batch,)
    assert y.shape[:-1] == want and y.dtype == np.float64
    _randomize(layer, seed=steps)
    assert gradcheck(lambda t: layer(t), [x], params=layer.params(), **GRAD)


# ---- wrappers ------------------------------------------------------------------------------

@pytest.mark.parametrize("merge", ["concat", "sum", "mul", "ave", None])
def test_bidirectional_merges_forward_and_re_reversed_backward(merge):
    x = _x(t=6)
    bi = layers.Bidirectional(layers.SimpleRNN(UNITS, return_sequences=True), merge_mode=merge)
    out = bi(x)
    f, b = bi.forward_layer, bi.backward_layer
    assert b.go_backwards and not f.go_backwards and b.name == "backward_simple_rnn"
    ys_f, _ = ref_simple_rnn(x, *map(_np, f.params()))
    ys_b, _ = ref_simple_rnn(x[:, ::-1], *map(_np, b.params()))
    ys_b = ys_b[:, ::-1]
    want = {"concat": lambda: np.concatenate([ys_f, ys_b], -1), "sum": lambda: ys_f + ys_b,
            "mul": lambda: ys_f * ys_b, "ave": lambda: (ys_f + ys_b) / 2,
            None: lambda: None}[merge]()
    if merge is None:
        np.testing.assert_allclose(out[0].numpy(), ys_f, rtol=1e-12)
        np.testing.assert_allclose(out[1].numpy(), ys_b, rtol=1e-12)
    else:
        np.testing.assert_allclose(out.numpy(), want, rtol=1e-12, atol=1e-14)


def test_bidirectional_last_state_and_initial_states():
    x = _x(t=5)
    h = [np.random.default_rng(i).normal(size=(3, UNITS)) for i in range(4)]
    bi = layers.Bidirectional(layers.LSTM(UNITS, return_state=True))
    out, hf, cf, hb, cb = bi(x, initial_state=[gpudl.Tensor(a) for a in h])
    _, want_hf, _ = ref_lstm(x, *map(_np, bi.forward_layer.params()), h0=h[0], c0=h[1])
    _, want_hb, _ = ref_lstm(x[:, ::-1], *map(_np, bi.backward_layer.params()), h0=h[2], c0=h[3])
    np.testing.assert_allclose(out.numpy(), np.concatenate([want_hf, want_hb], -1), rtol=1e-12)
    np.testing.assert_allclose(hb.numpy(), want_hb, rtol=1e-12)
    assert out.shape == (3, 2 * UNITS)


def test_wrappers_expose_inner_params_and_train_mode():
    bi = layers.Bidirectional(layers.GRU(UNITS))
    td = layers.TimeDistributed(layers.Dropout(0.5))
    bi(_x()), td(_x())
    assert [p.name for p in bi.params()] == ["gru/W", "gru/U", "gru/b",
                                             "backward_gru/W", "backward_gru/U", "backward_gru/b"]
    assert bi.sublayers() == [bi.forward_layer, bi.backward_layer]
    td.eval()
    assert td.layer.training is False
    np.testing.assert_array_equal(td(_x()).numpy(), _x())
    bi.eval()
    assert not bi.forward_layer.training and not bi.backward_layer.training


def test_time_distributed_dense_equals_dense_per_step():
    x = _x(t=4)
    td = layers.TimeDistributed(layers.Dense(2))
    y = td(x).numpy()
    W, b = map(_np, td.params())
    np.testing.assert_allclose(y, x @ W + b, rtol=1e-12)
    assert y.shape == (3, 4, 2)
    with pytest.raises(ValueError, match=r"TimeDistributed 'time_distributed' expected input with rank 3, "
                                         r"axis 2 of size 3, got shape \(3, 4, 5\)"):
        td(np.zeros((3, 4, 5)))


# ---- initializers and layout ---------------------------------------------------------

def test_initializers_and_weight_shapes():
    x = np.zeros((2, 3, 5), np.float32)
    lstm = layers.LSTM(6)
    lstm(x)
    assert [p.shape for p in lstm.params()] == [(5, 24), (6, 24), (24,)]
    U = lstm.U.numpy().astype(np.float64)
    np.testing.assert_allclose(U @ U.T, np.eye(6), atol=1e-5)          # orthogonal rows
    np.testing.assert_array_equal(lstm.b.numpy(), np.r_[np.zeros(6), np.ones(6), np.zeros(12)])
    limit = np.sqrt(6 / (5 + 24))
    assert np.abs(lstm.W.numpy()).max() <= limit and lstm.W.numpy().std() > limit / 4
    assert lstm.kernel is lstm.W and lstm.recurrent_kernel is lstm.U and lstm.bias is lstm.b
    plain = layers.LSTM(6, unit_forget_bias=False)
    plain(x)
    assert not plain.b.numpy().any()
    gru = layers.GRU(6)
    gru(x)
    assert [p.shape for p in gru.params()] == [(5, 18), (6, 18), (2, 18)]
    rnn = layers.SimpleRNN(6, use_bias=False)
    rnn(x)
    assert [p.shape for p in rnn.params()] == [(5, 6), (6, 6)] and rnn.bias is None


def test_float32_input_builds_float32_params_and_integer_input_casts():
    lstm = layers.LSTM(3)
    y = lstm(np.zeros((2, 4, 5), np.uint8))
    assert y.dtype == np.float32 and all(p.dtype == np.float32 for p in lstm.params())


# ---- config round trip -----------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: layers.SimpleRNN(UNITS, activation="relu", return_sequences=True, kernel_regularizer="l2"),
    lambda: layers.LSTM(UNITS, return_state=True, unit_forget_bias=False, go_backwards=True),
    lambda: layers.GRU(UNITS, reset_after=False, use_bias=True, recurrent_initializer="glorot_uniform"),
    lambda: layers.Bidirectional(layers.LSTM(UNITS, return_sequences=True), merge_mode="sum"),
    lambda: layers.TimeDistributed(layers.Dense(UNITS, activation="softmax")),
], ids=["SimpleRNN", "LSTM", "GRU", "Bidirectional", "TimeDistributed"])
def test_get_config_from_config_rebuilds_equivalent_layer(make):
    import json
    layer = make()
    x = _x()
    y = layer(x)
    cfg = json.loads(json.dumps(layer.get_config()))
    clone = type(layer).from_config(cfg)
    assert clone.get_config() == layer.get_config()
    clone(x)
    assert [p.name for p in clone.params()] == [p.name for p in layer.params()]
    for p, q in zip(clone.params(), layer.params()):
        assert p.shape == q.shape
        p.data[...] = q.data
    y2 = clone(x)
    first = (lambda v: v[0] if isinstance(v, list) else v)
    np.testing.assert_array_equal(first(y2).numpy(), first(y).numpy())


def test_config_rejects_custom_callables():
    rnn = layers.SimpleRNN(3, activation=lambda a: a * 2)
    with pytest.raises(ValueError, match="custom activation"):
        rnn.get_config()


# ---- backends: one layout, so weights move across ---------------------------------------

@pytest.mark.parametrize("kind", ["LSTM", "GRU", "SimpleRNN"])
def test_weights_move_across_backends(kind, backend_name):
    x = _x().astype(np.float32)
    gpudl.set_backend("numpy")
    ref = getattr(layers, kind)(UNITS, return_sequences=True)
    want = ref(x).numpy()
    gpudl.set_backend(backend_name)
    other = getattr(layers, kind)(UNITS, return_sequences=True)
    xb = gpudl.Tensor(x)
    other(xb)
    for p, q in zip(other.params(), ref.params()):
        p.data = backend.to_backend(q.data.copy(), backend_name)
    y = other(xb)
    assert y.backend == backend_name
    np.testing.assert_allclose(gpudl.to_numpy(y.data), want, rtol=1e-5, atol=1e-6)
    y.sum().backward()
    assert all(p.grad is not None and backend.backend_of(p.grad) == backend_name for p in other.params())


def test_training_reduces_loss_on_a_toy_sequence_task():
    """An LSTM learns to output the sum-sign of a short sequence (BPTT works end to end)."""
    from gpudl import functional as F
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6, 1)).astype(np.float32)
    y = (x.sum(axis=(1, 2)) > 0).astype(np.int64)
    lstm, head = layers.LSTM(8), layers.Dense(2)
    opt = gpudl.optimizers.Adam(learning_rate=0.05)
    losses = []
    for _ in range(40):
        loss = F.softmax_cross_entropy(head(lstm(x)), y)
        params = lstm.params() + head.params()
        opt.zero_grad(params)
        loss.backward()
        opt.step(params)
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_model_with_recurrent_layers_saves_and_loads(tmp_path):
    if not hasattr(gpudl, "load_model"):
        pytest.skip("gpudl.load_model not available")
    model = gpudl.Sequential([
        layers.Bidirectional(layers.LSTM(5, return_sequences=True)),
        layers.TimeDistributed(layers.Dense(3)),
        layers.GRU(4, reset_after=False),
        layers.Dense(2, activation="softmax"),
    ], input_shape=(6, 3))
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x = np.random.default_rng(0).random((8, 6, 3)).astype(np.float32)
    model.fit(x, np.arange(8) % 2, epochs=1, verbose=0)
    model.save(tmp_path / "rnn.gpudl")
    loaded = gpudl.load_model(tmp_path / "rnn.gpudl")
    assert [p.name for p in loaded.params()] == [p.name for p in model.params()]
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
