"""Activation names accepted by ``activation=`` arguments."""
from __future__ import annotations

from . import functional as F

__all__ = ["get", "NAMES"]


def linear(x):
    return x


_TABLE = {
    "relu": F.relu,
    "sigmoid": F.sigmoid,
    "tanh": F.tanh,
    "softmax": F.softmax,
    "leaky_relu": F.leaky_relu,
    "linear": linear,
}
NAMES = tuple(_TABLE)


def get(activation):
    """A callable from a name, None (linear) or a callable."""
    if activation is None:
        return linear
    if isinstance(activation, str):
        key = activation.lower()
        if key in _TABLE:
            return _TABLE[key]
        raise ValueError(f"unknown activation {activation!r}: expected one of "
                         f"{', '.join(map(repr, NAMES))} or a callable")
    if callable(activation):
        return activation
    raise ValueError(f"activation must be a name ({', '.join(map(repr, NAMES))}) or a callable, "
                     f"got {type(activation).__name__}")


def name_of(activation):
    """The saved name of an activation, or None for a custom callable."""
    if activation is None:
        return "linear"
    if isinstance(activation, str):
        return activation.lower()
    for k, v in _TABLE.items():
        if v is activation:
            return k
    return None
