"""batch_norm / layer_norm: forward against NumPy float64 references, float64 gradchecks
(through the batch statistics), argument errors."""
from __future__ import annotations

import numpy as np
import pytest

import gpudl
from gpudl import functional as F
from tests.harness import check_op, rand


def _bshape(ndim, axis):
    return tuple(-1 if i == axis % ndim else 1 for i in range(ndim))


def bn_batch_ref(x, g, b, axis, eps=1e-3):
    red = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
    mu = x.mean(axis=red, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=red, keepdims=True)  # biased, as Keras' ops.moments
    y = (x - mu) / np.sqrt(var + eps)
    return y * g.reshape(_bshape(x.ndim, axis)) + b.reshape(_bshape(x.ndim, axis))


def bn_stats_ref(x, g, b, m, v, axis, eps=1e-3):
    s = _bshape(x.ndim, axis)
    return (x - m.reshape(s)) / np.sqrt(v.reshape(s) + eps) * g.reshape(s) + b.reshape(s)


def ln_ref(x, g, b, axes, eps=1e-3):
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    shape = tuple(x.shape[i] if i in axes else 1 for i in range(x.ndim))
    return (x - mu) / np.sqrt(var + eps) * g.reshape(shape) + b.reshape(shape)


CASES = [((5, 3), 1), ((3, 2, 3, 2), 1), ((2, 3, 4), -1)]


@pytest.mark.parametrize("shape,axis", CASES)
def test_batch_norm_batch_statistics(backend_name, shape, axis):
    c = shape[axis]
    x, g, b = rand(shape, 0, -2, 3), rand((c,), 1, 0.5, 1.5), rand((c,), 2)
    check_op(lambda x, g, b: F.batch_norm(x, g, b, axis=axis),
             lambda x, g, b: bn_batch_ref(x, g, b, axis), [x, g, b], atol=1e-4)


@pytest.mark.parametrize("shape,axis", CASES[:2])
def test_batch_norm_given_statistics(backend_name, shape, axis):
    c = shape[axis]
    x, g, b = rand(shape, 3), rand((c,), 4, 0.5, 1.5), rand((c,), 5)
    m, v = rand((c,), 6), rand((c,), 7, 0.2, 1.5)
    check_op(lambda x, g, b, m, v: F.batch_norm(x, g, b, m, v, axis=axis, epsilon=1e-2),
             lambda x, g, b, m, v: bn_stats_ref(x, g, b, m, v, axis, 1e-2), [x, g, b, m, v], atol=1e-4)


def test_batch_norm_without_scale_and_center(backend_name):
    x = rand((4, 3, 2), 8)
    one, zero = np.ones(3), np.zeros(3)
    check_op(lambda x: F.batch_norm(x, axis=1), lambda x: bn_batch_ref(x, one, zero, 1), [x], atol=1e-4)
    m, v = rand((3,), 9), rand((3,), 10, 0.5, 1.0)
    check_op(lambda x, m, v: F.batch_norm(x, None, None, m, v), lambda x, m, v: bn_stats_ref(x, one, zero, m, v, 1),
             [x, m, v], atol=1e-4)


def test_batch_norm_returns_biased_batch_statistics():
    x = rand((6, 2, 3), 11)
    y, mean, var = F.batch_norm(gpudl.Tensor(x, dtype=np.float64), axis=1, return_stats=True)
    np.testing.assert_allclose(mean.numpy(), x.mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(var.numpy(), x.var(axis=(0, 2), ddof=0), rtol=1e-12)
    assert not mean.requires_grad and not var.requires_grad


@pytest.mark.parametrize("shape,axes", [((3, 4), (1,)), ((2, 3, 4), (2,)), ((2, 3, 2), (1, 2))])
def test_layer_norm(backend_name, shape, axes):
    ps = tuple(shape[a] for a in axes)
    x, g, b = rand(shape, 12, -1, 2), rand(ps, 13, 0.5, 1.5), rand(ps, 14)
    axis = axes[0] if len(axes) == 1 else list(axes)
    check_op(lambda x, g, b: F.layer_norm(x, g, b, axis=axis), lambda x, g, b: ln_ref(x, g, b, axes),
             [x, g, b], atol=1e-4)


def test_argument_errors():
    x = gpudl.Tensor(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="axes in"):
        F.batch_norm(x, axis=2)
    with pytest.raises(ValueError, match="gamma with 3 elements"):
        F.batch_norm(x, np.ones(4))
    with pytest.raises(ValueError, match="both mean and var"):
        F.batch_norm(x, mean=np.zeros(3))
    with pytest.raises(ValueError, match="rank >= 2"):
        F.batch_norm(gpudl.Tensor(np.zeros(3)))
    with pytest.raises(TypeError, match="floating-point"):
        F.layer_norm(gpudl.Tensor(np.zeros((2, 3), dtype=np.int64)))
    with pytest.raises(ValueError, match="distinct"):
        F.layer_norm(x, axis=[1, -1])
