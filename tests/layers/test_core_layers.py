import numpy as np
import pytest

import gpudl
from gpudl import Tensor, layers, regularizers
from gpudl.testing import gradcheck
from harness import GRAD, rand

BATCHES = [1, 3, 5]


def _f64(layer, x):
    layer(Tensor(x))  # build in float64 from the first input
    return layer


@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("activation", [None, "relu", "sigmoid", "tanh", "softmax", "leaky_relu"])
def test_dense_gradcheck(n, activation):
    x = rand((n, 4), n, away_from=0.0)
    d = _f64(layers.Dense(3, activation=activation), x)
    assert d.W.dtype == np.float64 and d.W.shape == (4, 3) and d.b.shape == (3,)
    assert gradcheck(d, [x], params=d.params(), **GRAD)


@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("layer_fn", [layers.ReLU, layers.Sigmoid, layers.Tanh, layers.Softmax,
                                      lambda: layers.LeakyReLU(0.1), lambda: layers.Maxout(2)])
def test_activation_layers_gradcheck(n, layer_fn):
    x = np.random.default_rng(n).permutation(n * 6).reshape(n, 6) / 7.0 - 2.0 + 0.05
    layer = _f64(layer_fn(), x)
    assert gradcheck(layer, [x], **GRAD)


@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("shared", [False, True])
def test_prelu_layer_learns_its_slope(n, shared):
    x = rand((n, 4, 3), n, away_from=0.0)
    layer = _f64(layers.PReLU(shared=shared), x)
    assert layer.alpha.shape == (() if shared else (4,))
    np.testing.assert_allclose(layer.alpha.data, 0.25)
    assert gradcheck(layer, [x], params=layer.params(), **GRAD)


def test_dropout_layer_train_and_eval():
    d = layers.Dropout(0.5)
    x = Tensor(np.ones((100, 100), dtype=np.float32))
    assert (d(x).numpy() == 0).mean() > 0.4
    d.eval()
    np.testing.assert_array_equal(d(x).numpy(), 1.0)


def test_flatten_layer():
    f = layers.Flatten()
    assert f(Tensor(np.zeros((2, 3, 4, 5)))).shape == (2, 60)


def test_layer_names_are_unique_and_params_ordered():
    a, b = layers.Dense(2), layers.Dense(2)
    assert (a.name, b.name) == ("dense", "dense_1")
    a(Tensor(np.zeros((1, 3))))
    assert [p.name for p in a.params()] == ["dense/W", "dense/b"]


def test_maxout_after_dense_is_the_tutorials_maxout_layer():
    model = gpudl.Sequential([layers.Dense(8), layers.Maxout(4)], input_shape=(5,))
    assert model.predict(np.ones((2, 5), dtype=np.float32)).shape == (2, 2)


def test_l1_l2_penalties_and_their_gradients():
    w = gpudl.Parameter(np.array([[1.0, -2.0], [0.5, -0.25]]))
    for reg, value, grad in [(regularizers.L2(0.1), 0.1 * 5.3125, 0.2 * w.data),
                             (regularizers.L1(0.1), 0.1 * 3.75, 0.1 * np.sign(w.data)),
                             (regularizers.L1L2(0.1, 0.1), 0.1 * 3.75 + 0.1 * 5.3125,
                              0.1 * np.sign(w.data) + 0.2 * w.data)]:
        w.grad = None
        p = reg(w)
        p.backward()
        np.testing.assert_allclose(p.item(), value)
        np.testing.assert_allclose(w.grad, grad)


def test_kernel_regularizer_is_added_to_the_training_loss():
    gpudl.set_seed(0)
    x = np.random.rand(20, 3).astype(np.float32)
    y = np.random.rand(20, 2).astype(np.float32)
    plain = gpudl.Sequential([layers.Dense(2)], input_shape=(3,)).compile("sgd", "mse")
    gpudl.set_seed(0)
    reg = gpudl.Sequential([layers.Dense(2, kernel_regularizer=regularizers.L2(1.0))], input_shape=(3,))
    reg.compile("sgd", "mse")
    np.testing.assert_array_equal(plain.layers[0].W.data, reg.layers[0].W.data)
    penalty = float((reg.layers[0].W.data ** 2).sum())
    assert reg.evaluate(x, y, return_dict=True)["loss"] == pytest.approx(plain.evaluate(x, y, return_dict=True)["loss"] + penalty, rel=1e-5)
