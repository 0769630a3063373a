"""F.relu with Keras' arguments, F.prelu with any broadcasting alpha, F.dropout with
noise_shape and a given key: NumPy float64 references, float64 gradchecks, PyTorch, the
CuPy path against the NumPy path, and the argument errors."""
from __future__ import annotations

import importlib

import numpy as np
import pytest

import gpudl
from gpudl import Tensor
from gpudl import functional as F
from gpudl import random as grandom
from gpudl.functional import activation as A
from harness import check_grad, check_op

# the module, not the function that gpudl.functional re-exports under the same name
D = importlib.import_module("gpudl.functional.dropout")

SHAPES = [(1, 6), (4, 6), (3, 4, 2, 2)]


def _away(shape, seed, kinks, low=-3.0, high=3.0, margin=0.05):
    """Uniform data kept at least ``margin`` from every kink of a piecewise-linear function."""
    x = np.random.default_rng(seed).uniform(low, high, size=shape)
    for k in kinks:
        d = x - k
        x = np.where(np.abs(d) < margin, k + np.where(d < 0, -margin, margin), x)
    return x


def relu_ref(x, slope, top, thr):
    y = np.where(x >= thr, x, slope * (x - thr))
    return y if top is None else np.where(x >= top, top, y)


# (negative_slope, max_value, threshold)
RELU_ARGS = [(0.1, None, 0.0), (0.0, 6.0, 0.0), (0.0, 1.5, 0.0), (0.2, 2.0, 0.5), (0.0, None, -0.5),
             (0.3, 1.0, 1.0), (0.25, None, 0.7)]


def _kinks(top, thr):
    return [thr] + ([] if top is None else [top])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("slope,top,thr", RELU_ARGS)
def test_relu_with_keras_arguments(backend_name, shape, slope, top, thr):
    check_op(lambda x: F.relu(x, negative_slope=slope, max_value=top, threshold=thr),
             lambda x: relu_ref(x, slope, top, thr), [_away(shape, 1, _kinks(top, thr))])


def test_relu_dispatch_keeps_the_plain_path():
    x = Tensor(np.linspace(-1, 1, 6), requires_grad=True)
    assert type(F.relu(x).creator) is A.ReLU
    assert type(F.relu(x, 0.0, None, 0.0).creator) is A.ReLU
    assert type(F.relu(x, negative_slope=0.2).creator) is A.LeakyReLU
    assert type(F.relu(x, max_value=6).creator) is A.GeneralReLU
    assert type(F.relu(x, threshold=0.1).creator) is A.GeneralReLU
    # and the leaky shortcut is the formula exactly, also for a slope above 1
    v = np.linspace(-2, 2, 9)
    np.testing.assert_allclose(F.relu(Tensor(v), negative_slope=1.5).numpy(), relu_ref(v, 1.5, None, 0.0))


@pytest.mark.torch
@pytest.mark.parametrize("shape", [(1, 5), (3, 4), (2, 3, 2, 2)])
@pytest.mark.parametrize("slope,top,thr", [(0.0, 6.0, 0.0), (0.1, None, 0.0), (0.2, 2.0, 0.5), (0.0, None, -0.5)])
def test_relu_against_torch(shape, slope, top, thr):
    torch = pytest.importorskip("torch")
    x = _away(shape, 2, _kinks(top, thr), -4, 8)
    w = np.random.default_rng(3).standard_normal(shape)
    xt = torch.tensor(x, requires_grad=True)
    if slope == 0.0 and thr == 0.0:
        yt = torch.clamp(xt, 0.0, top)                           # ReLU6 and kin
    elif top is None and thr == 0.0:
        yt = torch.nn.functional.leaky_relu(xt, slope)
    else:  # Keras' formula: x above the threshold, slope * (x - threshold) below, capped
        yt = torch.where(xt >= thr, xt, slope * (xt - thr))
        if top is not None:
            yt = torch.clamp(yt, max=top)
    (yt * torch.tensor(w)).sum().backward()
    t = Tensor(x, requires_grad=True)
    y = F.relu(t, negative_slope=slope, max_value=top, threshold=thr)
    (y * Tensor(w)).sum().backward()
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(t.grad, xt.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_relu_argument_errors():
    x = Tensor(np.zeros(3))
    with pytest.raises(ValueError, match=r"^relu expected a non-negative negative_slope, got -0.1$"):
        F.relu(x, negative_slope=-0.1)
    with pytest.raises(ValueError, match=r"^relu expected max_value=None or a non-negative number, got -1$"):
        F.relu(x, max_value=-1)
    with pytest.raises(TypeError, match=r"^relu expected a number for threshold, got '0'$"):
        F.relu(x, threshold="0")
    with pytest.raises(TypeError, match=r"^relu expected a number for max_value, got True$"):
        F.relu(x, max_value=True)


# ---- prelu with any alpha that broadcasts ------------------------------------------------------

# (x shape, alpha shape, alpha's view against x for the reference)
PRELU_CASES = [
    ((2, 3, 4, 5), (3, 1, 1), (1, 3, 1, 1)),     # Keras shared_axes=[2, 3]: one per channel
    ((2, 3, 4, 5), (1, 4, 1), (1, 1, 4, 1)),
    ((2, 3, 4, 5), (4, 5), (1, 1, 4, 5)),
    ((2, 3, 4, 5), (3, 4, 5), (1, 3, 4, 5)),     # Keras' default: one per unit
    ((2, 3, 4, 5), (5,), (1, 1, 1, 5)),          # not the channel count: the last axis
    ((2, 3, 4, 5), (3,), (1, 3, 1, 1)),          # PyTorch's num_parameters=C
    ((1, 3, 4), (3, 1), (1, 3, 1)),
    ((1, 3, 4), (1, 4), (1, 1, 4)),
    ((3, 6), (6,), (1, 6)),
    ((3, 6), (1,), ()),
    ((4, 2, 2), (), ()),
]


@pytest.mark.parametrize("xs,alpha_shape,view", PRELU_CASES)
def test_prelu_broadcasts_alpha(backend_name, xs, alpha_shape, view):
    alpha = np.random.default_rng(1).uniform(0.05, 0.5, size=alpha_shape)
    check_op(F.prelu, lambda x, a: np.where(x > 0, x, a.reshape(view) * x),
             [_away(xs, 4, [0.0], -1, 1), alpha])


@pytest.mark.torch
@pytest.mark.parametrize("xs,alpha_shape,view", PRELU_CASES)
def test_prelu_against_torch(xs, alpha_shape, view):
    torch = pytest.importorskip("torch")
    x = _away(xs, 5, [0.0], -1, 1)
    a = np.random.default_rng(6).uniform(0.05, 0.5, size=alpha_shape)
    w = np.random.default_rng(7).standard_normal(xs)
    xt, at = torch.tensor(x, requires_grad=True), torch.tensor(a, requires_grad=True)
    if len(alpha_shape) == 1 and alpha_shape[0] in (1, xs[1]):
        yt = torch.nn.functional.prelu(xt, at)       # the shapes torch's prelu takes
    else:
        yt = torch.where(xt > 0, xt, at.reshape(view) * xt)
    (yt * torch.tensor(w)).sum().backward()
    t, p = Tensor(x, requires_grad=True), Tensor(a, requires_grad=True)
    y = F.prelu(t, p)
    (y * Tensor(w)).sum().backward()
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(t.grad, xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(p.grad, at.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert p.grad.shape == alpha_shape


@pytest.mark.parametrize("xs,alpha_shape", [((2, 3), (4,)), ((2, 3, 4), (2, 4)), ((2, 3, 4), (1, 3, 4, 1)),
                                            ((2, 3, 4), (3, 3))])
def test_prelu_refuses_alpha_that_does_not_broadcast(xs, alpha_shape):
    want = rf"^prelu expected alpha of shape \(\) or \({xs[1]},\) \(one per channel of axis 1\), or a shape " \
           rf"that broadcasts against the input's shape without the batch axis \({', '.join(map(str, xs[1:]))},?\), " \
           rf"for input shape \({', '.join(map(str, xs))}\), got alpha shape \({', '.join(map(str, alpha_shape))},?\)$"
    with pytest.raises(ValueError, match=want):
        F.prelu(Tensor(np.zeros(xs)), Tensor(np.zeros(alpha_shape)))


# ---- dropout: noise_shape and key ---------------------------------------------------------------

def _drop(shape, rate, key, dtype=np.float64, **kwargs):
    return F.dropout(Tensor(np.ones(shape, dtype=dtype)), rate, key=key, **kwargs).numpy()


def test_noise_shape_shares_the_mask_along_size_one_axes():
    y = _drop((64, 3, 50), 0.4, key=7, noise_shape=(None, 1, 50))
    assert set(np.unique(y)) <= {0.0, 1 / 0.6}
    np.testing.assert_array_equal(y, np.broadcast_to(y[:, :1, :], y.shape))
    assert abs((y[:, 0, :] != 0).mean() - 0.6) < 0.05
    assert not np.array_equal(y[0, 0], y[1, 0])             # a mask per sample
    shared = _drop((6, 4), 0.5, key=8, noise_shape=(1, 4))
    np.testing.assert_array_equal(shared, np.broadcast_to(shared[:1], shared.shape))


def test_noise_shape_mask_is_the_keep_mask_of_that_shape():
    x = np.random.default_rng(0).standard_normal((5, 3, 4))
    y = F.dropout(Tensor(x), 0.3, noise_shape=(None, 1, 4), key=123, sample_offset=2).numpy()
    keep = D.keep_mask((5, 1, 4), 123, 0.3, 2 * 4)
    np.testing.assert_array_equal(y, x * (keep * (1 / 0.7)))


def test_a_full_noise_shape_is_the_plain_mask():
    plain = _drop((4, 5), 0.5, key=99)
    np.testing.assert_array_equal(_drop((4, 5), 0.5, key=99, noise_shape=(None, None)), plain)
    np.testing.assert_array_equal(_drop((4, 5), 0.5, key=99, noise_shape=(4, 5)), plain)


def test_a_given_key_fixes_the_mask_and_draws_nothing():
    gpudl.set_seed(1)
    a = _drop((8, 8), 0.5, key=5)
    after = grandom.get_rng().random()
    gpudl.set_seed(1)
    b = _drop((8, 8), 0.5, key=5)
    assert grandom.get_rng().random() == after               # no host draw for the mask
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, _drop((8, 8), 0.5, key=6))
    # without a key, one draw from the shared generator, as before
    gpudl.set_seed(1)
    grandom.mask_key()
    drawn = grandom.get_rng().random()
    gpudl.set_seed(1)
    _drop((8, 8), 0.5, key=None)
    assert grandom.get_rng().random() == drawn != after


@pytest.mark.parametrize("noise_shape", [(None, 1, 3), (None, 2, 1)])
@pytest.mark.parametrize("start,stop", [(0, 2), (1, 4), (3, 5)])
def test_noise_shape_with_sample_offset_reproduces_a_slice(noise_shape, start, stop):
    full = _drop((5, 2, 3), 0.5, key=31, noise_shape=noise_shape)
    part = _drop((stop - start, 2, 3), 0.5, key=31, noise_shape=noise_shape, sample_offset=start)
    np.testing.assert_array_equal(part, full[start:stop])


def test_batch_axis_given_as_one_is_shared_by_every_share():
    full = _drop((4, 3), 0.5, key=12, noise_shape=(1, 3))
    part = _drop((2, 3), 0.5, key=12, noise_shape=(1, 3), sample_offset=2)
    np.testing.assert_array_equal(part, full[:2])


@pytest.mark.parametrize("shape,noise_shape", [((1, 4, 3), (None, 1, 3)), ((3, 4), (1, 4)),
                                               ((2, 3, 2, 2), (None, None, 1, 1))])
def test_noise_shape_gradient(backend_name, shape, noise_shape):
    check_grad(lambda x: F.dropout(x, 0.4, noise_shape=noise_shape, key=77),
               [np.random.default_rng(2).standard_normal(shape)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_noise_shape_backward_uses_the_forward_mask(dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3, 2)).astype(dtype)
    w = rng.standard_normal(x.shape).astype(dtype)
    m = _drop(x.shape, 0.3, 41, dtype, noise_shape=(None, 3, 1))
    xt = Tensor(x, requires_grad=True)
    y = F.dropout(xt, 0.3, noise_shape=(None, 3, 1), key=41)
    (y * Tensor(w)).sum().backward()
    assert y.dtype == dtype and xt.grad.dtype == dtype
    np.testing.assert_array_equal(y.numpy(), x * m)
    np.testing.assert_array_equal(xt.grad, w * m)


@pytest.mark.parametrize("noise_shape", [None, (None, 1, 3), (2, 1, 1)])
def test_gpu_path_draws_the_numpy_mask(backend_name, noise_shape):
    # the same key gives the same mask on both backends (the fused kernel for noise_shape=None)
    x = np.random.default_rng(4).standard_normal((2, 2, 3)).astype(np.float32)
    w = np.random.default_rng(5).standard_normal(x.shape).astype(np.float32)

    def run():
        xt = Tensor(x, requires_grad=True)
        y = F.dropout(xt, 0.5, noise_shape=noise_shape, key=2024, sample_offset=1)
        (y * Tensor(w)).sum().backward()
        return y.numpy(), gpudl.to_numpy(xt.grad)

    y, g = run()
    gpudl.set_backend("numpy")
    y_ref, g_ref = run()
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(g, g_ref)


def test_no_scaling_at_inference_with_noise_shape():
    x = Tensor(np.random.default_rng(6).standard_normal((3, 4)))
    assert F.dropout(x, 0.5, training=False, noise_shape=(None, 1), key=3) is x


@pytest.mark.parametrize("noise_shape", [(None, 3), (2, 2, 3), (None, 1, 2), (None, 0, 3), (None, 1.0, 3), 5])
def test_bad_noise_shape(noise_shape):
    with pytest.raises(ValueError, match=r"^dropout expected noise_shape with one entry per input axis \(3\), each "
                                         r"None, 1 or the input's size, got noise_shape .* for input shape "
                                         r"\(2, 4, 3\)$"):
        F.dropout(Tensor(np.ones((2, 4, 3))), 0.5, noise_shape=noise_shape)


@pytest.mark.parametrize("key", [-1, 2**64, 1.5, True, "7"])
def test_bad_key(key):
    with pytest.raises(ValueError, match=r"^dropout expected key=None or an integer in \[0, 2\*\*64\), got "):
        F.dropout(Tensor(np.ones((2, 3))), 0.5, key=key)
