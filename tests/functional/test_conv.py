"""conv2d: forward against a float64 loop reference and PyTorch, gradients against
central differences, shape and argument errors."""
from __future__ import annotations

import math

import numpy as np
import pytest

import gpudl
from gpudl import functional as F
from tests.harness import check_grad, check_op, rand


def same_pads(n, k, s):
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def conv2d_ref(x, W, b=None, stride=1, padding=0):
    """The definition: y[n, o, i, j] = sum_{c,a,b} xpad[n, c, i*sh + a, j*sw + b] W[o, c, a, b] + b[o]."""
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    kh, kw = W.shape[2:]
    if padding == "same":
        (pt, pb), (pl, pr) = same_pads(x.shape[2], kh, sh), same_pads(x.shape[3], kw, sw)
    elif padding == "valid":
        pt = pb = pl = pr = 0
    else:
        ph, pw = (padding, padding) if isinstance(padding, int) else padding
        pt, pb, pl, pr = ph, ph, pw, pw
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    ho = (xp.shape[2] - kh) // sh + 1
    wo = (xp.shape[3] - kw) // sw + 1
    y = np.zeros((x.shape[0], W.shape[0], ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            y[:, :, i, j] = np.einsum("ncab,ocab->no", patch, W)
    if b is not None:
        y += b[None, :, None, None]
    return y


# stride x padding x image size (odd, even, mixed) x kernel (square, non-square), with
# (batch, in_ch) alternating so both 1 and 4 images, 1 and 3 channels, are covered
GRID = [(s, p, hw, k) for s in (1, 2) for p in (0, 1, "same") for hw in ((5, 5), (6, 7))
        for k in ((3, 3), (2, 3))]


@pytest.mark.parametrize("stride,padding,hw,kernel", GRID)
@pytest.mark.parametrize("batch,in_ch", [(1, 3), (4, 1)])
def test_conv2d_forward_and_gradients(backend_name, stride, padding, hw, kernel, batch, in_ch):
    seed = 10 * GRID.index((stride, padding, hw, kernel)) + batch
    x = rand((batch, in_ch) + hw, seed=seed)
    W = rand((2, in_ch) + kernel, seed=seed + 1)
    b = rand((2,), seed=seed + 2)
    check_op(lambda x, W, b: F.conv2d(x, W, b, stride=stride, padding=padding),
             lambda x, W, b: conv2d_ref(x, W, b, stride, padding), [x, W, b])


@pytest.mark.parametrize("stride,padding", [((1, 2), (1, 0)), ((2, 1), "valid"), ((2, 3), "same"), (3, 2)])
def test_conv2d_pairs_and_no_bias(backend_name, stride, padding):
    x = rand((2, 2, 7, 8), seed=3)
    W = rand((3, 2, 3, 2), seed=4)
    check_op(lambda x, W: F.conv2d(x, W, stride=stride, padding=padding),
             lambda x, W: conv2d_ref(x, W, None, stride, padding), [x, W])


def test_conv2d_1x1_and_kernel_equal_to_input():
    x = rand((2, 3, 4, 4), seed=5)
    check_op(lambda x, W: F.conv2d(x, W), lambda x, W: conv2d_ref(x, W), [x, rand((4, 3, 1, 1), seed=6)])
    check_op(lambda x, W: F.conv2d(x, W), lambda x, W: conv2d_ref(x, W), [x, rand((2, 3, 4, 4), seed=7)])


def test_same_padding_puts_the_extra_pixel_bottom_right():
    # 6 wide, kernel 2, stride 1: total pad 1 goes right; 5 high, kernel 4, stride 2: out 3, pad 3 -> 1 top, 2 bottom
    x = rand((1, 1, 5, 6), seed=8)
    W = rand((1, 1, 4, 2), seed=9)
    y = F.conv2d(gpudl.Tensor(x), gpudl.Tensor(W), stride=(2, 1), padding="same").numpy()
    assert y.shape == (1, 1, 3, 6)
    want = conv2d_ref(np.pad(x, ((0, 0), (0, 0), (1, 2), (0, 1))), W, stride=(2, 1))
    np.testing.assert_allclose(y, want, rtol=1e-12)
    # same, stride 1: output size equals input size for every kernel
    for kh, kw in ((1, 1), (2, 2), (3, 4), (5, 5)):
        y = F.conv2d(gpudl.Tensor(x), gpudl.Tensor(rand((2, 1, kh, kw))), padding="SAME")
        assert y.shape == (1, 2, 5, 6)


def test_float32_stays_float32_and_matches_float64():
    x, W, b = rand((3, 4, 9, 9), seed=10), rand((5, 4, 3, 3), seed=11), rand((5,), seed=12)
    xt = gpudl.Tensor(x.astype(np.float32), requires_grad=True)
    Wt = gpudl.Parameter(W.astype(np.float32))
    bt = gpudl.Parameter(b.astype(np.float32))
    y = F.conv2d(xt, Wt, bt, stride=2, padding="same")
    assert y.dtype == np.float32
    (y * y).sum().backward()
    assert xt.grad.dtype == Wt.grad.dtype == bt.grad.dtype == np.float32
    x64 = gpudl.Tensor(x, requires_grad=True)
    W64, b64 = gpudl.Parameter(W, dtype=np.float64), gpudl.Parameter(b, dtype=np.float64)
    y64 = F.conv2d(x64, W64, b64, stride=2, padding="same")
    (y64 * y64).sum().backward()
    np.testing.assert_allclose(y.numpy(), y64.numpy(), rtol=1e-4, atol=1e-5)
    for g32, g64 in ((xt.grad, x64.grad), (Wt.grad, W64.grad), (bt.grad, b64.grad)):
        np.testing.assert_allclose(g32, g64, rtol=1e-3, atol=1e-4)


def test_input_without_grad_gets_none_and_weights_still_learn():
    x = gpudl.Tensor(rand((2, 1, 6, 6)))
    W = gpudl.Parameter(rand((2, 1, 3, 3)), dtype=np.float64)
    F.conv2d(x, W).sum().backward()
    assert x.grad is None
    want = np.stack([np.full((3, 3), 0.0)] * 2)
    for a in range(3):
        for c in range(3):
            want[:, a, c] = x.data[:, 0, a:a + 4, c:c + 4].sum()
    np.testing.assert_allclose(W.grad[:, 0], want, rtol=1e-12)


def test_weight_gradient_of_a_conv_layer_in_a_chain():
    # conv -> relu -> conv, every input and weight checked numerically at once
    x = rand((2, 2, 6, 6), seed=13)
    W1 = gpudl.Parameter(rand((3, 2, 3, 3), seed=14), dtype=np.float64)
    W2 = gpudl.Parameter(rand((2, 3, 2, 2), seed=15), dtype=np.float64)
    check_grad(lambda x: F.conv2d(F.tanh(F.conv2d(x, W1, padding=1)), W2, stride=2), [x], params=[W1, W2])


@pytest.mark.parametrize("kw", [dict(x=(2, 3, 8, 8), W=(4, 2, 3, 3)), dict(x=(2, 3, 8), W=(4, 3, 3, 3)),
                                dict(x=(2, 3, 8, 8), W=(4, 3, 3))])
def test_shape_errors_name_expected_and_received(kw):
    with pytest.raises(ValueError) as e:
        F.conv2d(np.zeros(kw["x"], np.float32), np.zeros(kw["W"], np.float32))
    msg = str(e.value)
    assert str(kw["x"]) in msg or str(kw["W"]) in msg


def test_channel_mismatch_message():
    with pytest.raises(ValueError, match=r"expected x with 2 channels on axis 1 .*got shape \(2, 3, 8, 8\)"):
        F.conv2d(np.zeros((2, 3, 8, 8), np.float32), np.zeros((4, 2, 3, 3), np.float32))


def test_kernel_larger_than_padded_input():
    with pytest.raises(ValueError, match=r"kernel \(5, 5\) is larger than the padded input \(4, 4\)"):
        F.conv2d(np.zeros((1, 1, 4, 4), np.float32), np.zeros((1, 1, 5, 5), np.float32))
    # padding makes it fit
    assert F.conv2d(np.zeros((1, 1, 4, 4), np.float32), np.zeros((1, 1, 5, 5), np.float32), padding=1).shape \
        == (1, 1, 2, 2)


def test_bias_shape_error():
    with pytest.raises(ValueError, match=r"expected b of shape \(4,\).*got \(3,\)"):
        F.conv2d(np.zeros((1, 2, 5, 5), np.float32), np.zeros((4, 2, 3, 3), np.float32), np.zeros(3, np.float32))


@pytest.mark.parametrize("stride", [0, -1, 1.5, (1, 2, 3), (0, 1), True, "2", None])
def test_bad_stride(stride):
    with pytest.raises(ValueError, match="stride"):
        F.conv2d(np.zeros((1, 1, 5, 5), np.float32), np.zeros((1, 1, 3, 3), np.float32), stride=stride)


@pytest.mark.parametrize("padding", [-1, "full", (1,), (1, -1), 1.0, None, (1, 2, 3)])
def test_bad_padding(padding):
    with pytest.raises(ValueError, match=r"padding a non-negative int, a pair of them, 'valid' or 'same'"):
        F.conv2d(np.zeros((1, 1, 5, 5), np.float32), np.zeros((1, 1, 3, 3), np.float32), padding=padding)


def test_integer_input_is_refused():
    with pytest.raises(TypeError, match="floating"):
        F.conv2d(np.zeros((1, 1, 5, 5), np.int64), np.zeros((1, 1, 3, 3), np.float32))


# ---- PyTorch as a second oracle ---------------------------------------------------------

@pytest.mark.torch
@pytest.mark.parametrize("stride,padding,kernel", [(1, 0, (3, 3)), (2, 1, (3, 3)), (1, "same", (3, 3)),
                                                   (2, "same", (4, 3)), ((1, 2), (2, 1), (5, 3)),
                                                   (3, "valid", (2, 2))])
def test_matches_torch(stride, padding, kernel):
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 13, 12)).astype(np.float32)
    W = (rng.standard_normal((8, 3) + kernel) * 0.3).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    gx, gW, gb = gpudl.Tensor(x, requires_grad=True), gpudl.Parameter(W), gpudl.Parameter(b)
    y = F.conv2d(gx, gW, gb, stride=stride, padding=padding)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    y.backward(gy)

    tx, tW, tb = (torch.tensor(a, requires_grad=True) for a in (x, W, b))
    s = (stride, stride) if isinstance(stride, int) else stride
    if padding == "same":  # torch's padding="same" is stride-1 only: pad as Keras does, then valid
        (pt, pb), (pl, pr) = same_pads(13, kernel[0], s[0]), same_pads(12, kernel[1], s[1])
        ty = tF.conv2d(tF.pad(tx, (pl, pr, pt, pb)), tW, tb, stride=s)
    else:
        ty = tF.conv2d(tx, tW, tb, stride=s, padding=0 if padding == "valid" else padding)
    ty.backward(torch.from_numpy(gy))
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gx.grad, tx.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gW.grad, tW.grad.numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(gb.grad, tb.grad.numpy(), rtol=1e-4, atol=1e-3)


def test_output_size_formula():
    from gpudl.functional.conv import conv_output_size
    for n in range(3, 12):
        for k in range(1, 4):
            for s in range(1, 4):
                assert conv_output_size(n, k, s, 0) == math.floor((n - k) / s) + 1


@pytest.mark.parametrize("shape,stride,padding", [((1, 1, 5, 5), 1, 0), ((2, 3, 6, 5), 2, "same"), ((3, 2, 4, 4), 1, 1)])
def test_fused_relu_equals_conv_then_relu(shape, stride, padding):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((4, shape[1], 3, 3)) * 0.5
    b = rng.standard_normal(4) * 0.1
    fused = F.conv2d(gpudl.Tensor(x), w, b, stride, padding, activation="relu").numpy()
    plain = F.relu(F.conv2d(gpudl.Tensor(x), w, b, stride, padding)).numpy()
    np.testing.assert_array_equal(fused, plain)
    # kinks: keep the pre-activations away from 0 by checking where they are not tiny
    pre = F.conv2d(gpudl.Tensor(x), w, b, stride, padding).numpy()
    if np.abs(pre).min() > 1e-3:
        check_grad(lambda a, ww, bb: F.conv2d(a, ww, bb, stride, padding, activation="relu"), [x, w, b])


def test_fused_relu_gradients_match_the_unfused_chain():
    rng = np.random.default_rng(4)
    x, w, b = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((5, 3, 3, 3)), rng.standard_normal(5)
    grads = []
    for fused in (True, False):
        ts = [gpudl.Tensor(a, requires_grad=True) for a in (x, w, b)]
        y = (F.conv2d(*ts, activation="relu") if fused else F.relu(F.conv2d(*ts)))
        (y * gpudl.Tensor(np.arange(y.size, dtype=np.float64).reshape(y.shape) % 7)).sum().backward()
        grads.append([t.grad for t in ts])
    for a, c in zip(*grads):
        np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-12)


def test_conv2d_rejects_other_fused_activations():
    with pytest.raises(ValueError, match="conv2d fuses activation None or 'relu', got 'tanh'"):
        F.conv2d(gpudl.Tensor(np.zeros((1, 1, 3, 3))), np.zeros((1, 1, 3, 3)), activation="tanh")
