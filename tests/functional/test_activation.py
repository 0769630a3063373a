import numpy as np
import pytest

from gpudl import functional as F
from gpudl import Tensor
from harness import check_grad, check_op, rand

SHAPES = [(1, 6), (4, 6), (3, 4, 2, 2)]


def _np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("shape", SHAPES)
def test_sigmoid(backend_name, shape):
    check_op(F.sigmoid, lambda x: 1 / (1 + np.exp(-x)), [rand(shape, 1, -4, 4)])


@pytest.mark.parametrize("shape", SHAPES)
def test_tanh(backend_name, shape):
    check_op(F.tanh, np.tanh, [rand(shape, 2, -3, 3)])


@pytest.mark.parametrize("shape", SHAPES)
def test_relu(backend_name, shape):
    check_op(F.relu, lambda x: np.maximum(x, 0), [rand(shape, 3, away_from=0.0)])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("alpha", [0.01, 0.2])
def test_leaky_relu(backend_name, shape, alpha):
    check_op(lambda x: F.leaky_relu(x, alpha), lambda x: np.where(x > 0, x, alpha * x),
             [rand(shape, 4, away_from=0.0)])


@pytest.mark.parametrize("shape", SHAPES)
def test_prelu_per_channel_and_shared(backend_name, shape):
    c = shape[1]
    alpha = np.linspace(0.1, 0.4, c)
    bshape = (1, c) + (1,) * (len(shape) - 2)
    check_op(F.prelu, lambda x, a: np.where(x > 0, x, a.reshape(bshape) * x),
             [rand(shape, 5, away_from=0.0), alpha])
    check_op(F.prelu, lambda x, a: np.where(x > 0, x, a * x), [rand(shape, 6, away_from=0.0), np.array(0.3)])


# 130 pieces: past what an int8 argmax holds (the GPU path keeps it as int32 then)
@pytest.mark.parametrize("shape,pieces", [((1, 6), 2), ((4, 6), 3), ((3, 4, 2, 2), 2), ((1, 260), 130)])
def test_maxout_groups_consecutive_channels(backend_name, shape, pieces):
    def ref(x):
        n, c = x.shape[:2]
        return x.reshape((n, c // pieces, pieces) + x.shape[2:]).max(axis=2)
    # distinct values: no ties, so the max is differentiable
    x = np.random.default_rng(7).permutation(int(np.prod(shape))).reshape(shape) / 10.0
    check_op(lambda t: F.maxout(t, pieces), ref, [x])


def test_maxout_tutorial_example():
    # the slides' picture: neurons (5, 7) and (-1, 1) grouped in pairs give 7 and 1
    y = F.maxout(Tensor(np.array([[5.0, 7.0, -1.0, 1.0]])), 2)
    assert y.numpy().tolist() == [[7.0, 1.0]]


@pytest.mark.parametrize("shape", SHAPES)
def test_softmax(backend_name, shape):
    check_op(F.softmax, _np_softmax, [rand(shape, 8, -3, 3)])
    check_op(lambda x: F.softmax(x, axis=1), lambda x: _np_softmax(x, 1), [rand(shape, 9, -3, 3)])


@pytest.mark.parametrize("shape", SHAPES)
def test_log_softmax(backend_name, shape):
    check_op(F.log_softmax, lambda x: np.log(_np_softmax(x)), [rand(shape, 10, -3, 3)])


def test_softmax_is_stable_for_huge_logits():
    y = F.softmax(Tensor(np.array([[1e4, 0.0, -1e4]], dtype=np.float32))).numpy()
    assert np.isfinite(y).all() and y[0, 0] == 1.0


@pytest.mark.parametrize("shape", [(1, 3), (5, 4), (2, 3, 4)])
def test_linear(backend_name, shape):
    n_in = shape[-1]
    check_op(lambda x, w, b: F.linear(x, w, b), lambda x, w, b: x @ w + b,
             [rand(shape, 1), rand((n_in, 2), 2), rand((2,), 3)])
    check_op(lambda x, w: F.linear(x, w), lambda x, w: x @ w, [rand(shape, 4), rand((n_in, 3), 5)])


@pytest.mark.parametrize("shape", [(1, 4), (3, 2, 2), (2, 3, 2, 2)])
def test_flatten(backend_name, shape):
    check_op(F.flatten, lambda x: x.reshape(x.shape[0], -1), [rand(shape, 1)])
