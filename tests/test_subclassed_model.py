"""Keras' model subclassing: layers held as attributes, composed in call(); fit, evaluate,
predict, summary, weights and (with get_config and registration) whole-model files."""
from __future__ import annotations

import numpy as np
import pytest

import gpudl
from gpudl import layers


class TwoLayer(gpudl.Model):
    def __init__(self, hidden=8, classes=3, name=None):
        super().__init__(name=name)
        self.hidden, self.classes = hidden, classes
        self.d1 = layers.Dense(hidden, activation="relu")
        self.drop = layers.Dropout(0.5)
        self.d2 = layers.Dense(classes, activation="softmax")
        self.seen_training = []

    def call(self, x, training=None):
        self.seen_training.append(training)
        return self.d2(self.drop(self.d1(x), training=training))

    def get_config(self):
        return {"hidden": self.hidden, "classes": self.classes, "name": self.name}


def _data(n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)


def test_subclassed_model_trains_and_predicts():
    gpudl.set_seed(0)
    x, y = _data()
    model = TwoLayer()
    assert model.layers == [model.d1, model.drop, model.d2]
    model.compile(gpudl.optimizers.Adam(learning_rate=0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    hist = model.fit(x, y, epochs=20, batch_size=16, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    assert model.input_shape == (5,) and model.output_shape == (3,)
    assert True in model.seen_training and False in model.seen_training  # fit trains, build/predict infer
    model.seen_training.clear()
    p = model.predict(x)
    assert p.shape == (64, 3) and model.seen_training == [False] * 2
    assert len(model.params()) == 4 and model.count_params() == 5 * 8 + 8 + 8 * 3 + 3
    assert "d" in model.summary(print_fn=None)


def test_subclassed_model_saves_weights_and_with_registration_the_whole_model(tmp_path):
    x, y = _data(8)
    model = TwoLayer()
    model(x)
    model.save_weights(tmp_path / "w")
    other = TwoLayer()
    other.build((5,))
    other.load_weights(tmp_path / "w")
    np.testing.assert_array_equal(other.predict(x), model.predict(x))
    with pytest.raises(ValueError, match="register"):
        model.save(tmp_path / "m")
    Registered = gpudl.register_serializable(package="tests_sub")(type("Registered", (TwoLayer,), {}))
    model = Registered(hidden=4)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m")
    loaded = gpudl.load_model(tmp_path / "m")
    assert type(loaded) is Registered and loaded.hidden == 4
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_subclassed_model_with_several_outputs_is_refused_clearly():
    class Split(gpudl.Model):
        def __init__(self):
            super().__init__()
            self.a, self.b = layers.Dense(2), layers.Dense(3)

        def call(self, x):
            return [self.a(x), self.b(x)]
    with pytest.raises(ValueError, match="functional Model"):
        Split()(np.zeros((2, 4), np.float32))


def test_plain_model_without_graph_or_call_is_refused():
    with pytest.raises(ValueError, match="inputs= and outputs="):
        gpudl.Model()
