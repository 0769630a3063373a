import numpy as np
import pytest

import gpudl
from gpudl import Tensor, no_grad
from gpudl.autograd import concatenate, stack
from gpudl.testing import gradcheck
from harness import GRAD, rand


SHAPES = [(1, 3), (4, 5), (2, 3, 4)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("op", [
    lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b, lambda a, b: a / (b * b + 1.0),
    lambda a, b: -a + 2.0 * b, lambda a, b: (a * a + 1.0) ** 1.5, lambda a, b: (a * b).exp(),
    lambda a, b: (a * a + 0.5).log(), lambda a, b: (a + 3.0) ** (b * 0.5),
])
def test_elementwise_gradients(op, shape):
    assert gradcheck(op, [rand(shape, 1), rand(shape, 2)], **GRAD)


def test_broadcast_gradients_reduce_to_input_shape():
    assert gradcheck(lambda a, b: a * b + b, [rand((4, 3), 1), rand((3,), 2)], **GRAD)
    assert gradcheck(lambda a, b: a / (b * b + 1.0), [rand((2, 1, 3), 3), rand((1, 4, 1), 4)], **GRAD)


@pytest.mark.parametrize("shapes", [((1, 3), (3, 2)), ((4, 5), (5, 6)), ((2, 3, 4), (4, 2)), ((3,), (3, 2))])
def test_matmul_gradients(shapes):
    assert gradcheck(lambda a, b: a @ b, [rand(shapes[0], 1), rand(shapes[1], 2)], **GRAD)


@pytest.mark.parametrize("axis", [None, 0, 1, (0, 2), -1])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions(axis, keepdims):
    x = rand((2, 3, 4), 5)
    assert gradcheck(lambda a: a.sum(axis, keepdims), [x], **GRAD)
    assert gradcheck(lambda a: a.mean(axis, keepdims), [x], **GRAD)
    assert gradcheck(lambda a: a.max(axis, keepdims), [x], **GRAD)


def test_shape_ops_and_indexing():
    x = rand((2, 3, 4), 6)
    assert gradcheck(lambda a: a.reshape(6, 4), [x], **GRAD)
    assert gradcheck(lambda a: a.transpose(2, 0, 1), [x], **GRAD)
    assert gradcheck(lambda a: a.T, [x], **GRAD)
    assert gradcheck(lambda a: a[:, 1:, ::2], [x], **GRAD)
    assert gradcheck(lambda a: a[np.array([0, 0, 1])], [x], **GRAD)  # repeated fancy index accumulates
    assert gradcheck(lambda a: a.abs(), [rand((3, 4), 7, away_from=0.0)], **GRAD)


def test_concatenate_and_stack():
    a, b = rand((2, 3), 1), rand((2, 2), 2)
    assert gradcheck(lambda p, q: concatenate([p, q], axis=1), [a, b], **GRAD)
    assert gradcheck(lambda p, q: stack([p, q * 2.0], axis=1), [a, rand((2, 3), 3)], **GRAD)


def test_gradient_accumulates_over_uses_and_calls():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True, dtype=np.float64)
    (x * x + x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + 1)
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + 1 + 3)


def test_diamond_graph_gradient_and_freed_intermediates():
    x = Tensor(np.array([0.5, -1.5]), requires_grad=True, dtype=np.float64)
    h = x * 2.0
    y = (h.exp() + h * h).sum()   # h used twice
    del h                          # intermediate no longer referenced by the user
    y.backward()
    np.testing.assert_allclose(x.grad, 2 * np.exp(2 * x.data) + 8 * x.data)


def test_no_grad_records_nothing():
    x = Tensor([1.0, 2.0], requires_grad=True)
    with no_grad():
        y = (x * 2.0).sum()
    assert y.creator is None and not y.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_float32_stays_float32_with_python_scalars():
    x = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    y = (x * 2.5 + 1.0) / 3.0 - 0.5
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_backward_needs_scalar_or_gradient():
    x = Tensor(np.ones((2, 2)), requires_grad=True)
    with pytest.raises(ValueError, match=r"needs a scalar output, got shape \(2, 2\)"):
        (x * 2.0).backward()
    (x * 2.0).backward(np.ones((2, 2)))
    np.testing.assert_allclose(x.grad, 2.0)


def test_deep_chain_has_no_recursion_limit():
    x = Tensor(np.ones(3), requires_grad=True, dtype=np.float64)
    y = x
    for _ in range(5000):
        y = y * 1.0
    y.sum().backward()
    np.testing.assert_allclose(x.grad, 1.0)


def test_gradcheck_catches_a_wrong_gradient():
    from gpudl.autograd import Function

    class Wrong(Function):
        def forward(self, a):
            return a * a

        def backward(self, g):
            return g * 3.0  # should be 2a

    with pytest.raises(gpudl.GradcheckError, match="gradcheck failed for input 0"):
        gradcheck(lambda a: Wrong()(a), [rand((3,), 1)])
