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
        if ">" in activation:  # a user function registered with gpudl.register_serializable
            from .serialization import get_registered_object
            fn = get_registered_object(activation)
            if fn is not None:
                return fn
            raise ValueError(f"unknown activation {activation!r}: it was registered with "
                             "gpudl.register_serializable when saved; import the module that registers it")
        raise ValueError(f"unknown activation {activation!r}: expected one of "
                         f"{', '.join(map(repr, NAMES))} or a callable")
    if callable(activation):
        return activation
    raise ValueError(f"activation must be a name ({', '.join(map(repr, NAMES))}) or a callable, "
                     f"got {type(activation).__name__}")


def name_of(activation):
    """The saved name of an activation ("package>name" for a registered user function), or
    None for a custom callable that is not registered."""
    if activation is None:
        return "linear"
    if isinstance(activation, str):
        return activation if ">" in activation else activation.lower()
    for k, v in _TABLE.items():
        if v is activation:
            return k
    from .serialization import registered_name
    return registered_name(activation)
