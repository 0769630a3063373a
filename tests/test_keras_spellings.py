"""Keras spellings accepted everywhere (API.md), and the slides' Keras 1 hello world."""
import os
import warnings

import numpy as np
import pytest

import gpudl
from gpudl import layers, load_model, optimizers
from gpudl.layers import Activation, Dense
from gpudl.models import Sequential
from gpudl.optimizers import SGD

MNIST_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets", "mnist")


def _mnist_or_random(n):
    """(x, one-hot y) with 784 features: MNIST's test set where it is on disk, else random."""
    try:
        from gpudl.datasets import mnist
        x, y = mnist.load_test(path=MNIST_DIR, download=False)
        x = x[:n].reshape(-1, 28 * 28).astype("float32") / 255
        y = y[:n].astype(int)
    except Exception:
        rng = np.random.default_rng(0)
        x = rng.random((n, 28 * 28), dtype=np.float32)
        y = rng.integers(0, 10, n)
    return x, np.eye(10, dtype="float32")[y]


# ---- the slides' hello world, as written (Keras 1) ----------------------------------------
def test_slides_hello_world_runs_as_written():
    x, y = _mnist_or_random(1500)
    x_train, y_train, x_test, y_test = x[:1000], y[:1000], x[1000:], y[1000:]
    with pytest.warns(DeprecationWarning, match="units|learning_rate|epochs") as record:
        model = Sequential()
        model.add(Dense(input_dim=28 * 28, output_dim=500))
        model.add(Activation('sigmoid'))
        model.add(Dense(output_dim=500))
        model.add(Activation('sigmoid'))
        model.add(Dense(output_dim=10))
        model.add(Activation('softmax'))

        model.compile(loss='mse', optimizer=SGD(lr=0.1), metrics=['accuracy'])

        model.fit(x_train, y_train, batch_size=100, nb_epoch=20, verbose=0)

    words = " ".join(str(w.message) for w in record if issubclass(w.category, DeprecationWarning))
    for new in ("units=", "learning_rate=", "epochs="):
        assert new in words
    score = model.evaluate(x_test, y_test, verbose=0)
    assert np.isfinite(score[0]) and 0.0 <= score[1] <= 1.0
    result = model.predict(x_test, verbose=0)
    assert result.shape == (500, 10)
    assert model.input_shape == (784,)
    assert model.optimizer.learning_rate == pytest.approx(0.1)


# ---- Keras 1 words ------------------------------------------------------------------------
def test_output_dim_is_units_with_a_warning():
    with pytest.warns(DeprecationWarning, match="units="):
        d = Dense(output_dim=7)
    assert d.units == 7 and d.get_config()["units"] == 7
    with pytest.raises(ValueError, match="both output_dim= and units="):
        Dense(3, output_dim=4)
    with pytest.raises(ValueError, match="units"):
        Dense()


@pytest.mark.parametrize("cls", [optimizers.SGD, optimizers.Adagrad, optimizers.RMSProp, optimizers.RMSprop,
                                 optimizers.Adam, optimizers.AdamW, optimizers.Nadam, optimizers.Adadelta])
def test_lr_on_every_optimizer(cls):
    with pytest.warns(DeprecationWarning, match="learning_rate="):
        opt = cls(lr=0.05)
    assert opt.learning_rate == pytest.approx(0.05)
    assert "lr" not in opt.get_config()
    with pytest.raises(ValueError, match="both lr= and learning_rate="):
        cls(learning_rate=0.1, lr=0.2)
    with pytest.raises(ValueError, match="both lr= and learning_rate="):
        cls(0.1, lr=0.2)


def _small_model():
    model = Sequential([Dense(4, activation="relu", input_dim=3), Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def test_nb_epoch_is_epochs_with_a_warning():
    rng = np.random.default_rng(1)
    x, y = rng.random((8, 3), dtype=np.float32), np.eye(2, dtype="float32")[rng.integers(0, 2, 8)]
    model = _small_model()
    with pytest.warns(DeprecationWarning, match="epochs="):
        history = model.fit(x, y, batch_size=4, nb_epoch=3, verbose=0)
    assert len(history.history["loss"]) == 3
    with pytest.raises(ValueError, match="both nb_epoch= and epochs="):
        model.fit(x, y, epochs=2, nb_epoch=2, verbose=0)
    assert len(model.fit(x, y, verbose=0).history["loss"]) == 1  # the default stays one epoch
    score = model.evaluate(x, y, verbose=0)
    assert len(score) == 2


def test_modern_words_give_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Dense(units=3, input_dim=2)
        SGD(learning_rate=0.1)
        layers.Conv2D(2, 3, strides=2)
        layers.LeakyReLU(negative_slope=0.2)


# ---- strides=, pooling aliases, LeakyReLU(negative_slope=) --------------------------------
@pytest.mark.parametrize("cls", [layers.MaxPool2D, layers.AvgPool2D])
def test_pool_strides(cls):
    assert cls(2, strides=1).stride == (1, 1)
    assert cls(2, stride=1, strides=(1, 1)).stride == (1, 1)
    assert cls(3).stride == (3, 3)
    with pytest.raises(ValueError, match="disagree"):
        cls(2, stride=1, strides=2)


def test_conv_strides():
    assert layers.Conv2D(2, 3, strides=2).stride == (2, 2)
    assert layers.Conv2D(2, 3).stride == (1, 1)
    assert layers.Conv2D(2, 3, stride=2, strides=2).stride == (2, 2)
    with pytest.raises(ValueError, match="disagree"):
        layers.Conv2D(2, 3, stride=1, strides=2)
    x = np.zeros((1, 1, 8, 8), dtype=np.float32)
    assert layers.Conv2D(2, 3, strides=2, padding="same")(x).shape == (1, 2, 4, 4)


def test_pooling_aliases_are_the_same_classes():
    assert layers.MaxPooling2D is layers.MaxPool2D
    assert layers.AveragePooling2D is layers.AvgPool2D
    assert layers.get_layer_class("MaxPool2D") is layers.MaxPooling2D


def test_leaky_relu_negative_slope():
    assert layers.LeakyReLU().alpha == 0.01
    lr = layers.LeakyReLU(negative_slope=0.3)
    assert lr.alpha == 0.3 and lr.negative_slope == 0.3
    assert lr.get_config()["alpha"] == 0.3
    out = lr(np.array([[-1.0, 2.0]], dtype=np.float32))
    np.testing.assert_allclose(out.numpy() if hasattr(out, "numpy") else gpudl.to_numpy(out.data),
                               [[-0.3, 2.0]], rtol=1e-6)
    with pytest.raises(ValueError, match="disagree"):
        layers.LeakyReLU(alpha=0.1, negative_slope=0.2)


def test_strides_and_alias_layers_save_load(tmp_path):
    model = Sequential([
        layers.Conv2D(3, 3, strides=2, padding="same", activation="relu", input_shape=(1, 8, 8)),
        layers.MaxPooling2D(2, strides=1),
        layers.AveragePooling2D(pool_size=2, strides=(1, 1)),
        layers.Flatten(),
        layers.LeakyReLU(negative_slope=0.2),
        Dense(2),
    ])
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    before = model.predict(x, verbose=0)
    path = tmp_path / "m.gpudl"
    model.save(path)
    again = load_model(path)
    assert [type(l) for l in again.layers] == [type(l) for l in model.layers]
    assert again.layers[0].stride == (2, 2) and again.layers[1].stride == (1, 1)
    assert again.layers[4].alpha == 0.2
    np.testing.assert_allclose(again.predict(x, verbose=0), before, rtol=1e-6)


# ---- input_shape= / input_dim= on the first layer -----------------------------------------
def test_first_layer_input_dim_and_shape():
    m = Sequential([Dense(5, input_dim=3), Dense(2)])
    assert m.input_shape == (3,)
    m.summary(print_fn=None)
    assert m.output_shape == (2,)
    m2 = Sequential()
    m2.add(layers.Flatten(input_shape=(2, 3)))
    m2.add(Dense(4))
    assert m2.input_shape == (2, 3)
    m2.build()
    assert m2.layers[1].kernel.shape == (6, 4)


def test_input_shape_contradictions_are_clear_errors():
    with pytest.raises(ValueError, match="input_shape"):
        Sequential([Dense(5, input_dim=3)], input_shape=(4,))
    m = Sequential([Dense(5, input_dim=3), Dense(2, input_dim=6)])
    with pytest.raises(ValueError, match=r"input_shape \(6,\).*outputs shape \(5,\)"):
        m.build()
    Sequential([Dense(5, input_dim=3), Dense(2, input_dim=5)]).build()  # agreeing is fine
    with pytest.raises(ValueError, match="disagree"):
        Dense(2, input_dim=3, input_shape=(4,))
    with pytest.raises(ValueError, match="input_dim"):
        Dense(2, input_dim=0)


# ---- kernel / bias, get_weights / set_weights ---------------------------------------------
def test_kernel_and_bias_are_w_and_b():
    d = Dense(3)
    with pytest.raises(AttributeError, match="built"):
        d.kernel
    d(np.zeros((1, 4), dtype=np.float32))
    assert d.kernel is d.W and d.bias is d.b
    assert Dense(3, use_bias=False).bias is None
    c = layers.Conv2D(2, 3)
    c(np.zeros((1, 1, 5, 5), dtype=np.float32))
    assert c.kernel is c.W and c.bias is c.b and c.kernel.shape == (2, 1, 3, 3)


def test_layer_get_and_set_weights():
    d = Dense(3)
    assert d.get_weights() == []
    d(np.zeros((2, 4), dtype=np.float32))
    w, b = d.get_weights()
    assert isinstance(w, np.ndarray) and w.shape == (4, 3) and b.shape == (3,)
    w[...] = 0  # a copy: the layer is untouched
    assert np.any(gpudl.to_numpy(d.W.data) != 0)
    d.set_weights([np.ones((4, 3)), np.full(3, 2.0)])
    np.testing.assert_array_equal(d.get_weights()[0], np.ones((4, 3)))
    np.testing.assert_array_equal(d.get_weights()[1], np.full(3, 2.0))
    with pytest.raises(ValueError, match=r"parameter .*W expected shape \(4, 3\), got \(3, 4\)"):
        d.set_weights([np.ones((3, 4)), np.zeros(3)])
    with pytest.raises(ValueError, match="expected 2 arrays, got 1"):
        d.set_weights([np.ones((4, 3))])
    bn = layers.BatchNormalization()
    bn(np.zeros((2, 3), dtype=np.float32))
    assert len(bn.get_weights()) == len(bn.params())


# ---- get_layer / pop ----------------------------------------------------------------------
def test_get_layer_and_pop():
    a, b, c = Dense(4, name="a", input_dim=3), Dense(3, name="b"), Dense(2, name="c")
    m = Sequential([a, b, c])
    assert m.get_layer("b") is b and m.get_layer(index=0) is a and m.get_layer(index=-1) is c
    with pytest.raises(ValueError, match="no layer named 'zz'"):
        m.get_layer("zz")
    with pytest.raises(ValueError, match="out of range"):
        m.get_layer(index=3)
    with pytest.raises(ValueError, match="name or an index"):
        m.get_layer()
    assert m.output_shape is None
    m.build()
    assert m.output_shape == (2,)
    assert m.pop() is c
    assert [l.name for l in m.layers] == ["a", "b"]
    assert m.predict(np.zeros((1, 3), dtype=np.float32), verbose=0).shape == (1, 3)
    assert m.output_shape == (3,)
    m.pop()
    m.pop()
    with pytest.raises(ValueError, match="no layers to pop"):
        m.pop()


# ---- save_weights / load_weights ----------------------------------------------------------
def test_save_and_load_weights_round_trip(tmp_path):
    m = _small_model()
    x = np.random.default_rng(2).random((5, 3), dtype=np.float32)
    m.build()
    path = tmp_path / "w.weights"
    m.save_weights(path)
    meta, arrays = gpudl.io.load_file(path)
    assert meta["format"] == "gpudl-weights"
    assert meta["shapes"] == [[3, 4], [4], [4, 2], [2]]
    assert sorted(arrays) == ["param/0", "param/1", "param/2", "param/3"]
    other = _small_model()
    other.build()
    assert not np.allclose(other.predict(x, verbose=0), m.predict(x, verbose=0))
    other.load_weights(path)
    np.testing.assert_allclose(other.predict(x, verbose=0), m.predict(x, verbose=0), rtol=1e-6)
    fresh = Sequential([Dense(4, activation="relu", input_dim=3), Dense(2, activation="softmax")])
    fresh.load_weights(path)  # builds from the first layer's input_dim
    np.testing.assert_allclose(fresh.predict(x, verbose=0), m.predict(x, verbose=0), rtol=1e-6)


def test_load_weights_mismatch_names_expected_and_got(tmp_path):
    m = _small_model()
    path = tmp_path / "w.weights"
    m.save_weights(path)
    wrong = Sequential([Dense(5, input_dim=3), Dense(2)])
    with pytest.raises(gpudl.ModelFileError, match=r"expected 4 parameters of shapes \[\(3, 5\).*got 4 of "
                                                  r"shapes \[\(3, 4\)"):
        wrong.load_weights(path)
    fewer = Sequential([Dense(2, input_dim=3)])
    with pytest.raises(gpudl.ModelFileError, match="expected 2 parameters"):
        fewer.load_weights(path)
    (tmp_path / "junk").write_bytes(b"not a model")
    with pytest.raises(gpudl.ModelFileError):
        m.load_weights(tmp_path / "junk")


def test_embedding_keeps_its_own_input_dim():
    e = layers.Embedding(input_dim=10, output_dim=4, input_shape=(5,))
    assert e.input_dim == 10 and e.declared_input_shape == (5,)
    m = Sequential([e])
    assert m.input_shape == (5,)
