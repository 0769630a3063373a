import numpy as np
import pytest

import gpudl
from gpudl import Tensor
from gpudl import backend
from gpudl import functional as F
from harness import check_grad, check_op, rand


def _np_ce(x, t):
    z = x - x.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    if t.ndim == 1:
        return -logp[np.arange(len(t)), t].mean()
    return -(t * logp).sum(axis=1).mean()


@pytest.mark.parametrize("n,c", [(1, 3), (4, 5), (7, 10)])
def test_softmax_cross_entropy_integer_labels(backend_name, n, c):
    labels = np.random.default_rng(n).integers(0, c, size=n)
    # labels go where the logits are: gpudl refuses a host array beside device logits
    check_op(lambda x: F.softmax_cross_entropy(x, backend.to_backend(labels)), lambda x: _np_ce(x, labels), [rand((n, c), 1, -3, 3)])


@pytest.mark.parametrize("n,c", [(1, 3), (4, 5), (7, 10)])
def test_softmax_cross_entropy_one_hot_and_soft_labels(backend_name, n, c):
    onehot = np.eye(c)[np.random.default_rng(n).integers(0, c, size=n)]
    check_op(lambda x: F.softmax_cross_entropy(x, backend.to_backend(onehot)), lambda x: _np_ce(x, onehot), [rand((n, c), 2, -3, 3)])
    soft = np.random.default_rng(n + 1).dirichlet(np.ones(c), size=n)
    check_op(lambda x: F.softmax_cross_entropy(x, backend.to_backend(soft)), lambda x: _np_ce(x, soft), [rand((n, c), 3, -3, 3)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_finite_for_logits_of_1e4(dtype):
    x = Tensor(np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5e3]], dtype=dtype), requires_grad=True)
    loss = F.softmax_cross_entropy(x, np.array([1, 0]))
    loss.backward()
    assert np.isfinite(loss.item()) and np.isfinite(x.grad).all()
    np.testing.assert_allclose(loss.item(), (2e4 + 2e4) / 2, rtol=1e-6)
    assert loss.dtype == dtype


@pytest.mark.parametrize("shape", [(1, 3), (4, 2), (2, 3, 4)])
def test_mean_squared_error(backend_name, shape):
    check_op(F.mean_squared_error, lambda y, t: ((y - t) ** 2).mean(), [rand(shape, 1), rand(shape, 2)])


@pytest.mark.parametrize("n,c", [(1, 3), (4, 5), (6, 2)])
def test_categorical_crossentropy_on_probabilities(backend_name, n, c):
    labels = np.random.default_rng(c).integers(0, c, size=n)
    probs = np.random.default_rng(n).dirichlet(np.ones(c) * 3, size=n)
    check_op(lambda p: F.categorical_crossentropy(p, backend.to_backend(labels)),
             lambda p: -np.log(p[np.arange(n), labels]).mean(), [probs])


def test_label_errors_name_expected_and_received():
    x = Tensor(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"labels in \[0, 3\], got values in \[0, 4\]"):
        F.softmax_cross_entropy(x, np.array([0, 1, 4]))
    with pytest.raises(ValueError, match=r"expected 3 labels .* got 2"):
        F.softmax_cross_entropy(x, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"one-hot labels of shape \(3, 4\), got \(3, 5\)"):
        F.softmax_cross_entropy(x, np.zeros((3, 5)))
    with pytest.raises(TypeError, match="integer class ids"):
        F.softmax_cross_entropy(x, np.array([0.0, 1.0, 2.0]))
