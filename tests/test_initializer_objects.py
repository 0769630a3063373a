"""Initializer objects (Keras names): values, seeds, get/serialize/deserialize, and the layers'
configs that store them (Dense, Conv2D, the recurrent layers), the identity-initialised ReLU RNN."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

import gpudl
from gpudl import Tensor, initializers, layers
from gpudl.layers.base import get_layer_class

I = initializers

SEEDED = [I.RandomNormal, I.RandomUniform, I.TruncatedNormal, I.GlorotUniform, I.GlorotNormal, I.HeUniform,
          I.HeNormal, I.LecunNormal, I.LecunUniform, I.Orthogonal]
ALL = [I.Constant, I.Identity, I.Zeros, I.Ones] + SEEDED


def _rebuilt(layer):
    cfg = json.loads(json.dumps(layer.get_config()))
    return get_layer_class(type(layer).__name__).from_config(cfg)


# ---- values ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shape_and_dtype(cls, dtype):
    v = cls()((6, 4), dtype)
    assert isinstance(v, np.ndarray) and v.shape == (6, 4) and v.dtype == dtype


def test_constant_zeros_ones():
    np.testing.assert_array_equal(I.Constant(2.5)((2, 3)), np.full((2, 3), 2.5))
    np.testing.assert_array_equal(I.Constant()((4,)), np.zeros(4))
    np.testing.assert_array_equal(I.Zeros()((3, 2, 2)), 0.0)
    np.testing.assert_array_equal(I.Ones()(()), np.ones(()))


@pytest.mark.parametrize("shape", [(3, 3), (2, 5), (5, 2), (1, 1)])
def test_identity(shape):
    np.testing.assert_array_equal(I.Identity()(shape), np.eye(*shape))
    np.testing.assert_array_equal(I.Identity(gain=0.5)(shape, np.float64), 0.5 * np.eye(*shape))


@pytest.mark.parametrize("shape", [(3,), (2, 3, 3), ()])
def test_identity_refuses_other_ranks(shape):
    with pytest.raises(ValueError, match=rf"^Identity initializer expected a 2-D shape \(rows, cols\), got shape "
                                         rf"{__import__('re').escape(str(tuple(shape)))}$"):
        I.Identity()(shape)


def test_distributions():
    gpudl.set_seed(0)
    n = (400, 500)
    v = I.RandomNormal(mean=1.0, stddev=0.2)(n, np.float64)
    assert abs(v.mean() - 1.0) < 0.005 and abs(v.std() - 0.2) < 0.005
    u = I.RandomUniform(minval=-0.3, maxval=0.1)(n, np.float64)
    assert u.min() >= -0.3 and u.max() <= 0.1 and abs(u.mean() + 0.1) < 0.005
    t = I.TruncatedNormal(mean=0.5, stddev=0.1)(n, np.float64)
    assert np.abs(t - 0.5).max() <= 0.2 and abs(t.mean() - 0.5) < 0.002
    # a unit normal truncated at two standard deviations has std 0.8796
    assert abs(t.std() - 0.1 * 0.87962566103423978) < 0.002
    fan_in, fan_out = 400, 500
    g = I.GlorotUniform()(n, np.float64)
    limit = math.sqrt(6 / (fan_in + fan_out))
    assert np.abs(g).max() <= limit and abs(g.std() - limit / math.sqrt(3)) < 0.002
    assert abs(I.HeNormal()(n, np.float64).std() - math.sqrt(2 / fan_in)) < 0.002
    assert abs(I.LecunNormal()(n, np.float64).std() - math.sqrt(1 / fan_in)) < 0.002
    assert abs(I.GlorotNormal()(n, np.float64).std() - math.sqrt(2 / (fan_in + fan_out))) < 0.002
    assert np.abs(I.HeUniform()(n, np.float64)).max() <= math.sqrt(6 / fan_in)
    lu = I.LecunUniform()(n, np.float64)
    assert np.abs(lu).max() <= math.sqrt(3 / fan_in) and lu.max() > 0.9 * math.sqrt(3 / fan_in)


@pytest.mark.parametrize("shape", [(4, 4), (3, 6), (6, 3), (2, 3, 4)])
def test_orthogonal_with_gain(shape):
    q = I.Orthogonal(gain=2.0, seed=3)(shape, np.float64).reshape(-1, shape[-1])
    small = min(q.shape)
    gram = q.T @ q if q.shape[0] >= q.shape[1] else q @ q.T
    np.testing.assert_allclose(gram, 4.0 * np.eye(small), atol=1e-12)


# ---- seeds ----------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", SEEDED)
def test_seeded_objects_repeat_and_agree(cls):
    a, b = cls(seed=5), cls(seed=5)
    first = a((5, 4))
    np.testing.assert_array_equal(a((5, 4)), first)      # Keras 3: a seeded object repeats
    np.testing.assert_array_equal(b((5, 4)), first)
    assert not np.array_equal(cls(seed=6)((5, 4)), first)


@pytest.mark.parametrize("cls", SEEDED)
def test_unseeded_objects_follow_set_seed(cls):
    gpudl.set_seed(2)
    a = cls()((5, 4))
    b = cls()((5, 4))
    assert not np.array_equal(a, b)                       # each call draws anew
    gpudl.set_seed(2)
    np.testing.assert_array_equal(cls()((5, 4)), a)


@pytest.mark.parametrize("name,cls", [("glorot_uniform", I.GlorotUniform), ("glorot_normal", I.GlorotNormal),
                                      ("he_uniform", I.HeUniform), ("he_normal", I.HeNormal),
                                      ("lecun_normal", I.LecunNormal), ("orthogonal", I.Orthogonal),
                                      ("truncated_normal", I.TruncatedNormal), ("identity", I.Identity),
                                      ("constant", I.Constant), ("zeros", I.Zeros), ("ones", I.Ones)])
def test_names_and_objects_draw_the_same(name, cls):
    gpudl.set_seed(9)
    by_name = I.get(name)((4, 4))
    gpudl.set_seed(9)
    np.testing.assert_array_equal(cls()((4, 4)), by_name)


def test_random_normal_and_uniform_functions_keep_their_arguments():
    gpudl.set_seed(1)
    a = I.random_normal((3, 3), stddev=0.5)
    gpudl.set_seed(1)
    np.testing.assert_array_equal(I.RandomNormal(stddev=0.5)((3, 3)), a)
    gpudl.set_seed(1)
    b = I.random_uniform((3, 3), limit=0.2)
    gpudl.set_seed(1)
    np.testing.assert_array_equal(I.RandomUniform(-0.2, 0.2)((3, 3)), b)


# ---- get / serialize / deserialize ----------------------------------------------------------------

@pytest.mark.parametrize("cls", ALL)
def test_config_round_trip(cls):
    kwargs = {I.Constant: {"value": 1.5}, I.Identity: {"gain": 3.0}, I.Orthogonal: {"gain": 0.5, "seed": 2},
              I.RandomNormal: {"mean": 0.1, "stddev": 0.3, "seed": 4},
              I.RandomUniform: {"minval": -1.0, "maxval": 2.0, "seed": 4},
              I.TruncatedNormal: {"mean": -0.2, "stddev": 0.7, "seed": 4}}.get(cls, {})
    if cls in SEEDED and "seed" not in kwargs:
        kwargs = {"seed": 8}
    obj = cls(**kwargs)
    cfg = obj.get_config()
    assert cfg == {**cfg, **kwargs}
    again = cls.from_config(json.loads(json.dumps(cfg)))
    assert again == obj and again.get_config() == cfg
    record = I.serialize(obj)
    assert record == {"class": cls.__name__, "config": cfg}
    back = I.deserialize(json.loads(json.dumps(record)))
    assert back == obj
    np.testing.assert_array_equal(back((3, 3)), obj((3, 3)))
    assert I.get(record) == obj


def test_get_accepts_every_form():
    for name in ["glorot_uniform", "xavier_normal", "random_normal", "constant", "identity", "truncated_normal",
                 "lecun_uniform", "HE_NORMAL"]:
        assert callable(I.get(name))
    assert isinstance(I.get("GlorotUniform"), I.GlorotUniform)
    assert I.get({"class": "Constant", "config": {"value": 4.0}}) == I.Constant(4.0)
    assert I.get({"class_name": "Identity", "config": {"gain": 2.0}}) == I.Identity(2.0)   # Keras' record
    assert I.get({"class": "he_uniform", "config": {"seed": 1}}) == I.HeUniform(seed=1)
    assert I.get({"class": "Zeros"}) == I.Zeros()
    obj = I.Orthogonal()
    assert I.get(obj) is obj

    def mine(shape, dtype=np.float32):
        return np.full(shape, 7.0, dtype)
    assert I.get(mine) is mine


def test_serialize_keeps_names_as_names():
    assert I.serialize("glorot_uniform") == "glorot_uniform"
    assert I.serialize("identity") == "identity"
    assert I.serialize(I.glorot_uniform) == "glorot_uniform"
    assert I.serialize({"class": "Constant", "config": {"value": 2}}) == {"class": "Constant",
                                                                         "config": {"value": 2.0}}


def test_get_and_serialize_errors():
    with pytest.raises(ValueError, match=r"^unknown initializer 'gaussian': expected one of .*glorot_uniform"):
        I.get("gaussian")
    with pytest.raises(ValueError, match=r"^unknown initializer class 'Gaussian' in"):
        I.get({"class": "Gaussian", "config": {}})
    with pytest.raises(ValueError, match=r"^an initializer record needs a 'class' name, got \{'config': \{\}\}$"):
        I.get({"config": {}})
    with pytest.raises(ValueError, match=r"^initializer Constant cannot take config \{'gain': 1\.0\}"):
        I.get({"class": "Constant", "config": {"gain": 1.0}})
    with pytest.raises(ValueError, match=r"^unknown initializer 3"):
        I.get(3)
    with pytest.raises(ValueError, match=r"^a custom initializer callable .* cannot be saved"):
        I.serialize(lambda shape, dtype: np.zeros(shape, dtype))
    with pytest.raises(ValueError, match=r"^unknown initializer 'nope'"):
        I.serialize("nope")


def test_argument_errors():
    with pytest.raises(ValueError, match=r"^Constant expected a number for value, got 'a'$"):
        I.Constant("a")
    with pytest.raises(ValueError, match=r"^Identity expected a number for gain, got None$"):
        I.Identity(None)
    with pytest.raises(ValueError, match=r"^RandomUniform expected minval <= maxval, got minval=1, maxval=0$"):
        I.RandomUniform(1, 0)
    with pytest.raises(ValueError, match=r"^TruncatedNormal expected a non-negative stddev, got -1$"):
        I.TruncatedNormal(stddev=-1)
    with pytest.raises(ValueError, match=r"^GlorotUniform expected seed=None or a non-negative integer, got -2$"):
        I.GlorotUniform(seed=-2)
    with pytest.raises(ValueError, match=r"^Orthogonal expected seed=None or a non-negative integer, got 1.5$"):
        I.Orthogonal(seed=1.5)


# ---- the layers' saved configs ------------------------------------------------------------------

def test_dense_stores_initializer_records_and_rebuilds():
    dense = layers.Dense(3, kernel_initializer=I.Constant(0.5), bias_initializer=I.RandomUniform(1.0, 2.0, seed=3))
    dense(Tensor(np.zeros((2, 4), np.float32)))
    cfg = dense.get_config()
    assert cfg["kernel_initializer"] == {"class": "Constant", "config": {"value": 0.5}}
    assert cfg["bias_initializer"] == {"class": "RandomUniform", "config": {"minval": 1.0, "maxval": 2.0, "seed": 3}}
    again = _rebuilt(dense)
    again(Tensor(np.zeros((2, 4), np.float32)))
    np.testing.assert_array_equal(again.W.numpy(), 0.5)
    np.testing.assert_array_equal(again.b.numpy(), dense.b.numpy())
    assert again.get_config() == cfg
    named = layers.Dense(2, kernel_initializer="he_normal")
    assert named.get_config()["kernel_initializer"] == "he_normal"


def test_conv2d_stores_initializer_records():
    conv = layers.Conv2D(2, 3, kernel_initializer=I.Orthogonal(gain=1.5, seed=0), bias_initializer=I.Constant(0.1))
    x = Tensor(np.zeros((1, 2, 5, 5), np.float32))
    conv(x)
    again = _rebuilt(conv)
    again(x)
    np.testing.assert_array_equal(again.W.numpy(), conv.W.numpy())
    np.testing.assert_allclose(again.b.numpy(), 0.1)
    assert again.get_config()["kernel_initializer"] == {"class": "Orthogonal", "config": {"gain": 1.5, "seed": 0}}


def test_identity_relu_rnn():
    rnn = layers.SimpleRNN(100, activation="relu", recurrent_initializer=I.Identity())
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    rnn(Tensor(x))
    np.testing.assert_array_equal(rnn.U.numpy(), np.eye(100, dtype=np.float32))
    again = _rebuilt(rnn)
    assert again.get_config()["recurrent_initializer"] == {"class": "Identity", "config": {"gain": 1.0}}
    again(Tensor(x))
    np.testing.assert_array_equal(again.U.numpy(), np.eye(100))
    # with U = I and no input, a positive state carries through unchanged
    h0 = np.abs(np.random.default_rng(1).standard_normal((2, 100))).astype(np.float32)
    rnn.W.data[...] = 0
    rnn.b.data[...] = 0
    np.testing.assert_allclose(rnn(Tensor(x), initial_state=[Tensor(h0)]).numpy(), h0, rtol=1e-6)


def test_recurrent_layers_read_records_back():
    lstm = layers.LSTM(3, recurrent_initializer={"class": "Orthogonal", "config": {"gain": 1.0, "seed": 5}},
                       kernel_initializer=I.HeUniform(seed=2))
    x = Tensor(np.zeros((2, 4, 5), np.float32))
    lstm(x)
    again = _rebuilt(lstm)
    again(x)
    np.testing.assert_array_equal(again.U.numpy(), lstm.U.numpy())
    np.testing.assert_array_equal(again.W.numpy(), lstm.W.numpy())


def test_a_custom_callable_still_cannot_be_saved():
    dense = layers.Dense(2, kernel_initializer=lambda shape, dtype: np.zeros(shape, dtype), name="d")
    with pytest.raises(ValueError, match=r"^Dense 'd' has a custom initializer callable .* which cannot be saved"):
        dense.get_config()


def test_unknown_records_are_refused_at_construction():
    with pytest.raises(ValueError, match=r"unknown initializer class 'Gaussian'"):
        layers.Dense(2, kernel_initializer={"class": "Gaussian", "config": {}})
