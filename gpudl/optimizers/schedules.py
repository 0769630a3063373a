"""Learning-rate schedules: ``schedule(step) -> learning rate``, Keras 3's formulas.

``step`` is the optimizer's ``iterations`` before the update (0 for the first update), as
Keras passes it. Values are computed as Python floats on the host, so a schedule never
reads anything back from the device.
"""
from __future__ import annotations

import math
import numbers

__all__ = ["LearningRateSchedule", "ExponentialDecay", "PiecewiseConstantDecay", "CosineDecay",
           "serialize", "deserialize"]


def _real(cls, arg, v, minimum=None, strict=False, maximum=None):
    """``v`` as a float, or a ValueError saying what range was expected and what came."""
    ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
    if ok and minimum is not None:
        ok = v > minimum if strict else v >= minimum
    if ok and maximum is not None:
        ok = v <= maximum
    if not ok:
        if minimum is not None and maximum is not None:
            want = f"a number in [{minimum}, {maximum}]"
        elif minimum is not None:
            want = f"a finite number {'>' if strict else '>='} {minimum}"
        else:
            want = "a finite number"
        raise ValueError(f"{cls} expected {arg} to be {want}, got {v!r}")
    return float(v)


def _count(v, f):
    """Step counts keep their int type in the config (``1000``, not ``1000.0``)."""
    return int(v) if isinstance(v, numbers.Integral) else f


def _step(cls, step):
    if isinstance(step, bool) or not isinstance(step, numbers.Real) or not math.isfinite(step) or step < 0:
        raise ValueError(f"{cls} expected a step >= 0 (the optimizer's iterations), got {step!r}")
    return float(step)


class LearningRateSchedule:
    """Base: ``__call__(step)`` returns the learning rate for that 0-based step."""

    def __call__(self, step) -> float:
        raise NotImplementedError

    def get_config(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict) -> "LearningRateSchedule":
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class ExponentialDecay(LearningRateSchedule):
    """lr(step) = initial_learning_rate * decay_rate ** (step / decay_steps);
    staircase: the exponent is floored, so the rate drops every ``decay_steps`` steps."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="ExponentialDecay"):
        cls = type(self).__name__
        self.initial_learning_rate = _real(cls, "initial_learning_rate", initial_learning_rate, 0.0)
        self.decay_steps = _count(decay_steps, _real(cls, "decay_steps", decay_steps, 0.0, strict=True))
        self.decay_rate = _real(cls, "decay_rate", decay_rate, 0.0, strict=True)
        if not isinstance(staircase, bool):
            raise ValueError(f"{cls} expected staircase to be True or False, got {staircase!r}")
        self.staircase = staircase
        self.name = name

    def __call__(self, step) -> float:
        p = _step(type(self).__name__, step) / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate ** p

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class PiecewiseConstantDecay(LearningRateSchedule):
    """lr(step) = values[0] for step <= boundaries[0], values[i] for
    boundaries[i-1] < step <= boundaries[i], values[-1] for step > boundaries[-1]."""

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        cls = type(self).__name__
        if not isinstance(boundaries, (list, tuple)) or not isinstance(values, (list, tuple)):
            raise ValueError(f"{cls} expected boundaries and values to be lists, got "
                             f"{type(boundaries).__name__} and {type(values).__name__}")
        if len(boundaries) != len(values) - 1:
            raise ValueError(f"{cls} expected one value more than boundaries, got {len(boundaries)} "
                             f"boundaries and {len(values)} values")
        self.boundaries = [_count(b, _real(cls, f"boundaries[{i}]", b, 0.0)) for i, b in enumerate(boundaries)]
        for i in range(1, len(self.boundaries)):
            if self.boundaries[i] <= self.boundaries[i - 1]:
                raise ValueError(f"{cls} expected strictly increasing boundaries, got {list(boundaries)!r}")
        self.values = [_real(cls, f"values[{i}]", v, 0.0) for i, v in enumerate(values)]
        self.name = name

    def __call__(self, step) -> float:
        step = _step(type(self).__name__, step)
        for b, v in zip(self.boundaries, self.values):
            if step <= b:
                return v
        return self.values[-1]

    def get_config(self) -> dict:
        return {"boundaries": list(self.boundaries), "values": list(self.values), "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Without warm-up: lr(s) = initial * ((1 - alpha) * (1 + cos(pi * min(s, D) / D)) / 2 + alpha),
    D = decay_steps. With ``warmup_target``: linear from initial to warmup_target over
    ``warmup_steps`` (W), lr(s) = initial + (warmup_target - initial) * s / W for s < W, then the
    same cosine decay from warmup_target over the next D steps (s - W in place of s)."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay",
                 warmup_target=None, warmup_steps=0):
        cls = type(self).__name__
        self.initial_learning_rate = _real(cls, "initial_learning_rate", initial_learning_rate, 0.0)
        self.decay_steps = _count(decay_steps, _real(cls, "decay_steps", decay_steps, 0.0, strict=True))
        self.alpha = _real(cls, "alpha", alpha, 0.0, maximum=1.0)
        self.warmup_target = (None if warmup_target is None
                              else _real(cls, "warmup_target", warmup_target, 0.0))
        self.warmup_steps = _count(warmup_steps, _real(cls, "warmup_steps", warmup_steps, 0.0))
        self.name = name

    def _decay(self, step, decay_from):
        completed = step / self.decay_steps
        cosine = 0.5 * (1.0 + math.cos(math.pi * completed))
        return decay_from * ((1 - self.alpha) * cosine + self.alpha)

    def __call__(self, step) -> float:
        step = _step(type(self).__name__, step)
        if self.warmup_target is None:
            # Keras ignores warmup_steps when there is no warmup_target
            return self._decay(min(step, self.decay_steps), self.initial_learning_rate)
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            delta = self.warmup_target - self.initial_learning_rate
            return delta * (step / self.warmup_steps) + self.initial_learning_rate
        return self._decay(step - self.warmup_steps, self.warmup_target)

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "name": self.name, "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}


_SCHEDULES = {c.__name__: c for c in (ExponentialDecay, PiecewiseConstantDecay, CosineDecay)}


def serialize(schedule: LearningRateSchedule) -> dict:
    """A JSON-able record, as Keras writes one: module, class name and config."""
    if not isinstance(schedule, LearningRateSchedule):
        raise TypeError(f"serialize expected a LearningRateSchedule, got {type(schedule).__name__}")
    return {"module": __name__, "class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(config: dict) -> LearningRateSchedule:
    """The schedule a ``serialize`` record describes."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"deserialize expected a dict with 'class_name' and 'config', got {config!r}")
    cls = _SCHEDULES.get(config["class_name"])
    if cls is None:
        raise ValueError(f"unknown learning-rate schedule {config['class_name']!r}: expected one of "
                         f"{', '.join(map(repr, _SCHEDULES))}")
    return cls.from_config(dict(config.get("config") or {}))
