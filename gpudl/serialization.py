"""The one place that writes and reads ``{"class": ..., "config": ...}`` records (Keras'
``saving/serialization_lib.py``), and the registry of user classes and functions.

A built-in gpudl class is recorded by its name (``"Dense"``). A user class or function is
recorded only if it is registered, under ``"package>Name"``: so a user class that happens to
be named ``Dense`` never replaces the built-in when a model is loaded, and loading resolves
exactly the object that was saved. ``custom_objects={"Name": obj}`` at load time works too,
as in Keras.
"""
from __future__ import annotations

import json
import numbers

__all__ = ["register_serializable", "registered_name", "get_registered_object", "serialize_object",
           "deserialize_object", "check_json", "serialize_layer", "deserialize_layer", "clear_registry"]

_CUSTOM: dict = {}


def register_serializable(package="Custom", name=None):
    """Decorator: register a user layer, loss, metric, activation or initializer so that models
    using it save and load (Keras' ``register_keras_serializable``). It is saved as
    ``"package>name"`` (name defaults to the class or function name)."""
    if not isinstance(package, str) or not package or ">" in package:
        raise ValueError(f"register_serializable expected a non-empty package name without '>', got {package!r}")

    def decorator(obj):
        key = f"{package}>{name or obj.__name__}"
        if key in _CUSTOM and _CUSTOM[key] is not obj:
            old = _CUSTOM[key]
            if getattr(old, "__qualname__", None) != getattr(obj, "__qualname__", None) or \
                    getattr(old, "__module__", None) != getattr(obj, "__module__", None):
                raise ValueError(f"register_serializable: {key!r} is already registered to {old!r}")
        if isinstance(obj, type) and "get_config" not in _own_attrs(obj) and _needs_config(obj):
            raise TypeError(f"register_serializable: {obj.__name__} takes constructor arguments, so it must "
                            "define get_config() returning them")
        _CUSTOM[key] = obj
        try:
            obj._gpudl_registered_name = key
        except (AttributeError, TypeError):
            pass
        return obj
    return decorator


def _own_attrs(cls):
    out = set()
    for k in cls.__mro__:
        if k.__module__.startswith("gpudl."):
            break
        out |= set(vars(k))
    return out


def _needs_config(cls) -> bool:
    import inspect
    try:
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    except (TypeError, ValueError):
        return False
    return any(p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
               for p in params)


def registered_name(obj):
    """``"package>Name"`` for a registered object (or an instance of a registered class), else None."""
    for o in (obj, type(obj)):
        key = vars(o).get("_gpudl_registered_name") if hasattr(o, "__dict__") else None
        if key is not None and _CUSTOM.get(key) is o:
            return key
    return None


def get_registered_object(name, custom_objects=None):
    """The object for ``name``: from ``custom_objects`` (by full name or by the part after '>'),
    else the registry; None if unknown."""
    custom_objects = custom_objects or {}
    if name in custom_objects:
        return custom_objects[name]
    short = name.split(">", 1)[-1]
    if short in custom_objects:
        return custom_objects[short]
    return _CUSTOM.get(name)


def clear_registry():
    """Forget every registered object (tests)."""
    _CUSTOM.clear()


def check_json(value, what):
    """``value`` if it is plain JSON data (a record can hold nothing else), else a ValueError."""
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} cannot be saved: {exc}") from None
    return value


def _is_builtin(cls) -> bool:
    return cls.__module__ == "gpudl" or cls.__module__.startswith("gpudl.")


def serialize_object(obj, kind: str, builtins: dict):
    """``{"class": name, "config": obj.get_config()}``: a built-in by its name (when ``builtins``
    maps that name to exactly this class), a registered class by its registered name."""
    cls = type(obj)
    key = registered_name(obj)
    if key is None:
        if _is_builtin(cls) and builtins.get(cls.__name__) is cls:
            key = cls.__name__
        else:
            raise ValueError(f"the {kind} {cls.__name__} is not one of gpudl's and is not registered, so it "
                             f"cannot be saved: decorate it with @gpudl.register_serializable(package=...)")
    cfg = obj.get_config()
    return {"class": key, "config": check_json(cfg, f"{kind} {cls.__name__}'s config")}


def deserialize_object(record, kind: str, builtins: dict, custom_objects=None):
    """The object a :func:`serialize_object` record describes (``cls.from_config(config)``)."""
    if not isinstance(record, dict) or "class" not in record:
        raise ValueError(f"could not read a {kind} from {record!r}: expected {{'class': ..., 'config': {{...}}}}")
    name = record["class"]
    if not isinstance(name, str):
        raise ValueError(f"could not read a {kind}: class name {name!r} is not a string")
    cls = get_registered_object(name, custom_objects)
    if cls is None:
        cls = builtins.get(name) if ">" not in name else None
    if cls is None:
        hint = (" (it was registered with gpudl.register_serializable when saved: import the module that "
                "registers it, or pass custom_objects)") if ">" in name else ""
        raise ValueError(f"unknown {kind} class {name!r}{hint}")
    cfg = record.get("config") or {}
    if not isinstance(cfg, dict):
        raise ValueError(f"{kind} {name!r}: expected a config dict, got {type(cfg).__name__}")
    from_config = getattr(cls, "from_config", None)
    if from_config is None:
        return cls(**cfg)
    import inspect
    try:
        takes_custom = "custom_objects" in inspect.signature(from_config).parameters
    except (TypeError, ValueError):
        takes_custom = False
    return from_config(dict(cfg), custom_objects) if takes_custom else from_config(dict(cfg))


def _layer_builtins():
    from .layers.base import _REGISTRY
    return _REGISTRY


def serialize_layer(layer) -> dict:
    return serialize_object(layer, "layer", _layer_builtins())


def deserialize_layer(record, custom_objects=None):
    from .layers.base import Layer, import_layer_home
    if isinstance(record, dict):
        import_layer_home(record.get("class"))
    layer = deserialize_object(record, "layer", _layer_builtins(), custom_objects)
    if not isinstance(layer, Layer):
        raise ValueError(f"{record.get('class')!r} made {type(layer).__name__}, not a gpudl layer")
    return layer


def is_number(v) -> bool:
    return isinstance(v, numbers.Number) and not isinstance(v, bool)
