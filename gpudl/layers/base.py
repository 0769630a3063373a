"""The Layer base: lazy build from the first input, ordered parameters, input checks.

A layer composes functional ops; it never writes its own backward pass.
"""
from __future__ import annotations

import inspect
import os
import re
import sys
import warnings
from collections import defaultdict

import numpy as np

from .. import backend
from .. import initializers
from ..autograd import Parameter, Tensor

__all__ = ["Layer", "InputSpec", "get_layer_class", "reset_name_counters", "warn_renamed", "renamed_arg"]

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep

_REGISTRY: dict[str, type] = {}
_COUNTERS: defaultdict = defaultdict(int)


def reset_name_counters():
    """Start automatic layer names afresh ('dense', 'dense_1', ...)."""
    _COUNTERS.clear()


def _snake(name: str) -> str:
    # Keras' rule: Conv2D -> conv2d, MaxPool2D -> max_pool2d, SimpleRNN -> simple_rnn
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def warn_renamed(old: str, new: str, where: str) -> None:
    """A DeprecationWarning for a Keras 1 argument, pointed at the first caller outside gpudl
    (so Python's default filter shows it in a script's ``__main__``)."""
    level, frame = 2, sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(f"{where}: {old}= is the Keras 1 name, use {new}= (it means the same)",
                  DeprecationWarning, stacklevel=level)


def renamed_arg(where: str, old: str, old_value, new: str, new_value, new_given: bool):
    """The value of ``new`` after accepting the deprecated spelling ``old``: both given -> error."""
    if old_value is None:
        return new_value
    if new_given:
        raise ValueError(f"{where} got both {old}= and {new}=: pass only {new}= ({old}= is its Keras 1 name)")
    warn_renamed(old, new, where)
    return old_value


def _input_shape_arg(cls_name, input_shape, input_dim):
    """Keras' ``input_shape=`` / ``input_dim=`` on a layer: the shape without the batch axis."""
    if input_dim is not None:
        if isinstance(input_dim, bool) or not isinstance(input_dim, int) or input_dim < 1:
            raise ValueError(f"{cls_name} expected a positive integer for input_dim, got {input_dim!r}")
        if input_shape is not None and tuple(input_shape) != (input_dim,):
            raise ValueError(f"{cls_name} got input_dim={input_dim} and input_shape={input_shape!r}, which "
                             "disagree: pass one of them")
        return (input_dim,)
    if input_shape is None:
        return None
    if isinstance(input_shape, int):
        input_shape = (input_shape,)
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"{cls_name} expected input_shape as a tuple of positive integers (without the "
                         f"batch axis), got {input_shape!r}")
    return shape


class _LayerMeta(type):
    """Lets every layer take Keras' ``input_shape=`` / ``input_dim=`` (read by Sequential from
    its first layer) without each constructor spelling them out."""

    def __call__(cls, *args, **kwargs):
        # a constructor that names one of them itself (Embedding's input_dim, the vocabulary
        # size; Sequential's input_shape) keeps its own meaning
        own = cls.__dict__.get("_own_init_args")
        if own is None:
            own = frozenset(inspect.signature(cls.__init__).parameters)
            cls._own_init_args = own
        input_shape = None if "input_shape" in own else kwargs.pop("input_shape", None)
        input_dim = None if "input_dim" in own else kwargs.pop("input_dim", None)
        shape = _input_shape_arg(cls.__name__, input_shape, input_dim)
        layer = super().__call__(*args, **kwargs)
        if shape is not None:
            layer.declared_input_shape = shape
        return layer


#: built-in layer classes that live outside gpudl.layers, imported when a saved model names them
_ELSEWHERE = {"OnnxNode": "gpudl.onnx.importer"}


def import_layer_home(name) -> None:
    """Import the module of a built-in layer class defined outside gpudl.layers, if ``name``
    is one and it is not registered yet (a saved model names it in a fresh process)."""
    if isinstance(name, str) and name not in _REGISTRY and name in _ELSEWHERE:
        import importlib  # noqa: PLC0415
        importlib.import_module(_ELSEWHERE[name])


def get_layer_class(name: str) -> type:
    import_layer_home(name)
    if name not in _REGISTRY:
        raise ValueError(f"unknown layer class {name!r}: expected one of {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


class InputSpec:
    """What a built layer accepts: a rank (exact or minimum) and fixed sizes of some axes."""

    def __init__(self, ndim=None, min_ndim=None, axes=None):
        self.ndim, self.min_ndim, self.axes = ndim, min_ndim, dict(axes or {})

    def describe(self) -> str:
        parts = []
        if self.ndim is not None:
            parts.append(f"rank {self.ndim}")
        elif self.min_ndim is not None:
            parts.append(f"rank >= {self.min_ndim}")
        for ax, n in self.axes.items():
            parts.append("last axis %d" % n if ax == -1 else f"axis {ax} of size {n}")
        return ", ".join(parts)

    def accepts(self, shape) -> bool:
        nd = len(shape)
        if self.ndim is not None and nd != self.ndim:
            return False
        if self.min_ndim is not None and nd < self.min_ndim:
            return False
        for ax, n in self.axes.items():
            if not -nd <= ax < nd or shape[ax] != n:
                return False
        return True


def _call_wrapper(call):
    """What every ``layer(...)`` does before the layer's own ``__call__``: symbolic inputs
    (``gpudl.Input`` and what layers made of it) build a graph node instead of running, and
    Keras' ``training=`` runs the call in that mode (and restores the previous one after)."""

    def __call__(self, *args, training=None, **kwargs):
        if args and _is_symbolic(args[0]):
            from ..models.functional import symbolic_call
            return symbolic_call(self, args, kwargs, training)
        if training is None:
            return call(self, *args, **kwargs)
        before = self._modes()
        self.train(bool(training))
        try:
            return call(self, *args, **kwargs)
        finally:
            self._restore_modes(before)
    __call__._gpudl_wrapped = True
    __call__.__wrapped__ = call
    __call__.__doc__ = call.__doc__
    return __call__


_SYMBOLIC = []  # [KerasTensor], imported on first use (models imports layers)


def _is_symbolic(x):
    if isinstance(x, (Tensor, np.ndarray)):
        return False
    if not _SYMBOLIC:
        from ..models.functional import KerasTensor
        _SYMBOLIC.append(KerasTensor)
    kt = _SYMBOLIC[0]
    return isinstance(x, kt) or isinstance(x, (list, tuple)) and any(isinstance(v, kt) for v in x)


class Layer(metaclass=_LayerMeta):
    """Base of every layer: ``layer(x)`` builds on first use, checks, then runs ``forward``."""

    #: the input shape (no batch axis) given as ``input_shape=`` / ``input_dim=``, or None
    declared_input_shape = None

    #: rank checked before build (None: any); subclasses set it
    input_ndim = None
    input_min_ndim = None

    #: True when the layer passes a mask on unchanged (pointwise and last-axis layers): Keras'
    #: ``supports_masking``. Layers that make or change masks override ``compute_mask``.
    supports_masking = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _REGISTRY.setdefault(cls.__name__, cls)
        if "__call__" in cls.__dict__ and not getattr(cls.__dict__["__call__"], "_gpudl_wrapped", False):
            cls.__call__ = _call_wrapper(cls.__dict__["__call__"])

    def __init__(self, name: str | None = None):
        if name is None:
            base = _snake(type(self).__name__)
            k = _COUNTERS[base]
            _COUNTERS[base] += 1
            name = base if k == 0 else f"{base}_{k}"
        elif not isinstance(name, str) or not name:
            raise ValueError(f"layer name must be a non-empty string, got {name!r}")
        self.name = name
        self.built = False
        self.training = True
        self.input_spec: InputSpec | None = None
        self._params: dict[str, Parameter] = {}
        self.dtype = None
        self._trainable = True
        self._losses: list = []

    # ---- description ----------------------------------------------------------------
    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"

    def describe(self) -> str:
        return f"{type(self).__name__} '{self.name}'"

    def get_config(self) -> dict:
        """Constructor arguments (JSON-serialisable); used by save/load."""
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: dict) -> "Layer":
        return cls(**config)

    # ---- parameters -----------------------------------------------------------------
    def add_param(self, name: str, shape, initializer="zeros", regularizer=None, like: Tensor | None = None) -> Parameter:
        """Create a parameter on ``like``'s backend and dtype, ordered by creation."""
        dtype = self.dtype or backend.default_dtype
        init = initializers.get(initializer)
        value = np.array(init(tuple(shape), dtype=dtype), dtype=dtype, order="C")  # 0-d stays 0-d
        if like is not None and backend.is_cupy_array(like.data):
            value = backend.to_backend(value, "cupy")
        p = Parameter._wrap_param(value, f"{self.name}/{name}", regularizer)
        self._params[name] = p
        setattr(self, name, p)
        return p

    # ---- weights as host arrays (Keras' get_weights / set_weights) ---------------------
    def get_weights(self) -> list:
        """Host (NumPy) copies of every parameter, in ``params()`` order ([] before build)."""
        return [backend.to_numpy(p.data).copy() for p in self.params()]

    def set_weights(self, weights) -> None:
        """Copy a list of arrays (as ``get_weights`` returns) into the parameters, in place."""
        params = self.params()
        weights = list(weights)
        if len(weights) != len(params):
            built = "" if self.built else " (it is not built yet: call it on data first)"
            raise ValueError(f"{self.describe()}.set_weights expected {len(params)} arrays{built}, "
                             f"got {len(weights)}")
        for p, w in zip(params, weights):
            w = np.asarray(backend.to_numpy(w))
            if tuple(w.shape) != tuple(p.shape):
                raise ValueError(f"{self.describe()}.set_weights: parameter {p.name} expected shape "
                                 f"{tuple(p.shape)}, got {tuple(w.shape)}")
        for p, w in zip(params, weights):
            w = np.asarray(backend.to_numpy(w))
            p.data[...] = backend.to_backend(w.astype(p.dtype, copy=False), backend.backend_of(p.data))

    def sublayers(self) -> list:
        """Layers held inside this one (Residual, Highway, Bidirectional...)."""
        return []

    def params(self) -> list:
        """Every Parameter of this layer and its sublayers, in a fixed order, each once (a
        layer reached twice, shared or reused inside Residual, adds its Parameters once)."""
        out, seen = [], set()
        for p in self._own_and_nested_params():
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
        return out

    def _own_and_nested_params(self):
        yield from self._params.values()
        for sub in self.sublayers():
            yield from sub.params()

    # ---- trainable or frozen ----------------------------------------------------------
    @property
    def trainable(self) -> bool:
        """False freezes the layer and every layer inside it: no update, counted as non-trainable."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._trainable = bool(value)
        for sub in self.sublayers():
            sub.trainable = value

    def trainable_params(self) -> list:
        """The Parameters an optimizer updates: those of trainable layers, each once."""
        frozen = {id(p) for p in self.non_trainable_params()}
        return [p for p in self.params() if id(p) not in frozen]

    def non_trainable_params(self) -> list:
        """Parameters of frozen layers, and those marked ``trainable = False`` (moving statistics)."""
        out, seen = [], set()

        def walk(layer, frozen):
            frozen = frozen or not layer.trainable
            for p in layer._params.values():
                if (frozen or not getattr(p, "trainable", True)) and id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
            for sub in layer.sublayers():
                walk(sub, frozen)
        walk(self, False)
        return out

    @property
    def trainable_weights(self) -> list:
        return self.trainable_params()

    @property
    def non_trainable_weights(self) -> list:
        return self.non_trainable_params()

    # ---- extra loss terms -------------------------------------------------------------
    def add_loss(self, loss) -> None:
        """Add a scalar term (a Tensor, e.g. a VAE's KL divergence) to the training loss of
        the model this layer runs in; call it inside ``forward``. Terms last until the next
        forward pass of the model."""
        if not isinstance(loss, Tensor):
            raise TypeError(f"{self.describe()}.add_loss expected a scalar Tensor, got {type(loss).__name__}")
        if loss.size != 1:
            raise ValueError(f"{self.describe()}.add_loss expected a scalar Tensor, got shape {loss.shape}")
        self._losses.append(loss if loss.ndim == 0 else loss.reshape(()))

    @property
    def losses(self) -> list:
        """The terms added with ``add_loss`` by this layer and the layers inside it."""
        out = list(self._losses)
        for sub in self.sublayers():
            out.extend(sub.losses)
        return out

    def _clear_losses(self) -> None:
        self._losses = []
        for sub in self.sublayers():
            sub._clear_losses()

    def output_activation(self):
        """The final activation this layer applies and ``forward(x, logits=True)`` leaves out
        ("softmax" or "sigmoid"), or None: lets a loss train fused on the logits."""
        return None

    def train(self, mode: bool = True) -> "Layer":
        self.training = mode
        for sub in self.sublayers():
            sub.train(mode)
        return self

    def eval(self) -> "Layer":
        return self.train(False)

    def _modes(self) -> list:
        """Each layer's ``training`` flag, this one's and its sublayers', in walk order."""
        out = [self.training]
        for sub in self.sublayers():
            out.extend(sub._modes())
        return out

    def _restore_modes(self, modes) -> None:
        it = iter(modes)

        def walk(layer):
            layer.training = next(it)
            for sub in layer.sublayers():
                walk(sub)
        walk(self)

    # ---- masks ----------------------------------------------------------------------
    def compute_mask(self, x, mask=None):
        """The mask of this layer's output, given its input ``x`` and the input's ``mask``
        (a boolean array (batch, timesteps) on x's backend, or None): Keras' ``compute_mask``.
        By default a layer that ``supports_masking`` passes it on, any other drops it."""
        return mask if self.supports_masking else None

    # ---- call -----------------------------------------------------------------------
    def _call(self, x, **kwargs):
        if not isinstance(x, Tensor):
            x = Tensor(x)
        dt = x.dtype
        if dt.kind not in "fiub":
            raise TypeError(f"{self.describe()} expected a numeric input, got dtype {dt}")
        if not self.built:
            self._check_rank(x.shape)
            self.dtype = dt if dt.kind == "f" else np.dtype(backend.default_dtype)
            if dt.kind != "f":
                x = Tensor._wrap(x.data.astype(self.dtype))
            self.build(x)
            self.built = True
        else:
            if self.input_spec is not None and not self.input_spec.accepts(x.shape):
                raise ValueError(f"{self.describe()} expected input with {self.input_spec.describe()}, "
                                 f"got shape {x.shape}")
            if dt != self.dtype and self.dtype is not None:
                x = x.astype(self.dtype) if x.requires_grad else Tensor._wrap(x.data.astype(self.dtype))
            if self._params:
                first = next(iter(self._params.values()))
                backend.check_same_backend([x.data, first.data], self.describe())
        return self.forward(x, **kwargs)

    __call__ = _call_wrapper(_call)

    def _check_rank(self, shape):
        nd = len(shape)
        if self.input_ndim is not None and nd != self.input_ndim:
            raise ValueError(f"{self.describe()} expected input of rank {self.input_ndim}, got shape {shape}")
        if self.input_min_ndim is not None and nd < self.input_min_ndim:
            raise ValueError(f"{self.describe()} expected input of rank >= {self.input_min_ndim}, got shape {shape}")

    def build(self, x: Tensor) -> None:
        """Create parameters from the first input; subclasses override (may do nothing)."""

    def forward(self, x: Tensor, **kwargs) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define forward")

    # ---- backend moves --------------------------------------------------------------
    def to(self, name: str) -> "Layer":
        """Move every parameter to backend ``name`` in place."""
        for p in self.params():
            p.data = backend.to_backend(p.data, name)
            if p.grad is not None:
                p.grad = backend.to_backend(p.grad, name)
        return self
