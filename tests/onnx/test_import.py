"""gpudl.onnx.load: gpudl -> ONNX -> gpudl reproduces predict and trains; the pytorch-converted
models shipped in the onnx wheel load and match their stored outputs; bad files and graphs
raise clear errors."""
from __future__ import annotations

import importlib
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
# load() reads files and runs unmatched nodes with the runtime half of gpudl.onnx
pytest.importorskip("gpudl.onnx._proto", reason="gpudl.onnx._proto (read_model) is not present")
pytest.importorskip("gpudl.onnx.ops", reason="gpudl.onnx.ops (OPS, unsupported) is not present")

import gpudl  # noqa: E402
from gpudl import layers as L  # noqa: E402
from gpudl.errors import ModelFileError  # noqa: E402

export_mod = importlib.import_module("gpudl.onnx.exporter")
importer = importlib.import_module("gpudl.onnx.importer")

from test_export import LAYER_CASES, RECIPES, inputs_for, randomize  # noqa: E402

PYTORCH = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "pytorch-converted")


def roundtrip(model, tmp_path, opset=17):
    path = tmp_path / "model.onnx"
    gpudl.onnx.export(model, path, opset=opset)
    return gpudl.onnx.load(path)


def layer_types(model):
    return [type(layer).__name__ for layer in model.layers]


def predictions(model, batch):
    xs = inputs_for(model, batch)
    out = model.predict(xs[0] if len(xs) == 1 else xs)
    return out if isinstance(out, list) else [out]


# ---- gpudl -> ONNX -> gpudl ---------------------------------------------------------------------

RECIPE_TYPES = {
    "hello_mlp": ["Dense", "Dense", "Dense"],
    "mnist_cnn": ["Conv2D", "Conv2D", "MaxPool2D", "Flatten", "Dense", "Dense"],
    "mnist_cnn_bn_pre": ["Conv2D", "BatchNormalization", "ReLU", "Conv2D", "BatchNormalization", "ReLU",
                         "MaxPool2D", "Flatten", "Dense", "Dense"],
    "rnn_rows_lstm": ["LSTM", "Dense"],
    "rnn_rows_gru": ["GRU", "Dense"],
    "rnn_rows_simple": ["SimpleRNN", "Dense"],
    "bidirectional_lstm": ["Bidirectional", "Dense"],
}


def _built(make):
    m = make()
    m.build()
    return randomize(m, scale=0.3)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_roundtrip_is_bitwise_and_trains(name, tmp_path):
    model = _built(RECIPES[name])
    loaded = roundtrip(model, tmp_path)
    assert layer_types(loaded)[1:] == RECIPE_TYPES[name]
    text = loaded.summary(print_fn=lambda *_: None)
    assert RECIPE_TYPES[name][0] in text and "OnnxNode" not in text
    assert loaded.count_params() == model.count_params()
    for batch in (1, 5):
        for a, b in zip(predictions(model, batch), predictions(loaded, batch)):
            assert np.array_equal(a, b), f"max |loaded - original| {np.abs(a - b).max()}"
    # it trains: one epoch on random data lowers the loss and moves the weights (from the
    # recipe's own initial weights: the randomized ones saturate the softmax)
    fresh = RECIPES[name]()
    fresh.build()
    loaded = roundtrip(fresh, tmp_path)
    x = inputs_for(loaded, 64, seed=7)[0]
    y = np.random.default_rng(3).integers(0, loaded.output_shape[-1], 64)
    loaded.compile(optimizer=gpudl.optimizers.Adam(0.003), loss="sparse_categorical_crossentropy")
    before_w = [w.copy() for w in loaded.get_weights()]
    before = loaded.evaluate(x, y, batch_size=64)
    loaded.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False)
    after = loaded.evaluate(x, y, batch_size=64)
    assert after < before, f"loss {before} -> {after}"
    assert any(not np.array_equal(a, b) for a, b in zip(before_w, loaded.get_weights()))


ROUNDTRIP_CASES = {
    # case: the gpudl layer types the loaded model must hold (after its Inputs)
    "dense_rank3_leaky": ["Dense"],
    "conv2d_same_strided": ["Conv2D"],
    "conv2d_dilated_groups": ["Conv2D"],
    "conv2d_same_even_kernel": ["Conv2D"],
    "conv1d_causal": ["Conv1D"],
    "conv1d_same_strided": ["Conv1D"],
    "conv2d_transpose": ["Conv2DTranspose"],
    "conv2d_transpose_same_outpad": ["Conv2DTranspose"],
    "maxpool_same": ["MaxPool2D"],
    "avgpool_int_pad": ["AvgPool2D"],
    "avgpool_same": ["AvgPool2D"],
    "global_avg": ["GlobalAveragePooling2D"],
    "global_avg_keepdims": ["GlobalAveragePooling2D"],
    "global_max": ["GlobalMaxPooling2D"],
    "flatten": ["Flatten"],
    "reshape": ["Reshape"],
    "permute": ["Permute"],
    "concatenate": ["Concatenate"],
    "add3": ["Add"],
    "subtract": ["Subtract"],
    "multiply_broadcast": ["Multiply"],
    "average": ["Average"],
    "maximum": ["Maximum"],
    "minimum": ["Minimum"],
    "batchnorm_nchw": ["BatchNormalization"],
    "relu": ["ReLU"],
    "leaky_relu": ["LeakyReLU"],
    "softmax_axis1": ["Softmax"],
    "prelu_channels": ["PReLU"],
    "prelu_channels_square": ["PReLU"],
    "prelu_shared_axes": ["PReLU"],
    "prelu_shared": ["PReLU"],
    "embedding_gru": ["Embedding", "GRU"],
    "simple_rnn_relu_seq": ["SimpleRNN"],
    "simple_rnn_linear": ["SimpleRNN"],
    "lstm_backwards_seq": ["LSTM"],
    "lstm_no_bias": ["LSTM"],
    "gru_reset_before": ["GRU"],
    "gru_backwards": ["GRU"],
    "lstm_return_state": ["LSTM"],
    "bidi_lstm_concat_seq": ["Bidirectional"],
    "bidi_gru_sum": ["Bidirectional"],
    "bidi_rnn_mul_seq": ["Bidirectional"],
    "bidi_gru_ave_seq": ["Bidirectional"],
    "dropout_inside_and_last": ["Dense", "Dense"],
    "functional_shared_nested": ["Dense", "Dense", "Concatenate", "Add", "Dense", "Dense"],
}


@pytest.mark.parametrize("case", sorted(ROUNDTRIP_CASES))
def test_layer_roundtrip(case, tmp_path):
    model = randomize(LAYER_CASES[case]())
    loaded = roundtrip(model, tmp_path)
    assert sorted(layer_types(loaded)[len(loaded.inputs):]) == sorted(ROUNDTRIP_CASES[case])
    assert list(loaded.input_names) == list(model.input_names)
    for batch in (1, 5):
        for a, b in zip(predictions(model, batch), predictions(loaded, batch)):
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)


def test_layers_without_a_gpudl_match_run_as_generic_nodes(tmp_path):
    """UpSampling2D's Resize, LayerNormalization and Maxout's ReduceMax have no matcher: they load
    as OnnxNode layers (their constants non-trainable) and still match predict."""
    model = randomize(gpudl.Sequential([L.Conv2D(4, 3, padding="same"), L.UpSampling2D(2, interpolation="bilinear"),
                                        L.Maxout(2), L.LayerNormalization(axis=[1, 2, 3]), L.Flatten(),
                                        L.Dense(3)], input_shape=(2, 4, 4)))
    model.build()
    randomize(model)
    for opset in (13, 17):
        loaded = roundtrip(model, tmp_path, opset)
        types = layer_types(loaded)
        assert "Conv2D" in types and "Dense" in types and "OnnxNode" in types
        generic = [layer for layer in loaded.layers if type(layer).__name__ == "OnnxNode"]
        assert all(p.trainable is False for g in generic for p in g.params())
        for batch in (1, 5):
            np.testing.assert_allclose(predictions(loaded, batch)[0], predictions(model, batch)[0],
                                       rtol=1e-5, atol=1e-5)


def test_asymmetric_conv_pads_become_a_pad_node():
    """Conv pads no gpudl padding rule gives: a Pad node, then a "valid" Conv2D (still trainable)."""
    h = onnx.helper
    rng = np.random.default_rng(0)
    W = rng.normal(size=(2, 1, 3, 3)).astype(np.float32)
    node = h.make_node("Conv", ["x", "W"], ["y"], pads=[2, 0, 0, 1], kernel_shape=[3, 3])
    graph = h.make_graph([node], "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 1, 5, 5])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
                         initializer=[onnx.numpy_helper.from_array(W, "W")])
    proto = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    loaded = importer.from_proto(proto)
    assert layer_types(loaded) == ["InputLayer", "OnnxNode", "Conv2D"]
    x = rng.normal(size=(3, 1, 5, 5)).astype(np.float32)
    xp = np.pad(x, ((0, 0), (0, 0), (2, 0), (0, 1)))
    want = np.zeros((3, 2, 5, 4), np.float32)
    for i in range(5):
        for j in range(4):
            want[:, :, i, j] = np.einsum("nchw,ochw->no", xp[:, :, i:i + 3, j:j + 3], W)
    np.testing.assert_allclose(loaded.predict(x), want, rtol=1e-5, atol=1e-5)


# ---- the pytorch-converted models in the onnx wheel ------------------------------------------------

PYTORCH_CASES = {
    "test_Conv2d": "Conv2D", "test_Conv2d_padding": "Conv2D", "test_Conv2d_strided": "Conv2D",
    "test_Conv2d_groups": "Conv2D", "test_Conv2d_no_bias": "Conv2D", "test_Conv1d_pad2": "Conv1D",
    "test_Conv1d_stride": "Conv1D", "test_Linear": "Dense", "test_Linear_no_bias": "Dense",
    "test_AvgPool2d": "AvgPool2D", "test_AvgPool2d_stride": "AvgPool2D", "test_MaxPool2d": "MaxPool2D",
    "test_PReLU_2d": "PReLU", "test_PReLU_2d_multiparam": "PReLU", "test_PReLU_1d": "PReLU",
    "test_PReLU_1d_multiparam": "PReLU",
    "test_BatchNorm2d_eval": "BatchNormalization", "test_BatchNorm2d_momentum_eval": "BatchNormalization",
    "test_Embedding": "Embedding", "test_LeakyReLU": "LeakyReLU", "test_Softmax": "Softmax",
    "test_ReLU": "ReLU", "test_Sigmoid": "Sigmoid", "test_Tanh": "Tanh",
    "test_ConvTranspose2d": None, "test_ZeroPad2d": None,
}


def _pb(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return onnx.numpy_helper.to_array(t)


@pytest.mark.parametrize("case", sorted(PYTORCH_CASES))
def test_pytorch_converted_model(case):
    folder = os.path.join(PYTORCH, case)
    if not os.path.isdir(folder):
        pytest.skip(f"{case} is not in this onnx wheel")
    model = gpudl.onnx.load(os.path.join(folder, "model.onnx"))
    want_type = PYTORCH_CASES[case]
    if want_type is not None:
        assert want_type in layer_types(model)
        assert "OnnxNode" not in layer_types(model)
    data = os.path.join(folder, "test_data_set_0")
    x, want = _pb(os.path.join(data, "input_0.pb")), _pb(os.path.join(data, "output_0.pb"))
    got = model.predict(x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# ---- bad input ------------------------------------------------------------------------------

def test_file_that_is_not_onnx(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_bytes(b"this is not a protobuf \xff\xfe" * 10)
    with pytest.raises(ModelFileError, match="notes.onnx"):
        gpudl.onnx.load(path)
    with pytest.raises(ModelFileError):
        gpudl.onnx.load(tmp_path / "missing.onnx")


def test_unsupported_ops_are_all_listed_before_building():
    h = onnx.helper
    nodes = [h.make_node("FrobnicateA", ["x"], ["a"], domain="example.ops"),
             h.make_node("FrobnicateB", ["a"], ["y"], domain="example.ops")]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 3])])
    proto = h.make_model(graph, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("example.ops", 1)],
                         ir_version=8)
    with pytest.raises(ValueError, match=r"FrobnicateA.*FrobnicateB"):
        importer.from_proto(proto)


def test_dynamic_feature_axis_is_refused():
    h = onnx.helper
    graph = h.make_graph([h.make_node("Relu", ["x"], ["y"])], "g",
                         [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", "features"])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", "features"])])
    proto = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    with pytest.raises(ValueError, match=r"input 'x' has a dynamic axis 1 \(features\)"):
        importer.from_proto(proto)


# ---- generic nodes save, load and train ------------------------------------------------------------

def _generic_model(tmp_path):
    model = randomize(gpudl.Sequential([L.Conv2D(4, 3, padding="same"), L.UpSampling2D(2, interpolation="bilinear"),
                                        L.Maxout(2), L.LayerNormalization(axis=[1, 2, 3]), L.Flatten(),
                                        L.Dense(3, activation="softmax")], input_shape=(2, 4, 4)))
    model.build()
    randomize(model)
    return roundtrip(model, tmp_path, 13)


def test_model_with_generic_nodes_saves_and_loads(tmp_path):
    loaded = _generic_model(tmp_path)
    assert "OnnxNode" in layer_types(loaded)
    path = tmp_path / "loaded.gpudl"
    loaded.save(path)
    again = gpudl.load_model(path)
    assert layer_types(again) == layer_types(loaded)
    def flags(m):
        return [getattr(p, "trainable", True) for p in m.params()]
    assert flags(again) == flags(loaded) and False in flags(again)
    for batch in (1, 5):
        assert np.array_equal(predictions(again, batch)[0], predictions(loaded, batch)[0])


def test_gradients_flow_through_generic_nodes(tmp_path):
    """The Conv2D before the OnnxNodes learns: the generic nodes pass gradients back."""
    loaded = _generic_model(tmp_path)
    conv = next(layer for layer in loaded.layers if type(layer).__name__ == "Conv2D")
    frozen = [p for layer in loaded.layers if type(layer).__name__ == "OnnxNode" for p in layer.params()]
    before, before_frozen = conv.get_weights(), [p.data.copy() for p in frozen]
    x = inputs_for(loaded, 32, seed=4)[0]
    y = np.random.default_rng(5).integers(0, 3, 32)
    loaded.compile(optimizer=gpudl.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    loaded.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    assert all(not np.array_equal(a, b) for a, b in zip(before, conv.get_weights()))
    assert frozen and all(np.array_equal(a, p.data) for a, p in zip(before_frozen, frozen))


def test_generic_node_built_on_a_zero_sample_does_not_warn():
    """x / ReduceL2(x) divides 0 by 0 on the functional API's zero sample: no RuntimeWarning,
    and real data gives the quotient."""
    import warnings
    h = onnx.helper
    nodes = [h.make_node("ReduceL2", ["x"], ["n"], axes=[1], keepdims=1), h.make_node("Div", ["x", "n"], ["y"])]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4])])
    proto = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        loaded = importer.from_proto(proto)
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x), x / np.linalg.norm(x, axis=1, keepdims=True), rtol=1e-6)
