"""ReLU(max_value, negative_slope, threshold), PReLU(alpha_initializer, alpha_regularizer,
shared_axes) and Dropout(rate, noise_shape, seed): forward, float64 gradchecks, PyTorch's
nn.PReLU, configs that rebuild the layer, and the argument errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

import gpudl
from gpudl import Tensor, initializers, layers, regularizers
from gpudl.layers.base import get_layer_class
from harness import check_grad, rand

BATCHES = [1, 3, 5]


def _t(x):
    return Tensor(np.asarray(x, dtype=np.float64), dtype=np.float64)


def _rebuilt(layer):
    """The layer rebuilt from its config after a JSON round trip (what a saved model stores)."""
    cfg = json.loads(json.dumps(layer.get_config()))
    return get_layer_class(type(layer).__name__).from_config(cfg)


# ---- ReLU ----------------------------------------------------------------------------------

def relu_ref(x, slope, top, thr):
    y = np.where(x >= thr, x, slope * (x - thr))
    return y if top is None else np.where(x >= top, top, y)


@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("kwargs", [{}, {"max_value": 6.0}, {"negative_slope": 0.1},
                                    {"max_value": 1.0, "negative_slope": 0.2, "threshold": 0.5}])
def test_relu_layer(backend_name, n, kwargs):
    # values at least 0.05 from the kinks at 0, 0.5, 1 and 6
    x = np.random.default_rng(n).permutation(n * 8).reshape(n, 8) / 3.0 - 2.0 + 0.07
    layer = layers.ReLU(**kwargs)
    y = layer(_t(x))
    want = relu_ref(x, kwargs.get("negative_slope", 0.0), kwargs.get("max_value"), kwargs.get("threshold", 0.0))
    np.testing.assert_allclose(gpudl.to_numpy(y), want, rtol=1e-12, atol=1e-12)
    check_grad(layer, [x])
    again = _rebuilt(layer)
    assert again.get_config() == layer.get_config()
    assert (again.max_value, again.negative_slope, again.threshold) == (
        layer.max_value, layer.negative_slope, layer.threshold)
    np.testing.assert_array_equal(gpudl.to_numpy(again(_t(x))), gpudl.to_numpy(y))


def test_relu_layer_errors():
    with pytest.raises(ValueError, match=r"^ReLU expected max_value=None or a non-negative number, got -1.0$"):
        layers.ReLU(max_value=-1.0)
    with pytest.raises(ValueError, match=r"^ReLU expected a non-negative negative_slope, got -0.5$"):
        layers.ReLU(negative_slope=-0.5)
    with pytest.raises(ValueError, match=r"^ReLU expected a number for negative_slope, got None$"):
        layers.ReLU(negative_slope=None)
    with pytest.raises(ValueError, match=r"^ReLU expected a number for threshold, got 'x'$"):
        layers.ReLU(threshold="x")


def test_activation_relu_is_unchanged():
    x = _t(np.linspace(-2, 8, 11))
    np.testing.assert_array_equal(layers.Activation("relu")(x).numpy(), np.maximum(x.numpy(), 0))


# ---- PReLU -----------------------------------------------------------------------------------

@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("shared_axes,alpha_shape", [([2, 3], (3, 1, 1)), ([1], (1, 4, 2)), (None, (3,)),
                                                     ([1, 2, 3], (1, 1, 1)), (2, (3, 1, 2))])
def test_prelu_shared_axes(backend_name, n, shared_axes, alpha_shape):
    x = rand((n, 3, 4, 2), n, away_from=0.0)
    layer = layers.PReLU(alpha_initializer=initializers.RandomUniform(0.1, 0.4, seed=1), shared_axes=shared_axes)
    y = layer(_t(x))
    assert layer.alpha.shape == alpha_shape
    a = gpudl.to_numpy(layer.alpha.data)
    view = a.reshape((1, 3, 1, 1)) if shared_axes is None else a.reshape((1,) + alpha_shape)
    np.testing.assert_allclose(gpudl.to_numpy(y), np.where(x > 0, x, view * x), rtol=1e-12)
    check_grad(layer, [x], params=layer.params())


def test_prelu_default_and_shared_keep_their_behaviour():
    x = _t(rand((2, 4, 3), 0, away_from=0.0))
    per_channel, single = layers.PReLU(), layers.PReLU(shared=True)
    per_channel(x), single(x)
    assert per_channel.alpha.shape == (4,) and single.alpha.shape == ()
    np.testing.assert_array_equal(per_channel.alpha.numpy(), 0.25)
    np.testing.assert_array_equal(single.alpha.numpy(), 0.25)


@pytest.mark.parametrize("init,want", [(0.1, 0.1), ("zeros", 0.0), ("ones", 1.0),
                                       (initializers.Constant(0.3), 0.3),
                                       ({"class": "Constant", "config": {"value": 0.05}}, 0.05)])
def test_prelu_alpha_initializer_forms(init, want):
    layer = layers.PReLU(alpha_initializer=init, shared_axes=[2])
    layer(_t(np.zeros((2, 3, 4))))
    np.testing.assert_array_equal(layer.alpha.numpy(), np.full((3, 1), want))
    again = _rebuilt(layer)
    again(_t(np.zeros((2, 3, 4))))
    np.testing.assert_array_equal(again.alpha.numpy(), layer.alpha.numpy())
    assert again.get_config() == layer.get_config() and again.shared_axes == [2]


def test_prelu_alpha_regularizer_adds_its_penalty_and_survives_the_config():
    layer = layers.PReLU(alpha_regularizer=regularizers.L2(0.5))
    layer(_t(np.ones((2, 3))))
    assert layer.alpha.regularizer is layer.alpha_regularizer
    np.testing.assert_allclose(layer.alpha.regularizer(layer.alpha).item(), 0.5 * 3 * 0.25 ** 2)
    again = _rebuilt(layer)
    assert isinstance(again.alpha_regularizer, regularizers.L2)
    assert again.get_config() == layer.get_config()


@pytest.mark.torch
@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("shared", [False, True])
def test_prelu_layer_against_torch(n, shared):
    torch = pytest.importorskip("torch")
    x = rand((n, 3, 4, 2), n + 10, away_from=0.0)
    layer = layers.PReLU(shared=shared)
    t = Tensor(x, requires_grad=True)
    y = layer(t)
    w = np.random.default_rng(n).standard_normal(x.shape)
    (y * Tensor(w)).sum().backward()
    ref = torch.nn.PReLU(num_parameters=1 if shared else 3).double()
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    (yt * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(t.grad, xt.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(np.reshape(layer.alpha.grad, -1), ref.weight.grad.numpy(), rtol=1e-10)


def test_prelu_errors():
    with pytest.raises(ValueError, match=r"^PReLU expected shared_axes as distinct positive axes \(the batch axis "
                                         r"is 0\), got \[0, 2\]$"):
        layers.PReLU(shared_axes=[0, 2])
    with pytest.raises(ValueError, match=r"^PReLU expected shared_axes as .* got \[2, 2\]$"):
        layers.PReLU(shared_axes=[2, 2])
    with pytest.raises(ValueError, match=r"^PReLU got shared=True and shared_axes: pass one of them$"):
        layers.PReLU(shared_axes=[1], shared=True)
    with pytest.raises(ValueError, match=r"^PReLU expected a number, an initializer name or object for "
                                         r"alpha_initializer: unknown initializer 'quarter'"):
        layers.PReLU(alpha_initializer="quarter")
    with pytest.raises(ValueError, match=r"^PReLU 'p' expected shared_axes in \[1, 3\) for input of shape "
                                         r"\(2, 3, 4\), got shared_axes=\[3\]$"):
        layers.PReLU(shared_axes=[3], name="p")(_t(np.zeros((2, 3, 4))))
    built = layers.PReLU(shared_axes=[2], name="q")
    built(_t(np.zeros((2, 3, 4))))
    with pytest.raises(ValueError, match=r"PReLU 'q' expected input with rank 3, axis 1 of size 3, got "
                                         r"shape \(2, 5, 4\)"):
        built(_t(np.zeros((2, 5, 4))))


# ---- Dropout(noise_shape, seed) ----------------------------------------------------------------

def test_dropout_noise_shape_layer():
    layer = layers.Dropout(0.5, noise_shape=(None, 1, 6))
    y = layer(Tensor(np.ones((40, 3, 6), dtype=np.float32))).numpy()
    np.testing.assert_array_equal(y, np.broadcast_to(y[:, :1], y.shape))
    assert 0.3 < (y[:, 0] != 0).mean() < 0.7
    layer.eval()
    x = np.random.default_rng(0).standard_normal((4, 3, 6)).astype(np.float32)
    np.testing.assert_array_equal(layer(Tensor(x)).numpy(), x)   # no scaling at inference


def test_dropout_seed_gives_a_reproducible_stream_of_its_own():
    x = Tensor(np.ones((6, 10), dtype=np.float32))
    a, b = layers.Dropout(0.5, seed=7), layers.Dropout(0.5, seed=7)
    gpudl.set_seed(1)
    first = [a(x).numpy() for _ in range(3)]
    gpudl.set_seed(2)                                     # the shared generator plays no part
    second = [b(x).numpy() for _ in range(3)]
    for u, v in zip(first, second):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(first[0], first[1])         # each call a new mask
    assert not np.array_equal(first[0], layers.Dropout(0.5, seed=8)(x).numpy())
    # the seeded layer leaves the shared generator alone; an unseeded one draws from it
    gpudl.set_seed(3)
    before = gpudl.random.get_rng().bit_generator.state
    a(x)
    assert gpudl.random.get_rng().bit_generator.state == before
    layers.Dropout(0.5)(x)
    assert gpudl.random.get_rng().bit_generator.state != before


def test_unseeded_dropout_follows_set_seed():
    x = Tensor(np.ones((6, 10), dtype=np.float32))
    gpudl.set_seed(4)
    u = layers.Dropout(0.5)(x).numpy()
    gpudl.set_seed(4)
    np.testing.assert_array_equal(layers.Dropout(0.5)(x).numpy(), u)


@pytest.mark.parametrize("shape,noise_shape", [((1, 3, 4), (None, 1, 4)), ((3, 5), None),
                                               ((2, 3, 2, 2), (None, 3, 1, 1))])
def test_dropout_layer_gradcheck(backend_name, shape, noise_shape):
    x = np.random.default_rng(1).standard_normal(shape)

    def fn(t):  # a fresh seeded layer each call: the same mask for every difference
        return layers.Dropout(0.4, noise_shape=noise_shape, seed=5)(t)
    check_grad(fn, [x])


def test_dropout_config_round_trip():
    layer = layers.Dropout(0.3, noise_shape=(None, 1, 4), seed=11)
    again = _rebuilt(layer)
    assert again.get_config() == layer.get_config() == {"name": "dropout", "rate": 0.3,
                                                        "noise_shape": [None, 1, 4], "seed": 11}
    assert again.noise_shape == (None, 1, 4) and again.seed == 11
    x = Tensor(np.ones((5, 2, 4), dtype=np.float32))
    np.testing.assert_array_equal(again(x).numpy(), layer(x).numpy())   # the same stream from the start
    plain = _rebuilt(layers.Dropout(0.2))
    assert plain.noise_shape is None and plain.seed is None


def test_dropout_layer_errors():
    with pytest.raises(ValueError, match=r"^Dropout expected noise_shape as a tuple of positive integers or None "
                                         r"\(one entry per input axis\), got \(None, 0\)$"):
        layers.Dropout(0.5, noise_shape=(None, 0))
    with pytest.raises(ValueError, match=r"^Dropout expected noise_shape as .* got 3$"):
        layers.Dropout(0.5, noise_shape=3)
    with pytest.raises(ValueError, match=r"^Dropout expected seed=None or an integer in \[0, 2\*\*64\), got -1$"):
        layers.Dropout(0.5, seed=-1)
    with pytest.raises(ValueError, match=r"^Dropout 'd' expected noise_shape with one entry per input axis "
                                         r"\(3\), got noise_shape \(None, 1\) for input shape \(2, 3, 4\)$"):
        layers.Dropout(0.5, noise_shape=(None, 1), name="d")(Tensor(np.ones((2, 3, 4))))
    with pytest.raises(ValueError, match=r"^Dropout 'e': dropout expected noise_shape with one entry per "
                                         r"input axis \(3\), each None, 1 or the input's size, got noise_shape "
                                         r"\(None, 2, 4\) for input shape \(2, 3, 4\)$"):
        layers.Dropout(0.5, noise_shape=(None, 2, 4), name="e")(Tensor(np.ones((2, 3, 4))))


def test_model_file_round_trip_keeps_the_new_arguments(tmp_path):
    model = gpudl.Sequential([
        layers.Dense(6, kernel_initializer=initializers.Orthogonal(gain=0.5, seed=1)),
        layers.ReLU(max_value=2.0, negative_slope=0.1, threshold=0.2),
        layers.Dropout(0.3, noise_shape=(None, 6), seed=4),
        layers.Dense(4, bias_initializer=initializers.Constant(0.1)),
        layers.PReLU(alpha_initializer=initializers.Constant(0.2), shared=True)], input_shape=(5,))
    model.compile("sgd", "mse")
    x = np.random.default_rng(0).random((3, 5)).astype(np.float32)
    path = tmp_path / "model.gpudl"
    model.save(path)
    again = gpudl.load_model(path)
    assert [l.get_config() for l in again.layers] == [l.get_config() for l in model.layers]
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
