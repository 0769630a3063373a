"""``export(model, path, opset=17)``: a built gpudl model as an ONNX file.

The model's graph is walked layer by layer (Sequential in order, a functional Model node by
node, nested models flattened into the same graph); each layer becomes the ONNX nodes that
compute what its inference ``forward`` computes, with its parameters as initializers. The
batch axis is the dynamic dimension ``"batch"``; every other axis is fixed, as in gpudl.

Layout notes (gpudl is channels-first, as ONNX):

- Dense: ``Gemm`` on (N, F) inputs, ``MatMul`` + ``Add`` on higher ranks; W (in, units) as is.
- Convolutions and pools: gpudl's own padding rule ("same" as Keras/TensorFlow, "causal")
  is computed for the layer's input shape and written as explicit ``pads``.
- Recurrent layers are batch-first in gpudl; ONNX's LSTM/GRU/RNN read (T, N, F) (onnxruntime's
  CPU kernels refuse ``layout=1``), so the input is transposed. Keras' LSTM gate blocks
  i, f, c, o become ONNX's i, o, f, c; GRU's z, r, h are ONNX's order already, and
  ``reset_after`` is ``linear_before_reset=1``. ``go_backwards`` is ``direction="reverse"``
  (its sequence output re-reversed into gpudl's processing order), Bidirectional is
  ``direction="bidirectional"``.
- Dropout is the identity at inference and leaves no node.

A layer with no ONNX form (a custom subclass, a recurrent layer fed a mask, a stateful one)
raises a ValueError naming the layer and its class before anything is written. The file is
written to a temporary name beside ``path`` and moved into place (``os.replace``), so an
interrupted export never leaves a partial file.
"""
from __future__ import annotations

import os
from collections import namedtuple

import numpy as np

from .. import activations as _activations
from .. import backend
from ..autograd import Tensor, no_grad

__all__ = ["export", "to_proto", "OPSETS", "ir_version_for"]

#: the opsets export writes
OPSETS = range(13, 22)

_BATCH = "batch"
_INT64_MIN = -(2 ** 63)

#: what flows between layers while walking the model: an ONNX value name, its shape without
#: the batch axis, its numpy dtype and whether a Keras mask travels with it
Val = namedtuple("Val", "name shape dtype mask")


# ---- public entry points ------------------------------------------------------------------

def export(model, path, opset=17):
    """Write ``model`` (a built Sequential or functional Model) to ``path`` as ONNX ``opset``
    (13 to 21). Returns ``path``. See the module docstring for how layers map to ONNX."""
    proto = to_proto(model, opset)
    _write_atomic(proto.SerializeToString(), os.fspath(path))
    return path


def to_proto(model, opset=17, *, _lstm_gate_order="iofc", _gru_linear_before_reset=None):
    """The ``onnx.ModelProto`` that ``export`` writes, checked with ``onnx.checker`` (full check).

    ``_lstm_gate_order`` and ``_gru_linear_before_reset`` exist to prove the tests' comparison
    against onnxruntime sees a wrong gate layout; they are not part of the API."""
    onnx = _require_onnx()
    opset = _check_opset(opset)
    _check_model(model)
    b = _Builder(onnx, opset, lstm_gate_order=_lstm_gate_order, gru_lbr=_gru_linear_before_reset)
    in_names, out_names = list(model.input_names), list(model.output_names)
    dtypes = list(model.input_dtypes)
    shapes = list(model.input_shapes)
    float_dt = np.dtype(model.dtype or backend.default_dtype)
    for n in in_names + out_names:
        b.reserve(n)
    if len(set(in_names + out_names)) != len(in_names) + len(out_names):
        raise ValueError(f"ONNX export: input and output names must be distinct, got inputs {in_names} and "
                         f"outputs {out_names}")
    ins = []
    for name, shape, dt in zip(in_names, shapes, dtypes):
        dt = float_dt if dt is None else np.dtype(dt)
        ins.append(Val(name, tuple(shape), dt, False))
        b.graph_inputs.append(b.value_info(name, dt, shape))
    with no_grad():
        outs = b.emit_model(model, ins)
    for v, name in zip(outs, out_names):
        b.bind_output(v, name)
        b.graph_outputs.append(b.value_info(name, v.dtype, v.shape))
    graph = onnx.helper.make_graph(b.nodes, _graph_name(model), b.graph_inputs, b.graph_outputs,
                                   initializer=b.initializers)
    from .. import __version__
    proto = onnx.helper.make_model(graph, producer_name="gpudl", producer_version=__version__,
                                   opset_imports=[onnx.helper.make_opsetid("", opset)],
                                   ir_version=ir_version_for(opset, onnx))
    onnx.checker.check_model(proto, full_check=True)
    return proto


def ir_version_for(opset, onnx=None):
    """The IR version of the first onnx release that introduced ``opset`` (onnx's VERSION_TABLE):
    a newer IR stamp makes older runtimes refuse the file."""
    if onnx is None:
        onnx = _require_onnx()
    for row in onnx.helper.VERSION_TABLE:
        if row[2] == opset:
            return row[1]
    raise ValueError(f"ONNX export: opset {opset} is not in onnx's version table")


def _require_onnx():
    """The ``onnx`` module, through the package's one import point (``_proto.require_onnx``)."""
    try:
        from ._proto import require_onnx
    except ImportError:  # a partial install of this package: the same message, said here
        try:
            import onnx
        except ImportError:
            raise ImportError("gpudl.onnx needs the onnx package: pip install 'gpudl[onnx]'") from None
        return onnx
    return require_onnx()


# ---- checks ---------------------------------------------------------------------------------

def _check_opset(opset):
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or int(opset) not in OPSETS:
        raise ValueError(f"ONNX export expected opset an integer from {OPSETS.start} to {OPSETS.stop - 1}, "
                         f"got {opset!r}")
    return int(opset)


def _check_model(model):
    from ..models import Model
    if not isinstance(model, Model):
        raise TypeError(f"ONNX export expected a gpudl Sequential or Model, got {type(model).__name__}")
    if model.__dict__.get("_subclassed"):
        raise ValueError(f"ONNX export: model '{model.name}' ({type(model).__name__}) is a subclassed model, "
                         "whose call() has no ONNX form: build it as a Sequential or functional Model")
    if not model.built:
        raise ValueError(f"ONNX export: model '{model.name}' is not built: call model.build() (or predict "
                         "on data) first, so its layers have their weights")


def _graph_name(model):
    return model.name or "gpudl"


def _write_atomic(data: bytes, path: str) -> None:
    """The model file's own atomic write (temp file, fsync, rename, folder fsync)."""
    from ..io import write_atomically

    def write(fd):
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    write_atomically(path, write)


def _no_form(layer, why=""):
    return ValueError(f"ONNX export: layer '{layer.name}' ({type(layer).__name__}) has no ONNX form"
                      + (f": {why}" if why else ""))


# ---- the graph being built -------------------------------------------------------------------

class _Builder:
    def __init__(self, onnx, opset, lstm_gate_order="iofc", gru_lbr=None):
        self.onnx, self.h, self.opset = onnx, onnx.helper, opset
        self.lstm_gate_order, self.gru_lbr = lstm_gate_order, gru_lbr
        self.nodes, self.initializers = [], []
        self.graph_inputs, self.graph_outputs = [], []
        self._names: set = set()
        self._consts: dict = {}
        self._bound: set = set()

    # names
    def reserve(self, name):
        self._names.add(name)

    def fresh(self, base):
        name, k = base, 1
        while name in self._names:
            name = f"{base}_{k}"
            k += 1
        self._names.add(name)
        return name

    def value_info(self, name, dtype, shape):
        elem = self.h.np_dtype_to_tensor_dtype(np.dtype(dtype))
        return self.h.make_tensor_value_info(name, elem, [_BATCH] + [int(s) for s in shape])

    # constants
    def const(self, array, base, key=None):
        """An initializer (shared when ``key`` was seen before)."""
        if key is not None and key in self._consts:
            return self._consts[key]
        name = self.fresh(base)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.array(array, order="C"), name))  # 0-d stays 0-d)
        if key is not None:
            self._consts[key] = name
        return name

    def param(self, p, base, tag="", fn=None):
        """A gpudl Parameter (transformed by ``fn``) as an initializer, once per (parameter, tag)."""
        a = backend.to_numpy(p.data)
        return self.const(a if fn is None else fn(a), base, key=(id(p), tag))

    def ints(self, values, base):
        return self.const(np.asarray(values, dtype=np.int64), base, key=("i64", tuple(np.ravel(values)),
                                                                         np.shape(values)))

    def scalar(self, value, dtype, base):
        a = np.asarray(value, dtype=dtype)
        return self.const(a, base, key=("scalar", a.dtype.str, float(value)))

    # nodes
    def node(self, op, inputs, base, n_out=1, outputs=None, **attrs):
        outputs = outputs or [self.fresh(f"{base}" if n_out == 1 else f"{base}:{i}") for i in range(n_out)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(self.h.make_node(op, list(inputs), list(outputs), name=self.fresh(f"{base}/{op}"),
                                           **attrs))
        return outputs[0] if n_out == 1 else outputs

    def reduce(self, op, x, axes, base, keepdims=1):
        """Reduce* over ``axes``: axes an attribute before opset 18 (ReduceSum: 13), an input since."""
        if op == "ReduceSum" or self.opset >= 18:
            return self.node(op, [x, self.ints(axes, "axes")], base, keepdims=keepdims)
        return self.node(op, [x], base, axes=list(axes), keepdims=keepdims)

    def squeeze(self, x, axes, base):
        return self.node("Squeeze", [x, self.ints(axes, "axes")], base)

    def reshape(self, x, shape, base):
        return self.node("Reshape", [x, self.ints(shape, "shape")], base)

    def transpose(self, x, perm, base):
        return self.node("Transpose", [x], base, perm=list(perm))

    def bind_output(self, v, name):
        """Give graph output ``name`` to value ``v``: the producing node's output is renamed in
        place when it can be, else an Identity carries it."""
        producer = next((n for n in self.nodes if v.name in n.output), None)
        graph_in = any(i.name == v.name for i in self.graph_inputs)
        if producer is None or graph_in or v.name in self._bound:
            self.node("Identity", [v.name], name, outputs=[name])
            return
        for n in self.nodes:
            for i, o in enumerate(n.output):
                if o == v.name:
                    n.output[i] = name
            for i, o in enumerate(n.input):
                if o == v.name:
                    n.input[i] = name
        self._bound.add(name)
        self._bound.add(v.name)

    # ---- walking models -------------------------------------------------------------------
    def emit_model(self, model, ins):
        from ..models import Sequential
        if isinstance(model, Sequential):
            vals = ins
            for layer in model.layers:
                vals = self.emit_layer(layer, vals, multi=False)
            return vals
        if model.__dict__.get("_subclassed"):
            raise _no_form(model, "a subclassed model's call() is opaque")
        from ..models.functional import InputLayer
        env = {id(kt): v for kt, v in zip(model.inputs, ins)}
        for node in model._nodes:
            if isinstance(node.layer, InputLayer):
                continue
            if node.tensor_kwargs:
                raise _no_form(node.layer, f"it is called with {', '.join(node.tensor_kwargs)} from the graph")
            if node.training:
                raise _no_form(node.layer, "it is called with training=True, which inference has no form for")
            multi = isinstance(node.args, (list, tuple))
            args = [env[id(kt)] for kt in (node.args if multi else [node.args])]
            outs = self.emit_layer(node.layer, args, multi=multi)
            for kt, v in zip(node.outputs, outs):
                env[id(kt)] = v
        return [env[id(kt)] for kt in model.outputs]

    def emit_layer(self, layer, vals, multi=False):
        """The ONNX nodes of one layer call on ``vals``; returns the output Vals."""
        from ..models import Model
        if isinstance(layer, Model):
            if layer.__dict__.get("_subclassed"):
                raise _no_form(layer, "a subclassed model's call() is opaque")
            _check_model(layer)
            return self.emit_model(layer, vals)
        fn = _EMITTERS.get(type(layer))
        if fn is None:
            raise _no_form(layer)
        outs = _probe(layer, vals, multi)
        names = fn(self, layer, vals, outs)
        names = names if isinstance(names, list) else [names]
        return [Val(n, o.shape, o.dtype, o.mask) for n, o in zip(names, outs)]


def _probe(layer, vals, multi):
    """Run ``layer`` on a zero sample of each input (inference mode, no gradients): its output
    shapes, dtypes and whether a mask comes out, as Vals without names."""
    from ..models.functional import accepts_mask, reset_stateful
    args = [Tensor(np.zeros((1,) + tuple(v.shape), dtype=v.dtype), dtype=v.dtype) for v in vals]
    masks = [np.ones((1, v.shape[0]) if v.shape else (1,), dtype=bool) if v.mask else None for v in vals]
    x = args if multi else args[0]
    mask = (None if all(m is None for m in masks) else masks) if multi else masks[0]
    modes = layer._modes()
    layer.train(False)
    try:
        kwargs = {"mask": mask} if mask is not None and accepts_mask(layer) else {}
        out = layer(x, **kwargs)
        out_mask = layer.compute_mask(x, mask)
    finally:
        layer._restore_modes(modes)
        layer._clear_losses()
        reset_stateful(layer)
    outs = out if isinstance(out, (list, tuple)) else [out]
    om = out_mask if isinstance(out_mask, (list, tuple)) else [out_mask] + [None] * (len(outs) - 1)
    return [Val(None, tuple(o.shape[1:]), np.dtype(o.dtype), i < len(om) and om[i] is not None)
            for i, o in enumerate(outs)]


# ---- activations ----------------------------------------------------------------------------

_ACT_OPS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}


def _activation(b, layer, act, x, base, out_rank):
    """The nodes of an ``activation=`` argument on value ``x``; returns the value name."""
    name = _activations.name_of(act)
    if name is None or ">" in name:
        raise _no_form(layer, f"its activation {act!r} is a custom function")
    if name == "linear":
        return x
    if name in _ACT_OPS:
        return b.node(_ACT_OPS[name], [x], base)
    if name == "softmax":
        return b.node("Softmax", [x], base, axis=-1)
    if name == "leaky_relu":
        return b.node("LeakyRelu", [x], base, alpha=0.01)
    raise _no_form(layer, f"its activation {name!r} has no ONNX op here")


def _out(layer):
    return layer.name


# ---- core and convolution layers -------------------------------------------------------------

def _dense(b, layer, vals, outs):
    x = vals[0]
    W = b.param(layer.W, f"{layer.name}/W")
    bias = b.param(layer.b, f"{layer.name}/b") if layer.use_bias else None
    act = _activations.name_of(layer.activation)
    last = act == "linear"
    base = _out(layer) if last else f"{layer.name}/linear"
    if len(x.shape) == 1:
        y = b.node("Gemm", [x.name, W] + ([bias] if bias else []), base)
    else:
        y = b.node("MatMul", [x.name, W], base if bias is None else f"{layer.name}/matmul")
        if bias is not None:
            y = b.node("Add", [y, bias], base)
    return _activation(b, layer, layer.activation, y, _out(layer), len(x.shape) + 1)


def _conv_tail(b, layer, y_inputs, attrs, op="Conv"):
    linear = _activations.name_of(layer.activation) == "linear"
    y = b.node(op, y_inputs, _out(layer) if linear else f"{layer.name}/conv", **attrs)
    return _activation(b, layer, layer.activation, y, _out(layer), None)


def _conv_inputs(b, layer, x):
    ins = [x.name, b.param(layer.W, f"{layer.name}/W")]
    if layer.use_bias:
        ins.append(b.param(layer.b, f"{layer.name}/b"))
    return ins


def _conv2d(b, layer, vals, outs):
    x = vals[0]
    t, bo, le, r = layer._pads((1,) + x.shape)
    return _conv_tail(b, layer, _conv_inputs(b, layer, x),
                      dict(kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
                           dilations=list(layer.dilation_rate), group=layer.groups, pads=[t, le, bo, r]))


def _conv1d(b, layer, vals, outs):
    x = vals[0]
    left, right = layer._pads((1,) + x.shape)
    return _conv_tail(b, layer, _conv_inputs(b, layer, x),
                      dict(kernel_shape=[layer.kernel_size], strides=[layer.strides],
                           dilations=[layer.dilation_rate], group=layer.groups, pads=[left, right]))


def _conv2d_transpose(b, layer, vals, outs):
    x = vals[0]
    (t, bo, le, r), out_pad = layer._geometry((1,) + x.shape)
    return _conv_tail(b, layer, _conv_inputs(b, layer, x),
                      dict(kernel_shape=list(layer.kernel_size), strides=list(layer.strides),
                           dilations=list(layer.dilation_rate), pads=[t, le, bo, r],
                           output_padding=list(out_pad)), op="ConvTranspose")


def _pool(b, layer, vals, outs):
    from ..layers import AvgPool2D
    x = vals[0]
    t, bo, le, r = layer._pads((1,) + x.shape)
    attrs = dict(kernel_shape=list(layer.pool_size), strides=list(layer.stride), pads=[t, le, bo, r])
    if isinstance(layer, AvgPool2D):
        # gpudl's AvgPool2D counts padded zeros for integer padding and not for "same"
        # (layers/pooling.py _avg_pool)
        attrs["count_include_pad"] = 0 if layer.padding == "same" else 1
        return b.node("AveragePool", [x.name], _out(layer), **attrs)
    return b.node("MaxPool", [x.name], _out(layer), **attrs)


def _global_pool(op):
    def emit(b, layer, vals, outs):
        y = b.node(op, [vals[0].name], _out(layer) if layer.keepdims else f"{layer.name}/pool")
        return y if layer.keepdims else b.node("Flatten", [y], _out(layer), axis=1)
    return emit


def _flatten(b, layer, vals, outs):
    return b.node("Flatten", [vals[0].name], _out(layer), axis=1)


def _reshape(b, layer, vals, outs):
    # 0 copies the batch size from the input (allowzero=0)
    return b.reshape(vals[0].name, [0] + list(outs[0].shape), _out(layer))


def _permute(b, layer, vals, outs):
    return b.transpose(vals[0].name, (0,) + tuple(layer.dims), _out(layer))


def _upsampling(b, layer, vals, outs):
    x = vals[0]
    sh, sw = layer.size
    scales = b.const(np.array([1, 1, sh, sw], dtype=np.float32), f"{layer.name}/scales")
    if layer.interpolation == "nearest":
        # out[i] = in[floor(i / s)]: each pixel repeated s times
        attrs = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    else:
        # half-pixel centres, edges clamped, no antialiasing: UpSampling2D's _bilinear_matrix
        attrs = dict(mode="linear", coordinate_transformation_mode="half_pixel")
    return b.node("Resize", [x.name, "", scales], _out(layer), **attrs)


def _dropout(b, layer, vals, outs):
    return vals[0].name  # the identity at inference


def _masking(b, layer, vals, outs):
    x = vals[0]
    value = b.scalar(layer.mask_value, x.dtype, f"{layer.name}/mask_value")
    differs = b.node("Not", [b.node("Equal", [x.name, value], f"{layer.name}/equal")], f"{layer.name}/differs")
    keep = b.reduce("ReduceMax", b.node("Cast", [differs], f"{layer.name}/cast",
                                        to=b.h.np_dtype_to_tensor_dtype(x.dtype)), [-1], f"{layer.name}/keep")
    return b.node("Mul", [x.name, keep], _out(layer))


# ---- merges --------------------------------------------------------------------------------

def _concatenate(b, layer, vals, outs):
    rank = len(vals[0].shape) + 1
    return b.node("Concat", [v.name for v in vals], _out(layer), axis=layer.axis % rank)


def _chain(op):
    """A binary op applied left to right over the inputs, as the merge layers add and multiply."""
    def emit(b, layer, vals, outs):
        y = vals[0].name
        for i, v in enumerate(vals[1:]):
            last = i == len(vals) - 2
            y = b.node(op, [y, v.name], _out(layer) if last else f"{layer.name}/{op.lower()}")
        return y
    return emit


def _variadic(op, binary=None):
    def emit(b, layer, vals, outs):
        if binary is not None and len(vals) == 2:
            return b.node(binary, [v.name for v in vals], _out(layer))
        return b.node(op, [v.name for v in vals], _out(layer))
    return emit


# ---- normalisation ---------------------------------------------------------------------------

def _batch_norm(b, layer, vals, outs):
    x = vals[0]
    c = layer.moving_mean.shape[0]
    dt = layer.moving_mean.dtype
    gamma = b.param(layer.gamma, f"{layer.name}/gamma") if layer.scale else \
        b.const(np.ones(c, dt), f"{layer.name}/gamma")
    beta = b.param(layer.beta, f"{layer.name}/beta") if layer.center else \
        b.const(np.zeros(c, dt), f"{layer.name}/beta")
    mean = b.param(layer.moving_mean, f"{layer.name}/moving_mean")
    var = b.param(layer.moving_variance, f"{layer.name}/moving_variance")
    if layer._axis == 1:
        return b.node("BatchNormalization", [x.name, gamma, beta, mean, var], _out(layer),
                      epsilon=layer.epsilon, momentum=layer.momentum)
    # another axis: the same arithmetic, composed with shapes that broadcast along it
    rank = len(x.shape) + 1
    shape = [1] * rank
    shape[layer._axis] = c
    def view(name, base):
        return b.reshape(name, shape, base)
    xc = b.node("Sub", [x.name, view(mean, f"{layer.name}/mean_view")], f"{layer.name}/centered")
    eps = b.scalar(layer.epsilon, dt, f"{layer.name}/epsilon")
    std = b.node("Sqrt", [b.node("Add", [view(var, f"{layer.name}/var_view"), eps], f"{layer.name}/var_eps")],
                 f"{layer.name}/std")
    y = b.node("Div", [xc, std], f"{layer.name}/normalized")
    y = b.node("Mul", [y, view(gamma, f"{layer.name}/gamma_view")], f"{layer.name}/scaled")
    return b.node("Add", [y, view(beta, f"{layer.name}/beta_view")], _out(layer))


def _layer_norm(b, layer, vals, outs):
    x = vals[0]
    rank = len(x.shape) + 1
    axes = tuple(layer._axes)
    gamma = b.param(layer.gamma, f"{layer.name}/gamma")
    beta = b.param(layer.beta, f"{layer.name}/beta")
    if b.opset >= 17 and axes == tuple(range(axes[0], rank)):
        return b.node("LayerNormalization", [x.name, gamma, beta], _out(layer), axis=axes[0],
                      epsilon=layer.epsilon)
    # before opset 17, or axes that are not the trailing ones: mean and biased variance composed
    pshape = [x.shape[a - 1] if a in axes else 1 for a in range(rank)]
    pshape[0] = 1
    n = layer.name
    mean = b.reduce("ReduceMean", x.name, axes, f"{n}/mean")
    xc = b.node("Sub", [x.name, mean], f"{n}/centered")
    var = b.reduce("ReduceMean", b.node("Mul", [xc, xc], f"{n}/squared"), axes, f"{n}/var")
    eps = b.scalar(layer.epsilon, x.dtype, f"{n}/epsilon")
    std = b.node("Sqrt", [b.node("Add", [var, eps], f"{n}/var_eps")], f"{n}/std")
    y = b.node("Div", [xc, std], f"{n}/normalized")
    y = b.node("Mul", [y, b.reshape(gamma, pshape, f"{n}/gamma_view")], f"{n}/scaled")
    return b.node("Add", [y, b.reshape(beta, pshape, f"{n}/beta_view")], _out(layer))


# ---- activation layers -----------------------------------------------------------------------

def _relu(b, layer, vals, outs):
    x = vals[0]
    slope, top, thr = layer.negative_slope, layer.max_value, layer.threshold
    if top is None and thr == 0.0:
        if slope == 0.0:
            return b.node("Relu", [x.name], _out(layer))
        return b.node("LeakyRelu", [x.name], _out(layer), alpha=slope)
    if slope == 0.0 and thr == 0.0:
        lo = b.scalar(0.0, x.dtype, f"{layer.name}/zero")
        return b.node("Clip", [x.name, lo, b.scalar(top, x.dtype, f"{layer.name}/max_value")], _out(layer))
    # Keras' general form: x >= max_value -> max_value; x >= threshold -> x; else slope*(x - thr)
    n = layer.name
    t = b.scalar(thr, x.dtype, f"{n}/threshold")
    below = b.node("Mul", [b.node("Sub", [x.name, t], f"{n}/shifted"), b.scalar(slope, x.dtype, f"{n}/slope")],
                   f"{n}/below")
    y = b.node("Where", [b.node("GreaterOrEqual", [x.name, t], f"{n}/above"), x.name, below],
               _out(layer) if top is None else f"{n}/leaky")
    if top is None:
        return y
    cap = b.scalar(top, x.dtype, f"{n}/max_value")
    return b.node("Where", [b.node("GreaterOrEqual", [x.name, cap], f"{n}/capped"), cap, y], _out(layer))


def _unary(op):
    def emit(b, layer, vals, outs):
        return b.node(op, [vals[0].name], _out(layer))
    return emit


def _softmax(b, layer, vals, outs):
    return b.node("Softmax", [vals[0].name], _out(layer), axis=layer.axis)


def _leaky(b, layer, vals, outs):
    return b.node("LeakyRelu", [vals[0].name], _out(layer), alpha=layer.alpha)


def _prelu(b, layer, vals, outs):
    from ..functional.activation import alpha_view_shape
    x = vals[0]
    view = alpha_view_shape(layer.alpha.shape, (1,) + x.shape)
    # ONNX broadcasts the slope from the right (numpy's rule): give it gpudl's view, which
    # puts a (C,) alpha on axis 1 rather than on the last axis
    shape = (1,) if view == () else view
    slope = b.param(layer.alpha, f"{layer.name}/alpha", tag=shape, fn=lambda a: a.reshape(shape))
    return b.node("PRelu", [x.name, slope], _out(layer))


def _maxout(b, layer, vals, outs):
    x = vals[0]
    k = layer.pieces
    c = x.shape[0]
    grouped = b.reshape(x.name, [0, c // k, k] + list(x.shape[1:]), f"{layer.name}/grouped")
    return b.reduce("ReduceMax", grouped, [2], _out(layer), keepdims=0)


def _activation_layer(b, layer, vals, outs):
    y = _activation(b, layer, layer.activation, vals[0].name, _out(layer), None)
    if y == vals[0].name:  # "linear"
        return b.node("Identity", [y], _out(layer))
    return y


def _embedding(b, layer, vals, outs):
    ids = vals[0]
    name = ids.name
    if ids.dtype.kind == "f":
        name = b.node("Cast", [name], f"{layer.name}/ids", to=b.onnx.TensorProto.INT64)
    return b.node("Gather", [b.param(layer.embeddings, f"{layer.name}/embeddings"), name], _out(layer), axis=0)


# ---- deep structures -------------------------------------------------------------------------

def _highway(b, layer, vals, outs):
    x = vals[0]
    n = layer.name
    h = b.node("Gemm", [x.name, b.param(layer.W_h, f"{n}/W_h"), b.param(layer.b_h, f"{n}/b_h")], f"{n}/h_linear")
    h = _activation(b, layer, layer.activation, h, f"{n}/h", 2)
    t = b.node("Gemm", [x.name, b.param(layer.W_t, f"{n}/W_t"), b.param(layer.b_t, f"{n}/b_t")], f"{n}/t_linear")
    t = b.node("Sigmoid", [t], f"{n}/t")
    d = b.node("Mul", [t, b.node("Sub", [h, x.name], f"{n}/h_minus_x")], f"{n}/gated")
    return b.node("Add", [x.name, d], _out(layer))  # x + t * (h - x), as Highway.forward


def _residual(b, layer, vals, outs):
    h = vals
    for inner in layer.layers:
        h = b.emit_layer(inner, h)
    return b.node("Add", [vals[0].name, h[0].name], _out(layer))


def _time_distributed(b, layer, vals, outs):
    x = vals[0]
    t = x.shape[0]
    flat = b.reshape(x.name, [-1] + list(x.shape[1:]), f"{layer.name}/steps")
    inner = b.emit_layer(layer.layer, [Val(flat, tuple(x.shape[1:]), x.dtype, False)])
    if len(inner) != 1:
        raise _no_form(layer, "its inner layer returns several outputs")
    return b.reshape(inner[0].name, [-1, t] + list(inner[0].shape), _out(layer))


# ---- recurrent layers ------------------------------------------------------------------------

_ONNX_ACT = {"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid"}


def _reorder_gates(a, units, order_from, order_to):
    """Gate blocks of ``units`` columns on the last axis, from one letter order to another."""
    blocks = {g: a[..., i * units:(i + 1) * units] for i, g in enumerate(order_from)}
    return np.concatenate([blocks[g] for g in order_to], axis=-1)


def _rnn_kind(layer):
    from ..layers import GRU, LSTM
    return "LSTM" if isinstance(layer, LSTM) else "GRU" if isinstance(layer, GRU) else "RNN"


def _direction_weights(b, layer):
    """(W, R, B) of one direction as ONNX lays them out: (G*u, F), (G*u, u), (2*G*u,)."""
    u = layer.units
    W = backend.to_numpy(layer.W.data)
    U = backend.to_numpy(layer.U.data)
    kind = _rnn_kind(layer)
    g = layer.gates
    if layer.use_bias:
        bias = backend.to_numpy(layer.b.data)
    else:
        bias = np.zeros((g * u,), dtype=W.dtype)
    if kind == "LSTM":
        order = b.lstm_gate_order
        W, U, bias = (_reorder_gates(a, u, "ifco", order) for a in (W, U, bias))
        B = np.concatenate([bias, np.zeros_like(bias)])
    elif kind == "GRU" and layer.reset_after and layer.use_bias:
        B = np.concatenate([bias[0], bias[1]])  # input bias row, then the recurrent one
    else:
        B = np.concatenate([bias, np.zeros_like(bias)])
    return W.T, U.T, B


def _rnn_attrs(b, layer, n_dir=1):
    """(op type, attributes); RNN's activations are listed once per direction."""
    kind = _rnn_kind(layer)
    attrs = {"hidden_size": layer.units}
    if kind == "GRU":
        lbr = layer.reset_after if b.gru_lbr is None else b.gru_lbr
        attrs["linear_before_reset"] = int(bool(lbr))
    elif kind == "RNN":
        name = _activations.name_of(layer.activation)
        if name == "linear":
            attrs.update(activations=["Affine"] * n_dir, activation_alpha=[1.0] * n_dir,
                         activation_beta=[0.0] * n_dir)
        elif name in _ONNX_ACT:
            attrs["activations"] = [_ONNX_ACT[name]] * n_dir
        else:
            raise _no_form(layer, f"its activation {layer.activation!r} has no ONNX RNN form")
    return kind, attrs


def _check_recurrent(layer, vals):
    if vals[0].mask:
        raise _no_form(layer, "it is fed a mask (from Embedding(mask_zero=True) or Masking), and ONNX's "
                              "recurrent ops have no per-step mask")
    if getattr(layer, "stateful", False):
        raise _no_form(layer, "it is stateful (it keeps its states between calls)")


def _recurrent_op(b, layer, layers_by_dir, x, direction):
    """Transpose to time-major, then one ONNX LSTM/GRU/RNN node; returns (Y, Y_h, Y_c) names."""
    kind, attrs = _rnn_attrs(b, layers_by_dir[0], len(layers_by_dir))
    for other in layers_by_dir[1:]:
        if _rnn_attrs(b, other, len(layers_by_dir)) != (kind, attrs) or type(other) is not type(layers_by_dir[0]):
            raise _no_form(layer, "its two directions differ in their settings")
    Ws, Rs, Bs = zip(*(_direction_weights(b, lay) for lay in layers_by_dir))
    n = layer.name
    tag = ("rnn", direction, b.lstm_gate_order, b.gru_lbr) + tuple(id(lay.W) for lay in layers_by_dir)
    W = b.const(np.stack(Ws), f"{n}/W", key=tag + ("W",))
    R = b.const(np.stack(Rs), f"{n}/R", key=tag + ("R",))
    B = b.const(np.stack(Bs), f"{n}/B", key=tag + ("B",))
    xt = b.transpose(x.name, (1, 0, 2), f"{n}/time_major")
    n_out = 3 if kind == "LSTM" else 2
    outs = b.node(kind, [xt, W, R, B], f"{n}/{kind.lower()}", n_out=n_out, direction=direction, **attrs)
    return outs + [None] * (3 - n_out)


def _reverse_time(b, y, axis, base):
    return b.node("Slice", [y, b.ints([-1], "starts"), b.ints([_INT64_MIN], "ends"), b.ints([axis], "axes"),
                            b.ints([-1], "steps")], base)


def _recurrent(b, layer, vals, outs):
    _check_recurrent(layer, vals)
    x = vals[0]
    n = layer.name
    y, y_h, y_c = _recurrent_op(b, layer, [layer], x, "reverse" if layer.go_backwards else "forward")
    main = _out(layer)
    if layer.return_sequences:
        seq = b.transpose(b.squeeze(y, [1], f"{n}/sequence"), (1, 0, 2), main if not layer.go_backwards
                          else f"{n}/aligned")
        if layer.go_backwards:  # gpudl returns the steps in processing order, last input step first
            seq = _reverse_time(b, seq, 1, main)
        first = seq
    else:
        first = b.squeeze(y_h, [0], main)
    if not layer.return_state:
        return first
    h = b.squeeze(y_h, [0], f"{n}/h") if layer.return_sequences else \
        b.node("Identity", [first], f"{n}/h")
    states = [h] + ([b.squeeze(y_c, [0], f"{n}/c")] if y_c is not None else [])
    return [first] + states


def _bidirectional(b, layer, vals, outs):
    fw, bw = layer.forward_layer, layer.backward_layer
    _check_recurrent(fw, vals)
    _check_recurrent(bw, vals)
    if fw.units != bw.units:
        raise _no_form(layer, "its directions have different units")
    x = vals[0]
    n = layer.name
    # ONNX's direction 0 reads forwards: which of gpudl's two layers that is
    fi = 1 if fw.go_backwards else 0
    onnx_layers = [fw, bw] if fi == 0 else [bw, fw]
    y, y_h, y_c = _recurrent_op(b, layer, onnx_layers, x, "bidirectional")
    u = fw.units
    mode = layer.merge_mode
    if layer.return_sequences:
        t = x.shape[0]
        both = b.transpose(y, (2, 0, 1, 3), f"{n}/both")  # (N, T, 2, u)
        axis, flat = 2, [0, t, 2 * u]
    else:
        both = b.transpose(y_h, (1, 0, 2), f"{n}/both")  # (N, 2, u)
        axis, flat = 1, [0, 2 * u]
    main = _out(layer)
    if mode == "concat":
        if fi == 1:
            both = b.node("Gather", [both, b.ints([1, 0], "swap")], f"{n}/ordered", axis=axis)
        merged = [b.reshape(both, flat, main)]
    elif mode in ("sum", "ave", "mul"):
        op = {"sum": "ReduceSum", "ave": "ReduceMean", "mul": "ReduceProd"}[mode]
        merged = [b.reduce(op, both, [axis], main, keepdims=0)]
    else:
        merged = [b.node("Gather", [both, b.ints(i, "direction")], f"{main}/{k}", axis=axis)
                  for k, i in (("forward", fi), ("backward", 1 - fi))]
    if not layer.return_state:
        return merged if mode is None else merged[0]
    states = []
    for k, i in (("forward", fi), ("backward", 1 - fi)):
        states.append(b.node("Gather", [y_h, b.ints(i, "direction")], f"{n}/{k}_h", axis=0))
        if y_c is not None:
            states.append(b.node("Gather", [y_c, b.ints(i, "direction")], f"{n}/{k}_c", axis=0))
    return merged + states


def _emitters():
    from .. import layers as L
    table = {
        L.Dense: _dense, L.Conv2D: _conv2d, L.Conv1D: _conv1d, L.Conv2DTranspose: _conv2d_transpose,
        L.MaxPool2D: _pool, L.AvgPool2D: _pool,
        L.GlobalAveragePooling2D: _global_pool("GlobalAveragePool"),
        L.GlobalMaxPooling2D: _global_pool("GlobalMaxPool"),
        L.Flatten: _flatten, L.Reshape: _reshape, L.Permute: _permute, L.UpSampling2D: _upsampling,
        L.Dropout: _dropout, L.Masking: _masking,
        L.Concatenate: _concatenate, L.Add: _variadic("Sum", "Add"), L.Subtract: _chain("Sub"),
        L.Multiply: _chain("Mul"), L.Average: _variadic("Mean"), L.Maximum: _variadic("Max"),
        L.Minimum: _variadic("Min"),
        L.BatchNormalization: _batch_norm, L.LayerNormalization: _layer_norm,
        L.ReLU: _relu, L.Sigmoid: _unary("Sigmoid"), L.Tanh: _unary("Tanh"), L.Softmax: _softmax,
        L.LeakyReLU: _leaky, L.PReLU: _prelu, L.Maxout: _maxout, L.Activation: _activation_layer,
        L.Embedding: _embedding, L.Highway: _highway, L.Residual: _residual,
        L.TimeDistributed: _time_distributed,
        L.SimpleRNN: _recurrent, L.LSTM: _recurrent, L.GRU: _recurrent, L.Bidirectional: _bidirectional,
    }
    return table


class _LazyTable(dict):
    """The layer -> emitter table, made on first use (gpudl.layers imports nothing from here)."""

    def get(self, key, default=None):
        if not self:
            self.update(_emitters())
        return super().get(key, default)


_EMITTERS = _LazyTable()
