"""Sequential: a stack of layers, a Model with one input and one output (Keras' Sequential).

Training lives apart, in ``gpudl.training`` (compile / fit / evaluate / predict and their
steps); files and weights in Model (gpudl.models.functional).
"""
from __future__ import annotations

import numpy as np

from .. import backend
from .. import serialization
from ..autograd import Tensor, no_grad
from ..layers.base import Layer
from ..training.epoch_iterator import as_array
from .functional import Model, accepts_mask, reset_stateful, summary_table

__all__ = ["Sequential", "find_layer"]


def find_layer(model, layers, name=None, index=None) -> Layer:
    """``model.get_layer``: a layer of ``layers`` by ``name`` or by position ``index``."""
    if name is not None and index is not None:
        raise ValueError(f"{model.describe()}.get_layer: pass a layer name or an index, not both")
    if index is not None:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise ValueError(f"{model.describe()}.get_layer expected an integer index, got {index!r}")
        n = len(layers)
        if not -n <= index < n:
            raise ValueError(f"{model.describe()}.get_layer: index {index} is out of range for a model "
                             f"with {n} layers")
        return layers[index]
    if name is not None:
        for layer in layers:
            if layer.name == name:
                return layer
        names = ", ".join(repr(l.name) for l in layers) or "none"
        raise ValueError(f"{model.describe()}.get_layer: no layer named {name!r}; the layers are {names}")
    raise ValueError(f"{model.describe()}.get_layer: pass a layer name or an index")


class Sequential(Model):
    """A stack of layers; ``model(x)`` runs them in order, masks passed along (a layer that
    makes one, Embedding(mask_zero=True) or Masking, hands it to the layers after it)."""

    #: the input shape without the batch axis (None until given or built); an attribute here,
    #: where a graph Model derives it from its Inputs
    input_shape = None
    output_masks = None

    def __init__(self, layers=None, input_shape=None, name=None):
        super(Model, self).__init__(name)
        self.layers: list[Layer] = []
        self.input_shape = None if input_shape is None else self._check_input_shape(input_shape)
        self._output_shapes = None
        for layer in layers or []:
            self.add(layer)

    @staticmethod
    def _check_input_shape(shape):
        if isinstance(shape, int):
            shape = (shape,)
        try:
            shape = tuple(int(s) for s in shape)
        except (TypeError, ValueError):
            raise ValueError(f"input_shape expected a tuple of positive integers, got {shape!r}") from None
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"input_shape expected a tuple of positive integers, got {shape!r}")
        return shape

    def add(self, layer):
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expected a gpudl layer, got {type(layer).__name__}")
        if any(layer is l for l in self.layers):
            raise ValueError(f"{layer.describe()} is already in this model")
        declared = layer.declared_input_shape
        if declared is not None and not self.layers:
            # Keras 2: Dense(500, input_dim=784) as the first layer gives the model its input shape
            if self.input_shape is None:
                self.input_shape = tuple(declared)
            elif tuple(declared) != tuple(self.input_shape):
                raise ValueError(f"{layer.describe()} was given input_shape {tuple(declared)}, but "
                                 f"{self.describe()} has input_shape {tuple(self.input_shape)}")
        self.layers.append(layer)
        self.built = False

    def pop(self) -> Layer:
        """Remove the last layer and return it (Keras' ``pop``); the model rebuilds on next use."""
        if not self.layers:
            raise ValueError(f"{self.describe()} has no layers to pop")
        layer = self.layers.pop()
        self.built, self._output_shapes = False, None
        return layer

    def get_layer(self, name=None, index=None) -> Layer:
        """A layer by ``name`` or by position ``index`` (Keras' ``get_layer``)."""
        return find_layer(self, self.layers, name, index)

    def sublayers(self):
        return list(self.layers)

    # ---- building and running ---------------------------------------------------------
    def build(self, x=None):
        """Build every layer from ``input_shape`` with one dummy sample; records output shapes."""
        if isinstance(x, Tensor):
            shape = x.shape[1:]
        elif x is not None:
            shape = self._check_input_shape(x)
        else:
            shape = self.input_shape
        if shape is None:
            raise ValueError(f"{self.describe()} cannot be built without an input shape: pass input_shape= "
                             "or call it on data first")
        if self.input_shape is None:
            self.input_shape = tuple(shape)
        if not self.layers:
            raise ValueError(f"{self.describe()} has no layers")
        dummy = Tensor(np.zeros((1,) + tuple(self.input_shape), dtype=backend.default_dtype))
        training = self.training
        self.train(False)
        shapes = []
        try:
            with no_grad():
                h = dummy
                for layer in self.layers:
                    h = layer(h)
                    shapes.append(h.shape[1:])
        finally:
            self.train(training)
            self._clear_losses()
            reset_stateful(self)  # the dummy sample must not become a stateful layer's state
        for i in range(1, len(self.layers)):
            declared = self.layers[i].declared_input_shape
            if declared is not None and tuple(declared) != tuple(shapes[i - 1]):
                raise ValueError(f"{self.layers[i].describe()} was given input_shape {tuple(declared)}, but "
                                 f"the layer before it outputs shape {tuple(shapes[i - 1])}")
        self._output_shapes = shapes
        self.built = True
        self.dtype = self.layers[0].dtype

    def _call(self, x, **kwargs):
        if not isinstance(x, Tensor):
            x = as_array(x, f"{self.describe()} input")
            if x is None:
                raise ValueError(f"{self.describe()} input: expected an array, got None")
            x = Tensor(x)
        if not self.built:
            self.build(x)
        if self.input_shape is not None and tuple(x.shape[1:]) != tuple(self.input_shape):
            raise ValueError(f"{self.describe()} expected input of shape (batch, "
                             f"{', '.join(map(str, self.input_shape))}), got shape {x.shape}")
        return self.forward(x, **kwargs)

    __call__ = _call

    def forward(self, x, logits=False, mask=None):
        """Run the layers; ``logits=True`` asks the last layer to stop before its final
        activation (see ``output_activation``), for the losses fused on logits. A mask (given,
        or made by a layer) goes to every later layer that takes one; the output's mask is left
        in ``output_masks``."""
        if isinstance(logits, (list, tuple)):
            logits = bool(logits[0])
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            kwargs = {"logits": True} if logits and i == last and layer.output_activation() else {}
            if mask is not None and accepts_mask(layer):
                kwargs["mask"] = mask
            y = layer(x, **kwargs)
            mask = layer.compute_mask(x, mask)
            x = y
        self.output_masks = [mask]
        return x

    # the one-input, one-output view the trainer reads from every model
    @property
    def inputs(self):
        return None

    @property
    def input_shapes(self) -> list:
        return [None if self.input_shape is None else tuple(self.input_shape)]

    @property
    def input_dtypes(self) -> list:
        # token ids stay integers on their way to a first Embedding (no float round trip,
        # and no check of the values on the device)
        from ..layers.embedding import Embedding
        first = self.layers[0] if self.layers else None
        return [np.dtype(np.int64) if isinstance(first, Embedding) else None]

    @property
    def output_shapes(self) -> list:
        return [self.output_shape]

    @property
    def input_names(self) -> list:
        return ["input"]

    @property
    def output_names(self) -> list:
        return [self.layers[-1].name if self.layers else "output"]

    def output_activations(self) -> list:
        return [self.output_activation()]

    @property
    def output_shape(self):
        """The output's shape without the batch axis (None before build)."""
        return tuple(self._output_shapes[-1]) if self._output_shapes else None

    def output_activation(self):
        """The activation the last layer ends with that it can leave out ("softmax",
        "sigmoid") or None: what the trainer asks before fusing a loss with it."""
        return self.layers[-1].output_activation() if self.layers else None

    # ---- description ------------------------------------------------------------------
    def summary(self, print_fn=print) -> str:
        """A table of layers, output shapes and parameter counts; printed and returned."""
        if not self.built:
            self.build()
        rows = [("Layer (type)", "Output Shape", "Param #")]
        for layer, shape in zip(self.layers, self._output_shapes):
            count = sum(int(p.size) for p in layer.params())
            rows.append((f"{layer.name} ({type(layer).__name__})", str((None,) + tuple(shape)), f"{count:,}"))
        return summary_table(self, rows, print_fn)

    # ---- config -------------------------------------------------------------------------
    def get_config(self) -> dict:
        return {"name": self.name, "input_shape": list(self.input_shape) if self.input_shape else None,
                "layers": [serialization.serialize_layer(l) for l in self.layers]}

    @classmethod
    def from_config(cls, config: dict, custom_objects=None) -> "Sequential":
        layers = [serialization.deserialize_layer(item, custom_objects) for item in config["layers"]]
        return cls(layers, input_shape=config.get("input_shape"), name=config.get("name"))

