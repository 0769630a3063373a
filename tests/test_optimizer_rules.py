"""Every update rule step by step (float64, several steps, with and without weight decay)
against a NumPy rule written out here, and against PyTorch's optimizer where the two rules
coincide; then apply_gradients, the argument checks and exact resume."""
import json

import numpy as np
import pytest

from gpudl import Parameter, Tensor, backend, optimizers
from gpudl.optimizers import schedules

RNG = np.random.default_rng(7)
W0 = RNG.standard_normal((3, 4))
GRADS = [RNG.standard_normal((3, 4)) for _ in range(6)]
WD = 0.05


def run(opt, grads=GRADS, w0=W0):
    p = Parameter(w0.copy(), dtype=np.float64)
    out = []
    for g in grads:
        p.grad = g.copy()
        opt.step([p])
        out.append(p.data.copy())
    return out


# ---- the rules, written out independently ---------------------------------------------
# ``lr`` is a float or a function of the 0-based step k (what Keras passes a schedule);
# weight decay is Keras 3's: w = w - w * wd * lr, before the rule.

def _lr(lr, k):
    return lr(k) if callable(lr) else lr


def _decay(w, lr, wd):
    return w - w * wd * lr if wd else w


def rule_sgd(lr, momentum=0.0, nesterov=False, wd=None):
    w, v, out = W0.copy(), np.zeros_like(W0), []
    for k, g in enumerate(GRADS):
        a = _lr(lr, k)
        w = _decay(w, a, wd)
        v = momentum * v - a * g
        w = w + (momentum * v - a * g if nesterov else v)
        out.append(w)
    return out


def rule_adagrad(lr, eps=1e-7, init=0.0, wd=None):
    w, s, out = W0.copy(), np.full_like(W0, init), []
    for k, g in enumerate(GRADS):
        a = _lr(lr, k)
        w = _decay(w, a, wd)
        s = s + g ** 2
        w = w - a * g / (np.sqrt(s) + eps)
        out.append(w)
    return out


def rule_rmsprop(lr, rho=0.9, eps=1e-7, momentum=0.0, centered=False, wd=None):
    w, s, mg, mom, out = W0.copy(), np.zeros_like(W0), np.zeros_like(W0), np.zeros_like(W0), []
    for k, g in enumerate(GRADS):
        a = _lr(lr, k)
        w = _decay(w, a, wd)
        s = rho * s + (1 - rho) * g ** 2
        if centered:
            mg = rho * mg + (1 - rho) * g
            denom = np.sqrt(s - mg ** 2) + eps
        else:
            denom = np.sqrt(s) + eps
        mom = momentum * mom + a * g / denom  # Keras: the rate inside the momentum
        w = w - mom
        out.append(w)
    return out


def rule_adam(lr, b1=0.9, b2=0.999, eps=1e-7, amsgrad=False, wd=None):
    w, m, v, vmax, out = W0.copy(), np.zeros_like(W0), np.zeros_like(W0), np.zeros_like(W0), []
    for k, g in enumerate(GRADS):
        t, a = k + 1, _lr(lr, k)
        w = _decay(w, a, wd)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        vmax = np.maximum(vmax, v)
        mh, vh = m / (1 - b1 ** t), (vmax if amsgrad else v) / (1 - b2 ** t)
        w = w - a * mh / (np.sqrt(vh) + eps)
        out.append(w)
    return out


def rule_nadam(lr, b1=0.9, b2=0.999, eps=1e-7, wd=None):
    """Keras 3's nadam.py: u_t = b1 (1 - 0.5 * 0.96**t), its running product, Keras's update forms."""
    w, m, v, out = W0.copy(), np.zeros_like(W0), np.zeros_like(W0), []
    u_product = 1.0
    for k, g in enumerate(GRADS):
        t, a = k + 1, _lr(lr, k)
        w = _decay(w, a, wd)
        u_t = b1 * (1.0 - 0.5 * 0.96 ** t)
        u_t1 = b1 * (1.0 - 0.5 * 0.96 ** (t + 1))
        u_product = u_product * u_t
        m = m + (g - m) * (1 - b1)
        v = v + (g ** 2 - v) * (1 - b2)
        m_hat = u_t1 * m / (1 - u_product * u_t1) + (1 - u_t) * g / (1 - u_product)
        v_hat = v / (1 - b2 ** t)
        w = w - m_hat * a / (np.sqrt(v_hat) + eps)
        out.append(w)
    return out


def rule_adadelta(lr=1.0, rho=0.95, eps=1e-7, wd=None):
    w, eg, ed, out = W0.copy(), np.zeros_like(W0), np.zeros_like(W0), []
    for k, g in enumerate(GRADS):
        a = _lr(lr, k)
        w = _decay(w, a, wd)
        eg = rho * eg + (1 - rho) * g ** 2
        delta = -np.sqrt(ed + eps) * g / np.sqrt(eg + eps)
        ed = rho * ed + (1 - rho) * delta ** 2
        w = w + a * delta
        out.append(w)
    return out


SCHED = schedules.ExponentialDecay(0.05, decay_steps=2, decay_rate=0.5)
O = optimizers
RULE_CASES = {
    "sgd": (lambda wd: O.SGD(0.1, weight_decay=wd), lambda wd: rule_sgd(0.1, wd=wd)),
    "sgd-momentum": (lambda wd: O.SGD(0.1, 0.9, weight_decay=wd), lambda wd: rule_sgd(0.1, 0.9, wd=wd)),
    "sgd-nesterov": (lambda wd: O.SGD(0.1, 0.9, True, weight_decay=wd), lambda wd: rule_sgd(0.1, 0.9, True, wd)),
    "adagrad": (lambda wd: O.Adagrad(0.5, weight_decay=wd), lambda wd: rule_adagrad(0.5, wd=wd)),
    "adagrad-init": (lambda wd: O.Adagrad(0.5, 1e-3, initial_accumulator_value=0.1, weight_decay=wd),
                     lambda wd: rule_adagrad(0.5, 1e-3, 0.1, wd)),
    "rmsprop": (lambda wd: O.RMSProp(0.01, 0.8, weight_decay=wd), lambda wd: rule_rmsprop(0.01, 0.8, wd=wd)),
    "rmsprop-momentum": (lambda wd: O.RMSprop(0.01, 0.8, momentum=0.9, weight_decay=wd),
                         lambda wd: rule_rmsprop(0.01, 0.8, momentum=0.9, wd=wd)),
    "rmsprop-centered": (lambda wd: O.RMSProp(0.01, 0.8, centered=True, weight_decay=wd),
                         lambda wd: rule_rmsprop(0.01, 0.8, centered=True, wd=wd)),
    "rmsprop-centered-momentum": (lambda wd: O.RMSProp(0.01, 0.8, 1e-6, momentum=0.5, centered=True, weight_decay=wd),
                                  lambda wd: rule_rmsprop(0.01, 0.8, 1e-6, 0.5, True, wd)),
    "adam": (lambda wd: O.Adam(0.01, weight_decay=wd), lambda wd: rule_adam(0.01, wd=wd)),
    "adam-amsgrad": (lambda wd: O.Adam(0.01, 0.8, 0.9, amsgrad=True, weight_decay=wd),
                     lambda wd: rule_adam(0.01, 0.8, 0.9, amsgrad=True, wd=wd)),
    "adamw": (lambda wd: O.AdamW(0.01, weight_decay=wd or 0.004), lambda wd: rule_adam(0.01, wd=wd or 0.004)),
    "adamw-amsgrad": (lambda wd: O.AdamW(0.01, wd or 0.004, amsgrad=True),
                      lambda wd: rule_adam(0.01, amsgrad=True, wd=wd or 0.004)),
    "nadam": (lambda wd: O.Nadam(0.01, weight_decay=wd), lambda wd: rule_nadam(0.01, wd=wd)),
    "nadam-betas": (lambda wd: O.Nadam(0.02, 0.8, 0.95, 1e-5, weight_decay=wd),
                    lambda wd: rule_nadam(0.02, 0.8, 0.95, 1e-5, wd)),
    "adadelta": (lambda wd: O.Adadelta(weight_decay=wd), lambda wd: rule_adadelta(wd=wd)),
    "adadelta-args": (lambda wd: O.Adadelta(0.5, 0.9, 1e-6, weight_decay=wd), lambda wd: rule_adadelta(0.5, 0.9, 1e-6, wd)),
    # a schedule: step k runs at SCHED(k - 1), the weight decay too
    "sgd-schedule": (lambda wd: O.SGD(SCHED, 0.9, weight_decay=wd), lambda wd: rule_sgd(SCHED, 0.9, wd=wd)),
    "adam-schedule": (lambda wd: O.Adam(SCHED, weight_decay=wd), lambda wd: rule_adam(SCHED, wd=wd)),
    "rmsprop-momentum-schedule": (lambda wd: O.RMSProp(SCHED, momentum=0.9, weight_decay=wd),
                                  lambda wd: rule_rmsprop(SCHED, momentum=0.9, wd=wd)),
    "nadam-schedule": (lambda wd: O.Nadam(SCHED, weight_decay=wd), lambda wd: rule_nadam(SCHED, wd=wd)),
    "adadelta-schedule": (lambda wd: O.Adadelta(SCHED, weight_decay=wd), lambda wd: rule_adadelta(SCHED, wd=wd)),
}


@pytest.mark.parametrize("wd", [None, WD], ids=["no-decay", "decay"])
@pytest.mark.parametrize("case", list(RULE_CASES))
def test_rule_step_by_step(case, wd):
    make, rule = RULE_CASES[case]
    got, want = run(make(wd)), rule(wd)
    assert len(got) == len(want) == len(GRADS)
    for k, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, err_msg=f"{case}, step {k + 1}")


def test_weight_decay_changes_every_rule():
    # the decayed and undecayed runs must differ, or the decay tests above prove nothing
    for case, (make, _) in RULE_CASES.items():
        if case.startswith("adamw"):
            continue
        assert not np.allclose(run(make(None))[-1], run(make(WD))[-1]), case


def test_weight_decay_skips_parameters_without_a_gradient():
    p, q = Parameter(W0.copy(), dtype=np.float64), Parameter(W0.copy(), dtype=np.float64)
    p.grad = GRADS[0].copy()
    optimizers.SGD(0.1, weight_decay=0.5).step([p, q])
    np.testing.assert_array_equal(q.data, W0)  # Keras drops variables without gradients first
    np.testing.assert_allclose(p.data, W0 - W0 * 0.5 * 0.1 - 0.1 * GRADS[0], rtol=1e-13)


def test_float32_rules_stay_float32():
    for case, (make, _) in RULE_CASES.items():
        p = Parameter(W0.astype(np.float32))
        for g in GRADS[:2]:
            p.grad = g.astype(np.float32)
            make(WD).step([p])
        assert p.data.dtype == np.float32, case


# ---- against PyTorch, where the rules are the same --------------------------------------
# Same rule: SGD (constant rate), Adagrad (eps outside the root, lr_decay=0), RMSprop (eps
# outside; momentum with a constant rate: PyTorch keeps lr out of the buffer, Keras in it),
# Adam/AdamW (eps on sqrt(v_hat), decoupled decay as w *= 1 - lr*wd), NAdam with
# momentum_decay=1 (Keras 3's 0.96**t), Adadelta. PyTorch's weight_decay is an L2 term added
# to the gradient except for AdamW and the decoupled_weight_decay options, so decay is
# compared only there.

def _torch_run(make, grads=GRADS, lrs=None):
    torch = pytest.importorskip("torch")
    # PyTorch keeps its step counters (and NAdam's mu product) in the default dtype: float64 here
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        p = torch.nn.Parameter(torch.tensor(W0.copy(), dtype=torch.float64))
        opt = make(torch.optim, [p])
        out = []
        for k, g in enumerate(grads):
            if lrs is not None:
                for group in opt.param_groups:
                    group["lr"] = lrs(k)
            p.grad = torch.tensor(g, dtype=torch.float64)
            opt.step()
            out.append(p.detach().numpy().copy())
    finally:
        torch.set_default_dtype(previous)
    return out


TORCH_CASES = {
    "sgd": (lambda: O.SGD(0.1), lambda t, ps: t.SGD(ps, lr=0.1, foreach=False)),
    "sgd-momentum": (lambda: O.SGD(0.1, 0.9), lambda t, ps: t.SGD(ps, lr=0.1, momentum=0.9, foreach=False)),
    "sgd-nesterov": (lambda: O.SGD(0.1, 0.9, nesterov=True),
                     lambda t, ps: t.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, foreach=False)),
    "adagrad": (lambda: O.Adagrad(0.5, 1e-7), lambda t, ps: t.Adagrad(ps, lr=0.5, eps=1e-7, foreach=False)),
    "adagrad-init": (lambda: O.Adagrad(0.5, 1e-3, initial_accumulator_value=0.1),
                     lambda t, ps: t.Adagrad(ps, lr=0.5, eps=1e-3, initial_accumulator_value=0.1, foreach=False)),
    "rmsprop": (lambda: O.RMSprop(0.01, 0.8, 1e-7),
                lambda t, ps: t.RMSprop(ps, lr=0.01, alpha=0.8, eps=1e-7, foreach=False)),
    "rmsprop-momentum": (lambda: O.RMSprop(0.01, 0.8, 1e-7, momentum=0.9),
                         lambda t, ps: t.RMSprop(ps, lr=0.01, alpha=0.8, eps=1e-7, momentum=0.9, foreach=False)),
    "rmsprop-centered": (lambda: O.RMSprop(0.01, 0.8, 1e-7, centered=True),
                         lambda t, ps: t.RMSprop(ps, lr=0.01, alpha=0.8, eps=1e-7, centered=True, foreach=False)),
    "rmsprop-centered-momentum": (
        lambda: O.RMSprop(0.01, 0.8, 1e-6, momentum=0.5, centered=True),
        lambda t, ps: t.RMSprop(ps, lr=0.01, alpha=0.8, eps=1e-6, momentum=0.5, centered=True, foreach=False)),
    "adam": (lambda: O.Adam(0.01, 0.9, 0.999, 1e-7),
             lambda t, ps: t.Adam(ps, lr=0.01, betas=(0.9, 0.999), eps=1e-7, foreach=False)),
    "adam-amsgrad": (lambda: O.Adam(0.01, 0.8, 0.9, 1e-7, amsgrad=True),
                     lambda t, ps: t.Adam(ps, lr=0.01, betas=(0.8, 0.9), eps=1e-7, amsgrad=True, foreach=False)),
    "adam-decoupled-decay": (
        lambda: O.Adam(0.01, weight_decay=WD),
        lambda t, ps: t.Adam(ps, lr=0.01, eps=1e-7, weight_decay=WD, decoupled_weight_decay=True, foreach=False)),
    "adamw": (lambda: O.AdamW(0.01, WD), lambda t, ps: t.AdamW(ps, lr=0.01, eps=1e-7, weight_decay=WD, foreach=False)),
    "adamw-amsgrad": (lambda: O.AdamW(0.01, WD, amsgrad=True),
                      lambda t, ps: t.AdamW(ps, lr=0.01, eps=1e-7, weight_decay=WD, amsgrad=True, foreach=False)),
    "nadam": (lambda: O.Nadam(0.01), lambda t, ps: t.NAdam(ps, lr=0.01, eps=1e-7, momentum_decay=1.0, foreach=False)),
    "nadam-decay": (lambda: O.Nadam(0.02, 0.8, 0.95, 1e-5, weight_decay=WD),
                    lambda t, ps: t.NAdam(ps, lr=0.02, betas=(0.8, 0.95), eps=1e-5, momentum_decay=1.0,
                                          weight_decay=WD, decoupled_weight_decay=True, foreach=False)),
    "adadelta": (lambda: O.Adadelta(1.0, 0.95, 1e-7),
                 lambda t, ps: t.Adadelta(ps, lr=1.0, rho=0.95, eps=1e-7, foreach=False)),
    "adadelta-args": (lambda: O.Adadelta(0.5, 0.9, 1e-6),
                      lambda t, ps: t.Adadelta(ps, lr=0.5, rho=0.9, eps=1e-6, foreach=False)),
}


@pytest.mark.torch
@pytest.mark.parametrize("case", list(TORCH_CASES))
def test_rule_matches_pytorch(case):
    ours, theirs = TORCH_CASES[case]
    want = _torch_run(theirs)
    for k, (a, b) in enumerate(zip(run(ours()), want)):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13, err_msg=f"{case}, step {k + 1}")


@pytest.mark.torch
def test_adamw_with_a_schedule_matches_pytorch_stepping_the_rate_by_hand():
    # the schedule's value at iterations (0-based, before the update) is the step's rate, decay included
    want = _torch_run(lambda t, ps: t.AdamW(ps, lr=SCHED(0), eps=1e-7, weight_decay=WD, foreach=False), lrs=SCHED)
    for a, b in zip(run(O.AdamW(SCHED, WD)), want):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


@pytest.mark.torch
def test_pytorch_nadam_default_momentum_decay_is_not_keras3():
    # PyTorch's (and Dozat's) 0.96**(0.004 t) differs from Keras 3's 0.96**t: the comparison above
    # sets momentum_decay=1 on purpose
    want = _torch_run(lambda t, ps: t.NAdam(ps, lr=0.01, eps=1e-7, foreach=False))
    assert not np.allclose(run(O.Nadam(0.01))[-1], want[-1], rtol=1e-6)


# ---- on each backend ---------------------------------------------------------------------

@pytest.mark.parametrize("case", ["sgd-nesterov", "adagrad-init", "rmsprop-centered-momentum", "adam-amsgrad",
                                  "adamw", "nadam", "adadelta", "adam-schedule"])
def test_rule_on_each_backend(backend_name, case):
    make, rule = RULE_CASES[case]
    opt = make(WD)
    p = Parameter(backend.to_backend(W0.copy(), backend_name), dtype=np.float64)
    for k, g in enumerate(GRADS):
        if k % 2:
            p.grad = backend.to_backend(g.copy(), backend_name)
            opt.step([p])
        else:
            opt.apply_gradients([(Tensor(backend.to_backend(g.copy(), backend_name), dtype=np.float64), p)])
    assert backend.backend_of(p.data) == backend_name
    np.testing.assert_allclose(backend.to_numpy(p.data), rule(WD)[-1], rtol=1e-12, atol=1e-14)


# ---- apply_gradients --------------------------------------------------------------------

@pytest.mark.parametrize("case", ["sgd-momentum", "rmsprop-centered", "adam-amsgrad", "nadam", "adadelta"])
def test_apply_gradients_is_step(case):
    make, _ = RULE_CASES[case]
    a, b = make(WD), make(WD)
    ps = [Parameter(W0.copy(), dtype=np.float64), Parameter(W0[0].copy(), dtype=np.float64)]
    qs = [Parameter(W0.copy(), dtype=np.float64), Parameter(W0[0].copy(), dtype=np.float64)]
    for k, g in enumerate(GRADS):
        grads = [g, g[1] * 0.5]
        for p, gi in zip(ps, grads):
            p.grad = gi.copy()
        a.step(ps)
        # arrays or Tensors, each counts as one step
        given = [Tensor(gi.copy(), dtype=np.float64) if k % 2 else gi.copy() for gi in grads]
        assert b.apply_gradients(zip(given, qs)) == k + 1
        assert a.iterations == b.iterations == k + 1
        for p, q in zip(ps, qs):
            np.testing.assert_array_equal(p.data, q.data)
            assert q.grad is None  # explicit gradients never land in .grad


def test_apply_gradients_skips_none_and_casts_dtype():
    p, q = Parameter(W0.astype(np.float32)), Parameter(W0.copy(), dtype=np.float64)
    opt = optimizers.SGD(0.1)
    opt.apply_gradients([(GRADS[0], p), (None, q)])  # a float64 gradient for a float32 parameter
    assert p.data.dtype == np.float32
    np.testing.assert_allclose(p.data, (W0 - 0.1 * GRADS[0]).astype(np.float32), rtol=1e-6)
    np.testing.assert_array_equal(q.data, W0)


def test_apply_gradients_with_nothing_is_a_no_op():
    opt = optimizers.Adam()
    assert opt.apply_gradients([]) == 0 and opt.iterations == 0


# ---- argument checks ---------------------------------------------------------------------

NAN = float("nan")


@pytest.mark.parametrize("make,exc,message", [
    (lambda: O.SGD(-0.1), ValueError, r"SGD expected learning_rate > 0.0, got -0.1"),
    (lambda: O.Adam(NAN), ValueError, r"Adam expected learning_rate > 0.0, got nan"),
    (lambda: O.Nadam("fast"), ValueError, r"Nadam expected learning_rate > 0.0, got 'fast'"),
    (lambda: O.SGD(0.1, weight_decay=-1e-4), ValueError, r"SGD expected weight_decay >= 0.0, got -0.0001"),
    (lambda: O.Adam(weight_decay=NAN), ValueError, r"Adam expected weight_decay >= 0.0, got nan"),
    (lambda: O.AdamW(weight_decay=None), ValueError, r"AdamW expected weight_decay >= 0.0, got None"),
    (lambda: O.AdamW(beta_2=1.0), ValueError, r"AdamW expected beta_2 in \[0, 1\), got 1.0"),
    (lambda: O.RMSProp(rho=1.0), ValueError, r"RMSProp expected rho in \[0, 1\), got 1.0"),
    (lambda: O.RMSprop(rho=-0.1), ValueError, r"RMSProp expected rho in \[0, 1\), got -0.1"),
    (lambda: O.RMSProp(momentum=1.2), ValueError, r"RMSProp expected momentum in \[0, 1\), got 1.2"),
    (lambda: O.RMSProp(centered="yes"), ValueError, r"RMSProp expected centered to be True or False, got 'yes'"),
    (lambda: O.Adadelta(rho=1.0), ValueError, r"Adadelta expected rho in \[0, 1\), got 1.0"),
    (lambda: O.Adadelta(rho=NAN), ValueError, r"Adadelta expected rho in \[0, 1\), got nan"),
    (lambda: O.Adadelta(epsilon=0.0), ValueError, r"Adadelta expected epsilon > 0.0, got 0.0"),
    (lambda: O.Adam(amsgrad=1), ValueError, r"Adam expected amsgrad to be True or False, got 1"),
    (lambda: O.Nadam(beta_1=1.5), ValueError, r"Nadam expected beta_1 in \[0, 1\), got 1.5"),
    (lambda: O.Adagrad(initial_accumulator_value=-0.1), ValueError,
     r"Adagrad expected initial_accumulator_value >= 0.0, got -0.1"),
    (lambda: O.Adam(learning_rate=lambda step: 0.1), ValueError, r"Adam expected learning_rate > 0.0, got <function"),
])
def test_bad_arguments(make, exc, message):
    with pytest.raises(exc, match=message):
        make()


def _params():
    return [Parameter(W0.copy(), dtype=np.float64), Parameter(W0[0].copy(), dtype=np.float64)]


class _OtherBackendArray:
    """Looks like a CuPy array to gpudl's backend checks (its module starts with 'cupy')."""
    __module__ = "cupy._stand_in"
    shape, dtype = W0.shape, np.dtype(np.float64)


@pytest.mark.parametrize("call,exc,message", [
    (lambda o, ps: o.apply([GRADS[0]], ps), ValueError,
     r"Adam.apply expected one gradient per parameter, got 1 gradients for 2 parameters"),
    (lambda o, ps: o.apply_gradients([(GRADS[0], ps[0], 1)]), ValueError,
     r"Adam.apply_gradients expected \(gradient, parameter\) pairs, got tuple of length 3 at position 0"),
    (lambda o, ps: o.apply_gradients([GRADS[0]]), ValueError,
     r"Adam.apply_gradients expected \(gradient, parameter\) pairs, got ndarray"),
    (lambda o, ps: o.apply_gradients(zip([GRADS[0], GRADS[0]], ps)), ValueError,
     r"Adam.apply: parameter 1 \(b\) expected a gradient of shape \(4,\), got shape \(3, 4\)"),
    (lambda o, ps: o.apply_gradients([(GRADS[0], W0)]), TypeError, r"Adam.apply expected Parameters, got ndarray"),
    (lambda o, ps: o.apply_gradients([(GRADS[0].tolist(), ps[0])]), TypeError,
     r"Adam.apply: parameter 0 \(w\) expected an array or Tensor gradient, got list"),
    (lambda o, ps: o.apply_gradients(zip([None, None], ps)), ValueError,
     r"Adam.apply expected a gradient for at least one parameter, got None for all 2"),
    (lambda o, ps: o.apply_gradients([(_OtherBackendArray(), ps[0])]), TypeError,
     r"Adam.apply: parameter 0 \(w\) is a numpy array, its gradient a cupy array; expected both on one backend"),
])
def test_bad_gradients_are_refused_before_any_change(call, exc, message):
    opt = optimizers.Adam(0.1, weight_decay=0.1)
    ps = _params()
    ps[0].name, ps[1].name = "w", "b"
    with pytest.raises(exc, match=message):
        call(opt, ps)
    assert opt.iterations == 0 and not opt._state
    np.testing.assert_array_equal(ps[0].data, W0)


def test_step_refuses_a_wrong_shaped_grad_before_any_change():
    ps = _params()
    ps[0].grad, ps[1].grad = GRADS[0].copy(), GRADS[0].copy()
    opt = optimizers.SGD(0.1)
    with pytest.raises(ValueError, match=r"SGD.step: parameter 1 expected a gradient of shape \(4,\), got shape \(3, 4\)"):
        opt.step(ps)
    assert opt.iterations == 0
    np.testing.assert_array_equal(ps[0].data, W0)


# ---- config and exact resume -------------------------------------------------------------

@pytest.mark.parametrize("case", list(RULE_CASES))
def test_config_round_trip_and_exact_resume(case):
    make, _ = RULE_CASES[case]
    a = make(WD)
    cfg = json.loads(json.dumps(a.get_config()))  # what a model file stores
    assert optimizers.from_config(type(a).__name__, cfg).get_config() == a.get_config()
    p = Parameter(W0.copy(), dtype=np.float64)
    for g in GRADS[:3]:
        p.grad = g.copy()
        a.step([p])
    # a fresh optimizer, rebuilt from the config and the checkpoint state, on a copy of the weights
    b = optimizers.from_config(type(a).__name__, cfg)
    q = Parameter(p.data.copy(), dtype=np.float64)
    b.set_state([q], a.get_state([p]), a.iterations)
    assert b.learning_rate == a.learning_rate
    for g in GRADS[3:]:
        p.grad = q.grad = g.copy()
        a.step([p])
        b.step([q])
        np.testing.assert_array_equal(p.data, q.data)


def test_state_slots_follow_the_options():
    def slots(opt):
        p = Parameter(W0.copy(), dtype=np.float64)
        p.grad = GRADS[0].copy()
        opt.step([p])
        return sorted(k.split("/")[0] for k in opt.get_state([p]))
    assert slots(O.Adam()) == ["m", "v"]
    assert slots(O.Adam(amsgrad=True)) == ["m", "v", "v_max"]
    assert slots(O.RMSProp()) == ["rms"]
    assert slots(O.RMSProp(momentum=0.9, centered=True)) == ["mean_grad", "momentum", "rms"]
    assert slots(O.Adadelta()) == ["accumulated_delta", "accumulated_grad"]
    assert slots(O.Nadam()) == ["m", "v"]
    assert slots(O.SGD(weight_decay=0.1)) == []  # the decay's work buffer is never saved


def test_rmsprop_alias_and_configs():
    assert optimizers.RMSprop is optimizers.RMSProp
    assert isinstance(optimizers.from_config("RMSprop", {"momentum": 0.5}), optimizers.RMSProp)
    cfg = optimizers.AdamW().get_config()
    assert cfg["weight_decay"] == 0.004 and cfg["learning_rate"] == 0.001 and cfg["amsgrad"] is False
    assert optimizers.Adagrad().get_config()["initial_accumulator_value"] == 0.0
    assert optimizers.Adadelta().get_config() == {
        "rho": 0.95, "epsilon": 1e-7, "learning_rate": 1.0, "weight_decay": None, "clipnorm": None,
        "clipvalue": None, "global_clipnorm": None}
