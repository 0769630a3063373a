"""``load(path)``: an ONNX file as a trainable gpudl functional ``Model``.

The file is read (``_proto.read_model``), every op it uses is checked against
``ops.OPS`` (one ValueError lists all the missing ones before anything is built), and then:

1. **folding**: nodes that read only constants run once, here;
2. **probing**: the graph runs on two small random batches (2 and 3 samples), which gives
   each value's shape and whether its first axis is the batch axis (it follows the batch
   size in both runs). Only such *batch* values travel between gpudl layers;
3. **matching**: chains gpudl has a layer for become that layer, with the file's weights in
   gpudl's layout. They invert what ``gpudl.onnx.exporter`` writes, and the common PyTorch
   forms: Gemm / MatMul (+ Add) (+ activation) -> Dense, Conv -> Conv2D / Conv1D (pads no
   gpudl padding rule gives: a Pad node, then a "valid" convolution), ConvTranspose ->
   Conv2DTranspose, BatchNormalization, MaxPool / AveragePool / global pools, Flatten,
   Reshape, Transpose -> Permute, Concat and the elementwise merges, activations, PRelu,
   Gather on a table -> Embedding, Dropout, and Transpose + LSTM / GRU / RNN + the
   Squeeze / Transpose / Gather / Reshape / Reduce* around them -> LSTM, GRU, SimpleRNN,
   Bidirectional (ONNX gates i, o, f, c back to Keras' i, f, c, o; ``linear_before_reset``
   is GRU's ``reset_after``). Each match is run on the probe batch and kept only if it
   reproduces the graph's values there, so an unusual variant falls back instead of
   loading wrong;
4. **the rest**: every other node is an ``OnnxNode`` layer running ``ops.OPS[op_type]``
   (gpudl's differentiable ops, so gradients flow through it); the nodes computing a value
   without the batch axis (a shape, a time-major sequence) are copied into each OnnxNode
   that reads it. Its float constants are non-trainable Parameters, saved with the model.

gpudl fixes every axis but the batch axis, so an input with another dynamic axis is refused.
"""
from __future__ import annotations

import base64
import itertools
import math
import re

import numpy as np

from .. import backend
from ..autograd import Tensor, no_grad
from ..layers.base import Layer

__all__ = ["load", "from_proto", "OnnxNode"]

_PROBE_BATCHES = (2, 3)
#: ops whose result changes from run to run: never folded
_UNFOLDABLE = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Bernoulli",
               "Multinomial", "Dropout"}
#: input slots an op reads as host values (shapes, axes, scales, bounds): an OnnxNode keeps
#: those constants in its config, since a rebuilt model runs once before its weights are loaded
_HOST_SLOTS = {"Reshape": {1}, "Expand": {1}, "Tile": {1}, "Slice": {1, 2, 3, 4}, "Squeeze": {1},
               "Unsqueeze": {1}, "Pad": {1, 2, 3}, "Split": {1}, "TopK": {1}, "Resize": {1, 2, 3},
               "Upsample": {1}, "ConstantOfShape": {0}, "Range": {0, 1, 2}, "Clip": {1, 2}, "Dropout": {1, 2},
               "CumSum": {1}, "OneHot": {1, 2}, "Gather": {1}, "GatherElements": {1}, "GatherND": {1},
               "ScatterElements": {1}, "ScatterND": {1}, "Trilu": {1}, "Compress": {1}, "Loop": {0, 1}, "If": {0},
               "ReverseSequence": {1}, "LSTM": {4}, "GRU": {4}, "RNN": {4}, "Where": {0}, "CastLike": {1},
               "ReduceSum": {1}, "ReduceMean": {1}, "ReduceMax": {1}, "ReduceMin": {1}, "ReduceProd": {1},
               "ReduceL1": {1}, "ReduceL2": {1}, "ReduceLogSum": {1}, "ReduceLogSumExp": {1},
               "ReduceSumSquare": {1}, "Mod": set(), "LpPool": set(), "Shape": {0}, "Size": {0}}


# ---- entry points ------------------------------------------------------------------------

def load(path):
    """The ONNX model at ``path`` (a path, bytes or an ``onnx.ModelProto``) as a gpudl
    ``Model``: see the module docstring. Raises ``gpudl.errors.ModelFileError`` for a file
    that is not a readable, valid ONNX model, ValueError for a graph gpudl cannot express."""
    from ._proto import graph_from_model, read_model
    model = read_model(path, check=False)
    graph = graph_from_model(model)  # local functions inlined
    _check_ops(graph)  # every missing op named at once, before onnx.checker's first complaint
    read_model(model)
    return _Importer(graph).build()


def from_proto(proto):
    """``load`` for an ``onnx.ModelProto`` made in memory, which is not run through
    ``onnx.checker`` (``load`` checks what it reads)."""
    from ._proto import graph_from_model
    graph = graph_from_model(proto)
    _check_ops(graph)
    return _Importer(graph).build()


def _check_ops(graph):
    from . import ops
    missing = ops.unsupported(graph)
    if missing:
        raise ValueError(f"ONNX import: graph '{graph.name}' uses op(s) gpudl has no implementation of: "
                         f"{', '.join(missing)} (gpudl runs the {len(ops.OPS)} ONNX op types of "
                         "gpudl.onnx.ops.OPS)")


# ---- the generic layer -------------------------------------------------------------------

class OnnxNode(Layer):
    """ONNX nodes with no gpudl layer of their own, run on gpudl's ops (``ops.OPS``).

    ``nodes``: the ONNX nodes in order (the last is the one this layer stands for, the
    others compute values it reads that have no batch axis); ``inputs``: the value names the
    layer is called on, in order; ``outputs``: the value names it returns; ``constants``:
    value name -> array, fixed; ``weights``: [value name, shape, dtype] of the float
    constants kept as non-trainable Parameters (saved with the model's weights); ``opset``:
    the default domain's version the nodes follow. The config is plain JSON: a saved model
    loads without the ``onnx`` package."""

    def __init__(self, nodes, inputs, outputs, constants=None, weights=None, opset=17, name=None,
                 _values=None):
        super().__init__(name)
        from .runtime import Node
        self._nodes = [n if isinstance(n, Node) else _decode_node(n) for n in nodes]
        self.input_names = [str(n) for n in inputs]
        self.output_names = [str(n) for n in outputs]
        self._constants = {str(k): (_decode_array(v) if isinstance(v, dict) else np.asarray(v))
                           for k, v in (constants or {}).items()}
        self.weight_specs = [[str(n), [int(s) for s in shape], str(np.dtype(dt))] for n, shape, dt in (weights or [])]
        self.opset = int(opset)
        self._values = _values  # the weights' initial values (None: zeros, then a loaded file fills them)

    def describe(self) -> str:
        return f"OnnxNode '{self.name}' ({'+'.join(n.op for n in self._nodes)})"

    def build(self, like):
        for i, (_, shape, dt) in enumerate(self.weight_specs):
            p = self.add_param(f"c{i}", tuple(shape), "zeros", like=like)
            if p.dtype != np.dtype(dt):
                p.data = p.data.astype(dt)
            if self._values is not None:
                p.data[...] = backend.to_backend(np.asarray(self._values[i], dtype=dt), backend.backend_of(p.data))
            p.trainable = False
            p.requires_grad = False  # constants of the graph: not stepped, no gradient kept
        self._values = None

    def __call__(self, inputs, **kwargs):
        xs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if len(xs) != len(self.input_names):
            raise ValueError(f"{self.describe()} expected {len(self.input_names)} input(s) {self.input_names}, "
                             f"got {len(xs)}")
        xs = [x if isinstance(x, Tensor) else Tensor(np.asarray(x), dtype=np.asarray(x).dtype) for x in xs]
        if not self.built:
            floats = [x.dtype for x in xs if x.dtype.kind == "f"]
            specs = [np.dtype(dt) for _, _, dt in self.weight_specs]
            self.dtype = (specs or floats or [np.dtype(backend.default_dtype)])[0]
            self.build(xs[0])
            self.built = True
        elif self._params:
            backend.check_same_backend([xs[0].data, next(iter(self._params.values())).data], self.describe())
        return self.forward(xs)

    def forward(self, xs):
        from . import ops
        from .runtime import RunState, _run_node
        xp = backend.get_array_module(*[x.data for x in xs])
        env = {}
        for name, a in self._constants.items():
            env[name] = Tensor._wrap(xp.asarray(a) if a.dtype.kind == "f" and xp is not np else a)
        for (name, _, _), p in zip(self.weight_specs, self._params.values()):
            env[name] = p
        env.update(zip(self.input_names, xs))
        # IEEE results (inf, nan) as ONNX runtimes give them: a zero sample (the functional
        # API's shape probe) must not warn about a division it never meant to make
        with np.errstate(all="ignore"):
            for node in self._nodes:
                if _has_subgraph(node):  # If / Loop / Scan bodies read the values in scope here
                    _run_node(node, env, RunState({"": self.opset}, self.training, xp, env))
                    continue
                attrs = dict(node.attrs)
                attrs["_n_outputs"] = len(node.outputs)
                attrs["_training"] = bool(self.training)
                outs = ops.OPS[node.op]([env[n] if n else None for n in node.inputs], attrs, self.opset)
                for n, v in zip(node.outputs, outs):
                    if n:
                        env[n] = v
        values = [env[n] for n in self.output_names]
        return values[0] if len(values) == 1 else values

    def get_config(self):
        return {"name": self.name, "nodes": [_encode_node(n) for n in self._nodes],
                "inputs": list(self.input_names), "outputs": list(self.output_names),
                "constants": {k: _encode_array(v) for k, v in self._constants.items()},
                "weights": [list(w) for w in self.weight_specs], "opset": self.opset}


# ---- JSON records of nodes and arrays (an OnnxNode's config) --------------------------------

def _encode_array(a) -> dict:
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.name, "shape": list(a.shape),
            "b64": base64.b64encode(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()).decode()}


def _decode_array(rec) -> np.ndarray:
    if not isinstance(rec, dict) or set(rec) != {"dtype", "shape", "b64"}:
        raise ValueError(f"OnnxNode expected an array record {{'dtype', 'shape', 'b64'}}, got {rec!r:.80}")
    dt = np.dtype(rec["dtype"])
    data = base64.b64decode(rec["b64"])
    return np.frombuffer(data, dtype=dt.newbyteorder("<")).astype(dt).reshape(rec["shape"])


def _encode_value(v):
    from .runtime import Graph
    if isinstance(v, Graph):
        return {"graph": {"name": v.name, "nodes": [_encode_node(n) for n in v.nodes], "inputs": list(v.inputs),
                          "outputs": list(v.outputs), "opset": dict(v.opset),
                          "constants": {k: _encode_array(a) for k, a in v.constants.items()}}}
    if isinstance(v, np.ndarray):
        return {"array": _encode_array(v)}
    if isinstance(v, (np.integer, np.floating)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):  # JSON has no NaN or Infinity
        return {"float": "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")}
    if isinstance(v, (list, tuple)):
        return [_encode_value(e) for e in v]
    return v


def _decode_value(v):
    from .runtime import Graph
    if isinstance(v, dict):
        if "graph" in v:
            g = v["graph"]
            return Graph([_decode_node(n) for n in g["nodes"]], g["inputs"], g["outputs"],
                         {k: _decode_array(a) for k, a in g.get("constants", {}).items()}, g.get("opset"),
                         name=g.get("name", "graph"))
        if "array" in v:
            return _decode_array(v["array"])
        if "float" in v:
            return float(v["float"])
        raise ValueError(f"OnnxNode: unknown attribute record {v!r:.80}")
    if isinstance(v, list):
        return [_decode_value(e) for e in v]
    return v


def _encode_node(n) -> dict:
    rec = {"op": n.op, "inputs": list(n.inputs), "outputs": list(n.outputs)}
    if n.attrs:
        rec["attrs"] = {k: _encode_value(v) for k, v in n.attrs.items()}
    if n.name:
        rec["name"] = n.name
    if n.domain:
        rec["domain"] = n.domain
    return rec


def _decode_node(rec):
    from .runtime import Node
    return Node(rec["op"], rec["inputs"], rec["outputs"],
                {k: _decode_value(v) for k, v in rec.get("attrs", {}).items()}, rec.get("name", ""),
                rec.get("domain", ""))


def _has_subgraph(node) -> bool:
    from .runtime import Graph
    return any(isinstance(g, Graph) for v in node.attrs.values() for g in (v if isinstance(v, list) else [v]))


def _subgraph_reads(node) -> list:
    from .runtime import Graph, free_names
    out = []
    for v in node.attrs.values():
        for g in (v if isinstance(v, list) else [v]):
            if isinstance(g, Graph):
                out.extend(sorted(free_names(g)))
    return out


# ---- one piece of the model -------------------------------------------------------------------

class _Unit:
    """A layer of the model being made: ``layer`` called on the values ``inputs`` (a list
    when ``as_list``), its outputs bound to the value names ``outputs`` (None: unused), the
    ONNX nodes it replaces, and the weights it gets (``params()`` order; None: its own)."""

    def __init__(self, layer, inputs, outputs, nodes, weights=None, as_list=None):
        self.layer = layer
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.nodes = list(nodes)
        self.weights = weights
        self.as_list = len(self.inputs) > 1 if as_list is None else as_list


class _Importer:
    def __init__(self, graph):
        self.graph = graph
        self.opset = graph.version
        self.consts = dict(graph.constants)
        self.nodes = list(graph.nodes)
        self.outputs = list(graph.outputs)
        self.inputs = _input_specs(graph)
        floats = [dt for _, dt, _ in self.inputs if dt.kind == "f"]
        self.float_dtype = floats[0] if floats else np.dtype(backend.default_dtype)
        self.names = set()
        self.envs = []

    # ---- the pipeline -----------------------------------------------------------------------
    def build(self):
        from ..models.functional import Input, Model
        self._fold()
        self._prune()
        self._probe()
        self._index()
        bad = [o for o in self.outputs if not self.is_batch(o)]
        if bad:
            raise ValueError(f"ONNX import: graph output(s) {bad} do not keep the batch axis (their first axis "
                             f"does not follow the batch size): a gpudl model's outputs must; run such a graph "
                             "with gpudl.onnx.backend")
        units = self._match() + self._generic_units()
        kts = {}
        for name, dt, shape in self.inputs:
            self.names.add(name)
            kts[name] = Input(shape=shape, dtype=dt, name=name)
        for unit in self._ordered(units):
            args = [kts[n] for n in unit.inputs]
            out = unit.layer(args if unit.as_list else args[0])
            outs = out if isinstance(out, (list, tuple)) else [out]
            for name, kt in zip(unit.outputs, outs):
                if name:
                    kts[name] = kt
        ins = [kts[n] for n, _, _ in self.inputs]
        unused = [n for n, _, _ in self.inputs if not self._reaches_output(n)]
        if unused:
            raise ValueError(f"ONNX import: graph input(s) {unused} reach no output: a gpudl model's inputs "
                             "must all be used")
        outs = [kts[o] for o in self.outputs]
        return Model(ins[0] if len(ins) == 1 else ins, outs[0] if len(outs) == 1 else outs,
                     name=self.graph.name or "onnx_model")

    # ---- folding and pruning ----------------------------------------------------------------
    def _fold(self):
        from . import ops
        live = []
        for node in self.nodes:
            reads = [n for n in node.inputs if n]
            if (node.op in _UNFOLDABLE or node.domain not in ("", "ai.onnx") or _has_subgraph(node)
                    or not all(n in self.consts for n in reads) or not node.outputs):
                live.append(node)
                continue
            attrs = dict(node.attrs)
            attrs["_n_outputs"] = len(node.outputs)
            args = [Tensor._wrap(self.consts[n]) if n else None for n in node.inputs]
            try:
                with no_grad(), np.errstate(all="ignore"):
                    outs = ops.OPS[node.op](args, attrs, self.opset)
            except (ValueError, TypeError, IndexError, ArithmeticError, NotImplementedError):
                live.append(node)  # left to run time, where its error names the node
                continue
            if not all(isinstance(v, Tensor) for v in outs):
                live.append(node)
                continue
            for name, v in zip(node.outputs, outs):
                if name:
                    self.consts[name] = np.array(backend.to_numpy(v.data))
        self.nodes = live

    def _prune(self):
        needed = set(self.outputs)
        keep = []
        for node in reversed(self.nodes):
            if any(o in needed for o in node.outputs if o):
                keep.append(node)
                needed.update(n for n in node.inputs if n)
                needed.update(_subgraph_reads(node))
        self.nodes = keep[::-1]
        self.consts = {k: v for k, v in self.consts.items() if k in needed}

    def _reaches_output(self, name):
        return any(name in n.inputs or name in _subgraph_reads(n) for n in self.nodes) or name in self.outputs

    # ---- probing ------------------------------------------------------------------------------
    def _probe(self):
        from .runtime import Graph
        graph = Graph(self.nodes, [n for n, _, _ in self.inputs], self.outputs, self.consts, self.graph.opset,
                      name=self.graph.name)
        rng = np.random.default_rng(0)
        self.envs = []
        for b in _PROBE_BATCHES:
            feeds = {n: _sample(rng, dt, (b,) + shape) for n, dt, shape in self.inputs}
            try:
                with no_grad():
                    env = graph.run(feeds, xp=np, keep=True)
            except (ValueError, TypeError, IndexError) as exc:
                raise ValueError(f"ONNX import: graph '{self.graph.name}' does not run on a batch of {b} samples "
                                 f"({exc}); a gpudl model takes any batch size: export the model with a dynamic "
                                 "batch axis") from None
            self.envs.append(env)

    def value(self, name, k=0):
        """The value ``name`` took in probe ``k`` (a Tensor), or None."""
        v = self.envs[k].get(name)
        return v if isinstance(v, Tensor) else None

    def is_batch(self, name) -> bool:
        """Whether ``name`` is a value whose axis 0 follows the batch size (and nothing else does)."""
        if not name or name in self.consts:
            return False
        shapes = []
        for k, b in enumerate(_PROBE_BATCHES):
            v = self.value(name, k)
            if v is None or v.ndim == 0 or v.shape[0] != b:
                return False
            shapes.append(tuple(v.shape[1:]))
        return all(s == shapes[0] for s in shapes)

    def shape(self, name):
        """One sample's shape of a batch value."""
        return tuple(self.value(name).shape[1:])

    def const(self, name):
        return self.consts.get(name) if name else None

    # ---- the graph's wiring -------------------------------------------------------------------
    def _index(self):
        self.producer, self.readers = {}, {}
        for i, node in enumerate(self.nodes):
            for o in node.outputs:
                if o:
                    self.producer[o] = i
            for n in list(node.inputs) + _subgraph_reads(node):
                if n:
                    self.readers.setdefault(n, [])
                    if i not in self.readers[n]:
                        self.readers[n].append(i)

    def consumers(self, name) -> list:
        return list(self.readers.get(name, []))

    def only_consumer(self, name):
        """The one node reading ``name`` (which is no graph output), else None."""
        if name in self.outputs:
            return None
        readers = self.consumers(name)
        return readers[0] if len(readers) == 1 else None

    def fresh_value(self, base):
        used = set(self.consts) | set(self.producer) | {n for n, _, _ in self.inputs}
        for env in self.envs:
            used |= set(env)
        name, k = base, 1
        while name in used:
            name, k = f"{base}_{k}", k + 1
        return name

    def layer_name(self, value, kind):
        base = re.sub(r"\s+", "_", str(value or "").strip()) or kind
        name, k = base, 1
        while name in self.names or name in {n for n, _, _ in self.inputs}:
            name, k = f"{base}_{k}", k + 1
        return name

    # ---- matching -----------------------------------------------------------------------------
    def _match(self):
        """Units for the chains a matcher recognises (each node claimed once), in node order."""
        self.claimed = set()
        units = []
        table = _matchers()
        for i, node in enumerate(self.nodes):
            if i in self.claimed or node.domain not in ("", "ai.onnx"):
                continue
            for matcher in table.get(node.op, ()):
                found = matcher(self, i)
                if not found:
                    continue
                found = found if isinstance(found, list) else [found]
                layers = [u for u in found if not isinstance(u.layer, OnnxNode)]
                nodes = {j for u in found for j in u.nodes}
                if nodes & self.claimed or not all(self._accept(u) for u in layers):
                    continue
                for u in found:
                    self.names.add(u.layer.name)
                self.claimed |= nodes
                units.extend(found)
                break
        return units

    def _accept(self, unit):
        """Whether a matched unit may replace its nodes: its inputs and outputs are batch values,
        its inner values are read only inside it, and run on the probe it gives the graph's values."""
        inside = set(unit.nodes)
        if not unit.inputs or not all(self.is_batch(n) for n in unit.inputs):
            return False
        if not all(o is None or self.is_batch(o) for o in unit.outputs):
            return False
        exits = {o for o in unit.outputs if o}
        for i in unit.nodes:
            for o in self.nodes[i].outputs:
                if not o or o in exits:
                    continue
                if o in self.outputs or any(r not in inside for r in self.consumers(o)):
                    return False
        return self._verify(unit)

    def _verify(self, unit):
        xs = [self.value(n) for n in unit.inputs]
        layer = unit.layer
        try:
            with no_grad(), np.errstate(all="ignore"):
                layer(xs if unit.as_list else xs[0], training=False)  # builds it
                if unit.weights is not None:
                    layer.set_weights(unit.weights)
                out = layer(xs if unit.as_list else xs[0], training=False)
        except (ValueError, TypeError, IndexError):
            return False
        outs = out if isinstance(out, (list, tuple)) else [out]
        if len(outs) != len(unit.outputs):
            return False
        for got, name in zip(outs, unit.outputs):
            if name is None:
                continue
            want = backend.to_numpy(self.value(name).data)
            got = backend.to_numpy(got.data)
            if got.shape != want.shape:
                return False
            scale = max(1.0, float(np.nanmax(np.abs(want)))) if want.size and want.dtype.kind == "f" else 1.0
            if not np.allclose(got, want, rtol=1e-3, atol=1e-4 * scale, equal_nan=True):
                return False
        return True

    # ---- generic nodes --------------------------------------------------------------------------
    def _generic_units(self):
        """An OnnxNode for every unclaimed node that gives a batch value."""
        units = []
        for i, node in enumerate(self.nodes):
            if i in self.claimed:
                continue
            outs = [o for o in node.outputs if o and self.is_batch(o) and (self.consumers(o) or o in self.outputs)]
            if outs:
                units.append(self.generic(i, outs))
        return units

    def generic(self, i, outputs):
        """An OnnxNode for node ``i``, with the nodes behind each value it reads that has no batch
        axis (copied in: such a value cannot travel between layers)."""
        inputs, order, seen = [], [], set()

        def visit(j):
            if j in seen:
                return
            seen.add(j)
            node = self.nodes[j]
            for name in list(node.inputs) + _subgraph_reads(node):
                if not name or name in self.consts:
                    continue
                if self.is_batch(name):
                    if name not in inputs:
                        inputs.append(name)
                elif name in self.producer:
                    visit(self.producer[name])
                else:
                    raise ValueError(f"ONNX import: {self.nodes[j].describe()} reads '{name}', which has no batch "
                                     "axis and no node computes it")
            order.append(j)
        visit(i)
        node = self.nodes[i]
        if not inputs:
            raise ValueError(f"ONNX import: {node.describe()} gives a batch value but reads none: gpudl cannot "
                             "make it a layer")
        nodes = [self.nodes[j] for j in sorted(order)]
        return self.onnx_unit(nodes, inputs, outputs, node.op, [i])

    def onnx_unit(self, nodes, inputs, outputs, kind, claimed, opset=None):
        """A _Unit of an OnnxNode running ``nodes``: the constants they read split into
        non-trainable Parameters (floats of the model's dtype) and fixed config arrays."""
        host = {n for node in nodes for k, n in enumerate(node.inputs) if k in _HOST_SLOTS.get(node.op, ())}
        host.update(n for node in nodes for n in _subgraph_reads(node))
        constants, weights, values = {}, [], []
        for node in nodes:
            for name in list(node.inputs) + _subgraph_reads(node):
                if name in self.consts and name not in constants and all(w[0] != name for w in weights):
                    a = self.consts[name]
                    if a.dtype == self.float_dtype and a.size > 1 and name not in host:
                        weights.append([name, list(a.shape), str(a.dtype)])
                        values.append(a)
                    else:
                        constants[name] = a
        name = self.layer_name(outputs[0], kind.lower())
        layer = OnnxNode(nodes, inputs, outputs, constants, weights, opset or self.opset, name=name, _values=values)
        self.names.add(name)
        return _Unit(layer, inputs, outputs, claimed, as_list=len(inputs) > 1)

    def _ordered(self, units):
        """The units, each after those giving the values it reads."""
        owner = {}
        for k, unit in enumerate(units):
            for o in unit.outputs:
                if o:
                    owner[o] = k
        state, order = {}, []

        def visit(k):
            if state.get(k) == 2:
                return
            if state.get(k) == 1:
                raise ValueError("ONNX import: the graph's layers form a cycle")
            state[k] = 1
            for name in units[k].inputs:
                if name in owner:
                    visit(owner[name])
                elif name not in {n for n, _, _ in self.inputs}:
                    raise ValueError(f"ONNX import: value '{name}' is read by a layer but no layer gives it")
            state[k] = 2
            order.append(units[k])
        for k in range(len(units)):
            visit(k)
        missing = [o for o in self.outputs if o not in owner and o not in {n for n, _, _ in self.inputs}]
        if missing:
            raise ValueError(f"ONNX import: no layer gives graph output(s) {missing}")
        return order


def _input_specs(graph):
    """(name, dtype, one sample's shape) of each graph input; every axis but the first fixed."""
    specs = []
    for name in graph.inputs:
        dtype, shape = graph.input_types.get(name, (None, None))
        if shape is None:
            raise ValueError(f"ONNX import: input '{name}' has no shape in the file: gpudl needs each input's "
                             "rank and every size but the batch axis")
        if len(shape) == 0:
            raise ValueError(f"ONNX import: input '{name}' is a scalar: gpudl inputs have a batch axis first")
        for axis, d in enumerate(shape[1:], start=1):
            if not isinstance(d, int):
                raise ValueError(f"ONNX import: input '{name}' has a dynamic axis {axis} ({d or 'unnamed'}): a gpudl "
                                 "model fixes every axis but the batch axis 0; give the file fixed sizes there "
                                 "(e.g. with onnx.tools.update_model_dims)")
        specs.append((name, np.dtype(dtype or np.float32), tuple(int(d) for d in shape[1:])))
    return specs


def _sample(rng, dtype, shape):
    """Probe data: standard normal floats; 0/1 integers (valid ids for any table)."""
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    return rng.integers(0, 2, shape).astype(dtype)


# ---- matchers: ONNX chains -> gpudl layers ----------------------------------------------------
#
# Each takes the importer and the index of the chain's first node and returns a _Unit (or a
# list of them), or None. The importer then checks the unit (see _Importer._accept).

def _L():
    from .. import layers
    return layers


def _attr_or_input(imp, node, attr, index, default=None):
    """An argument that moved from an attribute to an input over the opsets (Squeeze's axes,
    Clip's bounds, ...): the constant input when there is one, else the attribute."""
    if len(node.inputs) > index and node.inputs[index]:
        a = imp.const(node.inputs[index])
        return None if a is None else a.tolist()
    return node.attr(attr, default)


def _activation_after(imp, y, rank):
    """(activation name, node index) of the one activation node reading ``y``, which a
    Dense or convolution can apply itself; ("linear", None) when there is none."""
    c = imp.only_consumer(y)
    if c is None or c in imp.claimed:
        return "linear", None
    node = imp.nodes[c]
    if node.op in ("Relu", "Sigmoid", "Tanh"):
        return node.op.lower(), c
    if node.op == "LeakyRelu" and abs(node.attr("alpha", 0.01) - 0.01) < 1e-9:
        return "leaky_relu", c  # gpudl's "leaky_relu" activation has slope 0.01
    if node.op == "Softmax" and _softmax_axis(imp, node, rank) == rank - 1:
        return "softmax", c
    return "linear", None


def _softmax_axis(imp, node, rank):
    """Softmax's axis in [0, rank), or None where its opset's meaning has no gpudl form (before
    opset 13 the input is flattened to 2-D at the axis: only the last axis is a plain softmax)."""
    axis = node.attr("axis", -1 if imp.opset >= 13 else 1)
    a = axis % rank
    if imp.opset < 13 and a != rank - 1:
        return None
    return a


def _dense_unit(imp, nodes, x, y, W, b):
    rank = len(imp.shape(x)) + 1
    act, c = _activation_after(imp, y, rank)
    if c is not None:
        nodes = nodes + [c]
        y = imp.nodes[c].outputs[0]
    layer = _L().Dense(int(W.shape[1]), activation=None if act == "linear" else act, use_bias=b is not None,
                       name=imp.layer_name(y, "dense"))
    weights = [W] + ([b] if b is not None else [])
    return _Unit(layer, [x], [y], nodes, [w.astype(imp.float_dtype, copy=False) for w in weights])


def _match_gemm(imp, i):
    node = imp.nodes[i]
    x = node.inputs[0]
    W = imp.const(node.inputs[1])
    if W is None or W.ndim != 2 or not imp.is_batch(x) or len(imp.shape(x)) != 1 or node.attr("transA", 0):
        return None
    if node.attr("transB", 0):
        W = W.T
    alpha, beta = node.attr("alpha", 1.0), node.attr("beta", 1.0)
    W = W * W.dtype.type(alpha) if alpha != 1.0 else W
    b = None
    if len(node.inputs) > 2 and node.inputs[2]:
        C = imp.const(node.inputs[2])
        if C is None or C.size not in (1, W.shape[1]) or (C.ndim == 2 and C.shape[0] != 1) or C.ndim > 2:
            return None
        b = np.broadcast_to(C.reshape(-1), (W.shape[1],)).copy()
        b = b * b.dtype.type(beta) if beta != 1.0 else b
    return _dense_unit(imp, [i], x, node.outputs[0], np.ascontiguousarray(W), b)


def _match_matmul(imp, i):
    node = imp.nodes[i]
    x, y = node.inputs[0], node.outputs[0]
    W = imp.const(node.inputs[1])
    if W is None or W.ndim != 2 or not imp.is_batch(x) or len(imp.shape(x)) < 1:
        return None
    nodes, b = [i], None
    c = imp.only_consumer(y)
    if c is not None and imp.nodes[c].op == "Add":
        add = imp.nodes[c]
        other = add.inputs[1] if add.inputs[0] == y else add.inputs[0]
        B = imp.const(other)
        rank = len(imp.shape(x)) + 1
        if B is not None and B.size == W.shape[1] and B.ndim <= rank and B.shape[-1] == W.shape[1]:
            nodes, b, y = [i, c], B.reshape(-1).copy(), add.outputs[0]
    return _dense_unit(imp, nodes, x, y, W, b)


def _onnx_pads(node, in_sizes, kernel, strides, dilations):
    """The explicit [begin..., end...] pads of a Conv/pool node, auto_pad resolved; None when
    its auto_pad has no fixed meaning here."""
    d = len(kernel)
    auto = node.attr("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        return list(node.attr("pads", [0] * 2 * d))
    if auto == "VALID":
        return [0] * 2 * d
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for n, k, s, dl in zip(in_sizes, kernel, strides, dilations):
            span = (k - 1) * dl + 1
            total = max((-(-n // s) - 1) * s + span - n, 0)
            small = total // 2
            begin.append(small if auto == "SAME_UPPER" else total - small)
            end.append(total - begin[-1])
        return begin + end
    return None


def _pad_rule_2d(pads, in_hw, span, strides, allow_same=True):
    """The gpudl padding ("valid", "same", or (rows, cols)) whose pads are ONNX's [t, l, b, r]; None if none."""
    from ..functional.conv import normalize_padding
    t, le, bo, r = pads
    if not any(pads):
        return "valid"
    if allow_same and normalize_padding("same", in_hw, span, strides) == (t, bo, le, r):
        return "same"
    if t == bo and le == r:
        return (t, le)
    return None


def _conv_activation(imp, nodes, y, rank):
    act, c = _activation_after(imp, y, rank)
    if c is not None:
        return act, nodes + [c], imp.nodes[c].outputs[0]
    return act, nodes, y


def _match_conv(imp, i):
    node = imp.nodes[i]
    x = node.inputs[0]
    W = imp.const(node.inputs[1])
    B = imp.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    if W is None or W.ndim not in (3, 4) or not imp.is_batch(x) or len(imp.shape(x)) != W.ndim - 1:
        return None
    if len(node.inputs) > 2 and node.inputs[2] and B is None:
        return None
    d = W.ndim - 2
    kernel = [int(k) for k in W.shape[2:]]
    if list(node.attr("kernel_shape", kernel)) != kernel:
        return None
    strides = list(node.attr("strides", [1] * d))
    dil = list(node.attr("dilations", [1] * d))
    group = int(node.attr("group", 1))
    in_sizes = imp.shape(x)[1:]
    pads = _onnx_pads(node, in_sizes, kernel, strides, dil)
    if pads is None or any(p < 0 for p in pads) or (max(strides) > 1 and max(dil) > 1):
        return None
    L = _L()
    span = [(k - 1) * dl + 1 for k, dl in zip(kernel, dil)]
    if d == 2:
        padding = _pad_rule_2d(pads, in_sizes, span, strides)
    else:
        from ..functional.conv import conv1d_pads
        left, right = pads
        padding = next((p for p in ("valid", "same", "causal")
                        if conv1d_pads(p, in_sizes[0], span[0], strides[0]) == (left, right)),
                       left if left == right else None)
    units, src = [], x
    if padding is None:  # pads no gpudl rule gives: pad first, then a "valid" convolution
        pad_unit = _pad_unit(imp, x, pads, i)
        units.append(pad_unit)
        src, padding = pad_unit.outputs[0], "valid"
    act, nodes, y = _conv_activation(imp, [i], node.outputs[0], W.ndim)
    act = None if act == "linear" else act
    name = imp.layer_name(y, "conv")
    if d == 2:
        layer = L.Conv2D(int(W.shape[0]), tuple(kernel), strides=tuple(strides), padding=padding, activation=act,
                         use_bias=B is not None, dilation_rate=tuple(dil), groups=group, name=name)
    else:
        layer = L.Conv1D(int(W.shape[0]), kernel[0], strides=strides[0], padding=padding, dilation_rate=dil[0],
                         groups=group, activation=act, use_bias=B is not None, name=name)
    weights = [W] + ([B] if B is not None else [])
    units.append(_Unit(layer, [src], [y], nodes, weights))
    return units


def _pad_unit(imp, x, pads, anchor):
    """An OnnxNode zero-padding the spatial axes of ``x`` by ONNX ``pads`` (its value is probed
    here, so the convolution after it can be checked)."""
    from .runtime import Node
    d = len(pads) // 2
    full = [0, 0] + list(pads[:d]) + [0, 0] + list(pads[d:])
    out = imp.fresh_value(f"{x}_padded")
    pads_name = imp.fresh_value(f"{out}/pads")
    node = Node("Pad", [x, pads_name], [out], {"mode": "constant"}, name=f"{out}/Pad")
    imp.consts[pads_name] = np.asarray(full, dtype=np.int64)
    unit = imp.onnx_unit([node], [x], [out], "pad", [], opset=max(imp.opset, 13))
    del imp.consts[pads_name]
    with no_grad():
        for k, env in enumerate(imp.envs):
            env[out] = unit.layer(imp.value(x, k))
    return unit


def _match_conv_transpose(imp, i):
    node = imp.nodes[i]
    x = node.inputs[0]
    W = imp.const(node.inputs[1])
    B = imp.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    if W is None or W.ndim != 4 or not imp.is_batch(x) or len(imp.shape(x)) != 3 or int(node.attr("group", 1)) != 1:
        return None
    if node.attr("output_shape") is not None or node.attr("auto_pad", "NOTSET") not in ("NOTSET", "", "VALID"):
        return None
    kernel = [int(k) for k in W.shape[2:]]
    strides = list(node.attr("strides", [1, 1]))
    dil = list(node.attr("dilations", [1, 1]))
    pads = list(node.attr("pads", [0] * 4)) if node.attr("auto_pad", "NOTSET") != "VALID" else [0] * 4
    out_pad = list(node.attr("output_padding", [0, 0]))
    if max(strides) > 1 and max(dil) > 1:
        return None
    # what survives of the full transposed output: rows cropped at the top, and at the bottom
    # less the output padding (a negative crop: rows beyond the full output)
    want = (pads[0], pads[2] - out_pad[0], pads[1], pads[3] - out_pad[1])
    L = _L()
    shape = (1,) + imp.shape(x)
    act, nodes, y = _conv_activation(imp, [i], node.outputs[0], 4)
    act = None if act == "linear" else act
    for padding in ("valid", "same"):
        for op in [None] + list(itertools.product(range(strides[0]), range(strides[1]))):
            try:
                probe = L.Conv2DTranspose(int(W.shape[1]), tuple(kernel), strides=tuple(strides), padding=padding,
                                          output_padding=op, dilation_rate=tuple(dil), name="probe")
                (t, bo, le, r), (eh, ew) = probe._geometry(shape)
            except ValueError:
                continue
            if (t, bo - eh, le, r - ew) == want:
                layer = L.Conv2DTranspose(int(W.shape[1]), tuple(kernel), strides=tuple(strides), padding=padding,
                                          output_padding=op, dilation_rate=tuple(dil), activation=act,
                                          use_bias=B is not None, name=imp.layer_name(y, "conv_transpose"))
                return _Unit(layer, [x], [y], nodes, [W] + ([B] if B is not None else []))
    return None


def _pool_geometry(imp, node):
    x = node.inputs[0]
    if not imp.is_batch(x) or len(imp.shape(x)) != 3 or node.attr("ceil_mode", 0):
        return None
    kernel = list(node.attr("kernel_shape", []))
    if len(kernel) != 2 or list(node.attr("dilations", [1, 1])) != [1, 1]:
        return None
    strides = list(node.attr("strides", [1, 1]))
    pads = _onnx_pads(node, imp.shape(x)[1:], kernel, strides, [1, 1])
    if pads is None:
        return None
    return x, kernel, strides, pads


def _match_maxpool(imp, i):
    node = imp.nodes[i]
    geo = _pool_geometry(imp, node)
    if geo is None or any(node.outputs[1:]) and any(imp.consumers(o) for o in node.outputs[1:] if o):
        return None
    x, kernel, strides, pads = geo
    padding = _pad_rule_2d(pads, imp.shape(x)[1:], kernel, strides)
    return _pool_unit(imp, i, "MaxPool2D", "max_pool2d", x, kernel, strides, padding)


def _pool_unit(imp, i, cls, prefix, x, kernel, strides, padding):
    """The gpudl pooling layer ``cls`` for node ``i``, or None when ``padding`` is no gpudl
    rule or pads more than half a window (which gpudl's pools refuse)."""
    if padding is None or (isinstance(padding, tuple) and (padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2)):
        return None
    y = imp.nodes[i].outputs[0]
    layer = getattr(_L(), cls)(tuple(kernel), strides=tuple(strides), padding=0 if padding == "valid" else padding,
                               name=imp.layer_name(y, prefix))
    return _Unit(layer, [x], [y], [i])


def _match_avgpool(imp, i):
    node = imp.nodes[i]
    geo = _pool_geometry(imp, node)
    if geo is None:
        return None
    x, kernel, strides, pads = geo
    padding = _pad_rule_2d(pads, imp.shape(x)[1:], kernel, strides)
    include = int(node.attr("count_include_pad", 0))
    # gpudl counts padded zeros for integer padding and not for "same" (layers/pooling.py)
    if padding == "same" and include:
        padding = (pads[0], pads[1]) if pads[0] == pads[2] and pads[1] == pads[3] else None
    elif isinstance(padding, tuple) and not include:
        padding = None  # explicit pads that leave the zeros out of the mean: no gpudl rule
    return _pool_unit(imp, i, "AvgPool2D", "avg_pool2d", x, kernel, strides, padding)


def _match_global_pool(imp, i):
    node = imp.nodes[i]
    x, y = node.inputs[0], node.outputs[0]
    if not imp.is_batch(x) or len(imp.shape(x)) != 3:
        return None
    nodes, keepdims = [i], True
    c = imp.only_consumer(y)
    if c is not None:
        nxt = imp.nodes[c]
        flat = nxt.op == "Flatten" and nxt.attr("axis", 1) == 1
        squeeze = nxt.op == "Squeeze" and sorted(a % 4 for a in (_attr_or_input(imp, nxt, "axes", 1) or [])) == [2, 3]
        if flat or squeeze:
            nodes, keepdims, y = [i, c], False, nxt.outputs[0]
    cls = _L().GlobalAveragePooling2D if node.op == "GlobalAveragePool" else _L().GlobalMaxPooling2D
    return _Unit(cls(keepdims=keepdims, name=imp.layer_name(y, "global_pool")), [x], [y], nodes)


def _match_batchnorm(imp, i):
    node = imp.nodes[i]
    x = node.inputs[0]
    stats = [imp.const(n) for n in node.inputs[1:5]]
    if len(node.inputs) < 5 or any(a is None or a.ndim != 1 for a in stats) or not imp.is_batch(x):
        return None
    if node.attr("training_mode", 0) or not node.attr("spatial", 1) or any(
            o and imp.consumers(o) for o in node.outputs[1:]):
        return None
    eps, momentum = node.attr("epsilon", 1e-5), node.attr("momentum", 0.9)
    if not eps > 0 or not 0.0 <= momentum <= 1.0:
        return None
    y = node.outputs[0]
    layer = _L().BatchNormalization(axis=1, momentum=momentum, epsilon=eps, name=imp.layer_name(y, "batch_normalization"))
    return _Unit(layer, [x], [y], [i], stats)


def _match_prelu(imp, i):
    node = imp.nodes[i]
    x, y = node.inputs[0], node.outputs[0]
    slope = imp.const(node.inputs[1])
    if slope is None or not imp.is_batch(x) or slope.dtype.kind != "f":
        return None
    inner = imp.shape(x)
    rank = len(inner) + 1
    L = _L()
    if slope.size == 1:
        return _Unit(L.PReLU(shared=True, name=imp.layer_name(y, "p_re_lu")), [x], [y], [i], [slope.reshape(())])
    if imp.opset < 7 and slope.ndim == 1 and inner and slope.shape[0] == inner[0]:
        # PRelu-6: a 1-D slope is one per channel (axis 1)
        return _Unit(L.PReLU(name=imp.layer_name(y, "p_re_lu")), [x], [y], [i], [slope])
    if slope.ndim > rank:
        return None
    full = (1,) * (rank - slope.ndim) + tuple(slope.shape)
    if full[0] != 1:
        return None
    per_sample = full[1:]
    if per_sample[0] == inner[0] and all(s == 1 for s in per_sample[1:]):
        return _Unit(L.PReLU(name=imp.layer_name(y, "p_re_lu")), [x], [y], [i], [slope.reshape(-1)])
    shared = [a for a, s in enumerate(per_sample, start=1) if s == 1]
    if not shared:
        return None
    return _Unit(L.PReLU(shared_axes=shared, name=imp.layer_name(y, "p_re_lu")), [x], [y], [i],
                 [slope.reshape(per_sample)])


def _match_activation(imp, i):
    node = imp.nodes[i]
    x, y = node.inputs[0], node.outputs[0]
    if not imp.is_batch(x):
        return None
    L = _L()
    rank = len(imp.shape(x)) + 1
    op = node.op
    if op == "Relu":
        layer = L.ReLU(name=imp.layer_name(y, "re_lu"))
    elif op == "Sigmoid":
        layer = L.Sigmoid(name=imp.layer_name(y, "sigmoid"))
    elif op == "Tanh":
        layer = L.Tanh(name=imp.layer_name(y, "tanh"))
    elif op == "LeakyRelu":
        layer = L.LeakyReLU(node.attr("alpha", 0.01), name=imp.layer_name(y, "leaky_re_lu"))
    elif op == "Softmax":
        a = _softmax_axis(imp, node, rank)
        if a is None or a == 0:
            return None
        layer = L.Softmax(axis=-1 if a == rank - 1 else a, name=imp.layer_name(y, "softmax"))
    elif op == "Clip":
        lo = _attr_or_input(imp, node, "min", 1)
        hi = _attr_or_input(imp, node, "max", 2)
        if lo is None or float(np.ravel(lo)[0]) != 0.0 or (hi is not None and float(np.ravel(hi)[0]) < 0):
            return None
        if len(node.inputs) > 2 and node.inputs[2] and hi is None:
            return None
        layer = L.ReLU(max_value=None if hi is None else float(np.ravel(hi)[0]), name=imp.layer_name(y, "re_lu"))
    else:
        return None
    return _Unit(layer, [x], [y], [i])


def _match_dropout(imp, i):
    node = imp.nodes[i]
    x, y = node.inputs[0], node.outputs[0]
    if not imp.is_batch(x) or any(o and imp.consumers(o) or o in imp.outputs for o in node.outputs[1:] if o):
        return None
    rate = _attr_or_input(imp, node, "ratio", 1, 0.5)
    training = imp.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else np.array(False)
    if rate is None or training is None or bool(np.ravel(training)[0]) or not 0.0 <= float(np.ravel(rate)[0]) < 1.0:
        return None
    return _Unit(_L().Dropout(float(np.ravel(rate)[0]), name=imp.layer_name(y, "dropout")), [x], [y], [i])


def _match_flatten(imp, i):
    node = imp.nodes[i]
    x, y = node.inputs[0], node.outputs[0]
    if not imp.is_batch(x) or node.attr("axis", 1) % (len(imp.shape(x)) + 1) != 1:
        return None
    return _Unit(_L().Flatten(name=imp.layer_name(y, "flatten")), [x], [y], [i])


def _match_reshape(imp, i):
    node = imp.nodes[i]
    x, y = node.inputs[0], node.outputs[0]
    target = imp.const(node.inputs[1]) if len(node.inputs) > 1 else None
    if not imp.is_batch(x) or not imp.is_batch(y) or (target is None and node.attr("shape") is None):
        return None
    shape = imp.shape(y)
    if not shape or min(shape) < 1:
        return None
    return _Unit(_L().Reshape(shape, name=imp.layer_name(y, "reshape")), [x], [y], [i])


def _match_transpose(imp, i):
    node = imp.nodes[i]
    x, y = node.inputs[0], node.outputs[0]
    if not imp.is_batch(x):
        return None
    rank = len(imp.shape(x)) + 1
    perm = list(node.attr("perm", list(range(rank))[::-1]))
    if rank < 2 or perm[0] != 0:
        return None
    return _Unit(_L().Permute(tuple(perm[1:]), name=imp.layer_name(y, "permute")), [x], [y], [i])


def _match_merge(imp, i):
    node = imp.nodes[i]
    xs, y = list(node.inputs), node.outputs[0]
    if len(xs) < 2 or not all(imp.is_batch(n) for n in xs) or len({len(imp.shape(n)) for n in xs}) != 1:
        return None
    L = _L()
    op = node.op
    name = imp.layer_name(y, op.lower())
    if op == "Concat":
        axis = node.attr("axis", 1) % (len(imp.shape(xs[0])) + 1)
        if axis == 0:
            return None
        layer = L.Concatenate(axis=axis, name=name)
    elif op in ("Add", "Sum"):
        layer = L.Add(name=name)
    elif op == "Sub":
        layer = L.Subtract(name=name)
    elif op == "Mul":
        layer = L.Multiply(name=name)
    elif op == "Mean":
        layer = L.Average(name=name)
    elif op == "Max":
        layer = L.Maximum(name=name)
    elif op == "Min":
        layer = L.Minimum(name=name)
    else:
        return None
    return _Unit(layer, xs, [y], [i], as_list=True)


def _match_gather(imp, i):
    node = imp.nodes[i]
    table = imp.const(node.inputs[0])
    ids, y = node.inputs[1], node.outputs[0]
    if table is None or table.ndim != 2 or table.dtype.kind != "f" or node.attr("axis", 0) != 0:
        return None
    nodes = [i]
    p = imp.producer.get(ids)
    if p is not None and imp.nodes[p].op == "Cast" and imp.only_consumer(ids) == i and p not in imp.claimed:
        src = imp.nodes[p].inputs[0]
        if imp.is_batch(src) and imp.value(src).dtype.kind == "f":
            nodes, ids = [p, i], src  # Embedding takes whole-number float ids itself
    if not imp.is_batch(ids) or imp.value(ids).dtype.kind not in "iuf":
        return None
    layer = _L().Embedding(int(table.shape[0]), int(table.shape[1]), name=imp.layer_name(y, "embedding"))
    return _Unit(layer, [ids], [y], nodes, [table])


# ---- recurrent layers ---------------------------------------------------------------------------

_ONNX_GATES = {"LSTM": "iofc", "GRU": "zrh", "RNN": "h"}
_GPUDL_GATES = {"LSTM": "ifco", "GRU": "zrh", "RNN": "h"}
_DEFAULT_ACTS = {"LSTM": ["sigmoid", "tanh", "tanh"], "GRU": ["sigmoid", "tanh"]}
_RNN_ACTS = {"tanh": "tanh", "relu": "relu", "sigmoid": "sigmoid"}


def _squeeze_axes(imp, node):
    axes = _attr_or_input(imp, node, "axes", 1)
    return None if axes is None else [int(a) for a in np.ravel(axes)]


def _one(imp, name, op, check=lambda n: True):
    """The node index reading ``name`` when it is the only reader, of type ``op`` and passes ``check``."""
    c = imp.only_consumer(name)
    if c is None or imp.nodes[c].op != op or not check(imp.nodes[c]):
        return None
    return c


def _is_time_reverse(imp, node):
    axes = imp.const(node.inputs[3]) if len(node.inputs) > 3 and node.inputs[3] else None
    steps = imp.const(node.inputs[4]) if len(node.inputs) > 4 and node.inputs[4] else None
    return axes is not None and steps is not None and axes.tolist() == [1] and steps.tolist() == [-1]


def _gather_index(imp, node, axis):
    """The scalar index a Gather on ``axis`` takes, else None."""
    idx = imp.const(node.inputs[1])
    if node.op != "Gather" or node.attr("axis", 0) != axis or idx is None or idx.ndim != 0:
        return None
    return int(idx)


def _rnn_weights(kind, W, R, B, u, lbr):
    """gpudl's (W, U, b) of one direction from ONNX's W (G*u, F), R (G*u, u), B (2*G*u,)."""
    G = len(_ONNX_GATES[kind])
    Wg, Ug = W.T, R.T
    if B is None:
        wb = rb = None
    else:
        wb, rb = B[:G * u], B[G * u:]

    def order(a):
        blocks = {g: a[..., k * u:(k + 1) * u] for k, g in enumerate(_ONNX_GATES[kind])}
        return np.ascontiguousarray(np.concatenate([blocks[g] for g in _GPUDL_GATES[kind]], axis=-1))
    out = [order(Wg), order(Ug)]
    if wb is not None:
        out.append(np.stack([wb, rb]) if kind == "GRU" and lbr else order(wb + rb))
    return out


def _rnn_activation(kind, node, dirs):
    """SimpleRNN's activation name, "" for LSTM / GRU with ONNX's default activations, None otherwise."""
    acts = node.attr("activations")
    if kind != "RNN":
        if acts is None:
            return ""
        acts = [a.lower() for a in acts]
        return "" if acts == _DEFAULT_ACTS[kind] * dirs else None
    acts = [a.lower() for a in (acts or ["Tanh"] * dirs)]
    if len(set(acts)) != 1 or len(acts) != dirs:
        return None
    if acts[0] == "affine":
        alpha, beta = node.attr("activation_alpha", [1.0]), node.attr("activation_beta", [0.0])
        return "linear" if set(alpha) == {1.0} and set(beta) == {0.0} else None
    return _RNN_ACTS.get(acts[0])


def _match_recurrent(imp, i):
    node = imp.nodes[i]
    kind = node.op
    ins = list(node.inputs) + [""] * (8 - len(node.inputs))
    if any(ins[4:8]) or node.attr("layout", 0) or node.attr("clip") is not None or node.attr("input_forget", 0):
        return None
    t = imp.producer.get(ins[0])
    if t is None or imp.nodes[t].op != "Transpose" or list(imp.nodes[t].attr("perm", [])) != [1, 0, 2]:
        return None
    x = imp.nodes[t].inputs[0]
    W, R = imp.const(ins[1]), imp.const(ins[2])
    B = imp.const(ins[3]) if ins[3] else None
    if W is None or R is None or (ins[3] and B is None) or not imp.is_batch(x) or len(imp.shape(x)) != 2:
        return None
    direction = node.attr("direction", "forward")
    dirs = 2 if direction == "bidirectional" else 1
    u = int(node.attr("hidden_size", R.shape[-1]))
    act = _rnn_activation(kind, node, dirs)
    if act is None:
        return None
    lbr = bool(node.attr("linear_before_reset", 0))
    outs = list(node.outputs) + [""] * (3 - len(node.outputs))
    per_dir = [_rnn_weights(kind, W[d], R[d], None if B is None else B[d], u, lbr) for d in range(dirs)]
    if dirs == 1:
        return _unidirectional(imp, kind, [t, i], x, outs, u, direction == "reverse", act, lbr, B is not None,
                               per_dir[0])
    return _bidirectional(imp, kind, [t, i], x, outs, u, act, lbr, B is not None, per_dir)


def _rnn_layer(imp, kind, u, act, lbr, use_bias, name, **kwargs):
    L = _L()
    if kind == "LSTM":
        return L.LSTM(u, use_bias=use_bias, name=name, **kwargs)
    if kind == "GRU":
        return L.GRU(u, reset_after=lbr, use_bias=use_bias, name=name, **kwargs)
    return L.SimpleRNN(u, activation=act, use_bias=use_bias, name=name, **kwargs)


def _unidirectional(imp, kind, nodes, x, outs, u, backwards, act, lbr, use_bias, weights):
    """Exporter form: Y -> Squeeze(1) -> Transpose(1, 0, 2) [-> Slice reversing time] is the
    sequence; Y_h -> Squeeze(0) the last h (maybe -> Identity, the state output), Y_c -> Squeeze(0) c."""
    nodes = list(nodes)
    Y, Y_h, Y_c = outs
    seq = h = h2 = c = None
    if Y and (imp.consumers(Y) or Y in imp.outputs):
        s = _one(imp, Y, "Squeeze", lambda n: _squeeze_axes(imp, n) == [1])
        q = None if s is None else _one(imp, imp.nodes[s].outputs[0], "Transpose",
                                        lambda n: list(n.attr("perm", [])) == [1, 0, 2])
        if q is None:
            return None
        nodes += [s, q]
        seq = imp.nodes[q].outputs[0]
        if backwards:  # gpudl gives the steps in processing order: ONNX's re-reversed
            r = _one(imp, seq, "Slice", lambda n: _is_time_reverse(imp, n))
            if r is None:
                return None
            nodes.append(r)
            seq = imp.nodes[r].outputs[0]
    if Y_h and (imp.consumers(Y_h) or Y_h in imp.outputs):
        s = _one(imp, Y_h, "Squeeze", lambda n: _squeeze_axes(imp, n) == [0])
        if s is None:
            return None
        nodes.append(s)
        h = imp.nodes[s].outputs[0]
        for r in imp.consumers(h):
            if imp.nodes[r].op == "Identity" and h2 is None and r not in imp.claimed:
                nodes.append(r)
                h2 = imp.nodes[r].outputs[0]
    if Y_c and (imp.consumers(Y_c) or Y_c in imp.outputs):
        s = _one(imp, Y_c, "Squeeze", lambda n: _squeeze_axes(imp, n) == [0])
        if s is None:
            return None
        nodes.append(s)
        c = imp.nodes[s].outputs[0]
    if seq is None and h is None and c is None:
        return None
    rs = seq is not None
    st = c is not None or h2 is not None or (rs and h is not None)
    if rs:
        outputs = [seq] + ([h] if st else [])
    else:
        outputs = [h] + ([h2] if st else [])
    if st and kind == "LSTM":
        outputs.append(c)
    if not rs and h is None:
        return None
    name = imp.layer_name(outputs[0], kind.lower())
    layer = _rnn_layer(imp, kind, u, act, lbr, use_bias, name, return_sequences=rs, return_state=st,
                       go_backwards=backwards)
    return _Unit(layer, [x], outputs, nodes, weights)


_REDUCE_MERGE = {"ReduceSum": "sum", "ReduceMean": "ave", "ReduceProd": "mul"}


def _merged(imp, both, axis):
    """How the (N, [T,] 2, u) value ``both`` is merged: (mode, forward-first, nodes, outputs)."""
    readers = imp.consumers(both)
    if both in imp.outputs or not readers:
        return None
    if len(readers) == 1:
        r = readers[0]
        n = imp.nodes[r]
        if n.op == "Reshape":
            return "concat", 0, [r], [n.outputs[0]]
        if n.op == "Gather" and n.attr("axis", 0) == axis and imp.const(n.inputs[1]) is not None \
                and imp.const(n.inputs[1]).tolist() == [1, 0]:
            r2 = _one(imp, n.outputs[0], "Reshape")
            if r2 is None:
                return None
            return "concat", 1, [r, r2], [imp.nodes[r2].outputs[0]]
        if n.op in _REDUCE_MERGE and not n.attr("keepdims", 1) == 1:
            axes = _attr_or_input(imp, n, "axes", 1)
            if axes is not None and [int(a) for a in np.ravel(axes)] == [axis]:
                return _REDUCE_MERGE[n.op], 0, [r], [n.outputs[0]]
        return None
    if len(readers) == 2:
        by_index = {}
        for r in readers:
            k = _gather_index(imp, imp.nodes[r], axis)
            if k is None:
                return None
            by_index[k] = r
        if sorted(by_index) != [0, 1]:
            return None
        return None, 0, [by_index[0], by_index[1]], [imp.nodes[by_index[0]].outputs[0],
                                                     imp.nodes[by_index[1]].outputs[0]]
    return None


def _bidirectional(imp, kind, nodes, x, outs, u, act, lbr, use_bias, per_dir):
    """Exporter form: Y -> Transpose(2, 0, 1, 3) (sequences) or Y_h -> Transpose(1, 0, 2) (last
    steps), then merged (Reshape: concat, with a Gather swapping the directions first when gpudl's
    forward layer reads backwards; Reduce*: sum / ave / mul; two Gathers: None); the states are
    Gathers of Y_h / Y_c by direction."""
    nodes = list(nodes)
    Y, Y_h, Y_c = outs
    merged, states = None, {}
    if Y and imp.consumers(Y):
        r = _one(imp, Y, "Transpose", lambda n: list(n.attr("perm", [])) == [2, 0, 1, 3])
        if r is None:
            return None
        merged = _merged(imp, imp.nodes[r].outputs[0], 2)
        if merged is None:
            return None
        nodes.append(r)
        rs = True
    else:
        rs = False
    for src, key in ((Y_h, "h"), (Y_c, "c")):
        if not src:
            continue
        for r in imp.consumers(src):
            n = imp.nodes[r]
            if key == "h" and n.op == "Transpose" and list(n.attr("perm", [])) == [1, 0, 2] and not rs \
                    and merged is None:
                merged = _merged(imp, n.outputs[0], 1)
                if merged is None:
                    return None
                nodes.append(r)
                continue
            k = _gather_index(imp, n, 0)
            if k not in (0, 1) or (key, k) in states:
                return None
            states[(key, k)] = n.outputs[0]
            nodes.append(r)
        if src in imp.outputs:
            return None
    if merged is None:
        return None
    mode, fi, merge_nodes, merged_outs = merged
    nodes += merge_nodes
    st = bool(states)
    outputs = list(merged_outs)
    if st:
        for d in (fi, 1 - fi):
            outputs.append(states.get(("h", d)))
            if kind == "LSTM":
                outputs.append(states.get(("c", d)))
    name = imp.layer_name(outputs[0], "bidirectional")
    inner = _rnn_layer(imp, kind, u, act, lbr, use_bias, f"{name}_forward", return_sequences=rs, return_state=st,
                       go_backwards=fi == 1)
    layer = _L().Bidirectional(inner, merge_mode=mode, name=name)
    weights = list(per_dir[fi]) + list(per_dir[1 - fi])
    return _Unit(layer, [x], outputs, nodes, weights)


def _matchers():
    table = {
        "Gemm": [_match_gemm], "MatMul": [_match_matmul], "Conv": [_match_conv],
        "ConvTranspose": [_match_conv_transpose], "MaxPool": [_match_maxpool], "AveragePool": [_match_avgpool],
        "GlobalAveragePool": [_match_global_pool], "GlobalMaxPool": [_match_global_pool],
        "BatchNormalization": [_match_batchnorm], "PRelu": [_match_prelu], "Dropout": [_match_dropout],
        "Flatten": [_match_flatten], "Reshape": [_match_reshape], "Transpose": [_match_transpose],
        "Gather": [_match_gather], "LSTM": [_match_recurrent], "GRU": [_match_recurrent], "RNN": [_match_recurrent],
    }
    for op in ("Relu", "Sigmoid", "Tanh", "LeakyRelu", "Softmax", "Clip"):
        table[op] = [_match_activation]
    for op in ("Concat", "Add", "Sum", "Sub", "Mul", "Mean", "Max", "Min"):
        table[op] = [_match_merge]
    return table
