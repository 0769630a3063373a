"""conv2d with dilation and groups, conv1d, conv_transpose2d, and pooling with "same" and
asymmetric pads: forward against float64 loop references and PyTorch, gradients against
central differences, on both backends, and the argument errors."""
from __future__ import annotations

import numpy as np
import pytest

import gpudl
from gpudl import functional as F
from tests.harness import check_grad, check_op, rand


def same_pads(n, k, s):
    """Keras/TensorFlow "SAME" along one axis: (before, after), the odd pixel after."""
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


# ---- float64 references, written from the definitions -------------------------------------

def conv2d_ref(x, W, b=None, stride=1, pads=(0, 0, 0, 0), dilation=1, groups=1):
    """y[n, o, i, j] = sum_{c,a,b} xpad[n, g*Cg + c, i*sh + a*dh, j*sw + b*dw] W[o, c, a, b] + b[o],
    g the group of output channel o."""
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    pt, pb, pl, pr = pads
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    f, cg, kh, kw = W.shape
    fg = f // groups
    ho = (xp.shape[2] - (kh - 1) * dh - 1) // sh + 1
    wo = (xp.shape[3] - (kw - 1) * dw - 1) // sw + 1
    y = np.zeros((x.shape[0], f, ho, wo))
    for i in range(ho):
        for j in range(wo):
            for g in range(groups):
                patch = xp[:, g * cg:(g + 1) * cg, i * sh:i * sh + (kh - 1) * dh + 1:dh,
                           j * sw:j * sw + (kw - 1) * dw + 1:dw]
                y[:, g * fg:(g + 1) * fg, i, j] = np.einsum("ncab,ocab->no", patch, W[g * fg:(g + 1) * fg])
    if b is not None:
        y += b[None, :, None, None]
    return y


def conv_transpose2d_ref(x, W, b=None, stride=1, pads=(0, 0, 0, 0), output_padding=0, dilation=1):
    """Every input pixel scatters x[n, :, i, j] @ W[:, :, a, c] to output (i*sh + a*dh, j*sw + c*dw)
    of the full output, which is then cropped by pads and extended by output_padding."""
    (sh, sw), (dh, dw), (oh, ow) = _pair(stride), _pair(dilation), _pair(output_padding)
    pt, pb, pl, pr = pads
    n, _, h, w = x.shape
    _, c_out, kh, kw = W.shape
    full_h, full_w = (h - 1) * sh + (kh - 1) * dh + 1, (w - 1) * sw + (kw - 1) * dw + 1
    big = np.zeros((n, c_out, full_h + oh, full_w + ow))
    for i in range(h):
        for j in range(w):
            for a in range(kh):
                for c in range(kw):
                    big[:, :, i * sh + a * dh, j * sw + c * dw] += x[:, :, i, j] @ W[:, :, a, c]
    ho, wo = full_h - pt - pb + oh, full_w - pl - pr + ow
    y = big[:, :, pt:pt + ho, pl:pl + wo]
    if b is not None:
        y = y + b[None, :, None, None]
    return y


def pool_ref(x, kernel, stride, pads, mode, count_include_pad=True):
    """Window max (pads -inf) or mean (pads 0; divided by kh*kw or by the real cells)."""
    (kh, kw), (sh, sw) = _pair(kernel), _pair(stride)
    pt, pb, pl, pr = pads
    widths = ((0, 0), (0, 0), (pt, pb), (pl, pr))
    xp = np.pad(x, widths, constant_values=-np.inf if mode == "max" else 0.0)
    real = np.pad(np.ones_like(x), widths)
    ho = (xp.shape[2] - kh) // sh + 1
    wo = (xp.shape[3] - kw) // sw + 1
    y = np.empty(x.shape[:2] + (ho, wo))
    for i in range(ho):
        for j in range(wo):
            win = (slice(None), slice(None), slice(i * sh, i * sh + kh), slice(j * sw, j * sw + kw))
            if mode == "max":
                y[:, :, i, j] = xp[win].max(axis=(2, 3))
            else:
                count = kh * kw if count_include_pad else real[win].sum(axis=(2, 3))
                y[:, :, i, j] = xp[win].sum(axis=(2, 3)) / count
    return y


def distinct(shape, seed=0):
    """Values in [-1, 1) at least 2/size apart: no max-pooling window has a tie."""
    n = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(n) / n * 2 - 1).reshape(shape)


# ---- conv2d: dilation and groups ------------------------------------------------------------

# (x shape, W shape, stride, padding, dilation, groups): batch 1 and 2, groups 1, 2 and
# depthwise, dilation with stride 1 and with stride > 1 (PyTorch allows both together)
CONV_CASES = [
    ((1, 2, 7, 6), (3, 2, 3, 2), 1, 0, (2, 3), 1),
    ((2, 4, 6, 7), (4, 2, 3, 3), 1, 1, 1, 2),
    ((1, 3, 6, 5), (6, 1, 2, 2), 2, "same", 1, 3),
    ((2, 4, 7, 7), (2, 2, 2, 3), (2, 1), "same", 2, 2),
    ((1, 2, 8, 6), (4, 1, 3, 2), (2, 3), (1, 2), (2, 2), 2),
    ((2, 2, 5, 6), (2, 2, 2, 2), 1, "valid", (1, 3), 1),
]


def _conv_pads(x_shape, w_shape, stride, padding, dilation):
    if padding == "same":
        (dh, dw), (sh, sw) = _pair(dilation), _pair(stride)
        return (same_pads(x_shape[2], (w_shape[2] - 1) * dh + 1, sh)
                + same_pads(x_shape[3], (w_shape[3] - 1) * dw + 1, sw))
    if padding == "valid":
        return (0, 0, 0, 0)
    ph, pw = _pair(padding)
    return (ph, ph, pw, pw)


@pytest.mark.stand_in_sample(2)
@pytest.mark.parametrize("x_shape,w_shape,stride,padding,dilation,groups", CONV_CASES)
def test_conv2d_dilation_groups(backend_name, x_shape, w_shape, stride, padding, dilation, groups):
    seed = CONV_CASES.index((x_shape, w_shape, stride, padding, dilation, groups))
    x, W, b = rand(x_shape, seed=seed), rand(w_shape, seed=seed + 10), rand((w_shape[0],), seed=seed + 20)
    pads = _conv_pads(x_shape, w_shape, stride, padding, dilation)
    check_op(lambda x, W, b: F.conv2d(x, W, b, stride, padding, dilation=dilation, groups=groups),
             lambda x, W, b: conv2d_ref(x, W, b, stride, pads, dilation, groups), [x, W, b])


def test_conv2d_grouped_fused_relu_and_no_bias(backend_name):
    x, W = rand((2, 4, 5, 5), seed=1), rand((4, 2, 3, 3), seed=2)
    b = rand((4,), seed=3)
    pre = conv2d_ref(x, W, b, 1, (1, 1, 1, 1), 2, 2)
    assert np.abs(pre).min() > 1e-3  # no pre-activation at the ReLU's kink
    check_op(lambda x, W, b: F.conv2d(x, W, b, padding=1, dilation=2, groups=2, activation="relu"),
             lambda x, W, b: np.maximum(conv2d_ref(x, W, b, 1, (1, 1, 1, 1), 2, 2), 0), [x, W, b])
    check_op(lambda x, W: F.conv2d(x, W, dilation=(1, 2), groups=2),
             lambda x, W: conv2d_ref(x, W, None, 1, (0, 0, 0, 0), (1, 2), 2), [x, W])


def test_same_padding_with_dilation_uses_the_dilated_span():
    # kernel 2 dilated by 3 spans 4: stride 1 pads 3 in total, 1 on top and 2 at the bottom
    x = rand((1, 1, 6, 5), seed=4)
    W = rand((1, 1, 2, 1), seed=5)
    y = F.conv2d(gpudl.Tensor(x), gpudl.Tensor(W), padding="same", dilation=(3, 1)).numpy()
    assert y.shape == (1, 1, 6, 5)
    np.testing.assert_allclose(y, conv2d_ref(x, W, None, 1, (1, 2, 0, 0), (3, 1)), rtol=1e-12)
    # and the output is ceil(H / stride) for every dilation
    for d in (1, 2, 3):
        assert F.conv2d(gpudl.Tensor(x), gpudl.Tensor(W), stride=2, padding="same", dilation=d).shape == \
            (1, 1, 3, 3)


def test_groups_are_independent_convolutions():
    """Grouped conv2d equals the per-group convolutions concatenated on the channel axis."""
    x, W = rand((2, 6, 5, 5), seed=6), rand((4, 3, 3, 3), seed=7)
    y = F.conv2d(gpudl.Tensor(x), gpudl.Tensor(W), groups=2).numpy()
    parts = [F.conv2d(gpudl.Tensor(x[:, 3 * g:3 * g + 3]), gpudl.Tensor(W[2 * g:2 * g + 2])).numpy()
             for g in range(2)]
    np.testing.assert_allclose(y, np.concatenate(parts, axis=1), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("kwargs,match", [
    (dict(x=(1, 6, 5, 5), W=(4, 2, 3, 3), groups=4), "expected groups to divide the 6 input channels, got groups=4"),
    (dict(x=(1, 6, 5, 5), W=(4, 2, 3, 3), groups=3), r"expected groups to divide the 4 output channels .*groups=3"),
    (dict(x=(1, 6, 5, 5), W=(4, 2, 3, 3), groups=2), r"expected W with 3 input channels per group .*\(4, 2, 3, 3\)"),
    (dict(x=(1, 6, 5, 5), W=(4, 3, 3, 3), groups=0), "expected groups a positive int, got 0"),
    (dict(x=(1, 6, 5, 5), W=(4, 3, 3, 3), groups=2.0), "expected groups a positive int, got 2.0"),
    (dict(x=(1, 2, 5, 5), W=(4, 2, 3, 3), dilation=0), "expected dilation a positive int or a pair"),
    (dict(x=(1, 2, 5, 5), W=(4, 2, 3, 3), dilation=(1, 2, 3)), "expected dilation a positive int or a pair"),
    (dict(x=(1, 2, 5, 5), W=(4, 2, 3, 3), dilation=3),
     r"kernel \(3, 3\) dilated by \(3, 3\) to \(7, 7\) is larger than the padded input \(5, 5\)"),
])
def test_conv2d_dilation_groups_errors(kwargs, match):
    x, W = np.zeros(kwargs.pop("x"), np.float32), np.zeros(kwargs.pop("W"), np.float32)
    with pytest.raises(ValueError, match=match):
        F.conv2d(x, W, **kwargs)


# ---- conv1d -------------------------------------------------------------------------------

def conv1d_ref(x, W, b, stride, pads, dilation, groups):
    return conv2d_ref(x[:, :, None], W[:, :, None], b, (1, stride), (0, 0) + tuple(pads), (1, dilation),
                      groups)[:, :, 0]


def _conv1d_pads(length, k, stride, padding, dilation):
    span = (k - 1) * dilation + 1
    if padding == "same":
        return same_pads(length, span, stride)
    if padding == "causal":
        return (span - 1, 0)
    if padding == "valid":
        return (0, 0)
    return (padding, padding)


CONV1D_CASES = [
    ((1, 2, 9), (3, 2, 3), 1, "causal", 2, 1),
    ((2, 4, 8), (4, 2, 2), 2, "same", 1, 2),
    ((1, 3, 7), (3, 1, 3), 1, "same", 3, 3),
    ((2, 2, 10), (2, 2, 4), 3, 1, 1, 1),
    ((2, 4, 6), (2, 2, 2), 1, "valid", 4, 2),
]


@pytest.mark.stand_in_sample(2)
@pytest.mark.parametrize("x_shape,w_shape,stride,padding,dilation,groups", CONV1D_CASES)
def test_conv1d(backend_name, x_shape, w_shape, stride, padding, dilation, groups):
    seed = CONV1D_CASES.index((x_shape, w_shape, stride, padding, dilation, groups))
    x, W, b = rand(x_shape, seed=seed), rand(w_shape, seed=seed + 10), rand((w_shape[0],), seed=seed + 20)
    pads = _conv1d_pads(x_shape[2], w_shape[2], stride, padding, dilation)
    check_op(lambda x, W, b: F.conv1d(x, W, b, stride, padding, dilation, groups),
             lambda x, W, b: conv1d_ref(x, W, b, stride, pads, dilation, groups), [x, W, b])


def test_conv1d_causal_output_never_sees_the_future():
    x, W = rand((1, 2, 10), seed=1), rand((3, 2, 3), seed=2)
    y = F.conv1d(gpudl.Tensor(x), gpudl.Tensor(W), padding="causal", dilation=2).numpy()
    assert y.shape == (1, 3, 10)
    later = x.copy()
    later[:, :, 6:] += 1.0
    y2 = F.conv1d(gpudl.Tensor(later), gpudl.Tensor(W), padding="causal", dilation=2).numpy()
    np.testing.assert_array_equal(y2[:, :, :6], y[:, :, :6])
    assert not np.allclose(y2[:, :, 6:], y[:, :, 6:])


def test_conv1d_fused_relu_and_one_tuples():
    x, W, b = rand((2, 2, 7), seed=3), rand((3, 2, 3), seed=4), rand((3,), seed=5)
    y = F.conv1d(gpudl.Tensor(x), W, b, stride=(2,), padding=(1,), dilation=(1,), activation="relu").numpy()
    np.testing.assert_allclose(y, np.maximum(conv1d_ref(x, W, b, 2, (1, 1), 1, 1), 0), rtol=1e-12)


@pytest.mark.parametrize("kwargs,match", [
    (dict(x=(2, 3, 8, 1), W=(4, 3, 3)), r"conv1d expected x of rank 3 \(N, C, L\), got shape \(2, 3, 8, 1\)"),
    (dict(x=(2, 3, 8), W=(4, 3, 3, 1)), r"conv1d expected W of rank 3 .*got shape \(4, 3, 3, 1\)"),
    (dict(x=(2, 3, 8), W=(4, 2, 3)), r"conv1d expected x with 2 channels on axis 1"),
    (dict(x=(2, 6, 8), W=(4, 2, 3), groups=4), "conv1d expected groups to divide the 6 input channels, got groups=4"),
    (dict(x=(2, 3, 8), W=(4, 3, 3), padding="full"),
     "conv1d expected padding a non-negative int, 'valid', 'same' or 'causal'"),
    (dict(x=(2, 3, 8), W=(4, 3, 3), padding=(1, 2)), "conv1d expected padding"),
    (dict(x=(2, 3, 8), W=(4, 3, 3), stride=(1, 1)), r"conv1d expected stride a positive int \(or a 1-tuple"),
    (dict(x=(2, 3, 8), W=(4, 3, 3), dilation=0), "conv1d expected dilation a positive int"),
    (dict(x=(2, 3, 4), W=(4, 3, 3), dilation=2),
     r"conv1d kernel 3 dilated by 2 to 5 is larger than the padded input 4"),
    (dict(x=(2, 3, 2), W=(4, 3, 3)), r"conv1d kernel 3 is larger than the padded input 2"),
])
def test_conv1d_errors(kwargs, match):
    x, W = np.zeros(kwargs.pop("x"), np.float32), np.zeros(kwargs.pop("W"), np.float32)
    with pytest.raises(ValueError, match=match):
        F.conv1d(x, W, **kwargs)


# ---- conv_transpose2d ---------------------------------------------------------------------

# (x shape, W shape (C_in, C_out, kh, kw), stride, padding, output_padding, dilation)
TRANSPOSE_CASES = [
    ((1, 2, 3, 3), (2, 3, 3, 3), 2, 1, 1, 1),
    ((2, 3, 3, 2), (3, 2, 2, 3), (2, 3), (0, 1), (1, 2), 1),
    ((1, 2, 3, 4), (2, 2, 3, 2), 1, 0, 0, (2, 3)),
    ((2, 2, 2, 3), (2, 1, 3, 3), (3, 2), (1, 2, 0, 1), (2, 0), 1),
    ((1, 1, 3, 3), (1, 2, 2, 2), 1, 1, 1, 2),    # output_padding below the dilation, stride 1
]


def _transpose_pads(padding):
    if isinstance(padding, int):
        return (padding,) * 4
    return tuple(padding) if len(padding) == 4 else (padding[0], padding[0], padding[1], padding[1])


@pytest.mark.stand_in_sample(2)
@pytest.mark.parametrize("x_shape,w_shape,stride,padding,output_padding,dilation", TRANSPOSE_CASES)
def test_conv_transpose2d(backend_name, x_shape, w_shape, stride, padding, output_padding, dilation):
    seed = TRANSPOSE_CASES.index((x_shape, w_shape, stride, padding, output_padding, dilation))
    x, W, b = rand(x_shape, seed=seed), rand(w_shape, seed=seed + 10), rand((w_shape[1],), seed=seed + 20)
    pads = _transpose_pads(padding)
    check_op(lambda x, W, b: F.conv_transpose2d(x, W, b, stride, padding, output_padding, dilation),
             lambda x, W, b: conv_transpose2d_ref(x, W, b, stride, pads, output_padding, dilation), [x, W, b])


def test_conv_transpose2d_no_bias_and_fused_relu(backend_name):
    x, W, b = rand((2, 2, 3, 3), seed=1), rand((2, 3, 2, 2), seed=2), rand((3,), seed=3)
    check_op(lambda x, W: F.conv_transpose2d(x, W, stride=2),
             lambda x, W: conv_transpose2d_ref(x, W, None, 2), [x, W])
    pre = conv_transpose2d_ref(x, W, b, 1, (0, 0, 0, 0), 0, 2)
    assert np.abs(pre).min() > 1e-3
    check_op(lambda x, W, b: F.conv_transpose2d(x, W, b, dilation=2, activation="relu"),
             lambda x, W, b: np.maximum(conv_transpose2d_ref(x, W, b, 1, (0, 0, 0, 0), 0, 2), 0), [x, W, b])


def test_conv_transpose2d_is_the_input_gradient_of_conv2d():
    """<conv2d(z, W), x> = <z, conv_transpose2d(x, W)> for every z: the two are adjoint."""
    rng = np.random.default_rng(0)
    W = rng.standard_normal((3, 2, 3, 2))
    for stride, padding, dilation in ((1, 0, 1), (2, 1, 1), ((2, 1), (1, 0), 1), (1, 1, 2)):
        x = rng.standard_normal((2, 3, 4, 5))
        y = F.conv_transpose2d(gpudl.Tensor(x), W, stride=stride, padding=padding, dilation=dilation).numpy()
        z = rng.standard_normal(y.shape)
        cz = F.conv2d(gpudl.Tensor(z), W, stride=stride, padding=padding, dilation=dilation).numpy()
        assert cz.shape == x.shape
        np.testing.assert_allclose((cz * x).sum(), (z * y).sum(), rtol=1e-10)


@pytest.mark.parametrize("kwargs,match", [
    (dict(x=(1, 2, 3, 3), W=(3, 2, 3, 3)), r"expected x with 3 channels on axis 1 .*\(in_ch, out_ch, kh, kw\)"),
    (dict(x=(1, 2, 3), W=(2, 2, 3, 3)), r"conv_transpose2d expected x of rank 4"),
    (dict(x=(1, 2, 3, 3), W=(2, 3, 3)), r"conv_transpose2d expected W of rank 4"),
    (dict(x=(1, 2, 3, 3), W=(2, 3, 3, 3), b=(2,)), r"expected b of shape \(3,\)"),
    (dict(x=(1, 2, 3, 3), W=(2, 3, 3, 3), stride=2, output_padding=2),
     r"expected output_padding smaller than the stride or the dilation, got output_padding \(2, 2\)"),
    (dict(x=(1, 2, 3, 3), W=(2, 3, 3, 3), output_padding=-1), "output_padding a non-negative int"),
    (dict(x=(1, 2, 3, 3), W=(2, 3, 3, 3), padding=(1, 2, 3)), "conv_transpose2d expected padding"),
    (dict(x=(1, 2, 1, 3), W=(2, 3, 1, 3), padding=1), r"padding 1 crops the whole \(1, 5\) output"),
])
def test_conv_transpose2d_errors(kwargs, match):
    x, W = np.zeros(kwargs.pop("x"), np.float32), np.zeros(kwargs.pop("W"), np.float32)
    b = kwargs.pop("b", None)
    with pytest.raises(ValueError, match=match):
        F.conv_transpose2d(x, W, None if b is None else np.zeros(b, np.float32), **kwargs)


# ---- pooling: "same", asymmetric pads, count_include_pad ------------------------------------

POOL_CASES = [  # (x shape, kernel, stride): odd and even sizes, strides 1, 2 and over the kernel
    ((1, 2, 5, 6), 3, 2),
    ((2, 1, 7, 4), (2, 3), (3, 1)),
    ((1, 3, 4, 4), 2, 1),
    ((2, 2, 6, 5), 3, 3),
]


@pytest.mark.parametrize("x_shape,kernel,stride", POOL_CASES)
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool_same(backend_name, x_shape, kernel, stride, mode):
    x = distinct(x_shape, seed=POOL_CASES.index((x_shape, kernel, stride)))
    (kh, kw), (sh, sw) = _pair(kernel), _pair(stride)
    pads = same_pads(x_shape[2], kh, sh) + same_pads(x_shape[3], kw, sw)
    if mode == "max":
        check_op(lambda x: F.max_pool2d(x, kernel, stride, "same"),
                 lambda x: pool_ref(x, kernel, stride, pads, "max"), [x])
    else:
        check_op(lambda x: F.avg_pool2d(x, kernel, stride, "same", count_include_pad=False),
                 lambda x: pool_ref(x, kernel, stride, pads, "avg", count_include_pad=False), [x])
    y = (F.max_pool2d if mode == "max" else F.avg_pool2d)(gpudl.Tensor(x), kernel, stride, "SAME")
    assert y.shape[2:] == (-(-x_shape[2] // sh), -(-x_shape[3] // sw))


@pytest.mark.stand_in_sample(2)
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("pads", [(1, 0, 0, 1), (0, 1, 1, 1), (1, 1, 0, 0)])
def test_pool_asymmetric_pads(backend_name, pads, count_include_pad):
    x = distinct((2, 2, 5, 4), seed=sum(pads))
    check_op(lambda x: F.avg_pool2d(x, (3, 2), (2, 1), pads, count_include_pad=count_include_pad),
             lambda x: pool_ref(x, (3, 2), (2, 1), pads, "avg", count_include_pad), [x])
    if count_include_pad:
        check_op(lambda x: F.max_pool2d(x, (3, 2), (2, 1), pads),
                 lambda x: pool_ref(x, (3, 2), (2, 1), pads, "max"), [x])


def test_avg_pool_count_rules_differ_only_at_the_border():
    x = gpudl.Tensor(np.ones((1, 1, 3, 3)))
    counted = F.avg_pool2d(x, 3, 1, 1).numpy()[0, 0]
    real = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False).numpy()[0, 0]
    np.testing.assert_allclose(real, np.ones((3, 3)), rtol=1e-12)  # a mean of ones is one
    np.testing.assert_allclose(counted, [[4 / 9, 6 / 9, 4 / 9], [6 / 9, 1, 6 / 9], [4 / 9, 6 / 9, 4 / 9]])
    same = F.avg_pool2d(x, 2, 2, "same", count_include_pad=False).numpy()[0, 0]
    np.testing.assert_allclose(same, np.ones((2, 2)), rtol=1e-12)
    # "valid" is no padding at all
    np.testing.assert_array_equal(F.max_pool2d(x, 2, 1, "valid").numpy(), F.max_pool2d(x, 2, 1).numpy())


def test_max_pool_same_never_picks_a_pad():
    x = gpudl.Tensor(-np.ones((1, 1, 3, 4)) * 7, requires_grad=True)
    y = F.max_pool2d(x, 2, 2, "same")
    np.testing.assert_array_equal(y.numpy(), -7 * np.ones((1, 1, 2, 2)))
    y.sum().backward()
    assert x.grad.sum() == 4


@pytest.mark.parametrize("op", [F.max_pool2d, F.avg_pool2d])
@pytest.mark.parametrize("padding,match", [
    ("full", r"expected padding a non-negative int, a pair of them, four \(top, bottom, left, right\), "
             r"'valid' or 'same', got 'full'"),
    ((2, 0, 0, 0), r"padding at most half the kernel \(1, 1\) for kernel_size \(2, 2\), got padding \(2, 0, 0, 0\)"),
    ((1, 0, -1, 0), "padding a non-negative int"),
])
def test_pool_padding_errors(op, padding, match):
    with pytest.raises(ValueError, match=match):
        op(np.zeros((1, 1, 4, 4), np.float32), 2, 2, padding)


# ---- PyTorch as a second oracle -------------------------------------------------------------

@pytest.mark.torch
@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 0, 2, 1), (2, 1, (1, 2), 2), (1, 2, 3, 4),
                                                            ((2, 1), (0, 1), 1, 4), (3, 1, 2, 2)])
def test_conv2d_matches_torch(stride, padding, dilation, groups):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 8, 12, 11)).astype(np.float32)
    W = (rng.standard_normal((4, 8 // groups, 3, 2)) * 0.3).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    _compare(lambda x, W, b: F.conv2d(x, W, b, stride, padding, dilation=dilation, groups=groups),
             lambda x, W, b: torch.nn.functional.conv2d(x, W, b, stride, padding, dilation, groups), [x, W, b])


@pytest.mark.torch
@pytest.mark.parametrize("stride,dilation", [(1, 2), (2, 1), (2, 3)])
def test_conv2d_same_matches_torch_on_the_keras_padded_input(stride, dilation):
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 9, 10)).astype(np.float32)
    W = (rng.standard_normal((6, 2, 2, 3)) * 0.3).astype(np.float32)
    (pt, pb), (pl, pr) = same_pads(9, 1 * dilation + 1, stride), same_pads(10, 2 * dilation + 1, stride)
    _compare(lambda x, W: F.conv2d(x, W, stride=stride, padding="same", dilation=dilation, groups=2),
             lambda x, W: tF.conv2d(tF.pad(x, (pl, pr, pt, pb)), W, None, stride, 0, dilation, 2), [x, W])


@pytest.mark.torch
@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 0, 1, 1), (2, 2, 2, 2), (1, "causal", 3, 1),
                                                            (3, "same", 1, 4), (1, "same", 2, 2)])
def test_conv1d_matches_torch(stride, padding, dilation, groups):
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 17)).astype(np.float32)
    W = (rng.standard_normal((8, 4 // groups, 3)) * 0.3).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    left, right = _conv1d_pads(17, 3, stride, padding, dilation)
    _compare(lambda x, W, b: F.conv1d(x, W, b, stride, padding, dilation, groups),
             lambda x, W, b: tF.conv1d(tF.pad(x, (left, right)), W, b, stride, 0, dilation, groups), [x, W, b])


@pytest.mark.torch
@pytest.mark.parametrize("stride,padding,output_padding,dilation", [(2, 1, 1, 1), ((2, 3), (0, 1), (1, 2), 1),
                                                                    (1, 0, 0, 2), (1, 1, 1, (2, 3)), (3, 2, 2, 1)])
def test_conv_transpose2d_matches_torch(stride, padding, output_padding, dilation):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 6, 5)).astype(np.float32)
    W = (rng.standard_normal((4, 5, 3, 2)) * 0.3).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    _compare(lambda x, W, b: F.conv_transpose2d(x, W, b, stride, padding, output_padding, dilation),
             lambda x, W, b: torch.nn.functional.conv_transpose2d(x, W, b, stride, padding, output_padding,
                                                                  1, dilation), [x, W, b])


@pytest.mark.torch
@pytest.mark.parametrize("kernel,stride", [(3, 2), ((2, 3), (3, 1)), (2, 1), (3, 3)])
def test_pool_same_matches_torch_on_the_padded_input(kernel, stride):
    """max: -inf pads, then PyTorch's max_pool2d; average: PyTorch's window sums of the
    zero-padded input over the window sums of the padded ones (the real-cell count)."""
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 4, 11, 10)).astype(np.float32)
    (kh, kw), (sh, sw) = _pair(kernel), _pair(stride)
    (pt, pb), (pl, pr) = same_pads(11, kh, sh), same_pads(10, kw, sw)

    def torch_avg(t):
        sums = tF.avg_pool2d(tF.pad(t, (pl, pr, pt, pb)), kernel, stride, divisor_override=1)
        counts = tF.avg_pool2d(tF.pad(torch.ones_like(t), (pl, pr, pt, pb)), kernel, stride, divisor_override=1)
        return sums / counts

    _compare(lambda t: F.max_pool2d(t, kernel, stride, "same"),
             lambda t: tF.max_pool2d(tF.pad(t, (pl, pr, pt, pb), value=-np.inf), kernel, stride), [x])
    _compare(lambda t: F.avg_pool2d(t, kernel, stride, "same", count_include_pad=False), torch_avg, [x])


@pytest.mark.torch
@pytest.mark.parametrize("kernel,stride,padding", [(3, 2, 1), ((2, 3), (1, 2), (1, 0)), (3, 1, 1)])
def test_avg_pool_count_include_pad_false_matches_torch(kernel, stride, padding):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    _compare(lambda t: F.avg_pool2d(t, kernel, stride, padding, count_include_pad=False),
             lambda t: torch.nn.functional.avg_pool2d(t, kernel, stride, padding, count_include_pad=False), [x])


def _compare(fn, tfn, arrays, seed=0):
    """Forward and every input's gradient (for one random upstream gradient) against PyTorch."""
    torch = pytest.importorskip("torch")
    ts = [gpudl.Tensor(a, requires_grad=True) for a in arrays]
    y = fn(*ts)
    gy = np.random.default_rng(seed).standard_normal(y.shape).astype(np.float32)
    y.backward(gy)
    tt = [torch.tensor(a, requires_grad=True) for a in arrays]
    ty = tfn(*tt)
    ty.backward(torch.from_numpy(gy))
    assert y.shape == tuple(ty.shape)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-4)
    for a, t in zip(ts, tt):
        np.testing.assert_allclose(a.grad, t.grad.numpy(), rtol=1e-4, atol=2e-4)


def test_conv_family_gradients_in_a_chain():
    """conv1d -> conv2d (dilated, grouped) -> conv_transpose2d -> same pooling, every
    weight checked numerically at once."""
    W1 = gpudl.Parameter(rand((4, 2, 3), seed=1), dtype=np.float64)
    W2 = gpudl.Parameter(rand((4, 2, 2, 2), seed=2), dtype=np.float64)
    W3 = gpudl.Parameter(rand((4, 2, 2, 2), seed=3), dtype=np.float64)

    def net(x):
        h = F.tanh(F.conv1d(x, W1, padding="causal", dilation=2))          # (N, 4, 6)
        h = h.reshape(h.shape[0], 4, 2, 3)
        h = F.tanh(F.conv2d(h, W2, padding="same", dilation=2, groups=2))  # (N, 4, 2, 3)
        h = F.conv_transpose2d(h, W3, stride=2, output_padding=1)         # (N, 2, 5, 7)
        return F.avg_pool2d(h, 3, 2, "same", count_include_pad=False)

    check_grad(net, [rand((2, 2, 6), seed=4)], params=[W1, W2, W3])
