"""Highway and Residual: the formulas, gradients, shape errors, sublayers and configs; and
the tutorial's point, a deep plain sigmoid net losing to deep Highway / Residual nets."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import gpudl
from gpudl import Tensor, layers
from tests.harness import check_grad, rand

ROOT = Path(__file__).resolve().parents[2]


def _f64(layer, x):
    layer(Tensor(x))
    return layer


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("n", [1, 4])
def test_highway_formula_and_gradients(activation, n):
    x = rand((n, 5), seed=n, away_from=0.0)
    hw = _f64(layers.Highway(activation=activation), x)
    assert [p.name.split("/")[1] for p in hw.params()] == ["W_h", "b_h", "W_t", "b_t"]
    np.testing.assert_array_equal(hw.b_t.data, -2.0)
    hw.b_t.data[:] = rand((5,), seed=9)  # gates away from their initial value
    act = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh, "sigmoid": _sigmoid}[activation]
    h = act(x @ hw.W_h.data + hw.b_h.data)
    t = _sigmoid(x @ hw.W_t.data + hw.b_t.data)
    np.testing.assert_allclose(hw(Tensor(x)).numpy(), t * h + (1 - t) * x, rtol=1e-12)
    check_grad(hw, [x], params=hw.params())


def test_highway_starts_near_the_identity_and_checks_its_input():
    hw = layers.Highway(transform_bias=-20.0, name="hw")
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    np.testing.assert_allclose(hw(x).numpy(), x, atol=1e-6)
    with pytest.raises(ValueError, match=r"Highway 'hw' expected input with rank 2, last axis 6, got shape \(3, 5\)"):
        hw(np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match=r"Highway 'hw2' expected input of rank 2, got shape \(3, 2, 6\)"):
        layers.Highway(name="hw2")(np.zeros((3, 2, 6), np.float32))
    with pytest.raises(ValueError, match="transform_bias"):
        layers.Highway(transform_bias="low")
    again = layers.Highway.from_config(json.loads(json.dumps(hw.get_config())))
    assert again.get_config() == hw.get_config() == {"name": "hw", "activation": "relu", "transform_bias": -20.0,
                                                     "kernel_initializer": "glorot_uniform"}


def test_residual_is_x_plus_f_of_x_with_gradients():
    x = rand((3, 4), seed=1, away_from=0.0)
    d1, d2 = layers.Dense(4, activation="tanh"), layers.Dense(4)
    res = _f64(layers.Residual(d1, d2), x)
    assert res.sublayers() == [d1, d2]
    assert res.params() == d1.params() + d2.params()
    np.testing.assert_allclose(res(Tensor(x)).numpy(), x + d2(d1(Tensor(x))).numpy(), rtol=1e-12)
    check_grad(res, [x], params=res.params())


def test_residual_of_convolutions():
    x = rand((2, 3, 5, 5), seed=2)
    res = _f64(layers.Residual(layers.Conv2D(3, 3, padding="same", activation="tanh"),
                               layers.Conv2D(3, (1, 3), padding="same")), x)
    assert res(Tensor(x)).shape == x.shape
    check_grad(res, [x], params=res.params())


def test_residual_shape_error_names_the_layers():
    res = layers.Residual(layers.Dense(3, name="narrow"), name="res")
    with pytest.raises(ValueError, match=r"Residual 'res' needs its inner layers to keep the input shape .*"
                                         r"expected \(2, 5\), got \(2, 3\) from Dense 'narrow'"):
        res(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="at least one inner layer"):
        layers.Residual()
    with pytest.raises(TypeError, match="expected gpudl layers, got int"):
        layers.Residual(3)


def test_residual_train_eval_reaches_inner_layers():
    drop = layers.Dropout(0.5)
    res = layers.Residual(layers.Dense(8), drop)
    outer = layers.Residual(res)  # nested
    outer.eval()
    assert not drop.training and not res.training
    x = np.ones((4, 8), np.float32)
    np.testing.assert_array_equal(outer(x).numpy(), outer(x).numpy())  # no dropout noise
    outer.train()
    assert drop.training
    assert outer.params() == res.params() == res.layers[0].params()


def test_residual_config_round_trip_rebuilds_inner_layers():
    res = layers.Residual(layers.Dense(6, activation="relu", name="a"),
                          layers.Residual(layers.Dense(6, name="b"), name="inner"),
                          layers.Dropout(0.1, name="d"), name="outer")
    cfg = json.loads(json.dumps(res.get_config()))
    assert cfg["layers"][0] == {"class": "Dense", "config": res.layers[0].get_config()}
    again = layers.get_layer_class("Residual").from_config(cfg)
    assert again.get_config() == res.get_config()
    assert [type(layer).__name__ for layer in again.layers] == ["Dense", "Residual", "Dropout"]
    x = np.random.default_rng(0).standard_normal((2, 6)).astype(np.float32)
    assert again(x).shape == (2, 6)
    assert len(again.params()) == 4


def test_deep_structures_in_a_sequential_save_and_load(tmp_path):
    if not hasattr(gpudl, "Sequential"):
        pytest.skip("gpudl.Sequential not available")
    model = gpudl.Sequential([layers.Dense(8, activation="relu"), layers.Highway(),
                              layers.Residual(layers.Dense(8, activation="relu"), layers.Dense(8)),
                              layers.Dense(3, activation="softmax")], input_shape=(5,))
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).standard_normal((32, 5)).astype(np.float32)
    y = np.arange(32) % 3
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert len(model.params()) == 2 + 4 + 4 + 2
    model.save(tmp_path / "deep.gpudl")
    again = gpudl.load_model(tmp_path / "deep.gpudl")
    np.testing.assert_allclose(again.predict(x), model.predict(x), rtol=1e-6)


def _example():
    spec = importlib.util.spec_from_file_location("deep_structures", ROOT / "examples" / "deep_structures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_deep_highway_and_residual_beat_a_deep_plain_sigmoid_net():
    pytest.importorskip("sklearn")
    acc = _example().run(epochs=5, depth=20, width=64, seed=0, verbose=False)
    assert acc["plain sigmoid"] < 0.5
    assert acc["highway"] > 0.85 and acc["residual"] > 0.85
    assert min(acc["highway"], acc["residual"]) > acc["plain sigmoid"] + 0.3
