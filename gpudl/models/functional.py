"""The functional API: ``Input`` makes a symbolic tensor, layers called on symbolic tensors
record graph nodes, and ``Model(inputs, outputs)`` runs that graph (Keras' functional models).

A symbolic tensor (``KerasTensor``) knows its shape without the batch axis, its dtype and the
node that made it. Calling a layer on one runs the layer once on a zero batch of one sample in
inference mode, without gradients (which builds its parameters and gives the output shapes
and whether a mask comes out), then records the node. So every layer works in a graph without
writing an output-shape rule of its own.

``Model`` is a Layer and a Trainer: a DAG with several inputs and outputs, shared layers (one
layer in several nodes: the same Parameters, updated once per step), nested models (a Model
or Sequential called on symbolic tensors is one node), masks carried along the edges.
"""
from __future__ import annotations

import inspect

import numpy as np

from .. import backend
from ..autograd import Tensor, no_grad
from ..errors import ModelFileError
from ..layers.base import Layer

__all__ = ["Input", "InputLayer", "KerasTensor", "Model", "symbolic_call", "accepts_mask"]

FORMAT = "gpudl-model"
WEIGHTS_FORMAT = "gpudl-weights"
FORMAT_VERSION = 1


class Node:
    """One call of ``layer``: its symbolic inputs (``args``: the first positional argument,
    a KerasTensor or a list of them; ``tensor_kwargs``: keyword arguments that are symbolic,
    such as ``initial_state``), its other keyword arguments and its outputs."""

    def __init__(self, layer, args, tensor_kwargs, kwargs, outputs, training=None):
        self.layer = layer
        self.args = args
        self.tensor_kwargs = tensor_kwargs
        self.kwargs = kwargs
        self.outputs = outputs
        self.training = training
        self.index = len(layer._inbound_nodes)
        layer._inbound_nodes.append(self)

    @property
    def input_tensors(self) -> list:
        out = list(self.args) if isinstance(self.args, (list, tuple)) else [self.args]
        for v in self.tensor_kwargs.values():
            out.extend(v if isinstance(v, (list, tuple)) else [v])
        return out


class KerasTensor:
    """A symbolic tensor: ``shape`` (with None for the batch axis, as Keras prints it),
    ``dtype``, and the node (layer call) that made it."""

    def __init__(self, shape, dtype, node=None, index=0, has_mask=False):
        self._shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.node = node
        self.index = index
        self.has_mask = has_mask

    @property
    def shape(self):
        return (None,) + self._shape

    @property
    def ndim(self) -> int:
        return len(self._shape) + 1

    @property
    def name(self) -> str:
        layer = self.node.layer
        return layer.name if len(self.node.outputs) == 1 else f"{layer.name}/{self.index}"

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"

    def __array__(self, *args, **kwargs):
        raise TypeError(f"{self!r} is symbolic (it has no values): build a gpudl.Model from it and "
                        "call the model on data")

    def __bool__(self):
        raise TypeError(f"{self!r} is symbolic: it has no truth value")


class InputLayer(Layer):
    """The layer behind ``gpudl.Input``: it has no parameters and passes its input on."""

    def __init__(self, shape=None, dtype=None, name=None, batch_size=None):
        super().__init__(name)
        self.shape = _check_shape(shape, self.name)
        self.dtype = np.dtype(dtype or backend.default_dtype)
        if self.dtype.kind not in "fiub":
            raise ValueError(f"Input '{self.name}' expected a numeric dtype, got {self.dtype}")
        self.batch_size = batch_size
        self._inbound_nodes = []
        self.built = True
        self.output = KerasTensor(self.shape, self.dtype)
        self.output.node = Node(self, [], {}, {}, [self.output])

    def _call(self, x, **kwargs):
        return x if isinstance(x, Tensor) else Tensor(x)

    __call__ = _call

    def get_config(self):
        return {"name": self.name, "shape": list(self.shape), "dtype": str(self.dtype)}


def _check_shape(shape, name):
    if shape is None:
        raise ValueError(f"Input '{name}' expected shape= (the shape of one sample, without the batch "
                         "axis, e.g. shape=(784,)), got None")
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)
    try:
        dims = tuple(shape)
    except TypeError:
        raise ValueError(f"Input '{name}' expected shape as a tuple of positive integers, got {shape!r}") from None
    if any(d is None for d in dims):
        raise ValueError(f"Input '{name}' got shape {tuple(dims)}: gpudl graphs fix every axis but the batch "
                         "axis; pad sequences to one length (masks skip the padding)")
    if any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in dims):
        raise ValueError(f"Input '{name}' expected shape as a tuple of positive integers, got {shape!r}")
    return tuple(int(d) for d in dims)


def Input(shape=None, name=None, dtype=None, batch_size=None, batch_shape=None):
    """A symbolic input of ``shape`` (one sample, no batch axis): Keras' ``keras.Input``.
    ``dtype`` defaults to the float dtype; integer inputs (token ids for Embedding) keep
    their integer type through fit and predict."""
    if batch_shape is not None:
        if shape is not None:
            raise ValueError("Input: pass shape= or batch_shape=, not both")
        batch_shape = tuple(batch_shape)
        batch_size, shape = batch_shape[0], batch_shape[1:]
    return InputLayer(shape=shape, dtype=dtype, name=name, batch_size=batch_size).output


# ---- calling a layer on symbolic tensors ---------------------------------------------------

def _flat(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def signature_names(cls, *methods) -> frozenset:
    """The parameter names of ``cls``'s ``methods`` together (unwrapped), cached on the class."""
    cache = cls.__dict__.get("_gpudl_signatures")
    if cache is None:
        cache = {}
        cls._gpudl_signatures = cache
    names = cache.get(methods)
    if names is None:
        found = set()
        for m in methods:
            try:
                found |= set(inspect.signature(inspect.unwrap(getattr(cls, m))).parameters)
            except (TypeError, ValueError):
                pass
        names = cache[methods] = frozenset(found)
    return names


def accepts(layer, arg) -> bool:
    """Whether ``layer(x, arg=...)`` is accepted: its own ``__call__`` or ``forward`` names it."""
    return arg in signature_names(type(layer), "__call__", "forward")


def accepts_mask(layer) -> bool:
    """Whether a layer takes ``mask=`` (Keras passes masks to layers whose call names one)."""
    return accepts(layer, "mask")


def _dummy(kt: KerasTensor):
    """A zero sample on the active backend (where the layer's parameters are then made)."""
    return Tensor(np.zeros((1,) + kt._shape, dtype=kt.dtype), dtype=kt.dtype)


def _dummy_mask(kt: KerasTensor):
    if not kt.has_mask:
        return None
    return backend.get_xp().ones((1, kt._shape[0]) if kt._shape else (1,), dtype=bool)


def _structure_mask(args, masks):
    if isinstance(args, (list, tuple)):
        return None if all(m is None for m in masks) else list(masks)
    return masks[0]


def reset_stateful(layer) -> None:
    """``reset_state()`` on ``layer`` and every layer inside it that keeps states (stateful=True)."""
    stack = [layer]
    while stack:
        lay = stack.pop()
        if getattr(lay, "stateful", False) and hasattr(lay, "reset_state"):
            lay.reset_state()
        stack.extend(lay.sublayers())


def symbolic_call(layer, args, kwargs, training):
    """``layer(keras_tensor(s), ...)``: runs the layer once on a zero sample (building it)
    and returns the KerasTensor(s) of its output, recorded as a node of the graph."""
    x, rest = args[0], args[1:]
    if rest:
        raise TypeError(f"{layer.describe()} called on symbolic tensors takes one positional argument "
                        f"(a tensor or a list of tensors), got {len(args)}")
    if isinstance(x, (list, tuple)) and not all(isinstance(v, KerasTensor) for v in x):
        raise TypeError(f"{layer.describe()}: a list of inputs must hold only symbolic tensors (from "
                        "gpudl.Input or other layers), got "
                        f"{[type(v).__name__ for v in x]}")
    if not hasattr(layer, "_inbound_nodes"):
        layer._inbound_nodes = []
    tensor_kwargs, plain = {}, {}
    for k, v in kwargs.items():
        if isinstance(v, KerasTensor) or isinstance(v, (list, tuple)) and v and \
                all(isinstance(e, KerasTensor) for e in v):
            tensor_kwargs[k] = v
        elif k == "mask":
            raise ValueError(f"{layer.describe()}: in a graph, masks travel with the tensors (from "
                             "Embedding(mask_zero=True) or Masking); pass mask= only when calling on data")
        else:
            plain[k] = v
    dummy_args = [_dummy(v) for v in x] if isinstance(x, (list, tuple)) else _dummy(x)
    in_masks = [_dummy_mask(v) for v in _flat(x)]
    mask = _structure_mask(x, in_masks)
    call_kwargs = dict(plain)
    for k, v in tensor_kwargs.items():
        call_kwargs[k] = [_dummy(e) for e in v] if isinstance(v, (list, tuple)) else _dummy(v)
    if mask is not None and accepts_mask(layer):
        call_kwargs["mask"] = mask
    modes = layer._modes()
    layer.train(False)
    try:
        with no_grad():
            out = layer(dummy_args, **call_kwargs)
            out_mask = layer.compute_mask(dummy_args, mask)
    finally:
        layer._restore_modes(modes)
        layer._clear_losses()
        reset_stateful(layer)  # the zero sample must not become a stateful layer's state
    outs = _flat(out)
    masks = out_mask if isinstance(out_mask, (list, tuple)) else [out_mask] + [None] * (len(outs) - 1)
    kts = []
    for i, o in enumerate(outs):
        if not isinstance(o, Tensor):
            raise TypeError(f"{layer.describe()} returned {type(o).__name__}, expected Tensors")
        kts.append(KerasTensor(o.shape[1:], o.dtype, index=i, has_mask=i < len(masks) and masks[i] is not None))
    node = Node(layer, x, tensor_kwargs, plain, kts, training)
    for kt in kts:
        kt.node = node
    return kts if isinstance(out, (list, tuple)) else kts[0]


# ---- the model -----------------------------------------------------------------------------

def _as_structure(value, what):
    """(list of KerasTensors, names or None, kind "single" | "list" | "dict")."""
    if isinstance(value, KerasTensor):
        return [value], None, "single"
    if isinstance(value, dict):
        items = list(value.items())
        if not items or not all(isinstance(v, KerasTensor) for _, v in items):
            raise TypeError(f"Model: {what} expected a KerasTensor, a list or a dict of them, got {value!r}")
        return [v for _, v in items], [str(k) for k, _ in items], "dict"
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, KerasTensor) for v in value):
        return list(value), None, "list"
    raise TypeError(f"Model: {what} expected a KerasTensor (from gpudl.Input or a layer called on one), a "
                    f"list or a dict of them, got {type(value).__name__}")


def _topological_nodes(outputs):
    """Every node the outputs depend on, each after the nodes it reads from."""
    order, state = [], {}

    def visit(node):
        s = state.get(id(node))
        if s == 2:
            return
        if s == 1:
            raise ValueError(f"the graph has a cycle through {node.layer.describe()}")
        state[id(node)] = 1
        for kt in node.input_tensors:
            visit(kt.node)
        state[id(node)] = 2
        order.append(node)
    for kt in outputs:
        visit(kt.node)
    return order


from ..training import Trainer  # noqa: E402  (models import the trainer; the trainer imports no model)


class Model(Trainer, Layer):
    """A graph of layers from ``inputs`` to ``outputs`` (Keras' functional ``Model``)."""

    def __init__(self, inputs=None, outputs=None, name=None):
        super().__init__(name)
        if inputs is None and outputs is None and type(self).call is not Model.call:
            # a subclass with its own call(): Keras' model subclassing (one input, one output)
            self._subclassed = True
            self._sub_shapes = None
            return
        if inputs is None or outputs is None:
            raise ValueError("Model expected inputs= and outputs= (symbolic tensors from gpudl.Input and "
                             "layers called on them); for a stack of layers use gpudl.Sequential, or subclass "
                             "Model and define call()")
        self._init_graph(inputs, outputs)

    _subclassed = False

    def call(self, inputs, training=None, mask=None):
        """A subclass's forward pass (Keras' model subclassing): layers held as attributes,
        composed here. Graph models do not use it."""
        raise NotImplementedError(f"{type(self).__name__} must define call(inputs)")

    def __getattr__(self, name):
        # a subclassed model's layers are the Layer attributes it holds, in assignment order
        if name == "layers" and self.__dict__.get("_subclassed"):
            return _held_layers(self)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _sub(self, what):
        """A subclassed model's recorded (input shape, output shape), built on first use."""
        if self._sub_shapes is None:
            raise ValueError(f"{self.describe()} has no {what} yet: call it on data (or build(input_shape)) first")
        return self._sub_shapes

    def _init_graph(self, inputs, outputs):
        self.inputs, self._input_names_given, self._input_kind = _as_structure(inputs, "inputs")
        self.outputs, self._output_names_given, self._output_kind = _as_structure(outputs, "outputs")
        for kt in self.inputs:
            if not isinstance(kt.node.layer, InputLayer):
                raise ValueError(f"Model: every input must come from gpudl.Input, got {kt!r} made by "
                                 f"{kt.node.layer.describe()}")
        if len({id(k) for k in self.inputs}) != len(self.inputs):
            raise ValueError("Model: the same Input is listed twice in inputs")
        self._nodes = _topological_nodes(self.outputs)
        given = {id(k.node) for k in self.inputs}
        for node in self._nodes:
            if isinstance(node.layer, InputLayer) and id(node) not in given:
                users = [n.layer.describe() for n in self._nodes if any(t.node is node for t in n.input_tensors)]
                raise ValueError(f"Model: the graph is disconnected: {', '.join(users) or 'an output'} needs "
                                 f"Input '{node.layer.name}', which is not among the model's inputs "
                                 f"{[k.node.layer.name for k in self.inputs]}")
        reached = {id(n) for n in self._nodes}
        for kt in self.inputs:
            if id(kt.node) not in reached:
                raise ValueError(f"Model: Input '{kt.node.layer.name}' is disconnected: no output depends on it")
        self._node_ids = {id(n) for n in self._nodes}
        layers, seen = [], set()
        for kt in self.inputs:
            layers.append(kt.node.layer)
            seen.add(id(kt.node.layer))
        for node in self._nodes:
            if id(node.layer) not in seen:
                seen.add(id(node.layer))
                layers.append(node.layer)
        self.layers = layers
        names = [l.name for l in layers]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"Model: layer names must be unique within a model, got {dup} more than once")
        self.built = True
        self.dtype = next((l.dtype for l in layers if not isinstance(l, InputLayer) and l.dtype is not None),
                          None)

    # ---- description --------------------------------------------------------------------
    @property
    def input_names(self) -> list:
        if self._subclassed:
            return ["input"]
        return self._input_names_given or [k.node.layer.name for k in self.inputs]

    @property
    def output_names(self) -> list:
        if self._subclassed:
            return ["output"]
        if self._output_names_given:
            return self._output_names_given
        names = [k.name for k in self.outputs]
        return names if len(set(names)) == len(names) else [f"output_{i}" for i in range(len(names))]

    @property
    def input_shape(self):
        if self._subclassed:
            return None if self._sub_shapes is None else self._sub_shapes[0]
        shapes = [tuple(k._shape) for k in self.inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @input_shape.setter
    def input_shape(self, value):
        pass  # fixed by the graph

    @property
    def input_shapes(self) -> list:
        if self._subclassed:
            return [self.input_shape]
        return [tuple(k._shape) for k in self.inputs]

    @property
    def input_dtypes(self) -> list:
        if self._subclassed:
            return [None]
        return [k.dtype for k in self.inputs]

    @property
    def output_shape(self):
        if self._subclassed:
            return None if self._sub_shapes is None else self._sub_shapes[1]
        shapes = [tuple(k._shape) for k in self.outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shapes(self) -> list:
        if self._subclassed:
            return [self.output_shape]
        return [tuple(k._shape) for k in self.outputs]

    def sublayers(self):
        return [l for l in self.layers if not isinstance(l, InputLayer)]

    def get_layer(self, name=None, index=None) -> Layer:
        """A layer by ``name`` or by position ``index`` in ``layers`` (Keras' ``get_layer``)."""
        from .sequential import find_layer
        return find_layer(self, self.layers, name, index)

    def build(self, x=None):
        """A graph is built when made; a subclassed model runs ``call`` once on a zero sample of
        shape ``x`` (one sample's shape, or a Tensor) to make its layers' parameters."""
        if not self._subclassed:
            self.built = True
            return
        shape = x.shape[1:] if isinstance(x, Tensor) else x
        if shape is None:
            raise ValueError(f"{self.describe()} cannot be built without an input shape: call it on data first")
        shape = _check_shape(shape, f"{self.name} input")
        dummy = Tensor(np.zeros((1,) + shape, dtype=backend.default_dtype))
        modes = self._modes()
        self.train(False)
        self._sub_shapes = (shape, None)
        try:
            with no_grad():
                out = self.forward(dummy)
        finally:
            self._restore_modes(modes)
            self._clear_losses()
            for layer in self.sublayers():
                reset_stateful(layer)
        if not isinstance(out, Tensor):
            self._sub_shapes = None
            raise ValueError(f"{self.describe()}: a subclassed model's call() must return one Tensor, got "
                             f"{type(out).__name__}; for several outputs build a functional Model")
        self._sub_shapes = (shape, tuple(out.shape[1:]))
        self.built = True
        self.dtype = out.dtype

    def reset_state(self) -> None:
        """Zero the kept states of every stateful layer inside (Keras' ``reset_states``)."""
        for layer in self.sublayers():
            reset_stateful(layer)

    reset_states = reset_state

    def output_activation(self):
        acts = self.output_activations()
        return acts[0] if len(acts) == 1 else None

    def output_activations(self) -> list:
        """Per output, the activation its last layer can leave out (see Layer.output_activation)."""
        if self._subclassed:
            return [None]  # call() is opaque: its losses run on its outputs as they are
        return [kt.node.layer.output_activation() if len(kt.node.outputs) == 1 else None for kt in self.outputs]

    # ---- running ------------------------------------------------------------------------
    def _standardize_call_inputs(self, x):
        n = len(self.inputs)
        if isinstance(x, dict):
            names = self.input_names
            missing = [k for k in names if k not in x]
            if missing:
                raise ValueError(f"{self.describe()} expected inputs named {names}, got keys {list(x)}")
            x = [x[k] for k in names]
        elif n == 1 and not (isinstance(x, (list, tuple)) and len(x) == 1 and not np.isscalar(x[0])
                             and isinstance(x[0], (Tensor, np.ndarray))):
            x = [x]
        elif not isinstance(x, (list, tuple)):
            raise ValueError(f"{self.describe()} has {n} inputs {self.input_names}: expected a list of {n} "
                             f"arrays, got {type(x).__name__}")
        if len(x) != n:
            raise ValueError(f"{self.describe()} expected {n} inputs {self.input_names}, got {len(x)}")
        out = []
        for kt, v in zip(self.inputs, x):
            if not isinstance(v, Tensor):
                v = np.asarray(v) if not (isinstance(v, np.ndarray) or backend.is_cupy_array(v)) else v
                v = Tensor(v, dtype=v.dtype)
            if tuple(v.shape[1:]) != kt._shape:
                raise ValueError(f"{self.describe()}: input '{kt.node.layer.name}' expected shape (batch, "
                                 f"{', '.join(map(str, kt._shape))}), got shape {v.shape}")
            out.append(v)
        return out

    def _call(self, x, mask=None, **kwargs):
        if self._subclassed:
            if not isinstance(x, Tensor):
                x = Tensor(as_array_input(x, self.describe()))
            if not self.built:
                self.build(x)
        return self.forward(x, mask=mask, **kwargs)

    __call__ = _call

    def forward(self, x, logits=False, mask=None):
        """Run the graph on ``x`` (an array or Tensor; a list or dict for several inputs).

        ``logits``: True, or a list of booleans per output, asks an output's last layer to stop
        before its final activation (see ``output_activation``), for the fused losses. Returns
        a Tensor, or a list (a dict when the outputs were given as one) of Tensors. The masks
        of the outputs are left in ``self.output_masks`` (None where an output has none)."""
        if self._subclassed:
            return self._forward_subclassed(x, mask)
        xs = self._standardize_call_inputs(x)
        masks = _flat(mask) if mask is not None else [None] * len(xs)
        if len(masks) != len(xs):
            raise ValueError(f"{self.describe()} expected {len(xs)} masks, got {len(masks)}")
        flags = logits if isinstance(logits, (list, tuple)) else [bool(logits)] * len(self.outputs)
        want_logits = {}
        for kt, f in zip(self.outputs, flags):
            if f and len(kt.node.outputs) == 1 and kt.node.layer.output_activation():
                want_logits[id(kt)] = kt.node.layer.output_activation()
        values = {}
        for kt, v, m in zip(self.inputs, xs, masks):
            values[id(kt)] = (v, m)
        for node in self._nodes:
            if isinstance(node.layer, InputLayer):
                continue
            self._run_node(node, values, want_logits)
        outs, out_masks = [], []
        for kt in self.outputs:
            v, m = values[id(kt)] if id(kt) not in want_logits else values[("logits", id(kt))]
            outs.append(v)
            out_masks.append(m)
        self.output_masks = out_masks
        if len(outs) == 1 and self._output_kind == "single":
            return outs[0]
        if self._output_kind == "dict":
            return dict(zip(self.output_names, outs))
        return outs

    def _forward_subclassed(self, x, mask):
        if not isinstance(x, Tensor):
            x = Tensor(as_array_input(x, self.describe()))
        params = signature_names(type(self), "call")
        kwargs = {}
        if "training" in params:
            kwargs["training"] = self.training
        if mask is not None and "mask" in params:
            kwargs["mask"] = mask
        out = self.call(x, **kwargs)
        self.output_masks = [None]
        return out

    def _run_node(self, node, values, want_logits):
        def get(kt):
            v = values.get(id(kt))
            if v is None:
                v = _activate(values[("logits", id(kt))][0], want_logits[id(kt)]), values[("logits", id(kt))][1]
                values[id(kt)] = v
            return v

        layer = node.layer
        if isinstance(node.args, (list, tuple)):
            pairs = [get(kt) for kt in node.args]
            args = [p[0] for p in pairs]
            mask = _structure_mask(node.args, [p[1] for p in pairs])
        else:
            args, mask = get(node.args)
        kwargs = dict(node.kwargs)
        for k, v in node.tensor_kwargs.items():
            kwargs[k] = [get(e)[0] for e in v] if isinstance(v, (list, tuple)) else get(v)[0]
        if mask is not None and accepts_mask(layer):
            kwargs["mask"] = mask
        if node.training is not None:
            kwargs["training"] = node.training
        logits_kt = node.outputs[0] if len(node.outputs) == 1 and id(node.outputs[0]) in want_logits else None
        if logits_kt is not None:
            kwargs["logits"] = True
        out = layer(args, **kwargs)
        out_mask = layer.compute_mask(args, mask) if any(kt.has_mask for kt in node.outputs) else None
        outs = _flat(out)
        masks = out_mask if isinstance(out_mask, (list, tuple)) else [out_mask] + [None] * (len(outs) - 1)
        for i, (kt, o) in enumerate(zip(node.outputs, outs)):
            m = masks[i] if i < len(masks) else None
            if kt is logits_kt:
                values[("logits", id(kt))] = (o, m)
            else:
                values[id(kt)] = (o, m)

    # ---- description --------------------------------------------------------------------
    def summary(self, print_fn=print) -> str:
        """Layers, output shapes, parameter counts and what each layer is connected to."""
        rows = [("Layer (type)", "Output Shape", "Param #", "Connected to")]
        if self._subclassed:  # call() is opaque: the layers it holds, without a graph
            for layer in self.layers:
                rows.append((f"{layer.name} ({type(layer).__name__})", "?",
                             f"{sum(int(p.size) for p in layer.params()):,}", "(subclassed)"))
        for layer in ([] if self._subclassed else self.layers):
            nodes = [n for n in layer._inbound_nodes if id(n) in self._node_ids]
            shape = nodes[0].outputs[0].shape if nodes and len(nodes[0].outputs) == 1 else \
                [kt.shape for kt in nodes[0].outputs] if nodes else None
            conn = []
            for n in nodes:
                for kt in n.input_tensors:
                    conn.append(f"{kt.node.layer.name}[{kt.node.index}][{kt.index}]")
            count = sum(int(p.size) for p in layer.params())
            rows.append((f"{layer.name} ({type(layer).__name__})", str(shape), f"{count:,}", ", ".join(conn) or "-"))
        return summary_table(self, rows, print_fn)

    def _penalty(self):
        total = None
        for p in self.trainable_params():
            if getattr(p, "regularizer", None) is not None:
                r = p.regularizer(p)
                total = r if total is None else total + r
        return total

    def count_params(self) -> int:
        return sum(int(p.size) for p in self.params())

    # ---- weights (get_weights / set_weights come from Layer) ---------------------------
    def save_weights(self, path) -> None:
        """Only the parameters, in ``params()`` order, in gpudl's checksummed atomic file."""
        from .. import io
        if not self.built:
            self.build()
        params = self.params()
        arrays = {f"param/{i}": backend.to_numpy(p.data) for i, p in enumerate(params)}
        meta = {"format": WEIGHTS_FORMAT, "version": FORMAT_VERSION,
                "shapes": [list(p.shape) for p in params], "names": [p.name for p in params]}
        io.save_file(path, arrays, meta)

    def load_weights(self, path) -> None:
        """Parameters from ``save_weights`` (or a whole-model file): raises ModelFileError when the
        file does not match this architecture, naming expected and found shapes."""
        from .. import io
        meta, arrays = io.load_file(path)
        if meta.get("format") not in (WEIGHTS_FORMAT, FORMAT):
            raise ModelFileError(f"{path}: expected a {WEIGHTS_FORMAT!r} file, got format {meta.get('format')!r}")
        if not self.built:
            self.build()
        params = self.params()
        found = sorted((k for k in arrays if k.startswith("param/")), key=lambda k: (len(k), k))
        expected = [tuple(p.shape) for p in params]
        got = [tuple(arrays[k].shape) for k in found]
        if found != [f"param/{i}" for i in range(len(params))] or got != expected:
            raise ModelFileError(f"{path}: the weights do not fit {self.describe()}: expected {len(expected)} "
                                 f"parameters of shapes {expected}, got {len(got)} of shapes {got}")
        for p, k in zip(params, found):
            p.data[...] = backend.to_backend(arrays[k].astype(p.dtype, copy=False), backend.backend_of(p.data))

    def to(self, name: str) -> "Sequential":
        """Move parameters and optimizer state to backend ``name``."""
        super().to(name)
        if self.optimizer is not None:
            for st in self.optimizer._state.values():
                for k in st:
                    st[k] = backend.to_backend(st[k], name)
        return self

    def save(self, path, _checkpoint=None) -> None:
        """Architecture (JSON), weights, optimizer state, training position and RNG state,
        written atomically (temp file, fsync, rename): never a pickle."""
        from .. import io
        if not self.built:
            self.build()
        arrays = {f"param/{i}": backend.to_numpy(p.data) for i, p in enumerate(self.params())}
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "backend": backend.get_backend(),
                "model": _model_record(self),
                "dtype": str(np.dtype(self.dtype or backend.default_dtype))}
        if self.optimizer is not None:
            from .. import optimizers as optim
            from .. import serialization
            record = serialization.serialize_object(self.optimizer, "optimizer", optim.builtin_classes())
            meta["compile"] = {"optimizer": {**record, "iterations": self.optimizer.iterations},
                               **self.compile_config()}
            for k, v in self.optimizer.get_state(self.params()).items():
                arrays[f"opt/{k}"] = v
        meta["training"] = self.training_state.state_dict()
        if _checkpoint is not None:
            meta["checkpoint"] = _checkpoint
        io.save_file(path, arrays, meta)



    # ---- config -------------------------------------------------------------------------
    def get_config(self) -> dict:
        """Keras-style: the layers, and the nodes in the order they run, each naming the
        (layer, node index, tensor index) of every input. A subclassed model must define its
        own (its constructor arguments), as in Keras."""
        if self._subclassed:
            raise ValueError(f"{type(self).__name__} is a subclassed model: define get_config() returning its "
                             "constructor arguments (and register it with @gpudl.register_serializable) to "
                             "save the whole model, or use save_weights()")
        from .. import serialization

        def ref(kt):
            return [kt.node.layer.name, kt.node.index, kt.index]

        def refs(v):
            return [ref(e) for e in v] if isinstance(v, (list, tuple)) else ref(v)
        layers = []
        for layer in self.layers:
            rec = serialization.serialize_layer(layer)
            rec["name"] = layer.name
            layers.append(rec)
        nodes = []
        for node in self._nodes:
            if isinstance(node.layer, InputLayer):
                continue
            nodes.append({"layer": node.layer.name, "index": node.index, "args": refs(node.args),
                          "list": isinstance(node.args, (list, tuple)),
                          "tensor_kwargs": {k: refs(v) for k, v in node.tensor_kwargs.items()},
                          "kwargs": serialization.check_json(node.kwargs, f"{node.layer.describe()} call arguments"),
                          "training": node.training})

        def io(kts, names):
            out = [ref(k) for k in kts]
            return {"refs": out, "names": names}
        return {"name": self.name, "layers": layers, "nodes": nodes,
                "inputs": io(self.inputs, self._input_names_given), "input_kind": self._input_kind,
                "outputs": io(self.outputs, self._output_names_given), "output_kind": self._output_kind}

    @classmethod
    def from_config(cls, config: dict, custom_objects=None) -> "Model":
        if cls.call is not Model.call:  # a subclassed model: its config is its constructor's arguments
            return cls(**config)
        from .. import serialization
        layers = {}
        for rec in config["layers"]:
            layer = serialization.deserialize_layer(rec, custom_objects)
            layers[rec["name"]] = layer
        made = {}  # (layer name, node index) -> outputs list
        for layer in layers.values():
            if isinstance(layer, InputLayer):
                made[(layer.name, 0)] = [layer.output]
        renumber = {}  # saved node index -> this rebuild's node index, per layer

        def kt(r):
            name, ni, ti = r
            key = (name, renumber.get((name, ni), ni))
            if key not in made:
                raise ValueError(f"the model description reads node {ni} of layer {name!r} before it is made")
            return made[key][ti]

        def kts(v, is_list):
            return [kt(e) for e in v] if is_list else kt(v)
        for nd in config["nodes"]:
            layer = layers[nd["layer"]]
            args = kts(nd["args"], nd["list"])
            tkw = {k: (kts(v, True) if v and isinstance(v[0], list) else kt(v))
                   for k, v in nd.get("tensor_kwargs", {}).items()}
            out = layer(args, **tkw, **nd.get("kwargs", {}), **({} if nd.get("training") is None
                                                                 else {"training": nd["training"]}))
            new_index = len(layer._inbound_nodes) - 1
            renumber[(layer.name, nd["index"])] = new_index
            made[(layer.name, new_index)] = _flat(out)

        def struct(spec, kind):
            items = [kt(r) for r in spec["refs"]]
            if kind == "dict":
                return dict(zip(spec["names"], items))
            return items[0] if kind == "single" else items
        return cls(struct(config["inputs"], config.get("input_kind", "list")),
                   struct(config["outputs"], config.get("output_kind", "list")), name=config.get("name"))


def summary_table(model, rows, print_fn=print) -> str:
    """Keras' summary layout: ``rows`` (a header, then one per layer) in padded columns, then
    the parameter counts; printed with ``print_fn`` (None: not printed) and returned."""
    widths = [max(len(r[i]) for r in rows) + 2 for i in range(len(rows[0]))]
    line = "-" * sum(widths)
    out = [f'Model: "{model.name}"', line, "".join(c.ljust(w) for c, w in zip(rows[0], widths)), "=" * sum(widths)]
    for r in rows[1:]:
        out.append("".join(c.ljust(w) for c, w in zip(r, widths)))
    total = sum(int(p.size) for p in model.params())
    trainable = sum(int(p.size) for p in model.trainable_params())
    out += ["=" * sum(widths), f"Total params: {total:,}", f"Trainable params: {trainable:,}",
            f"Non-trainable params: {total - trainable:,}", line]
    text = "\n".join(out)
    if print_fn is not None:
        print_fn(text)
    return text


def as_array_input(x, what):
    if isinstance(x, np.ndarray) or backend.is_cupy_array(x):
        return x
    try:
        return np.asarray(x)
    except Exception as exc:
        raise TypeError(f"{what} input: expected an array, got {type(x).__name__} ({exc})") from None


def _held_layers(model) -> list:
    """The layers a subclassed model holds as attributes (and in lists or tuples), in order."""
    out, seen = [], set()
    for v in vars(model).values():
        items = v if isinstance(v, (list, tuple)) else [v]
        for item in items:
            if isinstance(item, Layer) and item is not model and id(item) not in seen:
                seen.add(id(item))
                out.append(item)
    return out


def _model_record(model) -> dict:
    """The model's own record: its class (Model, Sequential, or a registered subclass) and config."""
    from .. import serialization
    key = serialization.registered_name(model)
    if key is None:
        key = type(model).__name__
        if key not in ("Model", "Sequential") or not type(model).__module__.startswith("gpudl."):
            raise ValueError(f"{model.describe()}: a model class of your own ({type(model).__name__}) must be "
                             "registered with @gpudl.register_serializable(package=...) to be saved")
    record = {"class": key, "config": serialization.check_json(model.get_config(), f"{model.describe()}'s config")}
    if model._subclassed:
        record["input_shape"] = list(model.input_shape)
    return record


def _activate(z, activation):
    from .. import functional as F
    return F.softmax(z) if activation == "softmax" else F.sigmoid(z)
