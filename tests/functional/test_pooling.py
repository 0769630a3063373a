"""max_pool2d / avg_pool2d: forward against float64 loop references and PyTorch,
gradients against central differences, argument errors."""
from __future__ import annotations

import numpy as np
import pytest

import gpudl
from gpudl import functional as F
from tests.harness import check_op


def distinct(shape, seed=0):
    """Values in [-1, 1) at least 2/size apart: no window has a tie, even after +-eps."""
    n = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(n) / n * 2 - 1).reshape(shape)


def _geom(kernel, stride, padding):
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    if stride is None:
        stride = (kh, kw)
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    return kh, kw, sh, sw, ph, pw


def pool_ref(x, kernel, stride=None, padding=0, mode="max"):
    kh, kw, sh, sw, ph, pw = _geom(kernel, stride, padding)
    fill = -np.inf if mode == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    ho = (xp.shape[2] - kh) // sh + 1
    wo = (xp.shape[3] - kw) // sw + 1
    y = np.empty(x.shape[:2] + (ho, wo))
    for i in range(ho):
        for j in range(wo):
            win = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            y[:, :, i, j] = win.max(axis=(2, 3)) if mode == "max" else win.sum(axis=(2, 3)) / (kh * kw)
    return y


GRID = [(k, s, p, hw) for k in (2, 3, (2, 3)) for s in (None, 1, 2) for p in (0, 1) for hw in ((5, 5), (6, 7))]


@pytest.mark.parametrize("kernel,stride,padding,hw", GRID)
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool_forward_and_gradients(backend_name, kernel, stride, padding, hw, mode):
    batch, ch = ((1, 3), (4, 1))[GRID.index((kernel, stride, padding, hw)) % 2]
    x = distinct((batch, ch) + hw, seed=GRID.index((kernel, stride, padding, hw)))
    op = F.max_pool2d if mode == "max" else F.avg_pool2d
    check_op(lambda x: op(x, kernel, stride, padding), lambda x: pool_ref(x, kernel, stride, padding, mode), [x])


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pair_arguments(backend_name, mode):
    op = F.max_pool2d if mode == "max" else F.avg_pool2d
    x = distinct((2, 2, 9, 8), seed=1)
    check_op(lambda x: op(x, (3, 2), (2, 1), (1, 0)), lambda x: pool_ref(x, (3, 2), (2, 1), (1, 0), mode), [x])


def test_default_stride_is_the_kernel_and_remainder_rows_are_dropped():
    x = gpudl.Tensor(distinct((1, 1, 7, 7), seed=2), requires_grad=True)
    y = F.max_pool2d(x, 2)
    assert y.shape == (1, 1, 3, 3)
    y.sum().backward()
    assert x.grad.shape == (1, 1, 7, 7)
    assert not x.grad[0, 0, 6].any() and not x.grad[0, 0, :, 6].any()
    assert x.grad.sum() == 9


def test_max_pool_gradient_goes_to_the_first_maximum_of_a_tie():
    x = gpudl.Tensor(np.zeros((1, 1, 2, 4)), requires_grad=True)  # all ties (e.g. after ReLU)
    F.max_pool2d(x, 2).sum().backward()
    np.testing.assert_array_equal(x.grad[0, 0], [[1, 0, 1, 0], [0, 0, 0, 0]])


def test_max_pool_padding_never_wins():
    x = gpudl.Tensor(-np.ones((1, 1, 3, 3)) * 5, requires_grad=True)
    y = F.max_pool2d(x, 3, stride=1, padding=1)
    np.testing.assert_array_equal(y.numpy(), -5 * np.ones((1, 1, 3, 3)))


def test_avg_pool_counts_padded_zeros():
    x = gpudl.Tensor(np.ones((1, 1, 2, 2)))
    y = F.avg_pool2d(x, 2, stride=1, padding=1).numpy()[0, 0]
    np.testing.assert_allclose(y, [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])


@pytest.mark.parametrize("op", [F.max_pool2d, F.avg_pool2d])
def test_float32_in_float32_out(op):
    x = gpudl.Tensor(distinct((2, 3, 8, 8)).astype(np.float32), requires_grad=True)
    y = op(x, 2)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


@pytest.mark.parametrize("op", [F.max_pool2d, F.avg_pool2d])
@pytest.mark.parametrize("args,match", [
    (((2, 3, 8), 2), r"rank 4 \(N, C, H, W\), got shape \(2, 3, 8\)"),
    (((1, 1, 4, 4), 0), "kernel_size a positive int"),
    (((1, 1, 4, 4), (2, 2, 2)), "kernel_size"),
    (((1, 1, 4, 4), 2, 0), "stride a positive int"),
    (((1, 1, 4, 4), 2, 2, -1), "padding a non-negative int"),
    (((1, 1, 4, 4), 2, 2, 2), r"padding at most half the kernel \(1, 1\)"),
    (((1, 1, 4, 4), 5), r"kernel_size \(5, 5\) is larger than the padded input \(4, 4\)"),
])
def test_argument_errors(op, args, match):
    shape, *rest = args
    with pytest.raises(ValueError, match=match):
        op(np.zeros(shape, np.float32), *rest)


@pytest.mark.torch
@pytest.mark.parametrize("kernel,stride,padding", [(2, None, 0), (3, 2, 1), ((2, 3), (1, 2), (1, 0)), (3, 1, 1),
                                                   (2, 2, 1)])
def test_matches_torch(kernel, stride, padding):
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5, 11, 10)).astype(np.float32)
    for op, top in ((F.max_pool2d, tF.max_pool2d), (F.avg_pool2d, tF.avg_pool2d)):
        gx = gpudl.Tensor(x, requires_grad=True)
        y = op(gx, kernel, stride, padding)
        gy = rng.standard_normal(y.shape).astype(np.float32)
        y.backward(gy)
        tx = torch.tensor(x, requires_grad=True)
        ty = top(tx, kernel, stride, padding)  # avg: count_include_pad=True is torch's default
        ty.backward(torch.from_numpy(gy))
        np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(gx.grad, tx.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_max_pool_nan_wins_and_takes_the_gradient():
    # the CUDA kernels' rule, on the compiled CPU loops too: the first NaN of a window wins
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    x[0, 0, 0, 0] = x[0, 0, 0, 1] = np.nan
    for kernel, stride, y_nan, g_first_row in ((2, 2, [[1, 0], [0, 0]], [1, 0, 0, 0]),
                                               (3, 1, [[1, 1], [0, 0]], [1, 1, 0, 0])):
        t = gpudl.Tensor(x, requires_grad=True)
        y = F.max_pool2d(t, kernel, stride)
        np.testing.assert_array_equal(np.isnan(y.numpy()[0, 0]), np.array(y_nan, dtype=bool))
        y.sum().backward()
        np.testing.assert_array_equal(t.grad[0, 0, 0], g_first_row)


def test_max_pool_float16_takes_the_numpy_passes_and_agrees():
    x = distinct((2, 3, 9, 8), seed=4)
    for kernel, stride, padding in ((2, None, 0), (3, 2, 1)):
        outs = []
        for dtype in (np.float16, np.float32):
            t = gpudl.Tensor(x.astype(dtype), requires_grad=True)
            y = F.max_pool2d(t, kernel, stride, padding)
            y.backward(np.ones(y.shape, dtype=dtype))
            assert y.dtype == dtype and t.grad.dtype == dtype
            outs.append((y.numpy().astype(np.float64), t.grad.astype(np.float64)))
        np.testing.assert_allclose(outs[0][0], outs[1][0], atol=1e-3)
        np.testing.assert_array_equal(outs[0][1], outs[1][1])


def test_max_pool_does_not_depend_on_the_thread_count(set_threads):
    rng = np.random.default_rng(3)
    x = np.round(rng.standard_normal((3, 4, 11, 10)), 1).astype(np.float32)  # ties on purpose
    gy = rng.standard_normal((3, 4, 11, 10)).astype(np.float32)
    outs = []
    for n in (1, 2, 3):
        set_threads(n)
        t = gpudl.Tensor(x, requires_grad=True)
        y = F.max_pool2d(t, 3, 1, 1)
        y.backward(gy)
        outs.append((y.numpy(), t.grad))
    for y, g in outs[1:]:
        np.testing.assert_array_equal(y, outs[0][0])
        np.testing.assert_array_equal(g, outs[0][1])
