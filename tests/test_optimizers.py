"""Each optimizer against its written rule (computed independently here), step by step."""
import math

import numpy as np
import pytest

import gpudl
from gpudl import Parameter, Tensor, optimizers

W0 = np.array([1.0, -2.0, 0.5])
GRADS = [np.array([0.3, -0.1, 0.2]), np.array([-0.2, 0.4, 0.1]), np.array([0.05, 0.05, -0.3])]


def run(opt):
    p = Parameter(W0.copy(), dtype=np.float64)
    out = []
    for g in GRADS:
        p.grad = g.copy()
        opt.step([p])
        out.append(p.data.copy())
    return out


def rule_sgd(lr, momentum=0.0, nesterov=False):
    w, v, out = W0.copy(), np.zeros(3), []
    for g in GRADS:
        v = momentum * v - lr * g
        w = w + (momentum * v - lr * g if nesterov else v)
        out.append(w.copy())
    return out


def rule_adagrad(lr, eps):
    w, s, out = W0.copy(), np.zeros(3), []
    for g in GRADS:
        s = s + g ** 2
        w = w - lr * g / (np.sqrt(s) + eps)
        out.append(w.copy())
    return out


def rule_rmsprop(lr, rho, eps):
    w, s, out = W0.copy(), np.zeros(3), []
    for g in GRADS:
        s = rho * s + (1 - rho) * g ** 2
        w = w - lr * g / (np.sqrt(s) + eps)
        out.append(w.copy())
    return out


def rule_adam(lr, b1, b2, eps):
    w, m, v, out = W0.copy(), np.zeros(3), np.zeros(3), []
    for t, g in enumerate(GRADS, 1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        mh, vh = m / (1 - b1 ** t), v / (1 - b2 ** t)
        w = w - lr * mh / (np.sqrt(vh) + eps)
        out.append(w.copy())
    return out


@pytest.mark.parametrize("opt,rule", [
    (lambda: optimizers.SGD(0.1), lambda: rule_sgd(0.1)),
    (lambda: optimizers.SGD(0.1, momentum=0.9), lambda: rule_sgd(0.1, 0.9)),
    (lambda: optimizers.SGD(0.1, momentum=0.9, nesterov=True), lambda: rule_sgd(0.1, 0.9, True)),
    (lambda: optimizers.Adagrad(0.5, epsilon=1e-7), lambda: rule_adagrad(0.5, 1e-7)),
    (lambda: optimizers.RMSProp(0.01, rho=0.8, epsilon=1e-7), lambda: rule_rmsprop(0.01, 0.8, 1e-7)),
    (lambda: optimizers.Adam(0.01, 0.9, 0.999, 1e-7), lambda: rule_adam(0.01, 0.9, 0.999, 1e-7)),
])
def test_update_rule_step_by_step(opt, rule):
    for got, want in zip(run(opt()), rule()):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("opt", [
    lambda: optimizers.SGD(0.05), lambda: optimizers.SGD(0.02, momentum=0.9),
    lambda: optimizers.SGD(0.02, momentum=0.9, nesterov=True), lambda: optimizers.Adagrad(0.5),
    lambda: optimizers.RMSProp(0.02), lambda: optimizers.Adam(0.05),
])
def test_drives_a_convex_loss_below_one_percent(opt):
    # least squares: ||A w - b||^2 / n, well conditioned
    rng = np.random.default_rng(0)
    A = rng.standard_normal((50, 5))
    b = A @ rng.standard_normal(5) + 3.0
    w = Parameter(np.zeros(5), dtype=np.float64)
    c = Parameter(np.zeros(1), dtype=np.float64)
    o = opt()

    def loss():
        r = Tensor(A) @ w + c - Tensor(b)
        return (r * r).mean()

    start = loss().item()
    for _ in range(3000):
        w.grad = c.grad = None
        l = loss()
        l.backward()
        o.step([w, c])
    assert loss().item() < 0.01 * start


def test_clipvalue_and_clipnorm():
    p = Parameter(np.zeros(2), dtype=np.float64)
    p.grad = np.array([3.0, -4.0])
    optimizers.SGD(1.0, clipvalue=0.5).step([p])
    np.testing.assert_allclose(p.data, [-0.5, 0.5])
    p.data[:] = 0
    p.grad = np.array([3.0, -4.0])  # norm 5 -> scaled to norm 1
    optimizers.SGD(1.0, clipnorm=1.0).step([p])
    np.testing.assert_allclose(p.data, [-0.6, 0.8])


def test_names_and_errors():
    assert isinstance(optimizers.get("adam"), optimizers.Adam)
    for name, cls in (("adamw", optimizers.AdamW), ("nadam", optimizers.Nadam), ("adadelta", optimizers.Adadelta),
                      ("RMSprop", optimizers.RMSProp)):
        assert type(optimizers.get(name)) is cls
    with pytest.raises(ValueError, match=r"unknown optimizer 'adamax': expected one of 'sgd', 'adagrad', "
                                         r"'rmsprop', 'adam', 'adamw', 'nadam', 'adadelta'"):
        optimizers.get("adamax")
    with pytest.raises(ValueError, match=r"SGD expected learning_rate > 0.0, got -1"):
        optimizers.SGD(-1)
    with pytest.raises(ValueError, match=r"momentum in \[0, 1\), got 1.5"):
        optimizers.SGD(0.1, momentum=1.5)


def test_state_round_trip():
    p = Parameter(W0.copy(), dtype=np.float64)
    o = optimizers.Adam(0.01)
    p.grad = GRADS[0].copy()
    o.step([p])
    state = o.get_state([p])
    o2 = optimizers.Adam(0.01)
    o2.set_state([p], state, o.iterations)
    q = Parameter(p.data.copy(), dtype=np.float64)
    o3 = optimizers.Adam(0.01)
    o3.set_state([q], state, o.iterations)
    p.grad = q.grad = GRADS[1].copy()
    o.step([p])
    o3.step([q])
    np.testing.assert_array_equal(p.data, q.data)
