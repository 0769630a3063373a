"""gpudl.onnx.ops: the ops gpudl composes for ONNX, differentiated in float64 against central
differences (tests/harness.py), run on the CuPy backend against the NumPy one, and whole
graphs exported from PyTorch against onnxruntime's outputs and PyTorch's gradients."""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import gpudl
from gpudl.onnx.ops import OPS
from harness import check_grad, rand


def op(name, opset=17, index=0, **attrs):
    """A function of Tensors running ONNX op ``name`` (output ``index``)."""
    return lambda *xs: OPS[name](list(xs), attrs, opset)[index]


def with_consts(fn, *consts, at=None):
    """``fn`` with constant (non-differentiated) arrays spliced in at positions ``at``."""
    def call(*xs):
        args, it, k = [], iter(xs), iter(consts)
        for i in range(len(xs) + len(consts)):
            args.append(gpudl.Tensor(next(k)) if i in at else next(it))
        return fn(*args)
    return call


# ---- elementwise ---------------------------------------------------------------------------------

UNARY = {
    "Sqrt": dict(low=0.2, high=2.0), "Reciprocal": dict(low=0.3, high=2.0), "Sin": {}, "Cos": {}, "Tan": {},
    "Asin": dict(low=-0.8, high=0.8), "Acos": dict(low=-0.8, high=0.8), "Atan": {}, "Sinh": {}, "Cosh": {},
    "Asinh": {}, "Acosh": dict(low=1.2, high=3.0), "Atanh": dict(low=-0.8, high=0.8), "Erf": {}, "Softplus": {},
    "Softsign": dict(away_from=0), "Elu": dict(away_from=0), "Selu": dict(away_from=0), "Celu": dict(away_from=0),
    "Mish": {}, "HardSigmoid": {}, "HardSwish": {}, "Swish": {}, "Exp": {}, "Log": dict(low=0.2, high=2.0),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@pytest.mark.parametrize("shape", [(1, 4), (2, 3, 2)])
def test_unary_gradients(name, shape):
    check_grad(op(name), [rand(shape, seed=1, **UNARY[name])])


@pytest.mark.parametrize("attrs", [{}, {"approximate": "tanh"}])
def test_gelu_gradient(attrs):
    check_grad(op("Gelu", **attrs), [rand((2, 5), seed=2, low=-3, high=3)])


def test_thresholded_relu_shrink_leaky_gradients():
    x = rand((3, 4), seed=3, low=-2, high=2)
    x = np.where(np.abs(np.abs(x) - 0.7) < 0.05, 1.5, x)  # away from the kinks at |x| = 0.7
    check_grad(op("ThresholdedRelu", alpha=0.7), [x])
    check_grad(op("Shrink", lambd=0.7, bias=0.2), [x])
    check_grad(op("LeakyRelu", alpha=0.1), [rand((1, 5), away_from=0)])


def test_broadcast_binary_gradients():
    a, b = rand((2, 3, 4), seed=4), rand((3, 1), seed=5, low=0.5, high=1.5)
    for name in ("Add", "Sub", "Mul", "Div"):
        check_grad(op(name), [a, b])
    check_grad(op("Pow"), [rand((2, 3), seed=6, low=0.5, high=2.0), rand((3,), seed=7)])
    check_grad(op("PRelu"), [rand((2, 3, 2, 2), seed=8, away_from=0), rand((3, 1, 1), seed=9)])


def test_max_min_where_clip_gradients():
    xs = [rand((2, 3), seed=s) for s in (10, 11, 12)]
    check_grad(op("Max"), xs)
    check_grad(op("Min"), xs)
    cond = np.random.default_rng(1).random((2, 3)) > 0.5
    check_grad(with_consts(op("Where"), cond, at={0}), [rand((2, 3), seed=13), rand((1, 3), seed=14)])
    x = rand((4, 3), seed=15)
    x = np.where(np.abs(np.abs(x) - 0.5) < 0.05, 0.2, x)
    check_grad(op("Clip", opset=11), [x])  # no bounds: the identity
    check_grad(with_consts(op("Clip", opset=13), np.array(-0.5), np.array(0.5), at={1, 2}), [x])
    check_grad(op("Clip", opset=6, min=-0.5, max=0.5), [x])


# ---- reductions, products, scans ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["ReduceProd", "ReduceLogSumExp", "ReduceL2", "ReduceL1", "ReduceMin",
                                  "ReduceSumSquare", "ReduceLogSum", "ReduceMean", "ReduceMax"])
def test_reduction_gradients(name):
    x = rand((2, 3, 4), seed=16, low=0.3, high=1.5)
    check_grad(with_consts(op(name, opset=18, keepdims=0), np.array([1, -1]), at={1}), [x])
    check_grad(op(name, opset=13, axes=[0], keepdims=1), [x[:1]])


def test_reduce_prod_gradient_with_zeros():
    x = rand((2, 4), seed=17)
    x[0, 1] = 0.0
    x[1, 0] = x[1, 2] = 0.0
    check_grad(op("ReduceProd", opset=13, axes=[1], keepdims=0), [x])


@pytest.mark.parametrize("exclusive, reverse", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_cumsum_gradient(exclusive, reverse):
    check_grad(with_consts(op("CumSum", exclusive=exclusive, reverse=reverse), np.array(1), at={1}),
               [rand((2, 5), seed=18)])


@pytest.mark.parametrize("equation, shapes", [("bij,bjk->bik", [(2, 3, 4), (2, 4, 2)]), ("ij->", [(3, 4)]),
                                              ("...ij,jk", [(1, 2, 3), (3, 2)]), ("ij,ij->i", [(2, 3), (2, 3)]),
                                              ("ijk->ki", [(2, 3, 2)])])
def test_einsum_gradient(equation, shapes):
    check_grad(op("Einsum", equation=equation), [rand(s, seed=i) for i, s in enumerate(shapes)])


def test_gemm_gradients():
    a, b, c = rand((3, 2), seed=19), rand((4, 3), seed=20), rand((1, 4), seed=21)
    check_grad(op("Gemm", alpha=0.5, beta=2.0, transA=1, transB=1), [a, b, c])
    check_grad(op("Gemm"), [rand((1, 3), seed=22), rand((3, 2), seed=23), rand((2,), seed=24)])
    check_grad(op("MatMul"), [rand((2, 1, 3, 4), seed=25), rand((2, 4, 2), seed=26)])


# ---- indexing and shape ------------------------------------------------------------------------------

def test_indexing_gradients():
    x = rand((3, 4), seed=27)
    idx = np.array([[0, 2], [1, 1], [-1, 0]])
    check_grad(with_consts(op("GatherElements", axis=1), idx, at={1}), [x])
    check_grad(with_consts(op("Gather", axis=1), np.array([3, -4, 1, 1]), at={1}), [x])
    check_grad(with_consts(op("GatherND"), np.array([[0, 1], [2, -1], [0, 1]]), at={1}), [x])
    check_grad(with_consts(op("GatherND", batch_dims=1), np.array([[1], [0], [3]]), at={1}), [x])
    check_grad(with_consts(op("ScatterElements", axis=1), np.array([[1, 0], [2, 3], [0, 3]]), at={1}),
               [x, rand((3, 2), seed=28)])
    check_grad(with_consts(op("ScatterND"), np.array([[0], [2]]), at={1}), [x, rand((2, 4), seed=29)])
    check_grad(with_consts(op("Slice"), np.array([-1, 0]), np.array([-10, 4]), np.array([0, 1]),
                           np.array([-2, 3]), at={1, 2, 3, 4}), [x])
    check_grad(with_consts(op("TopK", axis=1), np.array([2]), at={1}), [x])
    check_grad(op("Split", axis=1, index=1, _n_outputs=2), [x])
    check_grad(with_consts(op("Trilu", upper=0), np.array(1), at={1}), [x])


def test_shape_gradients():
    x = rand((1, 2, 3), seed=30)
    check_grad(with_consts(op("Expand"), np.array([2, 1, 2, 3]), at={1}), [x])
    check_grad(with_consts(op("Tile"), np.array([2, 1, 3]), at={1}), [x])
    check_grad(with_consts(op("Reshape"), np.array([0, -1]), at={1}), [x])
    check_grad(op("Transpose", perm=[2, 0, 1]), [x])
    check_grad(op("Flatten", axis=2), [x])
    check_grad(op("Concat", axis=-1), [x, rand((1, 2, 1), seed=31)])
    check_grad(op("DepthToSpace", blocksize=2, mode="CRD"), [rand((1, 8, 2, 2), seed=32)])
    check_grad(op("SpaceToDepth", blocksize=2), [rand((1, 2, 4, 2), seed=33)])


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_gradient(mode):
    x = rand((1, 2, 3, 4), seed=34)
    check_grad(with_consts(op("Pad", mode=mode), np.array([0, 0, 2, 1, 0, 1, 1, 3]), np.array(0.5), at={1, 2}),
               [x])


def test_negative_pads_crop():
    check_grad(with_consts(op("Pad"), np.array([0, -1, 0, 2]), at={1}), [rand((2, 4), seed=35)])


# ---- convolution, pooling, resize ---------------------------------------------------------------------

def test_conv_family_gradients():
    check_grad(op("Conv", pads=[1, 0], strides=[2], dilations=[1]), [rand((1, 2, 7), seed=36),
                                                                     rand((3, 2, 3), seed=37), rand((3,), seed=38)])
    check_grad(op("Conv", auto_pad="SAME_LOWER", group=2), [rand((2, 4, 5, 4), seed=39), rand((2, 2, 2, 3), seed=40)])
    check_grad(op("Conv", pads=[1, 0, 0, 0, 1, 1], strides=[2, 1, 1], dilations=[1, 1, 2], group=2),
               [rand((1, 2, 4, 3, 4), seed=35), rand((2, 1, 2, 2, 2), seed=36), rand((2,), seed=37)])
    check_grad(op("ConvTranspose", strides=[2, 2], output_padding=[1, 0], group=2, pads=[1, 0, 0, 1]),
               [rand((1, 4, 3, 3), seed=41), rand((4, 1, 3, 2), seed=42), rand((2,), seed=43)])
    check_grad(op("ConvTranspose", strides=[2, 1, 2], dilations=[2, 1, 1], pads=[1, 0, 0, 0, 1, 1], group=2),
               [rand((1, 2, 3, 2, 2), seed=47), rand((2, 1, 2, 2, 3), seed=48), rand((2,), seed=49)])
    check_grad(op("ConvTranspose", strides=[2, 2], output_shape=[8, 7]),
               [rand((1, 2, 3, 3), seed=44), rand((2, 1, 2, 2), seed=45), rand((1,), seed=46)])


def test_pool_gradients():
    x = rand((1, 2, 5, 6), seed=47)
    check_grad(op("AveragePool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1), [x])
    check_grad(op("AveragePool", kernel_shape=[3, 2], strides=[2, 2], pads=[2, 0, 0, 1], count_include_pad=1,
                  ceil_mode=1), [x])
    check_grad(op("MaxPool", kernel_shape=[2, 2], dilations=[2, 1], strides=[1, 2]), [x])
    check_grad(op("MaxPool", kernel_shape=[3], strides=[2], pads=[1, 1]), [rand((2, 3, 7), seed=48)])
    check_grad(op("LpPool", kernel_shape=[2, 2], p=3), [rand((1, 2, 4, 4), seed=49, away_from=0, margin=0.2)])
    check_grad(op("GlobalLpPool", p=2), [x])
    check_grad(op("GlobalMaxPool"), [x])


@pytest.mark.parametrize("attrs", [dict(mode="linear"), dict(mode="cubic", exclude_outside=1),
                                   dict(mode="linear", coordinate_transformation_mode="align_corners"),
                                   dict(mode="nearest", nearest_mode="floor"),
                                   dict(mode="linear", antialias=1)])
def test_resize_gradient(attrs):
    scales = np.array([1.0, 1.0, 2.0, 0.5]) if attrs.get("antialias") else np.array([1.0, 1.0, 1.5, 2.0])
    check_grad(with_consts(op("Resize", opset=18, **attrs), np.zeros(0), scales, at={1, 2}),
               [rand((1, 2, 3, 4), seed=50)])


# ---- normalisation and softmax ---------------------------------------------------------------------------

def test_normalization_gradients():
    x = rand((2, 4, 3), seed=51)
    check_grad(op("InstanceNormalization"), [x, rand((4,), seed=52), rand((4,), seed=53)])
    check_grad(op("LayerNormalization", axis=1), [x, rand((4, 3), seed=54), rand((3,), seed=55)])
    check_grad(op("GroupNormalization", opset=21, num_groups=2), [x, rand((4,), seed=56), rand((4,), seed=57)])
    check_grad(op("RMSNormalization", opset=23), [x, rand((3,), seed=58)])
    check_grad(op("LRN", size=3, alpha=0.1, beta=0.75, bias=2.0), [rand((1, 4, 2, 2), seed=59)])
    check_grad(op("MeanVarianceNormalization", axes=[0, 2]), [x])
    check_grad(op("LpNormalization", axis=1, p=2), [x])
    check_grad(op("BatchNormalization", opset=15), [x, rand((4,), seed=60), rand((4,), seed=61),
                                                    rand((4,), seed=62), rand((4,), seed=63, low=0.5, high=1.5)])


def test_softmax_family_gradients():
    x = rand((2, 3, 4), seed=64)
    for opset in (11, 13):
        check_grad(op("Softmax", opset=opset, axis=1), [x])
        check_grad(op("LogSoftmax", opset=opset, axis=1), [x])
    labels = np.array([[1, 0, 3], [2, 2, 0]])
    check_grad(with_consts(op("SoftmaxCrossEntropyLoss", reduction="mean", ignore_index=0), labels, at={1}),
               [rand((2, 4, 3), seed=65)])


# ---- recurrent ----------------------------------------------------------------------------------------------

def _rnn_inputs(gates, hidden=3, features=2, steps=4, batch=2, dirs=1, seed=70):
    return [rand((steps, batch, features), seed=seed), rand((dirs, gates * hidden, features), seed=seed + 1),
            rand((dirs, gates * hidden, hidden), seed=seed + 2), rand((dirs, 2 * gates * hidden), seed=seed + 3)]


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_lstm_gradient_with_sequence_lengths(direction):
    dirs = 2 if direction == "bidirectional" else 1
    x, w, r, b = _rnn_inputs(4, dirs=dirs)
    lens = np.array([4, 2])
    fn = with_consts(op("LSTM", hidden_size=3, direction=direction), lens, at={4})
    check_grad(fn, [x, w, r, b])
    check_grad(with_consts(op("LSTM", index=1, hidden_size=3, direction=direction), lens, at={4}), [x, w, r, b])


def test_lstm_composed_step_gradients():
    x, w, r, b = _rnn_inputs(4, seed=80)
    h0, c0, p = rand((1, 2, 3), seed=84), rand((1, 2, 3), seed=85), rand((1, 9), seed=86)
    fn = with_consts(op("LSTM", hidden_size=3, clip=5.0, input_forget=1), np.array([4, 4]), at={4})
    check_grad(fn, [x, w, r, b, h0, c0, p])
    check_grad(op("LSTM", hidden_size=3, layout=1, activations=["HardSigmoid", "Softsign", "Tanh"]),
               [x.transpose(1, 0, 2), w, r, b])


@pytest.mark.parametrize("lbr", [0, 1])
def test_gru_gradients(lbr):
    x, w, r, b = _rnn_inputs(3, seed=90)
    check_grad(op("GRU", hidden_size=3, linear_before_reset=lbr), [x, w, r, b])
    check_grad(op("GRU", hidden_size=3, linear_before_reset=lbr, clip=0.8, direction="reverse"), [x, w, r, b])


def test_rnn_gradients():
    x, w, r, b = _rnn_inputs(1, seed=95)
    check_grad(op("RNN", hidden_size=3, activations=["Relu"]), [np.abs(x) + 0.1, w, r, b])
    check_grad(op("RNN", hidden_size=3, activations=["Affine"], activation_alpha=[0.5], activation_beta=[0.1]),
               [x, w, r, b])


def test_gemm_on_a_batch_of_one_and_rnn_initial_state():
    x, w, r, b = _rnn_inputs(1, batch=1, seed=99)
    check_grad(op("RNN", hidden_size=3), [x, w, r, b])
    check_grad(with_consts(op("RNN", hidden_size=3), np.array([4]), at={4}), [x, w, r, b, rand((1, 1, 3), seed=101)])


# ---- the CuPy backend ------------------------------------------------------------------------------

def _graph_model(nodes, inputs, outputs, inits=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=[numpy_helper.from_array(v, k)
                                                                          for k, v in inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


def _small_graphs():
    rng = np.random.default_rng(0)
    f32 = np.float32
    cnn = _graph_model(
        [helper.make_node("Conv", ["x", "W", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
         helper.make_node("Shape", ["p"], ["s"]), helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
         helper.make_node("Unsqueeze", ["n", "zero1"], ["n1"]), helper.make_node("Concat", ["n1", "minus1"], ["shp"],
                                                                                 axis=0),
         helper.make_node("Reshape", ["p", "shp"], ["f"]), helper.make_node("Gemm", ["f", "Wd", "bd"], ["y"], transB=1)],
        [_vi("x", ["N", 1, 4, 4])], [_vi("y", ["N", 3])],
        [("W", rng.normal(size=(2, 1, 3, 3)).astype(f32)), ("b", rng.normal(size=2).astype(f32)),
         ("zero", np.array(0, np.int64)), ("zero1", np.array([0], np.int64)), ("minus1", np.array([-1], np.int64)),
         ("Wd", rng.normal(size=(3, 8)).astype(f32)), ("bd", rng.normal(size=3).astype(f32))])
    lstm = _graph_model(
        [helper.make_node("LSTM", ["x", "W", "R", "B"], ["y", "h"], hidden_size=2, direction="bidirectional")],
        [_vi("x", [3, "N", 2])], [_vi("y", [3, 2, "N", 2]), _vi("h", [2, "N", 2])],
        [("W", rng.normal(size=(2, 8, 2)).astype(f32)), ("R", rng.normal(size=(2, 8, 2)).astype(f32)),
         ("B", rng.normal(size=(2, 16)).astype(f32))])
    resize = _graph_model(
        [helper.make_node("Resize", ["x", "", "sc"], ["u"], mode="linear"),
         helper.make_node("LayerNormalization", ["u", "g"], ["y"], axis=-1)],
        [_vi("x", ["N", 1, 2, 3])], [_vi("y", ["N", 1, 4, 6])],
        [("sc", np.array([1, 1, 2, 2], f32)), ("g", rng.normal(size=6).astype(f32))])
    feeds = {"cnn": [rng.normal(size=(2, 1, 4, 4)).astype(f32)], "lstm": [rng.normal(size=(3, 2, 2)).astype(f32)],
             "resize": [rng.normal(size=(2, 1, 2, 3)).astype(f32)]}
    return {"cnn": cnn, "lstm": lstm, "resize": resize}, feeds


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["cnn", "lstm", "resize"])
def test_graphs_on_cupy_match_numpy(name):
    import gpudl.onnx.backend as backend
    if not backend.supports_device("CUDA"):
        pytest.skip("CuPy backend unavailable: no CuPy package or no CUDA GPU here")
    models, feeds = _small_graphs()
    want = backend.prepare(models[name], "CPU").run(feeds[name])
    got = backend.prepare(models[name], "CUDA").run(feeds[name])
    for g, w in zip(got, want):
        assert isinstance(g, np.ndarray)
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
def test_gradients_on_cupy_match_numpy():
    if not gpudl.backend.cupy_available():
        pytest.skip("CuPy backend unavailable: no CuPy package or no CUDA GPU here")
    from gpudl.onnx._proto import graph_from_model
    models, feeds = _small_graphs()
    g = graph_from_model(models["cnn"])
    out = []
    for name in ("numpy", "cupy"):
        x = gpudl.Tensor(gpudl.backend.to_backend(feeds["cnn"][0], name), requires_grad=True)
        xp = gpudl.backend.get_array_module(x.data)
        y = g.run({"x": x}, xp=xp)["y"]
        (y * y).sum().backward()
        out.append(gpudl.to_numpy(x.grad))
    np.testing.assert_allclose(out[1], out[0], rtol=1e-4, atol=1e-5)


# ---- whole graphs from PyTorch: onnxruntime's outputs, PyTorch's gradients ---------------------------

def _torch_models():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    nn = torch.nn

    class Rows(nn.Module):  # batch-first recurrent stack on rows of an image, then a head
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(5, 4, num_layers=2, batch_first=True, bidirectional=True)
            self.gru = nn.GRU(8, 3, batch_first=True)
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            y, _ = self.lstm(x)
            y, h = self.gru(y)
            return self.fc(y[:, -1]) + h[0]

    class Net(nn.Module):  # conv, batchnorm, pooling, upsampling, a small attention block
        def __init__(self):
            super().__init__()
            self.c1, self.bn = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)
            self.c2 = nn.ConvTranspose2d(4, 2, 2, stride=2)
            self.att = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True,
                                                  activation="gelu")
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            x = torch.max_pool2d(torch.relu(self.bn(self.c1(x))), 2)
            x = nn.functional.interpolate(self.c2(x), scale_factor=0.5, mode="bilinear", align_corners=False)
            seq = x.flatten(2).transpose(1, 2)  # (N, 16, 2)
            seq = torch.cat([seq, seq.flip(1), seq * 2, seq - 1], dim=2)  # (N, 16, 8)
            return torch.log_softmax(self.fc(self.att(seq).mean(1)), dim=1)

    return torch, {"rows": (Rows(), (3, 6, 5)), "net": (Net(), (3, 1, 8, 8))}


def _export(torch, module, shape):
    module.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(*shape),), buf, dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, opset_version=17)
    return buf.getvalue()


@pytest.mark.torch
@pytest.mark.parametrize("name", ["rows", "net"])
def test_pytorch_graphs_match_onnxruntime_and_torch_gradients(name):
    ort = pytest.importorskip("onnxruntime")
    torch, models = _torch_models()
    module, shape = models[name]
    data = _export(torch, module, shape)
    from gpudl.onnx._proto import graph_from_model
    graph = graph_from_model(data)
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    (want,) = session.run(None, {"x": x})
    # every float initializer is fed as a Parameter, so gradients reach the weights
    params = {k: gpudl.Parameter(v.copy()) for k, v in graph.constants.items() if v.dtype == np.float32 and v.size > 1}
    xt = gpudl.Tensor(x, requires_grad=True)
    y = graph.run({"x": xt, **params})["y"]
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-4, atol=1e-5)
    weights = np.random.default_rng(2).normal(size=want.shape).astype(np.float32)
    (y * gpudl.Tensor(weights)).sum().backward()
    tx = torch.tensor(x, requires_grad=True)
    (module(tx) * torch.tensor(weights)).sum().backward()
    np.testing.assert_allclose(xt.grad, tx.grad.numpy(), rtol=1e-3, atol=1e-5)
    # the exporter names most initializers after the module's parameters; equal ones (zero
    # biases) it keeps once and shares through Identity nodes: their gradients add up
    named = dict(module.named_parameters())
    uses = {}
    for node in graph.nodes:
        for n in node.inputs:
            uses[n] = uses.get(n, 0) + (2 if node.op == "Identity" else 1)
    checked = 0
    for k, p in params.items():
        if k in named and uses.get(k) == 1 and named[k].grad is not None and named[k].grad.shape == p.shape:
            np.testing.assert_allclose(p.grad, named[k].grad.numpy(), rtol=1e-3, atol=1e-5, err_msg=k)
            checked += 1
    assert checked >= 2, f"only {checked} parameters matched by name: {sorted(params)[:8]}"
