"""Conv2D, MaxPool2D, AvgPool2D: lazy build, gradients, shape checks, configs; and the
"what does the CNN learn" tools of gpudl.visualize."""
from __future__ import annotations

import json

import numpy as np
import pytest

import gpudl
from gpudl import Tensor, layers
from gpudl import functional as F
from gpudl import visualize
from tests.harness import check_grad, rand


def _f64(layer, x):
    layer(Tensor(x))  # build in float64 from the first input
    return layer


@pytest.mark.parametrize("padding,stride,out_hw", [("valid", 1, (5, 4)), ("same", 1, (7, 6)), ("same", 2, (4, 3)),
                                                    (1, (2, 1), (4, 6)), ((0, 1), 1, (5, 6))])
def test_conv2d_layer_shapes_and_gradients(padding, stride, out_hw):
    x = rand((2, 3, 7, 6), seed=1)
    conv = _f64(layers.Conv2D(4, (3, 3), stride=stride, padding=padding, activation="tanh"), x)
    assert conv.W.shape == (4, 3, 3, 3) and conv.b.shape == (4,)
    assert conv.W.dtype == np.float64
    assert [p.name for p in conv.params()] == [f"{conv.name}/W", f"{conv.name}/b"]
    y = conv(Tensor(x))
    assert y.shape == (2, 4) + out_hw == conv.compute_output_shape(x.shape)
    check_grad(conv, [x], params=conv.params())


def test_conv2d_non_square_kernel_without_bias():
    x = rand((1, 2, 6, 6), seed=2)
    conv = _f64(layers.Conv2D(3, (2, 4), use_bias=False), x)
    assert [p.name for p in conv.params()] == [f"{conv.name}/W"] and conv.W.shape == (3, 2, 2, 4)
    np.testing.assert_allclose(conv(Tensor(x)).numpy(), F.conv2d(Tensor(x), conv.W).numpy())
    check_grad(conv, [x], params=conv.params())


def test_conv2d_glorot_init_uses_receptive_field_fans():
    conv = layers.Conv2D(64, 3)
    conv(Tensor(np.zeros((1, 32, 8, 8), np.float32)))
    limit = np.sqrt(6.0 / (32 * 9 + 64 * 9))
    assert conv.W.dtype == np.float32
    assert np.abs(conv.W.data).max() <= limit and np.abs(conv.W.data).max() > 0.9 * limit
    assert not conv.b.data.any()


def test_conv2d_bad_inputs_have_clear_messages():
    conv = layers.Conv2D(4, 3, name="c1")
    with pytest.raises(ValueError, match=r"Conv2D 'c1' expected input of rank 4, got shape \(2, 28, 28\)"):
        conv(np.zeros((2, 28, 28), np.float32))
    conv(np.zeros((2, 1, 28, 28), np.float32))
    with pytest.raises(ValueError,
                       match=r"Conv2D 'c1' expected input with rank 4, axis 1 of size 1, got shape \(2, 3, 28, 28\)"):
        conv(np.zeros((2, 3, 28, 28), np.float32))
    with pytest.raises(ValueError, match=r"Conv2D 'c1' has kernel_size \(3, 3\), larger than its padded input \(2, 2\)"):
        conv(np.zeros((2, 1, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"Conv2D 'c2' has kernel_size \(5, 5\).*\(4, 4\)"):
        layers.Conv2D(1, 5, name="c2")(np.zeros((1, 1, 4, 4), np.float32))


@pytest.mark.parametrize("kwargs,match", [
    (dict(filters=0, kernel_size=3), "positive integer for filters"),
    (dict(filters=2.5, kernel_size=3), "filters"),
    (dict(filters=2, kernel_size=0), "kernel_size a positive int"),
    (dict(filters=2, kernel_size=(3, 3, 3)), "kernel_size"),
    (dict(filters=2, kernel_size=3, stride=0), "stride a positive int"),
    (dict(filters=2, kernel_size=3, padding="full"), "padding a non-negative int, a pair of them, 'valid' or 'same'"),
    (dict(filters=2, kernel_size=3, padding=-1), "padding"),
    (dict(filters=2, kernel_size=3, activation="swish"), "unknown activation"),
])
def test_conv2d_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        layers.Conv2D(**kwargs)


def test_conv2d_config_round_trip():
    conv = layers.Conv2D(8, (3, 2), stride=(2, 1), padding="same", activation="relu", use_bias=False,
                         kernel_initializer="he_normal", kernel_regularizer=gpudl.regularizers.L2(0.01), name="c")
    cfg = json.loads(json.dumps(conv.get_config()))
    again = layers.get_layer_class("Conv2D").from_config(cfg)
    assert again.get_config() == conv.get_config()
    assert again.kernel_size == (3, 2) and again.stride == (2, 1) and again.padding == "same"
    x = np.zeros((1, 2, 5, 5), np.float32)
    assert again(x).shape == conv(x).shape == (1, 8, 3, 5)
    assert again.W.regularizer is not None


@pytest.mark.parametrize("cls,op", [(layers.MaxPool2D, F.max_pool2d), (layers.AvgPool2D, F.avg_pool2d)])
def test_pool_layers(cls, op):
    x = np.random.default_rng(0).permutation(2 * 3 * 7 * 6).reshape(2, 3, 7, 6) / 100.0
    pool = _f64(cls(pool_size=3, stride=2, padding=1), x)
    assert pool.params() == []
    y = pool(Tensor(x))
    assert y.shape == (2, 3, 4, 3) == pool.compute_output_shape(x.shape)
    np.testing.assert_allclose(y.numpy(), op(Tensor(x), 3, 2, 1).numpy())
    check_grad(pool, [x])
    assert cls().get_config()["pool_size"] == [2, 2] and cls().get_config()["stride"] == [2, 2]
    again = cls.from_config(json.loads(json.dumps(pool.get_config())))
    assert again.get_config() == pool.get_config()


@pytest.mark.parametrize("cls", [layers.MaxPool2D, layers.AvgPool2D])
def test_pool_layer_errors(cls):
    name = cls.__name__
    with pytest.raises(ValueError, match=rf"{name} expected padding at most half the pool size"):
        cls(2, padding=2)
    with pytest.raises(ValueError, match=rf"{name} expected pool_size a positive int"):
        cls(0)
    with pytest.raises(ValueError, match=rf"{name} expected stride a positive int"):
        cls(2, stride=(1, 0))
    pool = cls(2, name="p")
    with pytest.raises(ValueError, match=r"'p' expected input of rank 4, got shape \(4, 10\)"):
        pool(np.zeros((4, 10), np.float32))
    with pytest.raises(ValueError, match=r"'p' has pool_size \(2, 2\), larger than its padded input \(1, 5\)"):
        pool(np.zeros((4, 3, 1, 5), np.float32))
    pool(np.zeros((4, 3, 6, 6), np.float32))
    with pytest.raises(ValueError, match=r"'p' expected input with rank 4, axis 1 of size 3, got shape \(4, 5, 6, 6\)"):
        pool(np.zeros((4, 5, 6, 6), np.float32))


def test_small_cnn_learns_in_a_sequential_and_saves(tmp_path):
    """conv -> pool -> flatten -> dense on two classes of 6x6 images (vertical vs
    horizontal bars) reaches full training accuracy, and survives save/load."""
    if not hasattr(gpudl, "Sequential"):
        pytest.skip("gpudl.Sequential not available")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 0.2, size=(64, 1, 6, 6)).astype(np.float32)
    y = np.arange(64) % 2
    for i in range(64):
        k = rng.integers(0, 6)
        if y[i]:
            x[i, 0, k, :] += 1
        else:
            x[i, 0, :, k] += 1
    model = gpudl.Sequential([layers.Conv2D(4, 3, padding="same", activation="relu"), layers.MaxPool2D(2),
                              layers.Flatten(), layers.Dense(2, activation="softmax")], input_shape=(1, 6, 6))
    model.compile(optimizer=gpudl.optimizers.Adam(learning_rate=0.02), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, batch_size=16, epochs=30, verbose=0, seed=0)
    assert model.evaluate(x, y, return_dict=True)["accuracy"] == 1.0
    path = tmp_path / "cnn.gpudl"
    model.save(path)
    again = gpudl.load_model(path)
    np.testing.assert_allclose(again.predict(x), model.predict(x), rtol=1e-6)


# ---- what does the CNN learn ------------------------------------------------------------

def test_input_gradient_is_the_class_scores_slope():
    gpudl.set_seed(1)
    conv, dense = layers.Conv2D(2, 3), layers.Dense(3)

    def model(t):
        return dense(F.flatten(F.tanh(conv(t))))

    x = rand((2, 1, 5, 5), seed=3)  # float64: the layers build in float64 on this first call
    g = visualize.input_gradient(model, x, class_index=[2, 0])
    assert g.shape == x.shape and g.dtype == np.float64
    assert conv.W.grad is None and dense.W.grad is None  # parameter gradients left untouched
    eps = 1e-6
    for n, cls in ((0, 2), (1, 0)):
        for idx in [(0, 0, 2, 2), (0, 0, 0, 4), (0, 0, 3, 1)]:
            xp, xm = x.copy(), x.copy()
            xp[(n,) + idx[1:]] += eps
            xm[(n,) + idx[1:]] -= eps
            with gpudl.no_grad():
                num = (model(Tensor(xp)).numpy()[n, cls] - model(Tensor(xm)).numpy()[n, cls]) / (2 * eps)
            np.testing.assert_allclose(g[(n,) + idx[1:]], num, rtol=1e-3, atol=1e-5)


def test_input_gradient_of_a_layer_and_bad_arguments():
    dense = layers.Dense(4)
    g = visualize.input_gradient(dense, np.ones((3, 5), np.float32), 1)
    np.testing.assert_allclose(g, np.broadcast_to(dense.W.data[:, 1], (3, 5)))
    with pytest.raises(ValueError, match=r"class_index in \[0, 3\]"):
        visualize.input_gradient(dense, np.ones((3, 5), np.float32), 4)
    with pytest.raises(ValueError, match="class_index an int or 3 ints"):
        visualize.input_gradient(dense, np.ones((3, 5), np.float32), [1, 2])
    with pytest.raises(TypeError, match="expected a model"):
        visualize.input_gradient("model", np.ones((3, 5), np.float32), 1)


def test_input_gradient_puts_dropout_in_inference_mode():
    drop = layers.Dropout(0.9)
    g = visualize.input_gradient(drop, np.ones((2, 50), np.float32), 3)
    expected = np.zeros((2, 50), np.float32)
    expected[:, 3] = 1
    np.testing.assert_array_equal(g, expected)
    assert drop.training  # restored


def test_filter_activation_gradient_and_ascent():
    gpudl.set_seed(0)
    conv = layers.Conv2D(3, 3)
    x = rand((2, 1, 6, 6), seed=4).astype(np.float32)
    g = visualize.filter_activation_gradient(conv, x, 1)
    # a^k = mean over the 4x4 map of (conv + b): d/dx = the filter summed over the positions it covers, / 16
    w = conv.W.data[1, 0]
    want = np.zeros((6, 6), np.float32)
    for i in range(4):
        for j in range(4):
            want[i:i + 3, j:j + 3] += w / 16
    np.testing.assert_allclose(g[0, 0], want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(g[1, 0], want, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match=r"filter_index in \[0, 2\]"):
        visualize.filter_activation_gradient(conv, x, 3)
    before = F.conv2d(Tensor(x), conv.W, conv.b).numpy()[:, 1].mean()
    best = visualize.maximize_filter_activation(conv, x, 1, steps=10, step_size=0.05)
    after = F.conv2d(Tensor(best), conv.W, conv.b).numpy()[:, 1].mean()
    assert best.shape == x.shape and best.min() >= 0 and best.max() <= 1
    assert after > before


def test_plot_filters(tmp_path):
    pytest.importorskip("matplotlib")
    conv = layers.Conv2D(6, 3)
    with pytest.raises(ValueError, match="no weights yet"):
        visualize.plot_filters(conv, tmp_path / "none.png")
    conv(np.zeros((1, 3, 5, 5), np.float32))
    path = visualize.plot_filters(conv, tmp_path / "filters.png", cols=3, title="first layer")
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    gray = visualize.plot_filters(np.ones((2, 1, 3, 3)), tmp_path / "gray.png")
    assert gray.exists()
    with pytest.raises(ValueError, match=r"\(filters, in_ch, kh, kw\)"):
        visualize.plot_filters(np.ones((3, 3)), tmp_path / "bad.png")


def test_plot_filters_without_matplotlib(tmp_path, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match=r"pip install gpudl\[plots\]"):
        visualize.plot_filters(np.ones((2, 1, 3, 3)), tmp_path / "x.png")
