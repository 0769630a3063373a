"""BatchNormalization and LayerNormalization layers: train vs inference, the Keras moving-
statistics rule, non-trainable moving statistics under fit, Dense/Conv2D stacks, save/load."""
from __future__ import annotations

import numpy as np
import pytest

import gpudl
from gpudl import layers
from tests.harness import check_grad, rand


def _t(x):
    return gpudl.Tensor(np.asarray(x, dtype=np.float64), dtype=np.float64)


def _bn_ref(x, mean, var, g, b, eps=1e-3, axis=1):
    s = tuple(-1 if i == axis else 1 for i in range(x.ndim))
    return (x - mean.reshape(s)) / np.sqrt(var.reshape(s) + eps) * g.reshape(s) + b.reshape(s)


def test_batch_norm_train_then_inference_and_moving_statistics():
    bn = layers.BatchNormalization(momentum=0.9)
    xs = [rand((6, 3), seed=k, low=-1 + k, high=2 + k) for k in range(3)]
    mm, mv = np.zeros(3), np.ones(3)
    for x in xs:
        y = bn(_t(x)).numpy()
        # training: the batch's own mean and biased variance normalise
        np.testing.assert_allclose(y, _bn_ref(x, x.mean(0), x.var(0), np.ones(3), np.zeros(3)), rtol=1e-10)
        # Keras: moving = moving * momentum + batch * (1 - momentum), biased batch variance
        mm = mm * 0.9 + x.mean(0) * 0.1
        mv = mv * 0.9 + x.var(0) * 0.1
    np.testing.assert_allclose(bn.moving_mean.numpy(), mm, rtol=1e-12)
    np.testing.assert_allclose(bn.moving_variance.numpy(), mv, rtol=1e-12)
    kept = bn.moving_mean.numpy().copy()
    bn.eval()
    x = rand((4, 3), seed=9)
    np.testing.assert_allclose(bn(_t(x)).numpy(), _bn_ref(x, mm, mv, np.ones(3), np.zeros(3)), rtol=1e-10)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), kept)  # inference leaves them alone


def test_frozen_batch_norm_runs_in_inference_mode():
    bn = layers.BatchNormalization()
    x = rand((5, 2), seed=1, low=2, high=4)
    bn(_t(x))
    before = bn.moving_mean.numpy().copy()
    bn.trainable = False  # Keras: `if training and self.trainable` -> moving statistics
    y = bn(_t(x)).numpy()
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before)
    np.testing.assert_allclose(y, _bn_ref(x, before, bn.moving_variance.numpy(), np.ones(2), np.zeros(2)),
                               rtol=1e-10)


def test_moving_update_records_no_graph():
    bn = layers.BatchNormalization()
    y = bn(_t(rand((4, 3), 2)))
    assert y.requires_grad
    for p in (bn.moving_mean, bn.moving_variance):
        assert p.creator is None and p.grad is None and p.trainable is False
    y.sum().backward()
    assert bn.moving_mean.grad is None and bn.gamma.grad is not None


def test_batch_norm_nchw_after_conv2d_and_scale_center_off():
    gpudl.set_seed(3)
    conv = layers.Conv2D(4, 3)
    bn = layers.BatchNormalization(axis=1, center=False, scale=False)
    x = _t(rand((2, 2, 5, 5), 4))
    h = conv(x)
    y = bn(h).numpy()
    hn = h.numpy()
    np.testing.assert_allclose(y, _bn_ref(hn, hn.mean((0, 2, 3)), hn.var((0, 2, 3)), np.ones(4), np.zeros(4)),
                               rtol=1e-9, atol=1e-12)
    assert not hasattr(bn, "gamma") and not hasattr(bn, "beta") and len(bn.params()) == 2
    assert bn.trainable_params() == []


def test_batch_norm_layer_gradients(backend_name):
    bn = layers.BatchNormalization(axis=-1)
    x = rand((4, 2, 3), 5)
    bn(_t(x))
    bn.gamma.data[...] = bn.gamma.data + 0.5
    check_grad(lambda x: bn(x), [x], params=[bn.gamma, bn.beta])
    bn.eval()
    check_grad(lambda x: bn(x), [x], params=[bn.gamma, bn.beta])


def test_layer_normalization_layer(backend_name):
    ln = layers.LayerNormalization(axis=[1, 2])
    x = rand((3, 2, 4), 6, -1, 3)
    y = gpudl.to_numpy(ln(_t(x)))
    mu, var = x.mean((1, 2), keepdims=True), x.var((1, 2), keepdims=True)
    np.testing.assert_allclose(y, (x - mu) / np.sqrt(var + 1e-3), rtol=1e-9, atol=1e-12)
    assert ln.gamma.shape == (2, 4) and ln.beta.shape == (2, 4)
    check_grad(lambda x: ln(x), [x], params=[ln.gamma, ln.beta])


def _bn_mlp(n_in=4):
    m = gpudl.Sequential([layers.BatchNormalization(momentum=0.8), layers.Dense(6, activation="relu"),
                          layers.BatchNormalization(), layers.Dense(3, activation="softmax")], input_shape=(n_in,))
    m.compile(gpudl.optimizers.SGD(0.1), "categorical_crossentropy")
    return m


def test_fit_steps_gamma_beta_but_moving_stats_follow_only_the_momentum_rule():
    x = rand((16, 4), 7, 1.0, 3.0)
    y = np.eye(3)[np.arange(16) % 3]
    m = _bn_mlp()
    bn = m.layers[0]
    nt = m.non_trainable_params()
    assert any(p is bn.moving_mean for p in nt) and any(p is bn.moving_variance for p in nt)
    assert all(p is not bn.moving_mean for p in m.trainable_params())
    g0, b0 = bn.gamma.numpy().copy(), bn.beta.numpy().copy()
    m.fit(x, y, batch_size=16, epochs=2, verbose=0)  # one whole batch per epoch: two steps
    xf = x.astype(np.float32).astype(np.float64)
    want_mean = 0.8 ** 2 * 0 + xf.mean(0) * (1 - 0.8 ** 2)
    want_var = 0.8 ** 2 * 1 + xf.var(0) * (1 - 0.8 ** 2)
    np.testing.assert_allclose(bn.moving_mean.numpy(), want_mean, rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), want_var, rtol=1e-5)
    assert not np.allclose(bn.gamma.numpy(), g0) and not np.allclose(bn.beta.numpy(), b0)
    # predict uses the moving statistics and changes nothing
    before = bn.moving_mean.numpy().copy()
    m.predict(x)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before)


def test_save_load_round_trip_keeps_moving_statistics(tmp_path):
    x = rand((12, 4), 8, 0.0, 2.0)
    y = np.eye(3)[np.arange(12) % 3]
    m = _bn_mlp()
    m.fit(x, y, batch_size=4, epochs=1, verbose=0)
    m.save(tmp_path / "bn.gpudl")
    m2 = gpudl.load_model(tmp_path / "bn.gpudl")
    np.testing.assert_array_equal(m2.layers[0].moving_mean.numpy(), m.layers[0].moving_mean.numpy())
    np.testing.assert_array_equal(m2.predict(x), m.predict(x))
    assert m2.layers[0].get_config() == m.layers[0].get_config()
    assert m2.layers[0].moving_variance.trainable is False


def test_save_load_layer_normalization(tmp_path):
    m = gpudl.Sequential([layers.Dense(5), layers.LayerNormalization(epsilon=1e-2), layers.Dense(2)],
                         input_shape=(3,))
    x = rand((4, 3), 9)
    m.save(tmp_path / "ln.gpudl")
    m2 = gpudl.load_model(tmp_path / "ln.gpudl")
    np.testing.assert_array_equal(m2.predict(x), m.predict(x))
    assert m2.layers[1].epsilon == 1e-2


@pytest.mark.parametrize("kwargs,match", [
    ({"momentum": 1.5}, "momentum in"), ({"momentum": -0.1}, "momentum in"), ({"axis": 1.0}, "integer axis"),
    ({"epsilon": 0}, "positive epsilon"),
])
def test_batch_norm_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        layers.BatchNormalization(**kwargs)


def test_bad_axis_for_the_input():
    with pytest.raises(ValueError, match="axis"):
        layers.BatchNormalization(axis=3)(_t(np.zeros((2, 3))))
    with pytest.raises(ValueError, match="batch axis"):
        layers.BatchNormalization(axis=0)(_t(np.zeros((2, 3))))
    with pytest.raises(ValueError, match="axis"):
        layers.LayerNormalization(axis=2)(_t(np.zeros((2, 3))))
    bn = layers.BatchNormalization()
    bn(_t(np.zeros((2, 3))))
    with pytest.raises(ValueError, match="axis 1 of size 3"):
        bn(_t(np.zeros((2, 4))))


def test_batch_norm_refuses_one_value_per_channel_in_training_only():
    bn = layers.BatchNormalization(name="bn_one")
    with pytest.raises(ValueError, match=r"BatchNormalization 'bn_one' expected more than one value per channel.*\(1, 4\)"):
        bn(gpudl.Tensor(np.ones((1, 4), np.float32)), training=True)
    assert bn(gpudl.Tensor(np.ones((1, 4), np.float32)), training=False).shape == (1, 4)
    # a single image still has many values per channel: allowed, as in PyTorch
    conv_bn = layers.BatchNormalization()
    assert conv_bn(gpudl.Tensor(np.random.rand(1, 3, 2, 2).astype(np.float32)), training=True).shape == (1, 3, 2, 2)
