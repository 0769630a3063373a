"""``OPS``: every ONNX op gpudl runs, as ``fn(inputs, attrs, opset) -> list[Tensor]``.

``inputs`` are gpudl Tensors (None for an omitted optional input), ``attrs`` the node's
attributes as Python values (``gpudl.onnx._proto.attributes``), ``opset`` the default domain's
version; the result is the list of the node's outputs. The ops are gpudl's differentiable ops
(``gpudl.functional``, the autograd's operators and indexing, ``gpudl.onnx.functions``), so a
graph of them records the autograd graph and trains; they run on NumPy and CuPy alike. Values
an op must know (a Reshape's shape, Slice's starts) are read on the host.

Two keys of ``attrs`` beyond ONNX's own are understood: ``"_n_outputs"`` (how many outputs the
node has: Split into equal parts needs it; MaxPool's indices, LayerNormalization's statistics
and Dropout's mask are computed only when asked) and ``"_training"`` (Dropout drops, as in
training; default False, inference).

``unsupported(graph)`` lists the op types of a graph (and its subgraphs) that are not here.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Tensor
from .runtime import DOMAIN_OPS, IMPLS, Graph, Node, RunState, UnsupportedOpError, _load_ops

__all__ = ["OPS", "unsupported", "UnsupportedOpError"]

#: how many outputs an op yields when ``attrs`` does not say (the ones with optional extras)
_DEFAULT_OUTPUTS = {"Dropout": 2, "TopK": 2, "Unique": 4, "LSTM": 3, "GRU": 2, "RNN": 2}


class _Op:
    """One entry of OPS: calls the interpreter's implementation with a one-node context."""

    __slots__ = ("name", "impl")

    def __init__(self, name, impl):
        self.name, self.impl = name, impl

    def __repr__(self):
        return f"<ONNX op {self.name}>"

    def __call__(self, inputs, attrs, opset):
        attrs = dict(attrs or {})
        n_out = int(attrs.pop("_n_outputs", _DEFAULT_OUTPUTS.get(self.name, 1)))
        training = bool(attrs.pop("_training", False))
        for k, v in attrs.items():
            attrs[k] = _graph_attr(v, opset)
        arrays = [t.data for t in inputs if isinstance(t, Tensor)]
        xp = backend.get_array_module(*arrays) if arrays else backend.get_xp()
        node = Node(self.name, [f"in{i}" if t is not None else "" for i, t in enumerate(inputs)],
                    [f"out{i}" for i in range(n_out)], attrs)
        state = RunState({"": int(opset)}, training, xp, {})
        with np.errstate(all="ignore"):
            out = self.impl(state, node, *inputs)
        return list(out) if isinstance(out, tuple) else [out]


def _graph_attr(v, opset):
    """A GraphProto attribute (If, Loop, Scan bodies) as the interpreter's Graph."""
    if isinstance(v, list):
        return [_graph_attr(e, opset) for e in v]
    if type(v).__name__ == "GraphProto":
        from ._proto import graph_from_proto
        return graph_from_proto(v, {"": int(opset)})
    return v


def _build():
    _load_ops()
    return {name: _Op(name, impl) for name, impl in sorted(IMPLS.items())}


OPS: dict = _build()


def unsupported(graph) -> list:
    """The op types in ``graph`` (an onnx GraphProto or ModelProto, or the interpreter's
    Graph), its subgraphs included, that gpudl does not run: sorted, with the domain as a
    prefix when it is not the default one ("com.microsoft.FusedConv")."""
    if isinstance(graph, Graph):
        return sorted(graph._missing_ops())
    if type(graph).__name__ == "ModelProto":
        graph = graph.graph
    missing = set()
    for node in graph.node:
        domain = node.domain if node.domain != "ai.onnx" else ""
        known = IMPLS if domain == "" else None
        if (known is not None and node.op_type not in known) or (known is None and (domain, node.op_type)
                                                                  not in DOMAIN_OPS):
            missing.add(node.op_type if domain == "" else f"{domain}.{node.op_type}")
        for a in node.attribute:
            for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                missing.update(unsupported(g))
    return sorted(missing)
