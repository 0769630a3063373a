"""Masks from the model's layers reach the loss and the metrics: padded steps count for
nothing (Keras: the output's mask weighs the per-step losses, and the mean runs over the
real steps only)."""
from __future__ import annotations

import numpy as np
import pytest

import gpudl
from gpudl import layers


class StepDense(layers.Dense):
    """A Dense that passes its input's mask on (as Keras' Dense does)."""
    supports_masking = True


def _model(seed=0):
    gpudl.set_seed(seed)
    model = gpudl.Sequential([layers.Embedding(12, 4, mask_zero=True), StepDense(3, activation="softmax")])
    model.build((5,))
    return model


def _data():
    x = np.array([[3, 4, 5, 0, 0], [6, 7, 0, 0, 0], [1, 2, 3, 4, 5]], dtype=np.int64)
    y = np.array([[0, 1, 2, 0, 0], [2, 2, 0, 0, 0], [1, 1, 0, 2, 1]], dtype=np.int64)
    return x, y


@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "mse"])
def test_padded_steps_change_nothing_in_the_loss(loss):
    x, y = _data()
    model = _model()
    model.compile("sgd", loss, metrics=["accuracy"])
    base = model.test_on_batch(x, y, return_dict=True)
    y2 = y.copy()
    y2[x == 0] = (y2[x == 0] + 1) % 3  # other labels at the padded steps only
    assert model.test_on_batch(x, y2, return_dict=True) == base
    # the loss is the mean over the real steps
    probs = model.predict(x)
    real = x != 0
    if loss == "mse":
        want = ((probs - np.eye(3)[y]) ** 2).mean(axis=-1)[real].mean()
    else:
        want = -np.log(probs[real, y[real]]).mean()
    np.testing.assert_allclose(base["loss"], want, rtol=1e-5)
    np.testing.assert_allclose(base["accuracy"], (probs.argmax(-1) == y)[real].mean(), rtol=1e-6)


def test_padded_steps_give_no_gradient():
    x, y = _data()
    m1, m2 = _model(), _model()
    m1.compile(gpudl.optimizers.SGD(learning_rate=0.5), "sparse_categorical_crossentropy")
    m2.compile(gpudl.optimizers.SGD(learning_rate=0.5), "sparse_categorical_crossentropy")
    y2 = y.copy()
    y2[x == 0] = 2
    m1.train_on_batch(x, y)
    m2.train_on_batch(x, y2)
    for a, b in zip(m1.get_weights(), m2.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_sample_weights_combine_with_the_mask():
    x, y = _data()
    model = _model()
    model.compile("sgd", "sparse_categorical_crossentropy")
    sw = np.array([1.0, 0.0, 2.0], np.float32)
    got = model.test_on_batch(x, y, sample_weight=sw)
    probs = model.predict(x)
    real = x != 0
    per = -np.log(np.take_along_axis(probs, y[..., None], -1)[..., 0])
    w = real * (real.size / real.sum()) * sw[:, None]
    np.testing.assert_allclose(got, (per * w).mean(), rtol=1e-5)
