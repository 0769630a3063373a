"""Lecture I's optimizers, Keras argument names, the tutorial's update rules.

Each optimizer keeps per-parameter state (velocity, accumulators) in the order of the
parameter list it is stepped with; ``get_state``/``set_state`` expose it as named arrays
for checkpoints. Updates are in place on ``param.data``.

One update, in Keras 3's order: clip the gradients, decay the weights
(w -= lr * weight_decay * w, decoupled from the gradient), apply the rule, count the step.
``lr`` is the learning rate for the step about to be taken: a float, or a schedule evaluated
at ``iterations`` (0 for the first update).
"""
from __future__ import annotations

import functools
import inspect
import math
import numbers

import numpy as np

from .. import backend
from ..autograd import Parameter, Tensor
from ..layers.base import renamed_arg
from . import schedules
from .schedules import LearningRateSchedule

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSProp", "RMSprop", "Adam", "AdamW", "Nadam", "Adadelta",
           "schedules", "get", "from_config", "clip_gradients"]


def _number(cls, arg, v, minimum=0.0, strict=False):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or \
            (v <= minimum if strict else v < minimum):
        rel = ">" if strict else ">="
        raise ValueError(f"{cls} expected {arg} {rel} {minimum}, got {v!r}")
    return float(v)


def _unit(cls, arg, v):
    """A decay rate in [0, 1): 1 would freeze the running average at its start."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or not 0 <= v < 1:
        raise ValueError(f"{cls} expected {arg} in [0, 1), got {v!r}")
    return float(v)


def _flag(cls, arg, v):
    if not isinstance(v, (bool, np.bool_)):
        raise ValueError(f"{cls} expected {arg} to be True or False, got {v!r}")
    return bool(v)


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


def _param_name(p, i):
    return f"parameter {i} ({p.name})" if p.name else f"parameter {i}"


class Optimizer:
    """Base: ``step(params)`` applies one update from each parameter's ``.grad``;
    ``apply_gradients(zip(grads, params))`` the same from explicit gradients."""

    _slots: tuple = ()
    _config_keys: tuple = ()

    def __init_subclass__(cls, **kwargs):
        # every optimizer takes Keras 1's lr= for learning_rate (with a DeprecationWarning)
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _accept_lr(cls.__init__, cls.__name__)

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None):
        cls = type(self).__name__
        self.iterations = 0
        self._learning_rate = None
        self.learning_rate = learning_rate
        self.weight_decay = None if weight_decay is None else _number(cls, "weight_decay", weight_decay, 0.0)
        self.clipnorm = None if clipnorm is None else _number(cls, "clipnorm", clipnorm, 0.0, strict=True)
        self.clipvalue = None if clipvalue is None else _number(cls, "clipvalue", clipvalue, 0.0, strict=True)
        self.global_clipnorm = (None if global_clipnorm is None
                                else _number(cls, "global_clipnorm", global_clipnorm, 0.0, strict=True))
        self._state: dict[int, dict] = {}

    # ---- learning rate ----------------------------------------------------------------
    @property
    def learning_rate(self) -> float:
        """The rate the next update uses: the float, or the schedule at ``iterations``."""
        lr = self._learning_rate
        if isinstance(lr, LearningRateSchedule):
            value = lr(self.iterations)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
                    or value < 0:
                raise ValueError(f"{type(self).__name__}: {type(lr).__name__} gave learning rate {value!r} at "
                                 f"step {self.iterations}; expected a finite number >= 0")
            return float(value)
        return lr

    @learning_rate.setter
    def learning_rate(self, value):
        if isinstance(value, LearningRateSchedule):
            self._learning_rate = value
            return
        if isinstance(self._learning_rate, LearningRateSchedule):
            # as Keras: a schedule owns the rate; silently replacing it would drop the schedule
            raise TypeError(f"{type(self).__name__} was created with a {type(self._learning_rate).__name__} "
                            f"schedule as its learning_rate, so the learning rate is not settable; got "
                            f"{value!r}. Create the optimizer with a float learning_rate to set it later.")
        self._learning_rate = _number(type(self).__name__, "learning_rate", value, 0.0, strict=True)

    # ---- config -----------------------------------------------------------------------
    def get_config(self) -> dict:
        cfg = {k: getattr(self, k) for k in self._config_keys}
        lr = self._learning_rate
        cfg.update(learning_rate=schedules.serialize(lr) if isinstance(lr, LearningRateSchedule) else lr,
                   weight_decay=self.weight_decay, clipnorm=self.clipnorm, clipvalue=self.clipvalue,
                   global_clipnorm=self.global_clipnorm)
        return cfg

    @classmethod
    def from_config(cls, config: dict) -> "Optimizer":
        """The optimizer ``get_config`` describes; a schedule record becomes the schedule again."""
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules.deserialize(config["learning_rate"])
        return cls(**config)

    # ---- updates ----------------------------------------------------------------------
    def zero_grad(self, params):
        for p in params:
            p.grad = None

    def step(self, params) -> None:
        """One update from each parameter's ``.grad``; parameters without one are left alone."""
        params = list(params)
        self._check_params(params, "step")
        self._apply(params, [p.grad for p in params], "step")

    def apply_gradients(self, grads_and_vars) -> int:
        """One update from ``(gradient, parameter)`` pairs (arrays or Tensors); returns ``iterations``.

        ``zip`` stops at the shorter list: ``apply(grads, params)`` checks the lengths."""
        grads, params = [], []
        for i, pair in enumerate(grads_and_vars):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                got = f"{type(pair).__name__} of length {len(pair)}" if isinstance(pair, (tuple, list)) \
                    else type(pair).__name__
                raise ValueError(f"{type(self).__name__}.apply_gradients expected (gradient, parameter) pairs, "
                                 f"got {got} at position {i}")
            grads.append(pair[0])
            params.append(pair[1])
        self.apply(grads, params)
        return self.iterations

    def apply(self, grads, params) -> None:
        """One update from ``grads[i]`` for ``params[i]``; both lists must have the same length."""
        grads, params = list(grads), list(params)
        cls = type(self).__name__
        if len(grads) != len(params):
            raise ValueError(f"{cls}.apply expected one gradient per parameter, got {len(grads)} gradients "
                             f"for {len(params)} parameters")
        if not params:
            return  # as Keras: nothing to update is a no-op, the step is not counted
        self._check_params(params, "apply")
        grads = [g.data if isinstance(g, Tensor) else g for g in grads]
        if all(g is None for g in grads):
            raise ValueError(f"{cls}.apply expected a gradient for at least one parameter, got None for all "
                             f"{len(params)}")
        self._apply(params, grads, "apply")

    def _check_params(self, params, where):
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError(f"{type(self).__name__}.{where} expected Parameters, got {type(p).__name__}")

    def _check_grads(self, params, grads, where):
        """Shapes, array types and backends, all read before any weight changes (no device reads)."""
        cls = type(self).__name__
        first = None
        out = []
        for i, (p, g) in enumerate(zip(params, grads)):
            if g is None:
                out.append(None)
                continue
            if not (isinstance(g, np.ndarray) or backend.is_cupy_array(g)):
                raise TypeError(f"{cls}.{where}: {_param_name(p, i)} expected an array or Tensor gradient, "
                                f"got {type(g).__name__}")
            pb, gb = backend.backend_of(p.data), backend.backend_of(g)
            if gb != pb:
                raise TypeError(f"{cls}.{where}: {_param_name(p, i)} is a {pb} array, its gradient a {gb} array; "
                                "expected both on one backend (move with gpudl.to_numpy, Tensor.to, Model.to)")
            if first is None:
                first = (i, p, pb)
            elif pb != first[2]:
                raise TypeError(f"{cls}.{where}: expected every parameter on one backend, got "
                                f"{_param_name(first[1], first[0])} on {first[2]} and {_param_name(p, i)} on {pb}")
            if g.shape != p.data.shape:
                raise ValueError(f"{cls}.{where}: {_param_name(p, i)} expected a gradient of shape "
                                 f"{tuple(p.data.shape)}, got shape {tuple(g.shape)}")
            if g.dtype != p.data.dtype:
                g = g.astype(p.data.dtype)  # as Keras: the rule runs in the parameter's dtype
            out.append(g)
        return out

    def _apply(self, params, grads, where):
        grads = self._check_grads(params, grads, where)
        if self.clipnorm is not None or self.clipvalue is not None or self.global_clipnorm is not None:
            grads = clip_gradients(grads, self.clipnorm, self.clipvalue, self.global_clipnorm)
        lr = self.learning_rate  # evaluated before the count moves: step k uses schedule(k - 1)
        self.iterations += 1
        self._begin_step()
        wd = self.weight_decay
        for p, g in zip(params, grads):
            if g is None:
                continue
            w = p.data
            state = self._state.get(id(p))
            if state is None:
                state = {k: self._new_slot(k, w) for k in self._slots}
                self._state[id(p)] = state
            if wd:
                # Keras 3's _apply_weight_decay: w = w - w * wd * lr, before the rule, every parameter
                t = w.dtype.type
                tmp = _scratch(state, w)
                backend.get_array_module(w).multiply(w, t(wd), out=tmp)
                tmp *= t(lr)
                w -= tmp
            self._update(w, g, state, lr)

    def _begin_step(self):
        """Once per update, after ``iterations`` moved: per-step scalars shared by all parameters."""

    def _new_slot(self, name, w):
        return backend.get_array_module(w).zeros_like(w)

    def _update(self, w, g, state, lr):
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
        """Restore ``get_state``'s arrays and the step count (a schedule resumes where it was)."""
        params = list(params)
        self._state = {}
        for key, value in arrays.items():
            slot, _, idx = key.partition("/")
            if slot not in self._slots or not idx.isdigit() or int(idx) >= len(params):
                raise ValueError(f"{type(self).__name__}: unexpected optimizer state entry {key!r}; expected "
                                 f"<slot>/<index> with a slot in {list(self._slots)} and an index below {len(params)}")
            p = params[int(idx)]
            if value.shape != p.data.shape:
                raise ValueError(f"{type(self).__name__}: state {key!r} has shape {value.shape}, "
                                 f"parameter has {p.data.shape}")
            arr = backend.to_backend(value.astype(p.data.dtype), backend.backend_of(p.data))
            self._state.setdefault(id(p), {})[slot] = arr
        by_id = {id(p): p for p in params}
        for pid, st in self._state.items():
            for k in self._slots:
                if k not in st:  # a slot the checkpoint lacks starts fresh, as on a first step
                    st[k] = self._new_slot(k, by_id[pid].data)
        self.iterations = int(iterations)

    def rebind(self, old_params, new_params):
        """Carry state over when parameters are replaced by new objects (backend moves)."""
        moved = {}
        for o, n in zip(old_params, new_params):
            st = self._state.get(id(o))
            if st is not None:
                moved[id(n)] = {k: backend.to_backend(v, backend.backend_of(n.data)) for k, v in st.items()}
        self._state = moved


def _accept_lr(init, cls_name):
    sig = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        if "lr" in kwargs:
            lr = kwargs.pop("lr")
            given = "learning_rate" in sig.bind_partial(self, *args, **kwargs).arguments
            kwargs["learning_rate"] = renamed_arg(cls_name, "lr", lr, "learning_rate",
                                                  kwargs.get("learning_rate"), given)
        init(self, *args, **kwargs)
    return __init__


def _scratch(state, w):
    """A per-parameter work buffer kept beside the state (not saved in checkpoints)."""
    buf = state.get("_tmp")
    if buf is None:
        buf = state["_tmp"] = backend.get_array_module(w).empty_like(w)
    return buf


def _moments(state, w, g, beta_1, beta_2):
    """Adam's and Nadam's moving moments, in place: m = b1*m + (1-b1)*g, v = b2*v + (1-b2)*g^2
    (every pass in place: no temporaries on the hot path). Returns (m, v, the work buffer)."""
    xp = backend.get_array_module(w)
    t = w.dtype.type
    m, v = state["m"], state["v"]
    tmp = _scratch(state, w)
    xp.multiply(g, t(1 - beta_1), out=tmp)
    m *= t(beta_1)
    m += tmp
    xp.multiply(g, g, out=tmp)
    tmp *= t(1 - beta_2)
    v *= t(beta_2)
    v += tmp
    return m, v, tmp


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

    def _update(self, w, g, state, lr):
        lr = w.dtype.type(lr)
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
    """s += g^2 (s starts at initial_accumulator_value); w -= lr * g / (sqrt(s) + eps):
    the tutorial's per-parameter step size (eps outside the root, as PyTorch; Keras puts it inside)."""

    _slots = ("accumulator",)
    _config_keys = ("initial_accumulator_value", "epsilon")

    def __init__(self, learning_rate=0.01, epsilon=1e-7, *, initial_accumulator_value=0.0, **kw):
        super().__init__(learning_rate, **kw)
        self.epsilon = _number("Adagrad", "epsilon", epsilon, 0.0)
        self.initial_accumulator_value = _number("Adagrad", "initial_accumulator_value",
                                                 initial_accumulator_value, 0.0)

    def _new_slot(self, name, w):
        s = backend.get_array_module(w).zeros_like(w)
        if self.initial_accumulator_value:
            s += w.dtype.type(self.initial_accumulator_value)
        return s

    def _update(self, w, g, state, lr):
        xp = backend.get_array_module(w)
        s = state["accumulator"]
        s += g * g
        w -= w.dtype.type(lr) * g / (xp.sqrt(s) + w.dtype.type(self.epsilon))


class RMSProp(Optimizer):
    """s = rho*s + (1-rho)*g^2; w -= lr * g / (sqrt(s) + eps).

    centered: also mg = rho*mg + (1-rho)*g, and sqrt(s - mg^2) in place of sqrt(s).
    momentum: M = momentum*M + lr*g/(...); w -= M (Keras keeps lr inside M; PyTorch outside)."""

    _config_keys = ("rho", "momentum", "epsilon", "centered")

    def __init__(self, learning_rate=0.001, rho=0.9, epsilon=1e-7, *, momentum=0.0, centered=False, **kw):
        super().__init__(learning_rate, **kw)
        cls = type(self).__name__
        self.rho = _unit(cls, "rho", rho)
        self.epsilon = _number(cls, "epsilon", epsilon, 0.0)
        self.momentum = _unit(cls, "momentum", momentum)
        self.centered = _flag(cls, "centered", centered)
        self._slots = ("rms",) + (("momentum",) if self.momentum else ()) + (("mean_grad",) if self.centered else ())

    def _update(self, w, g, state, lr):
        xp = backend.get_array_module(w)
        t = w.dtype.type
        s = state["rms"]
        s *= t(self.rho)
        s += t(1 - self.rho) * g * g
        if not self.centered and not self.momentum:
            w -= t(lr) * g / (xp.sqrt(s) + t(self.epsilon))
            return
        if self.centered:
            mg = state["mean_grad"]
            mg *= t(self.rho)
            mg += t(1 - self.rho) * g
            # s >= mg^2 in exact arithmetic; rounding can dip below 0 where they meet
            denom = xp.sqrt(xp.maximum(s - mg * mg, t(0))) + t(self.epsilon)
        else:
            denom = xp.sqrt(s) + t(self.epsilon)
        increment = t(lr) * g / denom
        if self.momentum:
            mom = state["momentum"]
            mom *= t(self.momentum)
            mom += increment
            w -= mom
        else:
            w -= increment


RMSprop = RMSProp  # Keras's spelling


class Adam(Optimizer):
    """m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; w -= lr * m_hat / (sqrt(v_hat) + eps) with
    m_hat = m/(1-b1^t), v_hat = v/(1-b2^t) (eps on sqrt(v_hat), as PyTorch and the tutorial;
    Keras adds it to sqrt(v) before correcting). amsgrad: v_max = max(v_max, v) in place of v."""

    _config_keys = ("beta_1", "beta_2", "epsilon", "amsgrad")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, **kw):
        super().__init__(learning_rate, **kw)
        cls = type(self).__name__
        self.beta_1, self.beta_2 = _unit(cls, "beta_1", beta_1), _unit(cls, "beta_2", beta_2)
        self.epsilon = _number(cls, "epsilon", epsilon, 0.0)
        self.amsgrad = _flag(cls, "amsgrad", amsgrad)
        self._slots = ("m", "v", "v_max") if self.amsgrad else ("m", "v")

    def _update(self, w, g, state, lr):
        xp = backend.get_array_module(w)
        t = w.dtype.type
        k = self.iterations
        m, v, tmp = _moments(state, w, g, self.beta_1, self.beta_2)
        if self.amsgrad:
            v = xp.maximum(state["v_max"], v, out=state["v_max"])
        c1 = 1 - self.beta_1 ** k
        c2 = 1 - self.beta_2 ** k
        # lr * m/c1 / (sqrt(v/c2) + eps), with the scalar corrections folded once
        xp.sqrt(v, out=tmp)
        tmp *= t(1 / math.sqrt(c2))
        tmp += t(self.epsilon)
        xp.divide(m, tmp, out=tmp)
        tmp *= t(lr / c1)
        w -= tmp


class AdamW(Adam):
    """Adam with decoupled weight decay: w -= lr * weight_decay * w, then the Adam step."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, **kw):
        if weight_decay is None:
            raise ValueError("AdamW expected weight_decay >= 0.0, got None (Adam is AdamW without decay)")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay=weight_decay, **kw)


class Nadam(Optimizer):
    """Adam with Nesterov momentum (Dozat), Keras 3's rule. With u_t = b1 * (1 - 0.5 * 0.96^t) and
    P_t = u_1 * ... * u_t: m_hat = u_{t+1} * m / (1 - P_{t+1}) + (1 - u_t) * g / (1 - P_t),
    v_hat = v/(1-b2^t); w -= lr * m_hat / (sqrt(v_hat) + eps)."""

    _slots = ("m", "v")
    _config_keys = ("beta_1", "beta_2", "epsilon")
    # u_t's exponent per step: Keras 3 uses 0.96**t; Dozat's paper, Keras 2 and PyTorch's
    # momentum_decay=0.004 use 0.96**(0.004 t)
    _mu_decay = 1.0

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kw):
        super().__init__(learning_rate, **kw)
        cls = type(self).__name__
        self.beta_1, self.beta_2 = _unit(cls, "beta_1", beta_1), _unit(cls, "beta_2", beta_2)
        self.epsilon = _number(cls, "epsilon", epsilon, 0.0)
        self._u_product, self._u_step = 1.0, 0

    def _mu(self, t):
        return self.beta_1 * (1.0 - 0.5 * 0.96 ** (t * self._mu_decay))

    def _begin_step(self):
        t = self.iterations
        if self._u_step != t - 1:
            # the count was restored (set_state) or edited: rebuild P_{t-1} by the same products
            prod = 1.0
            for i in range(1, t):
                prod *= self._mu(i)
            self._u_product = prod
        self._u_product *= self._mu(t)
        self._u_step = t

    def _update(self, w, g, state, lr):
        xp = backend.get_array_module(w)
        t = w.dtype.type
        k = self.iterations
        u_t, u_next = self._mu(k), self._mu(k + 1)
        prod, prod_next = self._u_product, self._u_product * u_next
        m, v, tmp = _moments(state, w, g, self.beta_1, self.beta_2)
        # denominator sqrt(v_hat) + eps, the correction folded into one scalar
        xp.sqrt(v, out=tmp)
        tmp *= t(1 / math.sqrt(1 - self.beta_2 ** k))
        tmp += t(self.epsilon)
        step = m * t(lr * u_next / (1 - prod_next))
        step += g * t(lr * (1 - u_t) / (1 - prod))
        step /= tmp
        w -= step


class Adadelta(Optimizer):
    """Eg = rho*Eg + (1-rho)*g^2; d = sqrt(Ed + eps) * g / sqrt(Eg + eps);
    Ed = rho*Ed + (1-rho)*d^2; w -= lr * d (Keras and PyTorch: eps inside both roots)."""

    _slots = ("accumulated_grad", "accumulated_delta")
    _config_keys = ("rho", "epsilon")

    def __init__(self, learning_rate=1.0, rho=0.95, epsilon=1e-7, **kw):
        super().__init__(learning_rate, **kw)
        cls = type(self).__name__
        self.rho = _unit(cls, "rho", rho)
        # eps > 0: it is the first step's size (Ed starts at 0), and keeps 0/0 away
        self.epsilon = _number(cls, "epsilon", epsilon, 0.0, strict=True)

    def _update(self, w, g, state, lr):
        xp = backend.get_array_module(w)
        t = w.dtype.type
        rho, eps = t(self.rho), t(self.epsilon)
        eg, ed = state["accumulated_grad"], state["accumulated_delta"]
        eg *= rho
        eg += t(1 - self.rho) * g * g
        delta = xp.sqrt(ed + eps) * g / xp.sqrt(eg + eps)
        ed *= rho
        ed += t(1 - self.rho) * delta * delta
        delta *= t(lr)
        w -= delta


_CLASSES = {"sgd": SGD, "adagrad": Adagrad, "rmsprop": RMSProp, "adam": Adam, "adamw": AdamW,
            "nadam": Nadam, "adadelta": Adadelta}


def get(opt) -> Optimizer:
    """An optimizer from an instance or a name (Keras's: 'sgd', 'adam', 'adamw', ...)."""
    if isinstance(opt, Optimizer):
        return opt
    if isinstance(opt, str) and opt.lower() in _CLASSES:
        return _CLASSES[opt.lower()]()
    raise ValueError(f"unknown optimizer {opt!r}: expected one of {', '.join(map(repr, _CLASSES))} "
                     "or a gpudl.optimizers.Optimizer")


def builtin_classes() -> dict:
    """gpudl's optimizer classes by class name (and Keras's ``RMSprop`` spelling)."""
    classes = {c.__name__: c for c in _CLASSES.values()}
    classes["RMSprop"] = RMSProp
    return classes


def from_config(name: str, config: dict, custom_objects=None) -> Optimizer:
    """Rebuild a saved optimizer from its class name (a registered user optimizer's
    ``"package>Name"``) and ``get_config()``."""
    from .. import serialization
    classes = builtin_classes()
    if ">" not in name and name not in classes and not serialization.get_registered_object(name, custom_objects):
        raise ValueError(f"unknown optimizer class {name!r}: expected one of {', '.join(map(repr, classes))}")
    return serialization.deserialize_object({"class": name, "config": config}, "optimizer", classes, custom_objects)
