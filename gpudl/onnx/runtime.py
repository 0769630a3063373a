"""The ONNX graph interpreter: every node runs as gpudl ops on Tensors.

A :class:`Graph` is plain data (nodes with decoded attributes, constants as NumPy arrays,
the opset), so it needs no ``onnx`` package to run: ``gpudl.onnx.proto`` makes one from a
``ModelProto``, ``gpudl.onnx.records`` writes one to JSON and back (an imported model's
layers keep theirs in the model file).

Values are gpudl Tensors (sequences: Python lists of them; an omitted optional input:
None). Float ops run through gpudl's Functions, so a graph run with gradients enabled
records the autograd graph like any gpudl model: that is what makes an imported model
train. Integer "shape" values (``Shape``, constants) stay on the host, so a CuPy run reads
no device memory back to compute a Reshape; an op whose inputs live on both sides moves
the host ones to the device.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Tensor
from ..errors import GpudlError

__all__ = ["Node", "Graph", "op", "IMPLS", "RunState", "UnsupportedOpError", "supported_ops", "free_names"]

#: op_type -> implementation ``fn(run, node, *inputs) -> value or tuple of values`` (the
#: interpreter's own form; ``gpudl.onnx.ops.OPS`` wraps each as ``fn(inputs, attrs, opset)``)
IMPLS: dict = {}
#: (domain, op_type) -> implementation, for ops of other domains
DOMAIN_OPS: dict = {}

_LOADED = []


class UnsupportedOpError(GpudlError, ValueError, NotImplementedError):
    """An ONNX node gpudl cannot run (its op, or a case of its attributes)."""


def op(*names, domain=""):
    """Register an implementation under one or more ONNX op types (of ``domain``)."""
    def decorator(fn):
        for name in names:
            if domain in ("", "ai.onnx"):
                IMPLS[name] = fn
            else:
                DOMAIN_OPS[(domain, name)] = fn
        return fn
    return decorator


def _impl(node):
    if node.domain in ("", "ai.onnx"):
        return IMPLS.get(node.op)
    return DOMAIN_OPS.get((node.domain, node.op))


def _load_ops():
    if not _LOADED:
        from . import ops_control, ops_math, ops_nn, ops_rnn, ops_tensor  # noqa: F401  (they register)
        _LOADED.append(True)


def supported_ops() -> list:
    """The ONNX op types (default domain) the interpreter runs, sorted."""
    _load_ops()
    return sorted(IMPLS)


class Node:
    """One ONNX node: ``op`` (op_type), ``inputs`` / ``outputs`` (value names, "" for an
    omitted optional one), ``attrs`` (name -> int, float, str, list, NumPy array or Graph)."""

    __slots__ = ("op", "inputs", "outputs", "attrs", "name", "domain")

    def __init__(self, op, inputs, outputs, attrs=None, name="", domain=""):
        self.op = op
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.attrs = dict(attrs or {})
        self.name = name or ""
        self.domain = domain or ""

    def describe(self) -> str:
        return f"node '{self.name}' ({self.op})" if self.name else f"{self.op} node -> {self.outputs}"

    def attr(self, key, default=None):
        return self.attrs.get(key, default)

    def __repr__(self):
        return f"Node({self.op!r}, {self.inputs} -> {self.outputs})"


class RunState:
    """What an op sees besides its inputs: the opset, the mode and where new arrays go."""

    __slots__ = ("opset", "training", "xp", "scope")

    def __init__(self, opset, training, xp, scope):
        self.opset = opset
        self.training = training
        self.xp = xp
        self.scope = scope  # the enclosing values, for subgraphs (If, Loop, Scan)

    def run_graph(self, graph, feeds):
        """Run a subgraph attribute with ``feeds``; it also sees every value in scope here."""
        return graph.run(feeds, training=self.training, xp=self.xp, outer=self.scope)


class Graph:
    """Nodes in a runnable order, the names of the graph's inputs and outputs, constants
    (initializers and the like, name -> NumPy array), and the opset (domain -> version)."""

    def __init__(self, nodes, inputs, outputs, constants=None, opset=None, name="graph", input_types=None):
        self.nodes = list(nodes)
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.constants = dict(constants or {})
        self.opset = dict(opset or {"": 17})
        self.name = name
        #: name -> (dtype or None, shape with None / str for free axes) where known
        self.input_types = dict(input_types or {})
        self._last_use = None
        self._const_tensors = {}

    @property
    def version(self) -> int:
        """The default domain's opset version."""
        return int(self.opset.get("", self.opset.get("ai.onnx", 17)))

    def check_supported(self):
        """Raise UnsupportedOpError naming every op type here (and in subgraphs) with no
        implementation."""
        _load_ops()
        missing = sorted(self._missing_ops())
        if missing:
            raise UnsupportedOpError(f"ONNX graph '{self.name}': gpudl has no implementation of op(s) "
                                     f"{', '.join(missing)} (it runs {len(IMPLS)} ONNX op types: "
                                     "gpudl.onnx.ops.OPS)")

    def _missing_ops(self):
        out = set()
        for node in self.nodes:
            if _impl(node) is None:
                out.add(node.op if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op}")
            for v in node.attrs.values():
                for g in (v if isinstance(v, list) else [v]):
                    if isinstance(g, Graph):
                        out |= g._missing_ops()
        return out

    def _plan(self):
        """For each node index, the values whose last reader it is (freed after it runs)."""
        if self._last_use is None:
            keep = set(self.outputs)
            last = {}
            for i, node in enumerate(self.nodes):
                for name in node.inputs:
                    if name:
                        last[name] = i
                for name in _subgraph_reads(node):
                    last[name] = i
            frees = [[] for _ in self.nodes]
            for name, i in last.items():
                if name not in keep:
                    frees[i].append(name)
            self._last_use = frees
        return self._last_use

    def constant_tensor(self, name, xp):
        """A constant as a Tensor: floats on ``xp``'s side, integers and booleans on the host."""
        key = (name, xp.__name__)
        t = self._const_tensors.get(key)
        if t is None:
            a = self.constants[name]
            if a.dtype.kind == "f" and xp is not np:
                a = xp.asarray(a)
            t = Tensor._wrap(a)
            self._const_tensors[key] = t
        return t

    def run(self, feeds, training=False, xp=None, outer=None, keep=False):
        """Run the graph on ``feeds`` (name -> Tensor, array, list for a sequence, or None);
        returns {output name: value}. ``outer``: values of an enclosing graph (subgraphs);
        ``keep``: return every value computed, not only the outputs."""
        _load_ops()
        xp = xp or backend.get_xp()
        env = dict(outer) if outer else {}
        for name in self.constants:
            env[name] = self.constant_tensor(name, xp)
        for name, v in feeds.items():
            env[name] = as_value(v, xp)
        for name in self.inputs:
            if name not in env:
                raise ValueError(f"ONNX graph '{self.name}' expected a value for input '{name}', got "
                                 f"inputs {sorted(feeds)}")
        state = RunState(self.opset, training, xp, env)
        frees = self._plan() if not keep else [[] for _ in self.nodes]
        with np.errstate(all="ignore"):  # IEEE results (inf, nan) as ONNX runtimes give them
            for i, node in enumerate(self.nodes):
                _run_node(node, env, state)
                for name in frees[i]:
                    env.pop(name, None)
        missing = [o for o in self.outputs if o not in env]
        if missing:
            raise ValueError(f"ONNX graph '{self.name}': no node produces output(s) {missing}")
        return env if keep else {o: env[o] for o in self.outputs}


def _subgraph_reads(node):
    """Outer values a node's subgraphs read (they must outlive the node's start)."""
    out = []
    for v in node.attrs.values():
        for g in (v if isinstance(v, list) else [v]):
            if isinstance(g, Graph):
                out.extend(free_names(g))
    return out


def free_names(graph) -> set:
    """Names a graph reads that it neither defines nor takes as input (outer-scope values)."""
    defined = set(graph.inputs) | set(graph.constants)
    reads = set()
    for node in graph.nodes:
        reads.update(n for n in node.inputs if n and n not in defined)
        reads.update(n for n in _subgraph_reads(node) if n not in defined)
        defined.update(n for n in node.outputs if n)
    return reads


def _run_node(node, env, state):
    fn = _impl(node)
    if fn is None:
        where = node.op if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op}"
        raise UnsupportedOpError(f"ONNX {node.describe()}: gpudl has no implementation of op {where}")
    args = []
    for name in node.inputs:
        if not name:
            args.append(None)
            continue
        try:
            args.append(env[name])
        except KeyError:
            raise ValueError(f"ONNX {node.describe()} reads '{name}', which no earlier node, input or "
                             "initializer defines (are the nodes in topological order?)") from None
    try:
        out = fn(state, node, *args)
    except (UnsupportedOpError, TypeError, ValueError) as exc:
        msg = str(exc)
        if node.op not in msg[:80]:
            msg = f"ONNX {node.describe()}: {msg}"
        raise type(exc)(msg) from None
    if not isinstance(out, tuple):
        out = (out,)
    for name, v in zip(node.outputs, out):
        if name:
            env[name] = v


def as_value(v, xp):
    """A feed as the interpreter holds it: Tensors as they are, arrays wrapped (moved to
    ``xp``'s side when they are float), lists element by element."""
    if v is None or isinstance(v, Tensor):
        return v
    if isinstance(v, (list, tuple)):
        return [as_value(e, xp) for e in v]
    if backend.is_cupy_array(v):
        return Tensor._wrap(v if xp is not np else v.get())
    a = np.asarray(v)
    if a.dtype.kind in "OUS":
        raise TypeError(f"gpudl runs numeric tensors only, got an array of dtype {a.dtype}")
    if xp is not np:
        a = xp.asarray(a)
    return Tensor._wrap(a)
