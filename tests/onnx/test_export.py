"""gpudl.onnx.export: every exportable layer and the recipes' models, checked with onnx's full
checker and against onnxruntime (float32, |got - want| <= ATOL + RTOL * |want|) at two batch
sizes; negative controls show the comparison catches a wrong gate layout."""
from __future__ import annotations

import importlib
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import gpudl  # noqa: E402
from gpudl import layers as L  # noqa: E402
from gpudl import recipes  # noqa: E402
export_mod = importlib.import_module("gpudl.onnx.exporter")

ATOL = RTOL = 1e-5
BATCHES = (1, 5)


# ---- helpers ----------------------------------------------------------------------------------

def randomize(model, seed=0, scale=0.5):
    """Random weights everywhere (biases and moving statistics included), so no term is a
    trivial zero or one."""
    rng = np.random.default_rng(seed)
    for p in model.params():
        if p.name.endswith("moving_variance"):
            v = rng.uniform(0.5, 1.5, p.shape)
        else:
            v = rng.normal(0.0, scale, p.shape)
        p.data[...] = v.astype(p.dtype)
    return model


def seq(layer_list, shape):
    m = gpudl.Sequential(layer_list, input_shape=shape)
    m.build()
    return m


def inputs_for(model, batch, seed=1):
    rng = np.random.default_rng(seed + batch)
    out = []
    for shape, dt in zip(model.input_shapes, model.input_dtypes):
        if dt is not None and np.dtype(dt).kind in "iu":
            out.append(rng.integers(0, 10, (batch,) + tuple(shape)).astype(dt))
        else:
            out.append(rng.normal(0, 1, (batch,) + tuple(shape)).astype(np.float32))
    return out


def ort_session(proto):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def max_error(model, proto, batch):
    """The largest excess of |onnxruntime - predict| over the tolerance's atol + rtol*|want|
    part, returned with the largest plain difference: (excess, max abs diff)."""
    xs = inputs_for(model, batch)
    sess = ort_session(proto)
    feeds = {i.name: x for i, x in zip(sess.get_inputs(), xs)}
    got = sess.run(None, feeds)
    want = model.predict(xs[0] if len(xs) == 1 else xs)
    want = want if isinstance(want, list) else [want]
    assert len(got) == len(want)
    excess, diff = -np.inf, 0.0
    for g, w in zip(got, want):
        assert g.shape == w.shape, f"shape {g.shape} from onnxruntime, {w.shape} from predict"
        d = np.abs(g.astype(np.float64) - w)
        excess = max(excess, float((d - (ATOL + RTOL * np.abs(w))).max()))
        diff = max(diff, float(d.max()))
    return excess, diff


def check(model, opset=17, **kwargs):
    proto = export_mod.to_proto(model, opset, **kwargs)
    onnx.checker.check_model(proto, full_check=True)
    assert proto.ir_version == export_mod.ir_version_for(opset)
    assert [i.name for i in proto.graph.input] == list(model.input_names)
    assert [o.name for o in proto.graph.output] == list(model.output_names)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    worst = 0.0
    for batch in BATCHES:
        excess, diff = max_error(model, proto, batch)
        assert excess <= 0, f"max |onnxruntime - predict| {diff:.3g} at batch {batch}"
        worst = max(worst, diff)
    return worst


# ---- one small model per layer ------------------------------------------------------------------

def _two_inputs(merge, shapes=((3, 4), (3, 4)), n=2):
    ins = [gpudl.Input(s, name=f"in{i}") for i, s in enumerate(shapes[:n])]
    return gpudl.Model(ins, merge(ins))


def _functional_multi():
    a, b = gpudl.Input((6,), name="a"), gpudl.Input((6,), name="b")
    shared = L.Dense(5, activation="tanh", name="shared")
    inner = gpudl.Sequential([L.Dense(4, activation="relu"), L.Dropout(0.3), L.Dense(3)], name="inner")
    ha, hb = shared(a), shared(b)
    merged = L.Concatenate()([ha, hb])
    return gpudl.Model([a, b], [inner(merged), L.Add()([ha, hb])])


def _lstm_states():
    x = gpudl.Input((5, 3), name="x")
    out, h, c = L.LSTM(4, return_sequences=True, return_state=True)(x)
    return gpudl.Model(x, [out, h, c])


def _bidi_none():
    x = gpudl.Input((5, 3), name="x")
    fw, bw = L.Bidirectional(L.GRU(4), merge_mode=None)(x)
    return gpudl.Model(x, [fw, bw])


def _bidi_states():
    x = gpudl.Input((5, 3), name="x")
    outs = L.Bidirectional(L.LSTM(4, return_state=True))(x)
    return gpudl.Model(x, outs)


LAYER_CASES = {
    "dense": lambda: seq([L.Dense(7, activation="relu")], (5,)),
    "dense_softmax_nobias": lambda: seq([L.Dense(4, activation="softmax", use_bias=False)], (5,)),
    "dense_rank3_leaky": lambda: seq([L.Dense(4, activation="leaky_relu")], (3, 5)),
    "conv2d_same_strided": lambda: seq([L.Conv2D(4, 3, strides=2, padding="same", activation="sigmoid")], (3, 9, 8)),
    "conv2d_dilated_groups": lambda: seq([L.Conv2D(4, 3, dilation_rate=2, groups=2, padding=(1, 2))], (4, 9, 9)),
    "conv2d_same_even_kernel": lambda: seq([L.Conv2D(2, (2, 4), padding="same", activation="relu")], (2, 5, 6)),
    "conv1d_causal": lambda: seq([L.Conv1D(3, 3, padding="causal", dilation_rate=2)], (2, 10)),
    "conv1d_same_strided": lambda: seq([L.Conv1D(3, 4, strides=2, padding="same", activation="tanh")], (2, 9)),
    "conv2d_transpose": lambda: seq([L.Conv2DTranspose(3, 3, strides=2)], (2, 4, 5)),
    "conv2d_transpose_same_outpad": lambda: seq([L.Conv2DTranspose(3, 3, strides=2, padding="same",
                                                                    output_padding=1, activation="relu")], (2, 4, 5)),
    "maxpool_same": lambda: seq([L.MaxPool2D(3, strides=2, padding="same")], (2, 8, 7)),
    "avgpool_int_pad": lambda: seq([L.AvgPool2D(3, strides=2, padding=1)], (2, 7, 7)),
    "avgpool_same": lambda: seq([L.AvgPool2D(3, strides=2, padding="same")], (2, 8, 7)),
    "global_avg": lambda: seq([L.GlobalAveragePooling2D()], (3, 4, 5)),
    "global_avg_keepdims": lambda: seq([L.GlobalAveragePooling2D(keepdims=True)], (3, 4, 5)),
    "global_max": lambda: seq([L.GlobalMaxPooling2D()], (3, 4, 5)),
    "flatten": lambda: seq([L.Flatten()], (2, 3, 4)),
    "reshape": lambda: seq([L.Reshape((4, -1))], (2, 3, 4)),
    "permute": lambda: seq([L.Permute((2, 3, 1))], (2, 3, 4)),
    "upsampling_nearest": lambda: seq([L.UpSampling2D((2, 3))], (2, 3, 4)),
    "upsampling_bilinear": lambda: seq([L.UpSampling2D((2, 3), interpolation="bilinear")], (2, 3, 4)),
    "concatenate": lambda: _two_inputs(lambda i: L.Concatenate(axis=1)(i)),
    "add": lambda: _two_inputs(lambda i: L.Add()(i)),
    "add3": lambda: _two_inputs(lambda i: L.Add()(i), ((3, 4),) * 3, 3),
    "subtract": lambda: _two_inputs(lambda i: L.Subtract()(i)),
    "multiply_broadcast": lambda: _two_inputs(lambda i: L.Multiply()(i), ((3, 4), (1, 4))),
    "average": lambda: _two_inputs(lambda i: L.Average()(i), ((3, 4),) * 3, 3),
    "maximum": lambda: _two_inputs(lambda i: L.Maximum()(i)),
    "minimum": lambda: _two_inputs(lambda i: L.Minimum()(i)),
    "batchnorm_nchw": lambda: seq([L.BatchNormalization()], (3, 4, 4)),
    "batchnorm_features": lambda: seq([L.BatchNormalization(epsilon=1e-2)], (6,)),
    "batchnorm_last_axis": lambda: seq([L.BatchNormalization(axis=-1)], (4, 5)),
    "batchnorm_no_scale_center": lambda: seq([L.BatchNormalization(center=False, scale=False)], (3, 2, 2)),
    "layernorm_last": lambda: seq([L.LayerNormalization()], (4, 6)),
    "layernorm_trailing_two": lambda: seq([L.LayerNormalization(axis=[1, 2], epsilon=1e-5)], (3, 4)),
    "layernorm_middle": lambda: seq([L.LayerNormalization(axis=1)], (4, 6)),
    "relu": lambda: seq([L.ReLU()], (3, 4)),
    "relu_max_value": lambda: seq([L.ReLU(max_value=0.5)], (3, 4)),
    "relu_slope": lambda: seq([L.ReLU(negative_slope=0.1)], (3, 4)),
    "relu_threshold": lambda: seq([L.ReLU(threshold=0.3)], (3, 4)),
    "relu_all_args": lambda: seq([L.ReLU(max_value=0.8, negative_slope=0.1, threshold=-0.2)], (3, 4)),
    "sigmoid": lambda: seq([L.Sigmoid()], (3, 4)),
    "tanh": lambda: seq([L.Tanh()], (3, 4)),
    "softmax_axis1": lambda: seq([L.Softmax(axis=1)], (3, 4)),
    "leaky_relu": lambda: seq([L.LeakyReLU(0.2)], (3, 4)),
    "prelu_channels": lambda: seq([L.PReLU()], (4, 3, 4)),
    "prelu_channels_square": lambda: seq([L.PReLU()], (4, 4, 4)),
    "prelu_shared_axes": lambda: seq([L.PReLU(shared_axes=[2, 3])], (3, 4, 5)),
    "prelu_shared": lambda: seq([L.PReLU(shared=True)], (3, 4)),
    "maxout_dense": lambda: seq([L.Dense(12), L.Maxout(3)], (5,)),
    "maxout_conv": lambda: seq([L.Maxout(2)], (6, 3, 4)),
    "activation_tanh": lambda: seq([L.Activation("tanh")], (3, 4)),
    "activation_softmax": lambda: seq([L.Activation("softmax")], (3, 4)),
    "activation_linear": lambda: seq([L.Activation("linear")], (3, 4)),
    "embedding_gru": lambda: seq([L.Embedding(10, 4), L.GRU(3)], (7,)),
    "embedding_int32_input": lambda: gpudl.Model(
        (x := gpudl.Input((6,), dtype="int32", name="ids")), L.Embedding(10, 3)(x)),
    "simple_rnn_relu_seq": lambda: seq([L.SimpleRNN(4, activation="relu", return_sequences=True)], (5, 3)),
    "simple_rnn_linear": lambda: seq([L.SimpleRNN(4, activation="linear")], (5, 3)),
    "lstm_backwards_seq": lambda: seq([L.LSTM(4, return_sequences=True, go_backwards=True)], (5, 3)),
    "lstm_no_bias": lambda: seq([L.LSTM(4, use_bias=False)], (5, 3)),
    "gru_reset_before": lambda: seq([L.GRU(4, reset_after=False, return_sequences=True)], (5, 3)),
    "gru_backwards": lambda: seq([L.GRU(4, go_backwards=True)], (5, 3)),
    "lstm_return_state": _lstm_states,
    "bidi_lstm_concat_seq": lambda: seq([L.Bidirectional(L.LSTM(4, return_sequences=True))], (5, 3)),
    "bidi_gru_sum": lambda: seq([L.Bidirectional(L.GRU(4), merge_mode="sum")], (5, 3)),
    "bidi_rnn_mul_seq": lambda: seq([L.Bidirectional(L.SimpleRNN(4, return_sequences=True), merge_mode="mul")],
                                    (5, 3)),
    "bidi_gru_ave_seq": lambda: seq([L.Bidirectional(L.GRU(4, reset_after=False, return_sequences=True),
                                                     merge_mode="ave")], (5, 3)),
    "bidi_reversed_forward": lambda: seq([L.Bidirectional(L.LSTM(4, go_backwards=True, return_sequences=True))],
                                         (5, 3)),
    "bidi_merge_none": _bidi_none,
    "bidi_states": _bidi_states,
    "dropout_inside_and_last": lambda: seq([L.Dense(4), L.Dropout(0.5), L.Dense(3), L.Dropout(0.2)], (5,)),
    "highway": lambda: seq([L.Highway(activation="tanh")], (6,)),
    "residual": lambda: seq([L.Residual(L.Dense(5, activation="relu"), L.Dense(5))], (5,)),
    "residual_conv": lambda: seq([L.Residual(L.Conv2D(2, 3, padding="same"), L.BatchNormalization())], (2, 5, 5)),
    "time_distributed": lambda: seq([L.TimeDistributed(L.Dense(3, activation="relu"))], (4, 5)),
    "masking_dense": lambda: seq([L.Masking(0.0), L.Dense(3)], (4, 5)),
    "functional_shared_nested": _functional_multi,
}


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_layer_matches_onnxruntime(case):
    model = randomize(LAYER_CASES[case]())
    check(model)


# ---- the recipes ------------------------------------------------------------------------------

def _bidi_lstm_model():
    return seq([L.Bidirectional(L.LSTM(8)), L.Dense(4, activation="softmax")], (6, 5))


RECIPES = {
    "hello_mlp": lambda: recipes.hello_mlp(input_dim=20, hidden=16),
    "mnist_cnn": lambda: recipes.mnist_cnn(input_shape=(1, 12, 12)),
    "mnist_cnn_bn_pre": lambda: recipes.mnist_cnn(input_shape=(1, 12, 12), batchnorm="pre"),
    "rnn_rows_lstm": lambda: recipes.rnn_rows("lstm", rows=6, cols=5, units=8),
    "rnn_rows_gru": lambda: recipes.rnn_rows("gru", rows=6, cols=5, units=8),
    "rnn_rows_simple": lambda: recipes.rnn_rows("simple", rows=6, cols=5, units=8),
    "bidirectional_lstm": _bidi_lstm_model,
}


def _built(make):
    m = make()
    m.build()
    return randomize(m, scale=0.3)


@pytest.mark.parametrize("opset", [13, 17, 21])
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_matches_onnxruntime(name, opset):
    check(_built(RECIPES[name]), opset)


@pytest.mark.parametrize("opset", [13, 16, 18, 21])
@pytest.mark.parametrize("case", ["layernorm_last", "layernorm_middle", "maxout_dense", "bidi_gru_ave_seq",
                                  "masking_dense", "prelu_channels"])
def test_opset_dependent_forms(case, opset):
    """Layers whose ONNX form changes with the opset (LayerNormalization from 17, Reduce*'s axes
    input from 18)."""
    check(randomize(LAYER_CASES[case]()), opset)


def test_export_writes_file_atomically(tmp_path, monkeypatch):
    model = randomize(seq([L.Dense(3)], (4,)))
    path = tmp_path / "m.onnx"
    assert gpudl.onnx.export(model, path, opset=17) == path
    loaded = onnx.load(str(path))
    onnx.checker.check_model(loaded, full_check=True)
    assert loaded.opset_import[0].version == 17 and loaded.ir_version == 8
    before = path.read_bytes()

    def boom(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(export_mod.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        gpudl.onnx.export(randomize(seq([L.Dense(5)], (4,)), seed=3), path)
    assert path.read_bytes() == before  # the old file is untouched
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]  # and no temporary is left


def test_ir_versions_follow_the_opset():
    table = {13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10}
    assert {k: export_mod.ir_version_for(k) for k in table} == table


# ---- negative controls: the comparison has teeth ------------------------------------------------

def _rnn_only(layer):
    return randomize(seq([layer], (6, 5)), scale=0.8)


def test_lstm_in_keras_gate_order_fails_the_comparison():
    model = _rnn_only(L.LSTM(6, return_sequences=True))
    assert check(model) < 1e-5
    proto = export_mod.to_proto(model, 17, _lstm_gate_order="ifco")
    excess, diff = max_error(model, proto, 5)
    assert excess > 0 and diff > 0.05, f"wrong gate order gave only {diff}"


def test_gru_without_linear_before_reset_fails_the_comparison():
    model = _rnn_only(L.GRU(6, return_sequences=True))  # reset_after=True
    assert check(model) < 1e-5
    proto = export_mod.to_proto(model, 17, _gru_linear_before_reset=False)
    excess, diff = max_error(model, proto, 5)
    assert excess > 0 and diff > 0.05, f"linear_before_reset=0 gave only {diff}"


# ---- bad input ------------------------------------------------------------------------------

class Doubler(L.Layer):
    def forward(self, x):
        return x * 2


def test_layer_without_onnx_form_is_named():
    model = seq([L.Dense(3), Doubler(name="double_it")], (4,))
    with pytest.raises(ValueError, match=r"layer 'double_it' \(Doubler\) has no ONNX form"):
        export_mod.to_proto(model)


def test_subclass_of_a_gpudl_layer_is_refused():
    class MyDense(L.Dense):
        def forward(self, x, logits=False):
            return super().forward(x) + 1
    model = seq([MyDense(3, name="my_dense")], (4,))
    with pytest.raises(ValueError, match=r"'my_dense' \(MyDense\) has no ONNX form"):
        export_mod.to_proto(model)


def test_recurrent_layer_fed_a_mask_is_refused():
    model = seq([L.Embedding(10, 4, mask_zero=True), L.LSTM(3, name="masked_lstm")], (6,))
    with pytest.raises(ValueError, match=r"'masked_lstm' \(LSTM\) has no ONNX form: it is fed a mask"):
        export_mod.to_proto(model)
    model = seq([L.Masking(), L.Bidirectional(L.GRU(3), name="bidi")], (6, 2))
    with pytest.raises(ValueError, match=r"has no ONNX form: it is fed a mask"):
        export_mod.to_proto(model)


def test_stateful_recurrent_layer_is_refused():
    model = gpudl.Sequential([L.LSTM(3, stateful=True, name="kept")], input_shape=(4, 2))
    model.build()
    with pytest.raises(ValueError, match=r"'kept' \(LSTM\) has no ONNX form: it is stateful"):
        export_mod.to_proto(model)


@pytest.mark.parametrize("opset", [12, 22, 17.0, "17", None])
def test_opset_out_of_range(opset, tmp_path):
    model = seq([L.Dense(3)], (4,))
    with pytest.raises(ValueError, match=r"opset an integer from 13 to 21"):
        gpudl.onnx.export(model, tmp_path / "m.onnx", opset=opset)
    assert not os.listdir(tmp_path)


def test_unbuilt_model(tmp_path):
    model = gpudl.Sequential([L.Dense(3)], input_shape=(4,))
    with pytest.raises(ValueError, match=r"is not built: call model.build\(\)"):
        gpudl.onnx.export(model, tmp_path / "m.onnx")
    assert not os.listdir(tmp_path)


def test_not_a_model():
    with pytest.raises(TypeError, match="expected a gpudl Sequential or Model, got Dense"):
        export_mod.to_proto(L.Dense(3))


def test_subclassed_model_is_refused():
    class Net(gpudl.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(2)

        def call(self, x):
            return self.d(x)
    net = Net()
    net.build((3,))
    with pytest.raises(ValueError, match=r"subclassed model"):
        export_mod.to_proto(net)


def test_private_switches_are_not_public_api(tmp_path):
    model = seq([L.LSTM(3)], (4, 2))
    with pytest.raises(TypeError):
        gpudl.onnx.export(model, tmp_path / "m.onnx", _lstm_gate_order="ifco")
