"""Lecture I's optimizers, Keras argument names, the tutorial's update rules.

Each optimizer keeps per-parameter state (velocity, accumulators) in the order of the
parameter list it is stepped with; ``get_state``/``set_state`` expose it as named arrays
for checkpoints. Updates are in place on ``param.data``.
"""
from __future__ import annotations

import math

import numpy as np

from . import backend
from .autograd import Parameter

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSProp", "Adam", "get", "clip_gradients"]


def _number(cls, arg, v, minimum=0.0, strict=False):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or \
            (v <= minimum if strict else v < minimum):
        rel = ">" if strict else ">="
        raise ValueError(f"{cls} expected {arg} {rel} {minimum}, got {v!r}")
    return float(v)


def clip_gradients(grads, clipnorm=None, clipvalue=None, global_clipnorm=None):
    """Clip a list of gradient arrays: by value, by each one's norm, or by their global norm."""
    if clipvalue is not None:
        grads = [None if g is None else backend.get_array_module(g).clip(g, -clipvalue, clipvalue) for g in grads]
    if clipnorm is not None:
        out = []
        for g in grads:
            if g is None:
                out.append(None)
                continue
            xp = backend.get_array_module(g)
            norm = xp.sqrt((g * g).sum())
            scale = xp.minimum(1, clipnorm / xp.maximum(norm, 1e-12)).astype(g.dtype)
            out.append(g * scale)
        grads = out
    if global_clipnorm is not None:
        present = [g for g in grads if g is not None]
        if present:
            xp = backend.get_array_module(present[0])
            total = xp.sqrt(sum((g.astype(np.float64) * g).sum() for g in present))
            scale = xp.minimum(1.0, global_clipnorm / xp.maximum(total, 1e-12))
            grads = [None if g is None else g * scale.astype(g.dtype) for g in grads]
    return grads


class Optimizer:
    """Base: ``step(params)`` applies one update from each parameter's ``.grad``."""

    _slots: tuple = ()

    def __init__(self, learning_rate, clipnorm=None, clipvalue=None, global_clipnorm=None):
        cls = type(self).__name__
        self.learning_rate = _number(cls, "learning_rate", learning_rate, 0.0, strict=True)
        self.clipnorm = None if clipnorm is None else _number(cls, "clipnorm", clipnorm, 0.0, strict=True)
        self.clipvalue = None if clipvalue is None else _number(cls, "clipvalue", clipvalue, 0.0, strict=True)
        self.global_clipnorm = (None if global_clipnorm is None
                                else _number(cls, "global_clipnorm", global_clipnorm, 0.0, strict=True))
        self.iterations = 0
        self._state: dict[int, dict] = {}

    def get_config(self) -> dict:
        cfg = {k: getattr(self, k) for k in self._config_keys}
        cfg.update(learning_rate=self.learning_rate, clipnorm=self.clipnorm, clipvalue=self.clipvalue,
                   global_clipnorm=self.global_clipnorm)
        return cfg

    _config_keys: tuple = ()

    def zero_grad(self, params):
        for p in params:
            p.grad = None

    def step(self, params) -> None:
        params = list(params)
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError(f"{type(self).__name__}.step expected Parameters, got {type(p).__name__}")
        grads = [p.grad for p in params]
        if self.clipnorm is not None or self.clipvalue is not None or self.global_clipnorm is not None:
            grads = clip_gradients(grads, self.clipnorm, self.clipvalue, self.global_clipnorm)
        self.iterations += 1
        for p, g in zip(params, grads):
            if g is None:
                continue
            if g.shape != p.data.shape:
                raise ValueError(f"{type(self).__name__}: gradient of shape {g.shape} for parameter "
                                 f"{p.name or ''} of shape {p.data.shape}")
            state = self._state.get(id(p))
            if state is None:
                xp = backend.get_array_module(p.data)
                state = {k: xp.zeros_like(p.data) for k in self._slots}
                self._state[id(p)] = state
            self._update(p.data, g, state)

    def _update(self, w, g, state):
        raise NotImplementedError

    # ---- checkpoint state -----------------------------------------------------------
    def get_state(self, params) -> dict:
        """Named arrays ``"<slot>/<index>"`` (host copies) plus ``iterations``."""
        out = {}
        for i, p in enumerate(params):
            st = self._state.get(id(p))
            if st:
                for k, v in st.items():
                    if not k.startswith("_"):
                        out[f"{k}/{i}"] = backend.to_numpy(v)
        return out

    def set_state(self, params, arrays: dict, iterations: int) -> None:
        params = list(params)
        self._state = {}
        for key, value in arrays.items():
            slot, _, idx = key.partition("/")
            if slot not in self._slots or not idx.isdigit() or int(idx) >= len(params):
                raise ValueError(f"{type(self).__name__}: unexpected optimizer state entry {key!r}")
            p = params[int(idx)]
            if value.shape != p.data.shape:
                raise ValueError(f"{type(self).__name__}: state {key!r} has shape {value.shape}, "
                                 f"parameter has {p.data.shape}")
            arr = backend.to_backend(value.astype(p.data.dtype), backend.backend_of(p.data))
            self._state.setdefault(id(p), {})[slot] = arr
        self.iterations = int(iterations)

    def rebind(self, old_params, new_params):
        """Carry state over when parameters are replaced by new objects (backend moves)."""
        moved = {}
        for o, n in zip(old_params, new_params):
            st = self._state.get(id(o))
            if st is not None:
                moved[id(n)] = {k: backend.to_backend(v, backend.backend_of(n.data)) for k, v in st.items()}
        self._state = moved


def _scratch(state, w):
    """A per-parameter work buffer kept beside the state (not saved in checkpoints)."""
    buf = state.get("_tmp")
    if buf is None:
        buf = state["_tmp"] = backend.get_array_module(w).empty_like(w)
    return buf


class SGD(Optimizer):
    """v = momentum*v - lr*g; w += v. Nesterov: w += momentum*v - lr*g after the v update."""

    _config_keys = ("momentum", "nesterov")

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kw):
        super().__init__(learning_rate, **kw)
        self.momentum = _number("SGD", "momentum", momentum, 0.0)
        if self.momentum >= 1:
            raise ValueError(f"SGD expected momentum in [0, 1), got {momentum!r}")
        self.nesterov = bool(nesterov)
        self._slots = ("velocity",) if self.momentum else ()

    def _update(self, w, g, state):
        lr = w.dtype.type(self.learning_rate)
        if not self.momentum:
            w -= lr * g
            return
        m = w.dtype.type(self.momentum)
        v = state["velocity"]
        v *= m
        v -= lr * g
        if self.nesterov:
            w += m * v - lr * g
        else:
            w += v


class Adagrad(Optimizer):
    """s += g^2; w -= lr * g / (sqrt(s) + eps): the tutorial's per-parameter step size."""

    _slots = ("accumulator",)
    _config_keys = ("epsilon",)

    def __init__(self, learning_rate=0.01, epsilon=1e-7, **kw):
        super().__init__(learning_rate, **kw)
        self.epsilon = _number("Adagrad", "epsilon", epsilon, 0.0)

    def _update(self, w, g, state):
        xp = backend.get_array_module(w)
        s = state["accumulator"]
        s += g * g
        w -= w.dtype.type(self.learning_rate) * g / (xp.sqrt(s) + w.dtype.type(self.epsilon))


class RMSProp(Optimizer):
    """s = rho*s + (1-rho)*g^2; w -= lr * g / (sqrt(s) + eps)."""

    _slots = ("rms",)
    _config_keys = ("rho", "epsilon")

    def __init__(self, learning_rate=0.001, rho=0.9, epsilon=1e-7, **kw):
        super().__init__(learning_rate, **kw)
        self.rho = _number("RMSProp", "rho", rho, 0.0)
        if self.rho >= 1:
            raise ValueError(f"RMSProp expected rho in [0, 1), got {rho!r}")
        self.epsilon = _number("RMSProp", "epsilon", epsilon, 0.0)

    def _update(self, w, g, state):
        xp = backend.get_array_module(w)
        t = w.dtype.type
        s = state["rms"]
        s *= t(self.rho)
        s += t(1 - self.rho) * g * g
        w -= t(self.learning_rate) * g / (xp.sqrt(s) + t(self.epsilon))


class Adam(Optimizer):
    """Bias-corrected m, v; w -= lr * m_hat / (sqrt(v_hat) + eps)."""

    _slots = ("m", "v")
    _config_keys = ("beta_1", "beta_2", "epsilon")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kw):
        super().__init__(learning_rate, **kw)
        for name, b in (("beta_1", beta_1), ("beta_2", beta_2)):
            _number("Adam", name, b, 0.0)
            if b >= 1:
                raise ValueError(f"Adam expected {name} in [0, 1), got {b!r}")
        self.beta_1, self.beta_2 = float(beta_1), float(beta_2)
        self.epsilon = _number("Adam", "epsilon", epsilon, 0.0)

    def _update(self, w, g, state):
        xp = backend.get_array_module(w)
        t = w.dtype.type
        k = self.iterations
        m, v = state["m"], state["v"]
        tmp = _scratch(state, w)
        # every pass in place: no temporaries on the hot path
        xp.multiply(g, t(1 - self.beta_1), out=tmp)
        m *= t(self.beta_1)
        m += tmp
        xp.multiply(g, g, out=tmp)
        tmp *= t(1 - self.beta_2)
        v *= t(self.beta_2)
        v += tmp
        c1 = 1 - self.beta_1 ** k
        c2 = 1 - self.beta_2 ** k
        # lr * m/c1 / (sqrt(v/c2) + eps), with the scalar corrections folded once
        xp.sqrt(v, out=tmp)
        tmp *= t(1 / math.sqrt(c2))
        tmp += t(self.epsilon)
        xp.divide(m, tmp, out=tmp)
        tmp *= t(self.learning_rate / c1)
        w -= tmp


_CLASSES = {"sgd": SGD, "adagrad": Adagrad, "rmsprop": RMSProp, "adam": Adam}


def get(opt) -> Optimizer:
    """An optimizer from an instance or a name ('sgd', 'adagrad', 'rmsprop', 'adam')."""
    if isinstance(opt, Optimizer):
        return opt
    if isinstance(opt, str) and opt.lower() in _CLASSES:
        return _CLASSES[opt.lower()]()
    raise ValueError(f"unknown optimizer {opt!r}: expected one of {', '.join(map(repr, _CLASSES))} "
                     "or a gpudl.optimizers.Optimizer")


def from_config(name: str, config: dict) -> Optimizer:
    cls = {c.__name__: c for c in _CLASSES.values()}.get(name)
    if cls is None:
        raise ValueError(f"unknown optimizer class {name!r}")
    return cls(**config)
