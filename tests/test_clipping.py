"""Gradient clipping (clipvalue, clipnorm per tensor, global_clipnorm) checked number by
number, and shown taming the exploding gradient of a recurrent network."""

import numpy as np
import pytest

import gpudl
from gpudl import layers, optimizers
from gpudl import functional as F
from gpudl.optimizers import clip_gradients


def _grads():
    rng = np.random.default_rng(0)
    return [rng.normal(size=(3, 4)) * 10, rng.normal(size=(5,)) * 0.01, None]


def test_clipvalue_clips_each_element():
    g = _grads()
    out = clip_gradients(g, clipvalue=0.5)
    np.testing.assert_array_equal(out[0], np.clip(g[0], -0.5, 0.5))
    np.testing.assert_array_equal(out[1], g[1])  # already inside
    assert out[2] is None


def test_clipnorm_rescales_each_tensor_by_its_own_norm():
    g = _grads()
    out = clip_gradients(g, clipnorm=1.0)
    n0 = np.linalg.norm(g[0])
    assert n0 > 1
    np.testing.assert_allclose(out[0], g[0] / n0, rtol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(out[0]), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(out[1], g[1])  # small tensors keep their size and direction
    assert out[2] is None


def test_global_clipnorm_rescales_all_tensors_together():
    g = _grads()
    total = np.sqrt(np.sum(g[0] ** 2) + np.sum(g[1] ** 2))
    out = clip_gradients(g, global_clipnorm=2.0)
    scale = 2.0 / total
    np.testing.assert_allclose(out[0], g[0] * scale, rtol=1e-12)
    np.testing.assert_allclose(out[1], g[1] * scale, rtol=1e-12)  # the small one shrinks too
    np.testing.assert_allclose(np.sqrt(sum(np.sum(o ** 2) for o in out[:2])), 2.0, rtol=1e-12)
    big = clip_gradients(g, global_clipnorm=10 * total)
    np.testing.assert_array_equal(big[0], g[0])
    np.testing.assert_array_equal(big[1], g[1])


def test_zero_gradient_is_left_alone():
    z = [np.zeros((2, 2))]
    for kw in ({"clipnorm": 1.0}, {"global_clipnorm": 1.0}):
        out = clip_gradients(z, **kw)
        assert np.isfinite(out[0]).all() and not out[0].any()


def test_float32_stays_float32():
    g = [np.full((2, 3), 100.0, np.float32)]
    for kw in ({"clipnorm": 1.0}, {"global_clipnorm": 1.0}, {"clipvalue": 1.0}):
        assert clip_gradients(g, **kw)[0].dtype == np.float32


@pytest.mark.parametrize("kw,expected", [
    ({"clipvalue": 0.5}, lambda g: np.clip(g, -0.5, 0.5)),
    ({"clipnorm": 1.0}, lambda g: g / max(1.0, np.linalg.norm(g))),
    ({"global_clipnorm": 1.0}, lambda g: g / max(1.0, np.linalg.norm(g))),
])
def test_optimizer_step_applies_the_clipped_gradient(kw, expected):
    w0 = np.array([1.0, -2.0, 3.0])
    g = np.array([3.0, -4.0, 0.2])
    p = gpudl.Parameter(w0.copy(), dtype=np.float64)
    p.grad = g.copy()
    optimizers.SGD(learning_rate=0.1, **kw).step([p])
    np.testing.assert_allclose(p.data, w0 - 0.1 * expected(g), rtol=1e-12)
    np.testing.assert_array_equal(p.grad, g)  # clipping never edits the stored gradient


def test_invalid_clip_arguments():
    for kw in ({"clipnorm": 0}, {"clipvalue": -1.0}, {"global_clipnorm": float("nan")}):
        with pytest.raises(ValueError, match=list(kw)[0]):
            optimizers.Adam(**kw)


# ---- the exploding gradient of a recurrent net -------------------------------------------

STEPS, UNITS = 40, 32


def _exploding_rnn():
    """A tanh SimpleRNN whose recurrent weight is 3 x an orthogonal matrix: its states stay
    bounded (so does the loss), but it is chaotic, and the gradient through t steps grows
    exponentially in t (the slides' exploding gradient: a cliff in the error surface)."""
    gpudl.set_seed(1)
    rnn = layers.SimpleRNN(UNITS)
    head = layers.Dense(1)
    x = np.random.default_rng(2).normal(size=(16, STEPS, 2)).astype(np.float32)
    y = np.random.default_rng(3).normal(size=(16, 1)).astype(np.float32)
    head(rnn(x))
    rnn.U.data *= np.float32(3.0)
    return rnn, head, x, y


def _loss(rnn, head, x, y):
    return F.mean_squared_error(head(rnn(x)), y)


def _grad_norm(params):
    return float(np.sqrt(sum(np.sum(p.grad.astype(np.float64) ** 2) for p in params)))


def _saturation_and_rnn_grad(rnn, head, x, y):
    """Fraction of hidden units stuck at +-1 over the batch, and the RNN's gradient norm."""
    for p in rnn.params() + head.params():
        p.grad = None
    h = rnn(x)
    _loss(rnn, head, x, y).backward()
    return float((np.abs(h.numpy()) > 0.999).mean()), _grad_norm(rnn.params())


def test_exploding_rnn_gradient_is_tamed_by_global_clipnorm():
    rnn, head, x, y = _exploding_rnn()
    params = rnn.params() + head.params()
    loss = _loss(rnn, head, x, y)
    loss.backward()
    norm = _grad_norm(params)
    assert np.isfinite(loss.item()) and loss.item() < 10  # the forward is tame...
    assert norm > 1e4, f"expected an exploding gradient, got norm {norm:.3g}"  # ...its gradient is not

    # unclipped, SGD jumps off the cliff: one step of lr * |g| throws the weights so far
    # that nearly every hidden unit saturates and the recurrent part stops learning
    rnn, head, x, y = _exploding_rnn()
    params = rnn.params() + head.params()
    before = [p.data.copy() for p in params]
    _loss(rnn, head, x, y).backward()
    optimizers.SGD(learning_rate=0.01).step(params)
    jump = np.sqrt(sum(np.sum((p.data - w).astype(np.float64) ** 2) for p, w in zip(params, before)))
    assert jump > 100
    saturated, rnn_grad = _saturation_and_rnn_grad(rnn, head, x, y)
    assert saturated > 0.9 and rnn_grad < 1.0

    # clipped by the global norm: every update is at most lr * clipnorm, everything stays
    # finite, the units stay alive and the loss goes down
    rnn, head, x, y = _exploding_rnn()
    params = rnn.params() + head.params()
    opt = optimizers.SGD(learning_rate=0.01, global_clipnorm=1.0)
    losses = []
    for _ in range(30):
        opt.zero_grad(params)
        loss = _loss(rnn, head, x, y)
        loss.backward()
        before = [p.data.copy() for p in params]
        opt.step(params)
        move = np.sqrt(sum(np.sum((p.data - w).astype(np.float64) ** 2) for p, w in zip(params, before)))
        assert move <= 0.01 * 1.0 * (1 + 1e-5)
        losses.append(loss.item())
    assert np.all(np.isfinite(losses)) and all(np.isfinite(p.data).all() for p in params)
    assert losses[-1] < losses[0]
    saturated, _ = _saturation_and_rnn_grad(rnn, head, x, y)
    assert saturated < 0.5


def test_clipnorm_bounds_each_tensor_of_the_exploding_rnn():
    rnn, head, x, y = _exploding_rnn()
    params = rnn.params() + head.params()
    _loss(rnn, head, x, y).backward()
    assert max(np.linalg.norm(p.grad) for p in params) > 1e4
    before = [p.data.copy() for p in params]
    optimizers.SGD(learning_rate=1.0, clipnorm=0.5).step(params)
    for p, w in zip(params, before):
        assert np.linalg.norm((p.data - w).astype(np.float64)) <= 0.5 * (1 + 1e-5), p.name
