"""The functional API: Input, Model over a graph (several inputs and outputs, shared layers,
nested models), compile per output with loss_weights, summary, save/load, registration."""
from __future__ import annotations

import json

import numpy as np
import pytest

import gpudl
from gpudl import layers
from gpudl.errors import ModelFileError
from gpudl.models import InputLayer, KerasTensor


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    cls = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + 2 * (x[:, 2] > 0)
    reg = (x[:, 3:4] * 2 - x[:, 4:5]).astype(np.float32)
    return x, cls, reg


def _two_output_model():
    x = gpudl.Input(shape=(6,), name="features")
    h = layers.Dense(16, activation="relu", name="hidden")(x)
    c = layers.Dense(4, activation="softmax", name="cls")(h)
    r = layers.Dense(1, name="reg")(h)
    return gpudl.Model(inputs=x, outputs=[c, r], name="two_heads")


def test_input_is_symbolic_with_batch_axis_none():
    x = gpudl.Input(shape=(3, 4), name="img")
    assert isinstance(x, KerasTensor)
    assert x.shape == (None, 3, 4) and x.ndim == 3 and x.dtype == np.float32
    y = layers.Dense(5)(x)
    assert y.shape == (None, 3, 5)
    with pytest.raises(TypeError, match="symbolic"):
        np.asarray(y)


@pytest.mark.parametrize("shape, match", [(None, "expected shape="), ((3, None), "fix every axis"),
                                          ((0,), "positive integers"), ("ab", "positive integers")])
def test_input_without_a_usable_shape_is_refused(shape, match):
    with pytest.raises(ValueError, match=match):
        gpudl.Input(shape=shape)


def test_sequential_is_a_model():
    m = gpudl.Sequential([layers.Dense(2)], input_shape=(3,))
    assert isinstance(m, gpudl.Model)
    assert m.input_shape == (3,)


def test_single_output_graph_matches_the_same_stack():
    gpudl.set_seed(0)
    x = gpudl.Input(shape=(6,))
    d1, d2 = layers.Dense(8, activation="tanh"), layers.Dense(3, activation="softmax")
    model = gpudl.Model(x, d2(d1(x)))
    data = np.random.default_rng(1).normal(size=(5, 6)).astype(np.float32)
    seq = gpudl.Sequential([d1, d2], input_shape=(6,))
    np.testing.assert_array_equal(model.predict(data), seq.predict(data))
    assert [l.name for l in model.layers][1:] == [d1.name, d2.name]
    assert isinstance(model.layers[0], InputLayer)


def test_two_outputs_train_with_a_loss_each_and_loss_weights():
    gpudl.set_seed(0)
    x, cls, reg = _data()
    model = _two_output_model()
    model.compile(gpudl.optimizers.Adam(learning_rate=0.01), loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"},
                  loss_weights={"cls": 1.0, "reg": 0.5}, metrics={"cls": ["accuracy"]})
    hist = model.fit(x, {"cls": cls, "reg": reg}, epochs=30, batch_size=32, verbose=0)
    logs = hist.history
    assert set(logs) == {"loss", "cls_loss", "reg_loss", "cls_accuracy"}
    # the total is the weighted sum of the parts (epoch means of per-batch values)
    np.testing.assert_allclose(logs["loss"][-1], logs["cls_loss"][-1] + 0.5 * logs["reg_loss"][-1], rtol=1e-5)
    assert logs["loss"][-1] < logs["loss"][0] * 0.6
    ev = model.evaluate(x, [cls, reg], return_dict=True)
    assert set(ev) == {"loss", "cls_loss", "reg_loss", "cls_accuracy"}
    assert ev["cls_accuracy"] > 0.7
    out = model.predict(x)
    assert isinstance(out, list) and out[0].shape == (96, 4) and out[1].shape == (96, 1)
    # the classifier head trained fused on its logits; predict still gives probabilities
    np.testing.assert_allclose(out[0].sum(axis=1), 1.0, rtol=1e-5)


def test_loss_weights_scale_each_output_in_the_total():
    x, cls, reg = _data(32)
    model = _two_output_model()
    model.compile("sgd", loss=["sparse_categorical_crossentropy", "mse"], loss_weights=[0.0, 2.0])
    logs = model.test_on_batch(x, [cls, reg], return_dict=True)
    np.testing.assert_allclose(logs["loss"], 2.0 * logs["reg_loss"], rtol=1e-6)


def test_compile_per_output_errors_name_the_outputs():
    model = _two_output_model()
    with pytest.raises(ValueError, match=r"outputs \['nope'\].*\['cls', 'reg'\]"):
        model.compile("sgd", loss={"nope": "mse", "cls": "mse"})
    with pytest.raises(ValueError, match="expected 2 entries"):
        model.compile("sgd", loss=["mse"] * 3)
    model.compile("sgd", loss=["sparse_categorical_crossentropy", "mse"])
    x, cls, reg = _data(8)
    with pytest.raises(ValueError, match="expected a list of 2 arrays"):
        model.fit(x, cls, verbose=0)
    with pytest.raises(ValueError, match=r"output 'reg'"):
        model.fit(x, [cls, reg[:, 0:1].repeat(3, axis=1)], verbose=0)


def _two_input_model():
    img = gpudl.Input(shape=(1, 8, 8), name="image")
    side = gpudl.Input(shape=(3,), name="side")
    h = layers.Conv2D(4, 3, activation="relu")(img)
    h = layers.Flatten()(h)
    h = layers.Concatenate()([h, layers.Dense(4, activation="relu")(side)])
    out = layers.Dense(2, activation="softmax", name="out")(h)
    return gpudl.Model(inputs=[img, side], outputs=out)


def _two_input_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.random((n, 1, 8, 8)).astype(np.float32)
    side = rng.normal(size=(n, 3)).astype(np.float32)
    y = ((img[:, 0, :4].mean(axis=(1, 2)) > 0.5) ^ (side[:, 0] > 0)).astype(np.int64)
    return img, side, y


def test_two_input_model_trains_saves_loads_and_predicts_identically(tmp_path):
    gpudl.set_seed(0)
    img, side, y = _two_input_data()
    model = _two_input_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    hist = model.fit([img, side], y, epochs=15, batch_size=16, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    # inputs by name work as well as by position
    p1 = model.predict({"image": img, "side": side})
    np.testing.assert_array_equal(p1, model.predict([img, side]))
    path = tmp_path / "two_inputs.gpudl"
    model.save(path)
    loaded = gpudl.load_model(path)
    assert isinstance(loaded, gpudl.Model) and loaded.input_names == ["image", "side"]
    np.testing.assert_array_equal(loaded.predict([img, side]), p1)
    assert loaded.evaluate([img, side], y, return_dict=True) == model.evaluate([img, side], y, return_dict=True)
    # training continues from the file exactly as from the model in memory
    gpudl.set_seed(5)
    model.fit([img, side], y, epochs=1, batch_size=16, verbose=0, shuffle=False)
    gpudl.set_seed(5)
    loaded.fit([img, side], y, epochs=1, batch_size=16, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_shared_layer_has_one_set_of_weights_updated_once_per_step():
    a = gpudl.Input(shape=(4,), name="a")
    b = gpudl.Input(shape=(4,), name="b")
    shared = layers.Dense(3, name="shared")
    model = gpudl.Model([a, b], [shared(a), shared(b)])
    assert len(model.params()) == 2 and len(shared._inbound_nodes) == 2
    xa = np.ones((2, 4), np.float32)
    xb = 2 * np.ones((2, 4), np.float32)
    ya, yb = model.predict([xa, xb])
    np.testing.assert_allclose(yb - shared.b.data, 2 * (ya - shared.b.data), rtol=1e-6)
    model.compile(gpudl.optimizers.SGD(learning_rate=0.1), "mse")
    w0 = shared.W.data.copy()
    model.train_on_batch([xa, xb], [np.zeros((2, 3), np.float32)] * 2)
    # one update from the sum of both uses' gradients
    grad = (2 / 6) * (xa.T @ ya + xb.T @ yb) / 1.0
    np.testing.assert_allclose(shared.W.data, w0 - 0.1 * grad, rtol=1e-5, atol=1e-6)


def test_nested_model_is_one_node_and_its_weights_are_the_outer_models():
    inner = gpudl.Sequential([layers.Dense(5, activation="relu"), layers.Dense(2)], input_shape=(3,),
                             name="inner")
    x = gpudl.Input(shape=(3,))
    y = layers.Dense(1, name="head")(inner(x))
    outer = gpudl.Model(x, y)
    assert inner in outer.layers
    assert len(outer.params()) == 6
    data = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    want = outer.get_layer("head")(inner(gpudl.Tensor(data))).data
    np.testing.assert_allclose(outer.predict(data), want, rtol=1e-6)


def test_nested_model_round_trips_through_a_file(tmp_path):
    inner_in = gpudl.Input(shape=(3,))
    inner = gpudl.Model(inner_in, layers.Dense(2, activation="tanh")(inner_in), name="encoder")
    x = gpudl.Input(shape=(3,))
    outer = gpudl.Model(x, layers.Dense(1)(inner(x)))
    data = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    outer.save(tmp_path / "m")
    loaded = gpudl.load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(data), outer.predict(data))
    assert isinstance(loaded.get_layer("encoder"), gpudl.Model)


def test_disconnected_graphs_are_refused_with_the_layer_named():
    a = gpudl.Input(shape=(2,), name="a")
    b = gpudl.Input(shape=(2,), name="b")
    out = layers.Dense(1, name="uses_b")(b)
    with pytest.raises(ValueError, match=r"disconnected.*uses_b.*Input 'b'.*\['a'\]"):
        gpudl.Model(a, out)
    with pytest.raises(ValueError, match=r"Input 'a' is disconnected"):
        gpudl.Model([a, b], out)
    with pytest.raises(TypeError, match="KerasTensor"):
        gpudl.Model(a, np.zeros(2))
    with pytest.raises(ValueError, match="gpudl.Input"):
        gpudl.Model(out, out)


def test_summary_shows_what_each_layer_is_connected_to():
    model = _two_input_model()
    text = model.summary(print_fn=None)
    assert "Connected to" in text
    concat = model.layers[[l.name for l in model.layers].index(
        next(l.name for l in model.layers if isinstance(l, layers.Concatenate)))]
    line = next(l for l in text.splitlines() if l.startswith(concat.name))
    assert "flatten" in line and "dense" in line
    assert f"Total params: {model.count_params():,}" in text


def test_get_layer_and_layers():
    model = _two_output_model()
    assert model.get_layer("cls").units == 4
    assert model.get_layer(index=1).name == "hidden"
    with pytest.raises(ValueError, match="no layer named 'x'"):
        model.get_layer("x")


def test_config_is_json_and_rebuilds_the_graph():
    model = _two_output_model()
    cfg = json.loads(json.dumps(model.get_config()))
    clone = gpudl.Model.from_config(cfg)
    assert [type(l).__name__ for l in clone.layers] == [type(l).__name__ for l in model.layers]
    assert clone.output_names == model.output_names == ["cls", "reg"]


def test_dict_outputs_give_dict_predictions():
    x = gpudl.Input(shape=(2,))
    model = gpudl.Model(x, {"p": layers.Dense(3)(x), "q": layers.Dense(1)(x)})
    out = model.predict(np.zeros((4, 2), np.float32))
    assert set(out) == {"p", "q"} and out["p"].shape == (4, 3)


def test_layer_call_training_argument_overrides_the_mode_for_that_call():
    d = layers.Dropout(0.5)
    x = gpudl.Tensor(np.ones((64, 64), np.float32))
    d.eval()
    np.testing.assert_array_equal(d(x).data, x.data)
    dropped = d(x, training=True).data
    assert (dropped == 0).mean() > 0.3
    assert not d.training  # restored after the call
    d.train()
    np.testing.assert_array_equal(d(x, training=False).data, x.data)
    assert d.training


def test_integer_inputs_keep_their_dtype_into_the_graph():
    ids = gpudl.Input(shape=(5,), dtype="int64", name="ids")
    emb = layers.Embedding(10, 3)(ids)
    out = layers.Dense(2, activation="softmax")(layers.Flatten()(emb))
    model = gpudl.Model(ids, out)
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).integers(0, 10, size=(16, 5))
    model.fit(x, x[:, 0] % 2, epochs=1, verbose=0)
    assert model.predict(x).shape == (16, 2)


# ---- registration ------------------------------------------------------------------------

def test_a_user_class_named_dense_does_not_replace_the_builtin(tmp_path):
    class Dense(layers.Layer):  # noqa: F811 - the point of the test
        def forward(self, x):
            return x * 2

    m = gpudl.Sequential([layers.Dense(2)], input_shape=(3,))
    m.save(tmp_path / "m")
    loaded = gpudl.load_model(tmp_path / "m")
    assert type(loaded.layers[0]) is layers.Dense
    with pytest.raises(ValueError, match="register_serializable"):
        gpudl.Sequential([Dense()], input_shape=(3,)).save(tmp_path / "n")


def test_registered_layer_and_activation_save_and_load(tmp_path):
    @gpudl.register_serializable(package="tests")
    def cube(x):
        return x * x * x

    @gpudl.register_serializable(package="tests")
    class Scale(layers.Layer):
        def __init__(self, factor=2.0, name=None):
            super().__init__(name)
            self.factor = factor

        def forward(self, x):
            return x * self.factor

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}

    x = gpudl.Input(shape=(3,))
    model = gpudl.Model(x, Scale(3.0)(layers.Dense(2, activation=cube)(x)))
    data = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    model.save(tmp_path / "m")
    loaded = gpudl.load_model(tmp_path / "m")
    assert type(loaded.layers[-1]) is Scale and loaded.layers[-1].factor == 3.0
    np.testing.assert_allclose(loaded.predict(data), model.predict(data), rtol=1e-6)
    with open(tmp_path / "m", "rb") as f:
        assert b"tests>Scale" in f.read()


def test_unknown_registered_name_in_a_file_is_a_clear_error(tmp_path):
    from gpudl import serialization

    @gpudl.register_serializable(package="gone")
    class Twice(layers.Layer):
        def forward(self, x):
            return x * 2
    m = gpudl.Sequential([Twice()], input_shape=(2,))
    m.save(tmp_path / "m")
    serialization._CUSTOM.pop("gone>Twice")
    with pytest.raises(ModelFileError, match=r"'gone>Twice'.*register"):
        gpudl.load_model(tmp_path / "m")
    loaded = gpudl.load_model(tmp_path / "m", custom_objects={"Twice": Twice})
    assert type(loaded.layers[0]) is Twice


def test_registered_loss_metric_and_optimizer_save_and_load(tmp_path):
    @gpudl.register_serializable(package="tests")
    def doubled_mse(y_true, y_pred):
        return ((y_true - y_pred) ** 2).mean(axis=-1) * 2

    @gpudl.register_serializable(package="tests")
    def mean_abs_pred(y_true, y_pred):
        return abs(y_pred).mean(axis=-1)

    @gpudl.register_serializable(package="tests")
    class HalfSGD(gpudl.optimizers.SGD):
        pass

    m = gpudl.Sequential([layers.Dense(2)], input_shape=(3,))
    m.compile(HalfSGD(learning_rate=0.05), doubled_mse, metrics=[mean_abs_pred])
    x = np.ones((4, 3), np.float32)
    y = np.zeros((4, 2), np.float32)
    m.fit(x, y, epochs=1, verbose=0)
    m.save(tmp_path / "m")
    loaded = gpudl.load_model(tmp_path / "m")
    assert type(loaded.optimizer) is HalfSGD and loaded.optimizer.learning_rate == 0.05
    assert loaded.evaluate(x, y, return_dict=True) == m.evaluate(x, y, return_dict=True)
    assert "mean_abs_pred" in loaded.metrics


@pytest.mark.gpu
def test_two_input_model_on_the_device_matches_numpy():
    """Built under the CuPy backend, the graph's parameters live on the device and its
    outputs equal the NumPy model's with the same weights."""
    from gpudl.backend import cupy_available
    if not cupy_available():
        pytest.skip("CuPy backend unavailable")
    img, side, y = _two_input_data(8)
    gpudl.set_backend("numpy")
    host = _two_input_model()
    want = host.predict([img, side])
    try:
        gpudl.set_backend("cupy")
        dev = _two_input_model()
        import cupy
        assert all(isinstance(p.data, cupy.ndarray) for p in dev.params())
        dev.set_weights(host.get_weights())
        np.testing.assert_allclose(dev.predict([img, side]), want, rtol=1e-5, atol=1e-6)
        dev.compile("adam", "sparse_categorical_crossentropy")
        dev.fit([img, side], y, epochs=1, batch_size=4, verbose=0)
    finally:
        gpudl.set_backend("numpy")


def test_registered_initializers_save_and_load(tmp_path):
    @gpudl.register_serializable(package="tests")
    def halves(shape, dtype=np.float32):
        return np.full(shape, 0.5, dtype=dtype)

    @gpudl.register_serializable(package="tests")
    class Thirds(gpudl.initializers.Initializer):
        def __call__(self, shape, dtype=np.float32):
            return np.full(shape, 1 / 3, dtype=dtype)

    m = gpudl.Sequential([layers.Dense(2, kernel_initializer=halves, bias_initializer=Thirds())],
                         input_shape=(3,))
    m.save(tmp_path / "m")
    loaded = gpudl.load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.get_weights()[0], np.full((3, 2), 0.5, np.float32))
    fresh = gpudl.Sequential.from_config(loaded.get_config())
    fresh.build()
    np.testing.assert_allclose(fresh.get_weights()[1], np.full(2, 1 / 3, np.float32))
