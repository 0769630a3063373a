"""Conv2D(dilation_rate, groups), Conv1D, Conv2DTranspose and pooling with padding="same":
shapes, the ops they compose, gradients, Keras' sizes, errors, and configs that rebuild them."""
from __future__ import annotations

import json

import numpy as np
import pytest

import gpudl
from gpudl import Tensor, layers
from gpudl import functional as F
from gpudl.layers.conv import Conv1D, Conv2D, Conv2DTranspose
from gpudl.layers.pooling import AveragePooling2D, AvgPool2D, MaxPool2D, MaxPooling2D
from tests.harness import check_grad, rand


def _f64(layer, x):
    layer(Tensor(x))  # build in float64 from the first input
    return layer


def _round_trip(layer):
    cfg = json.loads(json.dumps(layer.get_config()))
    again = layers.get_layer_class(type(layer).__name__).from_config(cfg)
    assert again.get_config() == layer.get_config()
    return again


def _copy_weights(src, dst, x):
    """Build both layers on x, then give dst src's weights."""
    src(x)
    dst(x)
    dst.set_weights(src.get_weights())


# ---- Conv2D ------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,out_hw,w_shape", [
    (dict(filters=6, dilation_rate=2), (3, 2), (6, 4, 3, 3)),
    (dict(filters=6, dilation_rate=(1, 2), padding="same"), (7, 6), (6, 4, 3, 3)),
    (dict(filters=6, groups=2, strides=2), (3, 2), (6, 2, 3, 3)),
    (dict(filters=8, groups=4, dilation_rate=(2, 1), padding="same"), (7, 6), (8, 1, 3, 3)),
])
def test_conv2d_dilation_and_groups(kwargs, out_hw, w_shape):
    x = rand((2, 4, 7, 6), seed=1)
    conv = _f64(layers.Conv2D(kernel_size=3, activation="tanh", **kwargs), x)
    assert conv.W.shape == w_shape
    y = conv(Tensor(x))
    assert y.shape == (2, w_shape[0]) + out_hw == conv.compute_output_shape(x.shape)
    want = F.tanh(F.conv2d(Tensor(x), conv.W, conv.b, conv.stride, conv.padding, dilation=conv.dilation_rate,
                           groups=conv.groups))
    np.testing.assert_allclose(y.numpy(), want.numpy(), rtol=1e-12)
    check_grad(conv, [x], params=conv.params())


def test_conv2d_grouped_relu_fused_equals_unfused():
    x = rand((1, 4, 6, 6), seed=2)
    fused = _f64(layers.Conv2D(4, 3, activation="relu", groups=2, dilation_rate=2, padding="same"), x)
    plain = layers.Conv2D(4, 3, groups=2, dilation_rate=2, padding="same")
    _copy_weights(fused, plain, Tensor(x))
    np.testing.assert_array_equal(fused(Tensor(x)).numpy(), F.relu(plain(Tensor(x))).numpy())


def test_conv2d_glorot_fans_of_a_grouped_kernel():
    conv = layers.Conv2D(16, 3, groups=4)
    conv(Tensor(np.zeros((1, 8, 5, 5), np.float32)))
    limit = np.sqrt(6.0 / (2 * 9 + 16 * 9))  # fan_in = in_ch / groups * kh * kw, as in Keras
    assert conv.W.shape == (16, 2, 3, 3)
    assert np.abs(conv.W.data).max() <= limit and np.abs(conv.W.data).max() > 0.9 * limit


def test_conv2d_config_round_trip_of_dilation_and_groups():
    conv = layers.Conv2D(6, (3, 2), padding="same", dilation_rate=(2, 3), groups=3, name="c")
    again = _round_trip(conv)
    assert again.dilation_rate == (2, 3) and again.groups == 3
    x = rand((2, 3, 7, 8), seed=3)
    _copy_weights(conv, again, Tensor(x))
    np.testing.assert_array_equal(again(Tensor(x)).numpy(), conv(Tensor(x)).numpy())
    assert layers.Conv2D(2, 3).get_config()["dilation_rate"] == [1, 1]


@pytest.mark.parametrize("kwargs,match", [
    (dict(groups=4), r"Conv2D 'c' expected groups to divide the 6 filters, got groups=4"),
    (dict(groups=0), r"Conv2D 'c' expected groups a positive int, got 0"),
    (dict(groups=1.5), r"Conv2D 'c' expected groups a positive int, got 1.5"),
    (dict(dilation_rate=0), r"Conv2D 'c' expected dilation_rate a positive int or a pair of them, got 0"),
    (dict(dilation_rate=(2, 2, 2)), r"Conv2D 'c' expected dilation_rate"),
    (dict(dilation_rate=2, strides=2),
     r"Conv2D 'c' got strides \(2, 2\) with dilation_rate \(2, 2\): strides > 1 together with dilation_rate > 1"),
    (dict(dilation_rate=(1, 2), stride=(2, 1)), r"strides \(2, 1\) with dilation_rate \(1, 2\)"),
])
def test_conv2d_dilation_groups_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        layers.Conv2D(6, 3, name="c", **kwargs)


def test_conv2d_groups_must_divide_the_input_channels():
    conv = layers.Conv2D(8, 3, groups=4, name="conv2d_1")
    with pytest.raises(ValueError, match=r"Conv2D 'conv2d_1' expected groups to divide the 6 input channels, "
                                         r"got groups=4"):
        conv(np.zeros((1, 6, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"Conv2D 'd' has kernel_size \(3, 3\) dilated by \(3, 3\) to \(7, 7\), "
                                         r"larger than its padded input \(5, 5\)"):
        layers.Conv2D(2, 3, dilation_rate=3, name="d")(np.zeros((1, 1, 5, 5), np.float32))


# ---- Conv1D ------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,length", [
    (dict(filters=6), 6), (dict(filters=6, padding="same", strides=2), 4),
    (dict(filters=6, padding="causal", dilation_rate=2), 8),
    (dict(filters=6, padding="same", dilation_rate=3, groups=2), 8), (dict(filters=6, padding=1, stride=3), 3),
    (dict(filters=8, padding="valid", dilation_rate=2, groups=4), 4),
])
def test_conv1d_shapes_and_gradients(kwargs, length):
    x = rand((2, 4, 8), seed=4)
    conv = _f64(Conv1D(kernel_size=3, activation="tanh", **kwargs), x)
    groups = kwargs.get("groups", 1)
    assert conv.W.shape == (conv.filters, 4 // groups, 3) and conv.b.shape == (conv.filters,)
    y = conv(Tensor(x))
    assert y.shape == (2, conv.filters, length) == conv.compute_output_shape(x.shape)
    want = F.tanh(F.conv1d(Tensor(x), conv.W, conv.b, conv.strides, conv.padding, conv.dilation_rate, groups))
    np.testing.assert_allclose(y.numpy(), want.numpy(), rtol=1e-12)
    check_grad(conv, [x], params=conv.params())


def test_conv1d_is_conv2d_on_a_one_row_image():
    x = rand((2, 3, 9), seed=5)
    conv = _f64(Conv1D(4, 3, strides=2, padding="same", use_bias=False), x)
    want = F.conv2d(Tensor(x[:, :, None]), conv.W.data[:, :, None], stride=(1, 2), padding="same").numpy()[:, :, 0]
    np.testing.assert_allclose(conv(Tensor(x)).numpy(), want, rtol=1e-12)


def test_conv1d_causal_padding_keeps_the_length_and_the_order():
    x = rand((1, 2, 10), seed=6)
    conv = _f64(Conv1D(3, 4, padding="causal", dilation_rate=2, activation="relu"), x)
    y = conv(Tensor(x)).numpy()
    assert y.shape == (1, 3, 10)
    future = x.copy()
    future[:, :, 7:] = 5.0
    np.testing.assert_array_equal(conv(Tensor(future)).numpy()[:, :, :7], y[:, :, :7])
    # output t reads inputs t - 6, t - 4, t - 2, t (zeros before the start)
    xpad = np.pad(x, ((0, 0), (0, 0), (6, 0)))
    t = 8
    want = np.einsum("ck,fck->f", xpad[0, :, t:t + 7:2], conv.W.data) + conv.b.data
    np.testing.assert_allclose(y[0, :, t], np.maximum(want, 0), rtol=1e-12)


def test_conv1d_config_round_trip():
    conv = Conv1D(4, 3, strides=2, padding="causal", dilation_rate=1, groups=2, activation="relu", use_bias=False,
                  kernel_initializer="he_normal", kernel_regularizer=gpudl.regularizers.L2(0.01), name="c1")
    again = _round_trip(conv)
    assert (again.strides, again.padding, again.groups, again.use_bias) == (2, "causal", 2, False)
    assert again.kernel_regularizer is not None
    dil = _round_trip(Conv1D(2, 2, padding="same", dilation_rate=3))
    assert dil.dilation_rate == 3 and dil.padding == "same"
    x = rand((2, 4, 7), seed=7)
    _copy_weights(conv, again, Tensor(x))
    np.testing.assert_array_equal(again(Tensor(x)).numpy(), conv(Tensor(x)).numpy())


@pytest.mark.parametrize("kwargs,match", [
    (dict(filters=0, kernel_size=3), "Conv1D expected a positive integer for filters"),
    (dict(filters=2, kernel_size=(3, 3)), r"Conv1D expected kernel_size a positive int \(or a 1-tuple"),
    (dict(filters=2, kernel_size=3, strides=0), "Conv1D expected strides a positive int"),
    (dict(filters=2, kernel_size=3, strides=2, stride=3), "Conv1D got stride=3 and strides=2, which disagree"),
    (dict(filters=2, kernel_size=3, padding="full"),
     "Conv1D expected padding a non-negative int, 'valid', 'same' or 'causal'"),
    (dict(filters=2, kernel_size=3, dilation_rate=0), r"Conv1D 'k' expected dilation_rate a positive int"),
    (dict(filters=2, kernel_size=3, dilation_rate=2, strides=2),
     r"Conv1D 'k' got strides \(2,\) with dilation_rate \(2,\)"),
    (dict(filters=3, kernel_size=3, groups=2), r"Conv1D 'k' expected groups to divide the 3 filters, got groups=2"),
])
def test_conv1d_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Conv1D(name="k", **kwargs)


def test_conv1d_input_errors():
    conv = Conv1D(4, 3, groups=2, name="k")
    with pytest.raises(ValueError, match=r"Conv1D 'k' expected input of rank 3, got shape \(2, 3, 8, 8\)"):
        conv(np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"Conv1D 'k' expected groups to divide the 3 input channels, got groups=2"):
        conv(np.zeros((2, 3, 8), np.float32))
    with pytest.raises(ValueError, match=r"Conv1D 'j' has kernel_size 3 dilated by 2 to 5, larger than its padded "
                                         r"input 4"):
        Conv1D(1, 3, dilation_rate=2, name="j")(np.zeros((1, 1, 4), np.float32))
    conv(np.zeros((2, 4, 8), np.float32))
    with pytest.raises(ValueError, match=r"Conv1D 'k' expected input with rank 3, axis 1 of size 4"):
        conv(np.zeros((2, 6, 8), np.float32))


# ---- Conv2DTranspose ---------------------------------------------------------------------

def keras_length(n, k, padding, output_padding, stride, dilation):
    """Keras' deconv_output_length, restated."""
    k = k + (k - 1) * (dilation - 1)
    if output_padding is None:
        return n * stride + max(k - stride, 0) if padding == "valid" else n * stride
    return (n - 1) * stride + k - 2 * (k // 2 if padding == "same" else 0) + output_padding


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("kernel,strides,output_padding,dilation", [
    (3, 2, None, 1), (2, 2, None, 1), (1, 3, None, 1), (3, 1, None, 2), ((3, 2), (2, 3), (1, 2), 1),
    (4, 2, 0, 1), (3, 3, (2, 0), 1), (2, 1, None, (2, 3)),
])
def test_conv2d_transpose_keras_sizes(padding, kernel, strides, output_padding, dilation):
    x = rand((2, 3, 4, 5), seed=8).astype(np.float32)
    layer = Conv2DTranspose(2, kernel, strides=strides, padding=padding, output_padding=output_padding,
                            dilation_rate=dilation)
    y = layer(Tensor(x))
    ks, ss, ds = (layer.kernel_size, layer.strides, layer.dilation_rate)
    ops = (None, None) if output_padding is None else layer.output_padding
    want = tuple(keras_length(n, k, padding, o, s, d) for n, k, o, s, d in zip((4, 5), ks, ops, ss, ds))
    assert y.shape == (2, 2) + want == layer.compute_output_shape(x.shape)
    assert layer.W.shape == (3, 2) + ks  # (in_ch, filters, kh, kw), as the functional op


def _tf_transpose_reference(x, W, b, strides, padding, out_hw, dilation):
    """The full transposed convolution (PyTorch, no padding), cropped as TensorFlow crops it for
    Keras: "same" takes total // 2 rows off the top, the rest off the bottom; rows past the full
    output are zeros (+ bias)."""
    torch = pytest.importorskip("torch")
    full = torch.nn.functional.conv_transpose2d(torch.tensor(x), torch.tensor(W), None, strides, 0, 0, 1,
                                                dilation).numpy()
    crops = []
    for axis, out in zip((2, 3), out_hw):
        total = max(full.shape[axis] - out, 0)
        crops.append(total // 2 if padding == "same" else 0)
    ext = np.zeros(full.shape[:2] + tuple(max(f, c + o) for f, c, o in zip(full.shape[2:], crops, out_hw)))
    ext[:, :, :full.shape[2], :full.shape[3]] = full
    return ext[:, :, crops[0]:crops[0] + out_hw[0], crops[1]:crops[1] + out_hw[1]] + b[None, :, None, None]


@pytest.mark.torch
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("kernel,strides,output_padding,dilation", [
    (3, 2, None, 1), (4, 2, None, 1), (2, 3, None, 1), ((3, 2), (2, 3), (1, 2), 1), (3, 1, None, 2),
    (5, 3, 2, 1),
])
def test_conv2d_transpose_matches_the_tensorflow_crop(padding, kernel, strides, output_padding, dilation):
    x = rand((2, 3, 4, 5), seed=9)
    layer = _f64(Conv2DTranspose(4, kernel, strides=strides, padding=padding, output_padding=output_padding,
                                 dilation_rate=dilation, bias_initializer="ones"), x)
    y = layer(Tensor(x)).numpy()
    want = _tf_transpose_reference(x, layer.W.data, layer.b.data, layer.strides, padding, y.shape[2:],
                                   layer.dilation_rate)
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kwargs", [dict(strides=2, padding="same"), dict(strides=(2, 1), output_padding=(1, 0)),
                                    dict(dilation_rate=2, activation="relu")])
def test_conv2d_transpose_gradients(kwargs):
    x = rand((1, 2, 3, 3), seed=10)
    layer = _f64(Conv2DTranspose(2, 2, **kwargs, bias_initializer="ones"), x)
    check_grad(layer, [x], params=layer.params())


def test_conv2d_transpose_inverts_a_strided_conv2d_shape():
    x = np.zeros((2, 3, 9, 8), np.float32)
    down = layers.Conv2D(4, 3, strides=2, padding="same")(x)
    up = Conv2DTranspose(3, 3, strides=2, padding="same")(down)
    assert down.shape == (2, 4, 5, 4) and up.shape == (2, 3, 10, 8)


def test_conv2d_transpose_config_round_trip():
    layer = Conv2DTranspose(3, (3, 2), strides=(2, 3), padding="same", output_padding=(1, 2), activation="relu",
                            use_bias=False, kernel_initializer="he_uniform",
                            bias_regularizer=gpudl.regularizers.L1(0.1), name="t")
    again = _round_trip(layer)
    assert again.output_padding == (1, 2) and again.strides == (2, 3) and again.padding == "same"
    dil = _round_trip(Conv2DTranspose(2, 3, dilation_rate=(2, 1)))
    assert dil.dilation_rate == (2, 1) and dil.output_padding is None
    x = rand((1, 2, 3, 3), seed=11).astype(np.float32)
    _copy_weights(layer, again, Tensor(x))
    np.testing.assert_array_equal(again(Tensor(x)).numpy(), layer(Tensor(x)).numpy())


@pytest.mark.parametrize("kwargs,match", [
    (dict(strides=2, output_padding=2), r"Conv2DTranspose 't' expected output_padding smaller than strides \(2, 2\), "
                                        r"got \(2, 2\)"),
    (dict(output_padding=1), r"expected output_padding smaller than strides \(1, 1\)"),
    (dict(output_padding=-1), "Conv2DTranspose 't' expected output_padding a non-negative int"),
    (dict(padding="causal"), "Conv2DTranspose 't' expected padding 'valid' or 'same', got 'causal'"),
    (dict(padding=1), "Conv2DTranspose 't' expected padding 'valid' or 'same', got 1"),
    (dict(strides=2, dilation_rate=2), r"Conv2DTranspose 't' got strides \(2, 2\) with dilation_rate \(2, 2\)"),
    (dict(dilation_rate=0), "Conv2DTranspose 't' expected dilation_rate a positive int"),
    (dict(strides=3, stride=2), "Conv2DTranspose got stride=2 and strides=3, which disagree"),
])
def test_conv2d_transpose_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Conv2DTranspose(2, 3, name="t", **kwargs)


def test_conv2d_transpose_input_errors():
    layer = Conv2DTranspose(2, 2, padding="same", output_padding=0, name="t")
    with pytest.raises(ValueError, match=r"Conv2DTranspose 't' would give an empty \(0, 2\) output for input shape "
                                         r"\(1, 1, 1, 3\)"):
        layer(np.zeros((1, 1, 1, 3), np.float32))
    with pytest.raises(ValueError, match=r"Conv2DTranspose 't' expected input of rank 4"):
        layer(np.zeros((1, 1, 3), np.float32))


# ---- pooling "same" ----------------------------------------------------------------------

@pytest.mark.parametrize("cls", [MaxPooling2D, AveragePooling2D])
@pytest.mark.parametrize("pool,strides,out_hw", [(2, None, (4, 3)), (3, 2, (4, 3)), ((2, 3), (3, 1), (3, 6)),
                                                 (3, 1, (7, 6))])
def test_pool_same_shapes_and_gradients(cls, pool, strides, out_hw):
    x = np.random.default_rng(0).permutation(2 * 3 * 7 * 6).reshape(2, 3, 7, 6) / 100.0
    layer = _f64(cls(pool, strides=strides, padding="same"), x)
    y = layer(Tensor(x))
    assert y.shape == (2, 3) + out_hw == layer.compute_output_shape(x.shape)
    stride = layer.stride
    if cls is MaxPooling2D:
        want = F.max_pool2d(Tensor(x), pool, stride, "same")
    else:
        want = F.avg_pool2d(Tensor(x), pool, stride, "same", count_include_pad=False)
    np.testing.assert_allclose(y.numpy(), want.numpy(), rtol=1e-12)
    check_grad(layer, [x])


def test_average_pooling_same_divides_by_the_real_cells():
    ones = np.ones((1, 1, 5, 5))
    np.testing.assert_allclose(AveragePooling2D(2, padding="same")(Tensor(ones)).numpy(), np.ones((1, 1, 3, 3)))
    # integer padding keeps counting the padded zeros
    padded = AveragePooling2D(2, padding=1)(Tensor(ones)).numpy()
    assert padded[0, 0, 0, 0] == 0.25


def test_pool_aliases_and_valid_padding():
    assert MaxPooling2D is MaxPool2D and AveragePooling2D is AvgPool2D
    x = Tensor(np.random.default_rng(1).standard_normal((1, 2, 5, 5)))
    np.testing.assert_array_equal(MaxPool2D(2, padding="valid")(x).numpy(), MaxPool2D(2)(x).numpy())
    assert MaxPool2D(2, padding="VALID").get_config()["padding"] == "valid"


@pytest.mark.parametrize("cls", [MaxPooling2D, AveragePooling2D])
def test_pool_same_config_round_trip(cls):
    layer = cls((3, 2), strides=(2, 1), padding="same", name="p")
    again = _round_trip(layer)
    assert again.padding == "same" and again.stride == (2, 1)
    x = Tensor(np.random.default_rng(2).standard_normal((1, 2, 5, 4)))
    np.testing.assert_array_equal(again(x).numpy(), layer(x).numpy())


@pytest.mark.parametrize("cls", [MaxPool2D, AvgPool2D])
def test_pool_padding_string_errors(cls):
    with pytest.raises(ValueError, match=rf"{cls.__name__} expected padding 'valid', 'same', a non-negative int or "
                                         rf"a pair of them, got 'full'"):
        cls(2, padding="full")


def test_a_model_of_the_new_layers_saves_and_loads(tmp_path):
    if not hasattr(gpudl, "Sequential"):
        pytest.skip("gpudl.Sequential not available")
    model = gpudl.Sequential([
        Conv2D(4, 3, padding="same", dilation_rate=2, groups=2, activation="relu"),
        MaxPooling2D(3, strides=2, padding="same"),
        Conv2DTranspose(2, 3, strides=2, padding="same", output_padding=1),
        AveragePooling2D(2, padding="same"),
    ], input_shape=(2, 7, 6))
    x = np.random.default_rng(3).standard_normal((2, 2, 7, 6)).astype(np.float32)
    y = model.predict(x)
    path = tmp_path / "family.gpudl"
    model.save(path)
    again = gpudl.load_model(path)
    np.testing.assert_allclose(again.predict(x), y, rtol=1e-6)
    seq = gpudl.Sequential([Conv1D(3, 3, padding="causal", dilation_rate=2, groups=1)], input_shape=(2, 9))
    seq.save(tmp_path / "c1.gpudl")
    x1 = np.random.default_rng(4).standard_normal((2, 2, 9)).astype(np.float32)
    np.testing.assert_allclose(gpudl.load_model(tmp_path / "c1.gpudl").predict(x1), seq.predict(x1), rtol=1e-6)
