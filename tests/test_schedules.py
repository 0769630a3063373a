"""Learning-rate schedules: Keras 3's formulas written out, step by step inside an optimizer,
and saved and restored (config, checkpoint state, model file) so training resumes exactly."""
import json
import math

import numpy as np
import pytest

import gpudl
from gpudl import Parameter, callbacks, layers, optimizers
from gpudl.optimizers import schedules

STEPS = [0, 1, 2, 3, 7, 10, 11, 50, 99, 100, 101, 250, 1000]


# ---- Keras 3's formulas (keras/src/optimizers/schedules/learning_rate_schedule.py) -------

def keras_exponential(step, lr0, decay_steps, rate, staircase):
    p = step / decay_steps
    return lr0 * rate ** (math.floor(p) if staircase else p)


def keras_piecewise(step, boundaries, values):
    if step <= boundaries[0]:
        return values[0]
    for i in range(1, len(boundaries)):
        if boundaries[i - 1] < step <= boundaries[i]:
            return values[i]
    return values[-1]


def keras_cosine(step, initial_learning_rate, decay_steps, alpha=0.0, warmup_target=None, warmup_steps=0):
    lr0 = initial_learning_rate
    def decayed(s, start):
        cosine = 0.5 * (1.0 + math.cos(math.pi * s / decay_steps))
        return start * ((1 - alpha) * cosine + alpha)
    if warmup_target is None:
        return decayed(min(step, decay_steps), lr0)
    s = min(step, decay_steps + warmup_steps)
    if s < warmup_steps:
        return (warmup_target - lr0) * (s / warmup_steps) + lr0
    return decayed(s - warmup_steps, warmup_target)


@pytest.mark.parametrize("staircase", [False, True])
def test_exponential_decay(staircase):
    s = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=staircase)
    for step in STEPS:
        assert s(step) == pytest.approx(keras_exponential(step, 0.1, 10, 0.5, staircase), rel=1e-15)
    assert s(0) == 0.1 and s(10) == pytest.approx(0.05) and s(20) == pytest.approx(0.025)
    assert (s(15) == pytest.approx(0.05)) == staircase  # the staircase holds the rate between drops


def test_piecewise_constant_decay_is_inclusive_on_the_left_interval():
    s = schedules.PiecewiseConstantDecay([10, 100], [1.0, 0.5, 0.1])
    for step in STEPS:
        assert s(step) == keras_piecewise(step, [10, 100], [1.0, 0.5, 0.1])
    assert [s(10), s(11), s(100), s(101)] == [1.0, 0.5, 0.5, 0.1]
    assert schedules.PiecewiseConstantDecay([], [0.3])(5) == 0.3


@pytest.mark.parametrize("kw", [
    dict(initial_learning_rate=0.1, decay_steps=100),
    dict(initial_learning_rate=0.1, decay_steps=100, alpha=0.1),
    dict(initial_learning_rate=0.0, decay_steps=100, warmup_target=0.2, warmup_steps=10),
    dict(initial_learning_rate=0.05, decay_steps=100, alpha=0.2, warmup_target=0.2, warmup_steps=10),
    dict(initial_learning_rate=0.1, decay_steps=100, warmup_target=0.2, warmup_steps=0),
    dict(initial_learning_rate=0.1, decay_steps=100, warmup_steps=10),  # no target: Keras ignores the steps
])
def test_cosine_decay_with_and_without_warmup(kw):
    s = schedules.CosineDecay(**kw)
    for step in STEPS:
        assert s(step) == pytest.approx(keras_cosine(step, **kw), rel=1e-14, abs=1e-16)
    target = kw.get("warmup_target")
    w = kw.get("warmup_steps", 0) if target is not None else 0
    end = (target if target is not None else kw["initial_learning_rate"]) * kw.get("alpha", 0.0)
    assert s(w + 100) == pytest.approx(end, abs=1e-15) and s(10 ** 6) == pytest.approx(end, abs=1e-15)
    if target is not None:
        assert s(w) == pytest.approx(target)
        if w:
            assert s(w // 2) == pytest.approx((kw["initial_learning_rate"] + target) / 2)


@pytest.mark.parametrize("make,message", [
    (lambda: schedules.ExponentialDecay(0.1, 0, 0.5), r"ExponentialDecay expected decay_steps to be a finite number > 0.0, got 0"),
    (lambda: schedules.ExponentialDecay(-0.1, 10, 0.5), r"initial_learning_rate to be a finite number >= 0.0, got -0.1"),
    (lambda: schedules.ExponentialDecay(0.1, 10, float("nan")), r"decay_rate to be a finite number > 0.0, got nan"),
    (lambda: schedules.ExponentialDecay(0.1, 10, 0.5, staircase="no"), r"staircase to be True or False, got 'no'"),
    (lambda: schedules.PiecewiseConstantDecay([10, 20], [1.0, 0.5]),
     r"PiecewiseConstantDecay expected one value more than boundaries, got 2 boundaries and 2 values"),
    (lambda: schedules.PiecewiseConstantDecay([20, 10], [1.0, 0.5, 0.1]), r"strictly increasing boundaries, got \[20, 10\]"),
    (lambda: schedules.PiecewiseConstantDecay([10], [1.0, -0.5]), r"values\[1\] to be a finite number >= 0.0, got -0.5"),
    (lambda: schedules.PiecewiseConstantDecay(10, [1.0, 0.5]), r"expected boundaries and values to be lists, got int and list"),
    (lambda: schedules.CosineDecay(0.1, -5), r"CosineDecay expected decay_steps to be a finite number > 0.0, got -5"),
    (lambda: schedules.CosineDecay(0.1, 100, alpha=1.5), r"alpha to be a number in \[0.0, 1.0\], got 1.5"),
    (lambda: schedules.CosineDecay(0.1, 100, warmup_target=-1.0), r"warmup_target to be a finite number >= 0.0, got -1.0"),
    (lambda: schedules.CosineDecay(0.1, 100, warmup_steps=-1), r"warmup_steps to be a finite number >= 0.0, got -1"),
    (lambda: schedules.CosineDecay(0.1, 100)(-1), r"CosineDecay expected a step >= 0 \(the optimizer's iterations\), got -1"),
    (lambda: schedules.deserialize({"class_name": "StepDecay", "config": {}}),
     r"unknown learning-rate schedule 'StepDecay': expected one of 'ExponentialDecay', 'PiecewiseConstantDecay', 'CosineDecay'"),
])
def test_bad_schedule_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


ALL = [
    lambda: schedules.ExponentialDecay(0.1, 3, 0.7, staircase=True),
    lambda: schedules.PiecewiseConstantDecay([2, 4], [0.1, 0.05, 0.01]),
    lambda: schedules.CosineDecay(0.0, 5, alpha=0.1, warmup_target=0.1, warmup_steps=3),
]


@pytest.mark.parametrize("make", ALL)
def test_schedule_config_round_trip(make):
    s = make()
    record = json.loads(json.dumps(schedules.serialize(s)))
    assert record["class_name"] == type(s).__name__ and record["module"] == "gpudl.optimizers.schedules"
    for t in (schedules.deserialize(record), type(s).from_config(s.get_config())):
        assert type(t) is type(s) and t.get_config() == s.get_config()
        assert [t(k) for k in range(12)] == [s(k) for k in range(12)]


# ---- inside an optimizer -----------------------------------------------------------------

W0 = np.array([1.0, -2.0, 0.5])
G = np.array([0.3, -0.1, 0.2])


@pytest.mark.parametrize("make", ALL)
def test_each_step_runs_at_the_schedule_of_its_iteration(make):
    s = make()
    opt = optimizers.SGD(s)
    p = Parameter(W0.copy(), dtype=np.float64)
    w = W0.copy()
    for k in range(10):
        assert opt.iterations == k and opt.learning_rate == s(k)  # the rate the next update uses
        p.grad = G.copy()
        opt.step([p])
        w = w - s(k) * G
        np.testing.assert_allclose(p.data, w, rtol=1e-14)


def test_weight_decay_uses_the_scheduled_rate():
    s = schedules.PiecewiseConstantDecay([0], [0.5, 0.1])
    opt = optimizers.SGD(s, weight_decay=0.2)
    p = Parameter(W0.copy(), dtype=np.float64)
    w = W0.copy()
    for k in range(3):
        p.grad = G.copy()
        opt.step([p])
        w = w - w * 0.2 * s(k) - s(k) * G
        np.testing.assert_allclose(p.data, w, rtol=1e-14)


def test_learning_rate_setter():
    opt = optimizers.Adam(schedules.ExponentialDecay(0.1, 10, 0.5))
    with pytest.raises(TypeError, match=r"Adam was created with a ExponentialDecay schedule as its learning_rate, "
                                         r"so the learning rate is not settable; got 0.01"):
        opt.learning_rate = 0.01
    opt.learning_rate = schedules.PiecewiseConstantDecay([], [0.3])  # another schedule replaces it, as Keras
    assert opt.learning_rate == 0.3
    plain = optimizers.SGD(0.1)
    plain.learning_rate = 0.02  # a float rate stays settable (LearningRateScheduler)
    assert plain.learning_rate == 0.02 and plain.get_config()["learning_rate"] == 0.02
    with pytest.raises(ValueError, match=r"SGD expected learning_rate > 0.0, got -1.0"):
        plain.learning_rate = -1.0
    plain.learning_rate = schedules.PiecewiseConstantDecay([], [0.4])
    assert plain.learning_rate == 0.4


def test_a_schedule_giving_a_bad_rate_is_named():
    class Broken(schedules.LearningRateSchedule):
        def __call__(self, step):
            return float("nan")

        def get_config(self):
            return {}

    opt = optimizers.SGD(Broken())
    with pytest.raises(ValueError, match=r"SGD: Broken gave learning rate nan at step 0; expected a finite number >= 0"):
        opt.learning_rate


@pytest.mark.parametrize("make", ALL)
@pytest.mark.parametrize("opt_cls", [optimizers.SGD, optimizers.Adam, optimizers.AdamW, optimizers.Nadam,
                                     optimizers.RMSprop, optimizers.Adagrad, optimizers.Adadelta])
def test_optimizer_with_a_schedule_saves_and_resumes_exactly(opt_cls, make):
    a = opt_cls(make())
    cfg = json.loads(json.dumps(a.get_config()))  # a model file keeps this as JSON
    assert cfg["learning_rate"]["class_name"] == type(a._learning_rate).__name__
    p = Parameter(W0.copy(), dtype=np.float64)
    for k in range(4):
        p.grad = G * (k + 1)
        a.step([p])
    b = optimizers.from_config(opt_cls.__name__, cfg)
    assert b.get_config() == a.get_config() and b.iterations == 0
    q = Parameter(p.data.copy(), dtype=np.float64)
    b.set_state([q], a.get_state([p]), a.iterations)
    assert b.iterations == 4 and b.learning_rate == a.learning_rate == a._learning_rate(4)
    for k in range(4, 9):
        p.grad, q.grad = G * (k + 1), G * (k + 1)
        a.step([p])
        b.step([q])
        np.testing.assert_array_equal(p.data, q.data)
        assert a.learning_rate == b.learning_rate


# ---- inside a model ---------------------------------------------------------------------

def _model(opt):
    m = gpudl.Sequential([layers.Dense(8, activation="relu"), layers.Dense(3, activation="softmax")], input_shape=(4,))
    m.compile(opt, "categorical_crossentropy", ["accuracy"])
    return m


def _data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((40, 4)).astype(np.float32), rng.integers(0, 3, 40)


def test_model_file_keeps_the_schedule_and_resumes_it(tmp_path):
    x, y = _data()
    sched = schedules.CosineDecay(0.0, 20, alpha=0.1, warmup_target=0.05, warmup_steps=4)
    m = _model(optimizers.AdamW(sched, weight_decay=0.01))
    m.fit(x, y, batch_size=10, epochs=1, verbose=0)
    path = tmp_path / "m.gpudl"
    m.save(path)
    loaded = gpudl.load_model(path)
    opt = loaded.optimizer
    assert type(opt) is optimizers.AdamW and opt.iterations == m.optimizer.iterations == 4
    assert isinstance(opt._learning_rate, schedules.CosineDecay)
    assert opt.get_config() == m.optimizer.get_config()
    assert opt.learning_rate == m.optimizer.learning_rate == sched(4)
    # the next steps agree exactly: same weights, moments and position in the schedule
    xb, yb = x[:10], y[:10]
    for _ in range(3):
        assert m.train_on_batch(xb, yb) == loaded.train_on_batch(xb, yb)
    for a, b in zip(m.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_learning_rate_scheduler_callback_keeps_working_with_a_float_rate():
    x, y = _data()
    m = _model(optimizers.SGD(0.1))
    m.fit(x, y, batch_size=10, epochs=3, verbose=0,
          callbacks=[callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.5)])
    assert m.optimizer.learning_rate == pytest.approx(0.1 * 0.5 ** 3)


def test_learning_rate_scheduler_callback_refuses_to_override_a_schedule():
    x, y = _data()
    m = _model(optimizers.SGD(schedules.ExponentialDecay(0.1, 10, 0.5)))
    # the optimizer refuses the float (the callback may reword the message)
    with pytest.raises(TypeError, match=r"not settable|needs a float learning rate"):
        m.fit(x, y, batch_size=10, epochs=1, verbose=0,
              callbacks=[callbacks.LearningRateScheduler(lambda epoch, lr: lr)])
