"""Recurrent layers' dropout and recurrent_dropout (Keras' meaning: one mask per call, the same
at every step, training only), stateful layers (kept states, reset_state), and the configs of
the new arguments: against hand computations with the same masks, float64 gradient checks,
the CPU paths and the CuPy path against the NumPy path."""

import json

import numpy as np
import pytest

import gpudl
from gpudl import backend, layers
from gpudl import functional as F
from gpudl import random as grandom
from gpudl.functional import recurrent as R
from gpudl.functional.dropout import dropout_scale, keep_mask
from gpudl.testing import gradcheck
from harness import GRAD

FEATURES, UNITS = 3, 4


# ---- the NumPy reference -------------------------------------------------------------------

def _sig(x):
    return 1 / (1 + np.exp(-x))


def ref_layer(kind, x, params, states=None, go_backwards=False, x_mask=None, r_mask=None, mask=None):
    """``kind`` ("SimpleRNN", "LSTM", "GRU", "GRU-reset-before") over x (N, T, F) with Keras'
    weights (W, U, b): -> (outputs in processing order, final states). ``x_mask`` (N, F)
    multiplies every step's input, ``r_mask`` (N, units) the state fed to the recurrent
    matmuls (the carried state and GRU's z * h keep it whole); ``mask`` (N, T) carries the
    states over its zeros."""
    W, U, b = params
    n, t, _ = x.shape
    u = U.shape[0]
    if x_mask is not None:
        x = x * x_mask[:, None, :]
    rm = 1.0 if r_mask is None else r_mask
    mask = np.ones((n, t), bool) if mask is None else mask
    states = [np.zeros((n, u)) for _ in range(2 if kind == "LSTM" else 1)] if states is None else list(states)
    outs = []
    for s in (range(t - 1, -1, -1) if go_backwards else range(t)):
        h = states[0]
        hr = h * rm
        if kind == "SimpleRNN":
            new = [np.tanh(x[:, s] @ W + hr @ U + b)]
        elif kind == "LSTM":
            z = x[:, s] @ W + hr @ U + b
            i, f, g, o = _sig(z[:, :u]), _sig(z[:, u:2 * u]), np.tanh(z[:, 2 * u:3 * u]), _sig(z[:, 3 * u:])
            c = f * states[1] + i * g
            new = [o * np.tanh(c), c]
        elif kind == "GRU":
            xw, hu = x[:, s] @ W + b[0], hr @ U + b[1]
            z, r = _sig(xw[:, :u] + hu[:, :u]), _sig(xw[:, u:2 * u] + hu[:, u:2 * u])
            new = [z * h + (1 - z) * np.tanh(xw[:, 2 * u:] + r * hu[:, 2 * u:])]
        else:
            xw = x[:, s] @ W + b
            z, r = _sig(xw[:, :u] + hr @ U[:, :u]), _sig(xw[:, u:2 * u] + hr @ U[:, u:2 * u])
            new = [z * h + (1 - z) * np.tanh(xw[:, 2 * u:] + (r * hr) @ U[:, 2 * u:])]
        keep = mask[:, s][:, None]
        states = [np.where(keep, a, old) for a, old in zip(new, states)]
        outs.append(states[0])
    return np.stack(outs, 1), states


KINDS = ["SimpleRNN", "LSTM", "GRU", "GRU-reset-before"]


def _make(kind, units=UNITS, **kw):
    if kind == "GRU-reset-before":
        return layers.GRU(units, reset_after=False, **kw)
    if kind.startswith("Bi-"):
        return layers.Bidirectional(_make(kind[3:], units, **kw))
    return getattr(layers, kind)(units, **kw)


def _randomize(layer, seed=1, scale=0.6):
    rng = np.random.default_rng(seed)
    for p in layer.params():
        p.data[...] = rng.uniform(-scale, scale, p.shape)


def _np(layer):
    return [gpudl.to_numpy(p.data).astype(np.float64) for p in layer.params()]


def _x(n=3, t=5, f=FEATURES, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, t, f))


def _drawn_masks(seed, shapes_rates):
    """The masks a layer draws after ``gpudl.set_seed(seed)``: one key each, in order, from
    gpudl.random.mask_key, as F.dropout gets its key; kept elements scaled by 1/(1 - rate)."""
    gpudl.set_seed(seed)
    out = []
    for shape, rate in shapes_rates:
        keep = keep_mask(shape, grandom.mask_key(), rate, 0, np)
        out.append(keep.astype(np.float64) * dropout_scale(rate, np.float64))
    return out


# ---- forward against a hand computation with the same masks ------------------------------------

@pytest.mark.parametrize("rates", [(0.4, 0.0), (0.0, 0.3), (0.25, 0.5)], ids=["input", "recurrent", "both"])
@pytest.mark.parametrize("kind", KINDS + ["LSTM-backwards"])
def test_dropout_forward_equals_hand_computation(kind, rates):
    rate, rec_rate = rates
    back = kind == "LSTM-backwards"
    base = "LSTM" if back else kind
    x = _x()
    layer = _make(base, dropout=rate, recurrent_dropout=rec_rate, return_sequences=True, return_state=True,
                  go_backwards=back)
    layer(x)
    _randomize(layer)
    gpudl.set_seed(21)
    outs = layer(x)
    wanted = [((3, FEATURES), rate)] * (rate > 0) + [((3, UNITS), rec_rate)] * (rec_rate > 0)
    drawn = _drawn_masks(21, wanted)
    x_mask = drawn.pop(0) if rate > 0 else None
    r_mask = drawn.pop(0) if rec_rate > 0 else None
    want, states = ref_layer(base, x, _np(layer), go_backwards=back, x_mask=x_mask, r_mask=r_mask)
    np.testing.assert_allclose(outs[0].numpy(), want, rtol=1e-12, atol=1e-13)
    for got, s in zip(outs[1:], states):
        np.testing.assert_allclose(got.numpy(), s, rtol=1e-12, atol=1e-13)
    # and the masks mattered: without them the answer differs
    plain, _ = ref_layer(base, x, _np(layer), go_backwards=back)
    assert np.abs(plain - want).max() > 1e-3


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "GRU-reset-before"])
def test_dropout_and_a_mask_together(kind):
    x = _x(seed=2)
    m = np.random.default_rng(2).random((3, 5)) > 0.4
    layer = _make(kind, dropout=0.3, recurrent_dropout=0.3, return_sequences=True)
    layer(x)
    _randomize(layer, seed=2)
    gpudl.set_seed(5)
    got = layer(x, mask=m).numpy()
    x_mask, r_mask = _drawn_masks(5, [((3, FEATURES), 0.3), ((3, UNITS), 0.3)])
    want, _ = ref_layer(kind, x, _np(layer), x_mask=x_mask, r_mask=r_mask, mask=m)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


def _identity_rnn(units, **kw):
    """A linear SimpleRNN with W = I, U = I, b = 0: h_t = x_t * x_mask + h_{t-1} * r_mask."""
    rnn = layers.SimpleRNN(units, activation="linear", return_sequences=True, **kw)
    rnn(np.zeros((1, 1, units)))
    rnn.W.data[...] = np.eye(units)
    rnn.U.data[...] = np.eye(units)
    rnn.b.data[...] = 0
    return rnn


def test_the_input_mask_is_the_same_at_every_step():
    rnn = _identity_rnn(16, dropout=0.5)
    rnn.U.data[...] = 0                                   # h_t = x_t * mask
    y = rnn(np.ones((4, 6, 16))).numpy()
    for t in range(1, 6):
        np.testing.assert_array_equal(y[:, t], y[:, 0])
    assert set(np.unique(y)) == {0.0, 2.0}


def test_the_recurrent_mask_is_the_same_at_every_step():
    rnn = _identity_rnn(16, recurrent_dropout=0.5)
    x = np.zeros((4, 5, 16))
    x[:, 0] = 1.0                                         # h_1 = 1, then h_t = h_{t-1} * R = R ** (t - 1)
    y = rnn(x).numpy()
    r = y[:, 1]
    assert set(np.unique(r)) == {0.0, 2.0}
    for t in range(2, 5):
        np.testing.assert_array_equal(y[:, t], y[:, t - 1] * r)


def test_the_masks_are_the_librarys_dropout_masks():
    """The input mask is the mask F.dropout draws for a (batch, features) array after the same
    seed: the same key from gpudl.random, the same counters, bit for bit (F.dropout runs its
    compiled loop here, the layer the vectorised mask)."""
    rnn = _identity_rnn(8, dropout=0.3)
    rnn.U.data[...] = 0
    gpudl.set_seed(9)
    y = rnn(np.ones((5, 2, 8))).numpy()
    gpudl.set_seed(9)
    d = F.dropout(gpudl.Tensor(np.ones((5, 8))), 0.3).numpy()
    np.testing.assert_array_equal(y[:, 0], d)
    np.testing.assert_array_equal(y[:, 1], d)


def test_each_call_draws_new_masks_and_bidirectional_directions_draw_their_own():
    x = _x(seed=3)
    lstm = layers.LSTM(UNITS, dropout=0.3, recurrent_dropout=0.3)
    assert np.abs(lstm(x).numpy() - lstm(x).numpy()).max() > 1e-4
    bi = layers.Bidirectional(layers.GRU(UNITS, dropout=0.4, recurrent_dropout=0.4, return_sequences=True),
                              merge_mode=None)
    bi(x)
    _randomize(bi, seed=4)
    gpudl.set_seed(13)
    y_f, y_b = bi(x)
    fx, fr, bx, br = _drawn_masks(13, [((3, FEATURES), 0.4), ((3, UNITS), 0.4)] * 2)
    assert (fx != bx).any() and (fr != br).any()
    want_f, _ = ref_layer("GRU", x, _np(bi.forward_layer), x_mask=fx, r_mask=fr)
    want_b, _ = ref_layer("GRU", x, _np(bi.backward_layer), go_backwards=True, x_mask=bx, r_mask=br)
    np.testing.assert_allclose(y_f.numpy(), want_f, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(y_b.numpy(), want_b[:, ::-1], rtol=1e-12, atol=1e-13)


# ---- inference is the plain layer ---------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS + ["Bi-LSTM"])
def test_inference_equals_the_layer_without_dropout(kind):
    x = _x(seed=4)
    drop = _make(kind, dropout=0.5, recurrent_dropout=0.5, return_sequences=True)
    plain = _make(kind, return_sequences=True)
    drop(x), plain(x)
    _randomize(drop, seed=5)
    for p, q in zip(plain.params(), drop.params()):
        p.data[...] = q.data
    want = plain(x).numpy()
    np.testing.assert_array_equal(drop(x, training=False).numpy(), want)
    assert drop.training                                  # training= lasts one call
    assert np.abs(drop(x).numpy() - want).max() > 1e-4
    drop.eval()
    np.testing.assert_array_equal(drop(x).numpy(), want)


# ---- gradient checks with fixed masks -----------------------------------------------------------

GRID = [pytest.param(kind, steps, batch, id=f"{kind}-T{steps}-N{batch}")
        for kind in KINDS + ["Bi-LSTM", "Bi-GRU", "Bi-SimpleRNN"] for steps, batch in ((1, 1), (5, 3), (6, 1))]


@pytest.mark.parametrize("kind,steps,batch", GRID)
def test_dropout_gradcheck(kind, steps, batch):
    layer = _make(kind, dropout=0.3, recurrent_dropout=0.4, return_sequences=True)
    x = _x(n=batch, t=steps, seed=steps + batch)
    layer(x)
    _randomize(layer, seed=steps)

    def fn(t):
        gpudl.set_seed(17)                                # the same masks at every evaluation
        return layer(t)
    assert gradcheck(fn, [x], params=layer.params(), **GRAD)


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "GRU-reset-before", "SimpleRNN"])
def test_dropout_and_mask_gradcheck(kind):
    layer = _make(kind, dropout=0.3, recurrent_dropout=0.4, return_state=True)
    x = _x(n=3, t=5, seed=8)
    m = np.random.default_rng(8).random((3, 5)) > 0.4
    layer(x)
    _randomize(layer, seed=8)

    def fn(t):
        gpudl.set_seed(3)
        outs = layer(t, mask=m)
        return outs[0] + outs[-1] * 0.5
    assert gradcheck(fn, [x], params=layer.params(), **GRAD)


# ---- the CPU paths and the CuPy path give one answer ---------------------------------------------

@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_compiled_and_numpy_steps_agree_with_dropout(kind, monkeypatch):
    x = _x(seed=6)

    def run(jit):
        monkeypatch.setattr(R, "_cpu_jit", jit)
        gpudl.set_seed(0)
        layer = _make(kind, dropout=0.3, recurrent_dropout=0.3, return_sequences=True)
        xt = gpudl.Tensor(x, requires_grad=True)
        y = layer(xt)
        y.sum().backward()
        return [y.numpy(), xt.grad] + [p.grad for p in layer.params()]
    for a, b in zip(run(True), run(False)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("kind", KINDS + ["Bi-GRU"])
def test_dropout_layers_agree_across_backends(kind, backend_name):
    x = _x(n=2, t=3, seed=7)

    def run(name):
        gpudl.set_backend(name)
        gpudl.set_seed(0)
        layer = _make(kind, dropout=0.4, recurrent_dropout=0.4, return_sequences=True)
        xt = gpudl.Tensor(backend.to_backend(x), requires_grad=True)
        y = layer(xt)
        assert y.backend == name
        (y * gpudl.Tensor(backend.to_backend(np.linspace(-1, 1, y.size).reshape(y.shape)))).sum().backward()
        return [gpudl.to_numpy(y.data), gpudl.to_numpy(xt.grad)] + [gpudl.to_numpy(p.grad) for p in layer.params()]
    got = run(backend_name)
    want = run("numpy")
    for i, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=f"output {i}")


def test_both_backends_draw_the_same_masks_bit_for_bit(backend_name):
    def masks(name):
        gpudl.set_backend(name)
        rnn = _identity_rnn(8, dropout=0.5, recurrent_dropout=0.5)
        rnn.to(name)
        x = np.zeros((3, 2, 8))
        x[:, 0] = 1.0
        gpudl.set_seed(4)
        y = rnn(gpudl.Tensor(backend.to_backend(x)))
        return gpudl.to_numpy(y.data)
    np.testing.assert_array_equal(masks(backend_name), masks("numpy"))


# ---- argument errors ----------------------------------------------------------------------------

@pytest.mark.parametrize("arg,value", [("dropout", 1.0), ("dropout", -0.1), ("recurrent_dropout", 1.5),
                                       ("recurrent_dropout", "0.2"), ("dropout", True)])
def test_rate_errors_name_the_layer_and_the_argument(arg, value):
    with pytest.raises(ValueError) as e:
        layers.LSTM(3, **{arg: value})
    assert str(e.value) == f"LSTM expected {arg} in [0, 1), got {value!r}"


# ---- stateful layers ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_two_calls_on_halves_equal_one_call_on_the_whole(kind):
    x = _x(n=2, t=8, seed=9)
    whole = _make(kind, return_sequences=True, return_state=True)
    kept = _make(kind, return_sequences=True, return_state=True, stateful=True)
    whole(x), kept(x[:, :1])
    _randomize(whole, seed=9)
    for p, q in zip(kept.params(), whole.params()):
        p.data[...] = q.data
    kept.reset_state()
    first, second = kept(x[:, :5]), kept(x[:, 5:])
    want = whole(x)
    np.testing.assert_allclose(np.concatenate([first[0].numpy(), second[0].numpy()], axis=1), want[0].numpy(),
                               rtol=1e-12, atol=1e-13)
    for a, b, s in zip(second[1:], want[1:], kept.states):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-13)
        np.testing.assert_array_equal(s.numpy(), a.numpy())


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_reset_state_restores_the_zero_state(kind):
    x = _x(seed=10)
    layer = _make(kind, stateful=True)
    assert layer.states is None
    fresh = layer(x).numpy()
    assert np.abs(layer(x).numpy() - fresh).max() > 1e-6    # the kept states count
    layer.reset_state()
    assert all(not s.numpy().any() and s.shape == (3, UNITS) for s in layer.states)
    np.testing.assert_array_equal(layer(x).numpy(), fresh)
    layer(x)
    layer.reset_states()                                     # Keras 2's name
    np.testing.assert_array_equal(layer(x).numpy(), fresh)


def test_stateful_batch_size_error():
    lstm = layers.LSTM(UNITS, stateful=True)
    lstm(_x(n=3))
    with pytest.raises(ValueError) as e:
        lstm(_x(n=2))
    assert str(e.value) == ("LSTM 'lstm' is stateful and expected a batch of 3 (the batch size of its kept "
                            "states), got batch size 2; a stateful layer keeps one batch size until "
                            "reset_state()")
    # after a reset the next call starts from zeros and may set a new batch size
    lstm.reset_state()
    plain = layers.LSTM(UNITS)
    plain(_x(n=4))
    for p, q in zip(plain.params(), lstm.params()):
        p.data[...] = q.data
    np.testing.assert_array_equal(lstm(_x(n=4)).numpy(), plain(_x(n=4)).numpy())
    assert lstm.states[0].shape == (4, UNITS)
    with pytest.raises(ValueError, match=r"expected a batch of 4.*got batch size 3"):
        lstm(_x(n=3))


def test_kept_states_are_detached_and_an_explicit_initial_state_wins():
    x = _x(seed=11)
    layer = layers.GRU(UNITS, stateful=True, return_sequences=True)
    layer(x)
    _randomize(layer, seed=11)
    layer.reset_state()
    layer(x)
    kept = layer.states[0]
    assert not kept.requires_grad and kept.creator is None
    # the second call's gradients are those of a call from the kept states as constants
    twin = layers.GRU(UNITS, return_sequences=True)
    twin(x)
    for p, q in zip(twin.params(), layer.params()):
        p.data[...] = q.data
    h0 = kept.numpy().copy()
    y = layer(x)
    y.sum().backward()
    got = [p.grad.copy() for p in layer.params()]
    y2 = twin(x, initial_state=[gpudl.Tensor(h0)])
    y2.sum().backward()
    np.testing.assert_array_equal(y.numpy(), y2.numpy())
    for a, p in zip(got, twin.params()):
        np.testing.assert_allclose(a, p.grad, rtol=1e-12, atol=1e-14)
    # initial_state given explicitly is used for that call, and the states are kept after it
    h_given = np.random.default_rng(1).normal(size=(3, UNITS))
    y3 = layer(x, initial_state=[h_given])
    np.testing.assert_array_equal(y3.numpy(), twin(x, initial_state=[h_given]).numpy())
    np.testing.assert_array_equal(layer.states[0].numpy(), y3.numpy()[:, -1])


def test_stateful_with_a_mask_keeps_the_last_carried_state():
    x = _x(seed=12)
    m = np.ones((3, 5), bool)
    m[0, 3:] = False
    layer = layers.LSTM(UNITS, stateful=True, return_sequences=True)
    y = layer(x, mask=m).numpy()
    np.testing.assert_array_equal(layer.states[0].numpy()[0], y[0, 2])


def test_bidirectional_forwards_stateful_and_resets_both():
    x = _x(seed=13)
    bi = layers.Bidirectional(layers.LSTM(UNITS, stateful=True, return_state=True))
    assert bi.stateful and bi.forward_layer.stateful and bi.backward_layer.stateful
    _, *first = bi(x)
    kept = [s.numpy().copy() for s in bi.forward_layer.states + bi.backward_layer.states]
    for a, b in zip(first, kept):
        np.testing.assert_array_equal(a.numpy(), b)
    second = bi(x)
    np.testing.assert_array_equal(second[0].numpy(), bi(x, initial_state=kept)[0].numpy())
    bi.reset_state()
    assert all(not s.numpy().any() for s in bi.forward_layer.states + bi.backward_layer.states)
    np.testing.assert_array_equal(bi(x)[0].numpy(), bi(x, initial_state=[np.zeros((3, UNITS))] * 4)[0].numpy())
    bi.reset_states()
    with pytest.raises(ValueError, match="the same stateful"):
        layers.Bidirectional(layers.GRU(2, stateful=True), backward_layer=layers.GRU(2, go_backwards=True))


def test_stateful_states_live_on_the_layers_backend(backend_name):
    x = _x(n=2, t=4, seed=14)
    layer = layers.LSTM(UNITS, stateful=True, return_sequences=True)
    xb = gpudl.Tensor(backend.to_backend(x))
    whole = gpudl.to_numpy(layer(xb).data)
    layer.reset_state()
    halves = [gpudl.to_numpy(layer(gpudl.Tensor(backend.to_backend(x[:, a:b]))).data) for a, b in ((0, 2), (2, 4))]
    np.testing.assert_allclose(np.concatenate(halves, axis=1), whole, rtol=1e-12, atol=1e-13)
    assert all(backend.backend_of(s.data) == backend_name for s in layer.states)
    layer.to("numpy")
    assert all(backend.backend_of(s.data) == "numpy" for s in layer.states)


# ---- configs ------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: layers.SimpleRNN(UNITS, dropout=0.1, recurrent_dropout=0.2, stateful=True, zero_output_for_mask=True),
    lambda: layers.LSTM(UNITS, dropout=0.3, return_sequences=True, zero_output_for_mask=True),
    lambda: layers.GRU(UNITS, recurrent_dropout=0.25, stateful=True, reset_after=False),
    lambda: layers.Bidirectional(layers.LSTM(UNITS, dropout=0.2, recurrent_dropout=0.1, stateful=True,
                                             zero_output_for_mask=True, return_sequences=True)),
], ids=["SimpleRNN", "LSTM", "GRU", "Bidirectional"])
def test_new_arguments_round_trip_through_the_config(make):
    layer = make()
    cfg = json.loads(json.dumps(layer.get_config()))
    clone = type(layer).from_config(cfg)
    assert clone.get_config() == layer.get_config()
    inner = [layer] if not isinstance(layer, layers.Bidirectional) else [layer.forward_layer, layer.backward_layer]
    twins = [clone] if not isinstance(clone, layers.Bidirectional) else [clone.forward_layer, clone.backward_layer]
    for a, b in zip(inner, twins):
        for arg in ("dropout", "recurrent_dropout", "stateful", "zero_output_for_mask"):
            assert getattr(b, arg) == getattr(a, arg) and arg in a.get_config()
    x = _x()
    layer(x), clone(x)
    for p, q in zip(clone.params(), layer.params()):
        p.data[...] = q.data
    if layer.stateful:
        layer.reset_state()
        clone.reset_state()
    gpudl.set_seed(2)
    a = layer(x)
    gpudl.set_seed(2)
    b = clone(x)                                  # the same rates draw the same masks
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_defaults_are_keras_defaults():
    cfg = layers.LSTM(3).get_config()
    assert (cfg["dropout"], cfg["recurrent_dropout"], cfg["stateful"], cfg["zero_output_for_mask"]) == \
        (0.0, 0.0, False, False)
