"""Weight initializers (Keras names). Drawn on the host from gpudl's one generator, so a
seed gives the same weights on NumPy and CuPy; layers move them to their backend.

Each initializer is a callable ``(shape, dtype) -> numpy array``: the functions below by
name (``"glorot_uniform"``, ...), or objects with arguments and a saved form (Keras 3's
``keras.initializers``): ``Constant(value)``, ``Identity(gain)``, ``Zeros()``, ``Ones()``,
``RandomNormal``, ``RandomUniform``, ``TruncatedNormal``, ``GlorotUniform``, ``GlorotNormal``,
``HeUniform``, ``HeNormal``, ``LecunNormal``, ``LecunUniform``, ``Orthogonal``. An object's
``get_config()`` returns its arguments and ``from_config`` rebuilds it; :func:`serialize`
gives the record a layer's ``get_config`` stores (a name stays a name, an object becomes
``{"class": ..., "config": ...}``) and :func:`get` / :func:`deserialize` read it back.

Seeds follow Keras 3: an object made without a seed draws from gpudl's shared generator
(``gpudl.set_seed`` fixes it, and each call draws anew); ``seed=n`` makes every call of that
object give the same values, and two objects with the same seed agree.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from . import random as grandom

__all__ = ["get", "serialize", "deserialize", "compute_fans", "Initializer", "Constant", "Identity",
           "Zeros", "Ones", "RandomNormal", "RandomUniform", "TruncatedNormal", "GlorotUniform",
           "GlorotNormal", "HeUniform", "HeNormal", "LecunNormal", "LecunUniform", "Orthogonal",
           "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_normal", "lecun_uniform",
           "zeros", "ones", "orthogonal", "random_normal", "random_uniform", "truncated_normal",
           "constant", "identity"]


def compute_fans(shape):
    """fan_in, fan_out for (in, out) matrices and (out, in, kh, kw) conv kernels."""
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[2:]))
    return shape[1] * receptive, shape[0] * receptive


# ---- the draws, on a given generator ------------------------------------------------------

def _uniform(rng, low, high, shape, dtype):
    return rng.uniform(low, high, size=shape).astype(dtype, copy=False)


def _normal(rng, mean, std, shape, dtype):
    return rng.normal(mean, std, size=shape).astype(dtype, copy=False)


def _truncated_normal(rng, mean, std, shape, dtype):
    """Normal draws, those beyond two standard deviations of the mean drawn again."""
    x = rng.normal(0.0, std, size=shape)
    bad = np.abs(x) > 2 * std
    while bad.any():
        x[bad] = rng.normal(0.0, std, size=int(bad.sum()))
        bad = np.abs(x) > 2 * std
    return (x + mean).astype(dtype) if mean else x.astype(dtype)


def _scaled_truncated(rng, std, shape, dtype):
    # Keras' variance scaling with a truncated normal: 0.8796 is the std of a unit normal
    # truncated at two standard deviations, so the draws keep the asked-for std
    return _truncated_normal(rng, 0.0, std / 0.87962566103423978, shape, dtype)


def _orthogonal(rng, gain, shape, dtype):
    """Orthogonal rows/columns (Keras' default for recurrent kernels)."""
    rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    cols = shape[-1] if len(shape) else 1
    a = rng.normal(0.0, 1.0, size=(max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    q = q[:rows, :cols]
    if gain != 1.0:
        q = q * gain
    return np.ascontiguousarray(q.reshape(shape), dtype=dtype)


# ---- objects -------------------------------------------------------------------------------

def _number(cls, arg, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{cls} expected a number for {arg}, got {value!r}")
    return float(value)


def _check_seed(cls, seed):
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{cls} expected seed=None or a non-negative integer, got {seed!r}")
    return int(seed)


class Initializer:
    """Base of the initializer objects: ``init(shape, dtype=float32) -> numpy array``."""

    def __call__(self, shape, dtype=np.float32):
        raise NotImplementedError(f"{type(self).__name__} must define __call__")

    def get_config(self) -> dict:
        """The constructor's arguments (JSON-serialisable)."""
        return {}

    @classmethod
    def from_config(cls, config: dict) -> "Initializer":
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    __hash__ = object.__hash__


class _Seeded(Initializer):
    """An initializer that draws: from the shared generator, or its own seed's."""

    def __init__(self, seed=None):
        self.seed = _check_seed(type(self).__name__, seed)

    def _rng(self) -> np.random.Generator:
        return grandom.get_rng() if self.seed is None else np.random.default_rng(self.seed)

    def get_config(self):
        return {"seed": self.seed}


class Constant(Initializer):
    """Every element ``value``."""

    def __init__(self, value=0.0):
        self.value = _number("Constant", "value", value)

    def __call__(self, shape, dtype=np.float32):
        return np.full(shape, self.value, dtype=dtype)

    def get_config(self):
        return {"value": self.value}


class Zeros(Initializer):
    def __call__(self, shape, dtype=np.float32):
        return np.zeros(shape, dtype=dtype)


class Ones(Initializer):
    def __call__(self, shape, dtype=np.float32):
        return np.ones(shape, dtype=dtype)


class Identity(Initializer):
    """``gain`` times the identity matrix (2-D shapes only; a non-square one gets ones on its
    main diagonal, as ``np.eye(rows, cols)``). An identity recurrent kernel with a ReLU is
    Le, Jaitly & Hinton's IRNN (2015)."""

    def __init__(self, gain=1.0):
        self.gain = _number("Identity", "gain", gain)

    def __call__(self, shape, dtype=np.float32):
        shape = tuple(shape)
        if len(shape) != 2:
            raise ValueError(f"Identity initializer expected a 2-D shape (rows, cols), got shape {shape}")
        return (self.gain * np.eye(*shape)).astype(dtype)

    def get_config(self):
        return {"gain": self.gain}


class RandomNormal(_Seeded):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean = _number("RandomNormal", "mean", mean)
        self.stddev = _number("RandomNormal", "stddev", stddev)

    def __call__(self, shape, dtype=np.float32):
        return _normal(self._rng(), self.mean, self.stddev, shape, dtype)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class RandomUniform(_Seeded):
    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        self.minval = _number("RandomUniform", "minval", minval)
        self.maxval = _number("RandomUniform", "maxval", maxval)
        if self.maxval < self.minval:
            raise ValueError(f"RandomUniform expected minval <= maxval, got minval={minval!r}, maxval={maxval!r}")

    def __call__(self, shape, dtype=np.float32):
        return _uniform(self._rng(), self.minval, self.maxval, shape, dtype)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class TruncatedNormal(_Seeded):
    """Normal draws, values more than two standard deviations from the mean drawn again."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean = _number("TruncatedNormal", "mean", mean)
        self.stddev = _number("TruncatedNormal", "stddev", stddev)
        if self.stddev < 0:
            raise ValueError(f"TruncatedNormal expected a non-negative stddev, got {stddev!r}")

    def __call__(self, shape, dtype=np.float32):
        return _truncated_normal(self._rng(), self.mean, self.stddev, shape, dtype)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class GlorotUniform(_Seeded):
    """Uniform in +-sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010)."""

    def __call__(self, shape, dtype=np.float32):
        fan_in, fan_out = compute_fans(shape)
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return _uniform(self._rng(), -limit, limit, shape, dtype)


class GlorotNormal(_Seeded):
    """Truncated normal of std sqrt(2 / (fan_in + fan_out))."""

    def __call__(self, shape, dtype=np.float32):
        fan_in, fan_out = compute_fans(shape)
        return _scaled_truncated(self._rng(), math.sqrt(2.0 / (fan_in + fan_out)), shape, dtype)


class HeUniform(_Seeded):
    """Uniform in +-sqrt(6 / fan_in) (He et al., 2015)."""

    def __call__(self, shape, dtype=np.float32):
        fan_in, _ = compute_fans(shape)
        limit = math.sqrt(6.0 / fan_in)
        return _uniform(self._rng(), -limit, limit, shape, dtype)


class HeNormal(_Seeded):
    """Truncated normal of std sqrt(2 / fan_in)."""

    def __call__(self, shape, dtype=np.float32):
        fan_in, _ = compute_fans(shape)
        return _scaled_truncated(self._rng(), math.sqrt(2.0 / fan_in), shape, dtype)


class LecunNormal(_Seeded):
    """Truncated normal of std sqrt(1 / fan_in)."""

    def __call__(self, shape, dtype=np.float32):
        fan_in, _ = compute_fans(shape)
        return _scaled_truncated(self._rng(), math.sqrt(1.0 / fan_in), shape, dtype)


class LecunUniform(_Seeded):
    """Uniform in +-sqrt(3 / fan_in)."""

    def __call__(self, shape, dtype=np.float32):
        fan_in, _ = compute_fans(shape)
        limit = math.sqrt(3.0 / fan_in)
        return _uniform(self._rng(), -limit, limit, shape, dtype)


class Orthogonal(_Seeded):
    """``gain`` times a matrix with orthonormal rows or columns (the shape flattened to
    (prod(shape[:-1]), shape[-1]))."""

    def __init__(self, gain=1.0, seed=None):
        super().__init__(seed)
        self.gain = _number("Orthogonal", "gain", gain)

    def __call__(self, shape, dtype=np.float32):
        return _orthogonal(self._rng(), self.gain, tuple(shape), dtype)

    def get_config(self):
        return {"gain": self.gain, "seed": self.seed}


# ---- the functions by name (what a string argument resolves to) ----------------------------

def glorot_uniform(shape, dtype=np.float32):
    return GlorotUniform()(shape, dtype)


def glorot_normal(shape, dtype=np.float32):
    return GlorotNormal()(shape, dtype)


def he_uniform(shape, dtype=np.float32):
    return HeUniform()(shape, dtype)


def he_normal(shape, dtype=np.float32):
    return HeNormal()(shape, dtype)


def lecun_normal(shape, dtype=np.float32):
    return LecunNormal()(shape, dtype)


def lecun_uniform(shape, dtype=np.float32):
    return LecunUniform()(shape, dtype)


def zeros(shape, dtype=np.float32):
    return np.zeros(shape, dtype=dtype)


def ones(shape, dtype=np.float32):
    return np.ones(shape, dtype=dtype)


def orthogonal(shape, dtype=np.float32):
    """Orthogonal rows/columns (Keras' default for recurrent kernels)."""
    return Orthogonal()(shape, dtype)


def random_normal(shape, dtype=np.float32, stddev=0.05):
    return _normal(grandom.get_rng(), 0.0, stddev, shape, dtype)


def random_uniform(shape, dtype=np.float32, limit=0.05):
    return _uniform(grandom.get_rng(), -limit, limit, shape, dtype)


def truncated_normal(shape, dtype=np.float32):
    return TruncatedNormal()(shape, dtype)


def constant(shape, dtype=np.float32):
    """Keras' ``"constant"`` by name: ``Constant()``, zeros."""
    return Constant()(shape, dtype)


def identity(shape, dtype=np.float32):
    return Identity()(shape, dtype)


_NAMES = {f.__name__: f for f in (glorot_uniform, glorot_normal, he_uniform, he_normal, lecun_normal,
                                  lecun_uniform, zeros, ones, orthogonal, random_normal, random_uniform,
                                  truncated_normal, constant, identity)}
_NAMES.update({"xavier_uniform": glorot_uniform, "xavier_normal": glorot_normal})

_CLASSES = {c.__name__: c for c in (Constant, Identity, Zeros, Ones, RandomNormal, RandomUniform,
                                    TruncatedNormal, GlorotUniform, GlorotNormal, HeUniform, HeNormal,
                                    LecunNormal, LecunUniform, Orthogonal)}
#: a name's class, for ``{"class": "glorot_uniform", "config": {...}}`` records
_CLASS_OF_NAME = {"constant": Constant, "identity": Identity, "zeros": Zeros, "ones": Ones,
                  "random_normal": RandomNormal, "random_uniform": RandomUniform,
                  "truncated_normal": TruncatedNormal, "glorot_uniform": GlorotUniform,
                  "glorot_normal": GlorotNormal, "he_uniform": HeUniform, "he_normal": HeNormal,
                  "lecun_normal": LecunNormal, "lecun_uniform": LecunUniform, "orthogonal": Orthogonal,
                  "xavier_uniform": GlorotUniform, "xavier_normal": GlorotNormal}


def _expected() -> str:
    return f"expected one of {', '.join(sorted(_NAMES))} (or a class name: {', '.join(_CLASSES)}), " \
           "a {'class': ..., 'config': {...}} dict or a callable"


def _lookup_name(name: str):
    """The function or object a string names, or None."""
    if name in _CLASSES:
        return _CLASSES[name]()
    return _NAMES.get(name.lower())


def deserialize(config):
    """An initializer from a name or a ``{"class": name, "config": {...}}`` record (Keras'
    ``"class_name"`` key is read too)."""
    from .serialization import get_registered_object
    if isinstance(config, str):
        init = _lookup_name(config) or (get_registered_object(config) if ">" in config else None)
        if init is None:
            raise ValueError(f"unknown initializer {config!r}: {_expected()}")
        return init
    if isinstance(config, dict):
        name = config.get("class", config.get("class_name"))
        if not isinstance(name, str):
            raise ValueError(f"an initializer record needs a 'class' name, got {config!r}")
        cls = get_registered_object(name) if ">" in name else \
            _CLASSES.get(name) or _CLASS_OF_NAME.get(name.lower())
        if cls is None:
            raise ValueError(f"unknown initializer class {name!r} in {config!r}: expected one of "
                             f"{', '.join(_CLASSES)}")
        cfg = config.get("config") or {}
        if not isinstance(cfg, dict):
            raise ValueError(f"an initializer record's 'config' must be a dict, got {cfg!r}")
        try:
            return cls.from_config(dict(cfg))
        except TypeError as exc:
            raise ValueError(f"initializer {name} cannot take config {cfg!r}: {exc}") from None
    raise ValueError(f"cannot read an initializer from {config!r}: {_expected()}")


def get(init):
    """An initializer from its name, a ``{"class", "config"}`` record, an initializer object
    or any callable ``(shape, dtype) -> numpy array``."""
    if callable(init):
        return init
    if isinstance(init, (str, dict)):
        return deserialize(init)
    raise ValueError(f"unknown initializer {init!r}: {_expected()}")


def serialize(init):
    """What a saved config stores: a built-in name given as a string stays that string; an
    initializer object becomes ``{"class": its class name, "config": its get_config()}``; a
    record is checked and returned in that form. A custom callable cannot be saved
    (ValueError)."""
    if isinstance(init, str):
        deserialize(init)  # raises for an unknown name
        return init
    if isinstance(init, dict):
        return serialize(deserialize(init))
    from .serialization import registered_name
    key = registered_name(init)
    if key is not None:  # a user initializer registered with gpudl.register_serializable
        return {"class": key, "config": init.get_config()} if isinstance(init, Initializer) else key
    if isinstance(init, Initializer):
        if type(init) not in _CLASSES.values():
            raise ValueError(f"initializer {init!r} is not one of gpudl's classes ({', '.join(_CLASSES)}): "
                             "it cannot be saved")
        return {"class": type(init).__name__, "config": init.get_config()}
    for name, fn in _NAMES.items():
        if fn is init:
            return name
    raise ValueError(f"a custom initializer callable {init!r} cannot be saved: use a name or one of "
                     f"{', '.join(_CLASSES)}, or register it with @gpudl.register_serializable(package=...)")
