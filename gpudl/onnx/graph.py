"""``run_graph``: an ONNX graph run on gpudl's ops, start to end."""
from __future__ import annotations

from ..autograd import Tensor
from .runtime import Graph, UnsupportedOpError

__all__ = ["run_graph", "UnsupportedOpError"]


def run_graph(graph, feeds, opset=None, training=False) -> dict:
    """Run ``graph`` (an onnx GraphProto, a ModelProto, or the interpreter's Graph) on
    ``feeds`` (input name -> array or Tensor) with the default domain's ``opset`` (a ModelProto
    brings its own); returns {output name: array} on the backend the inputs came on (lists of
    arrays for sequence outputs). Every op the graph lacks an implementation for is listed in
    one UnsupportedOpError (a ValueError) before anything runs."""
    g = _as_graph(graph, opset)
    g.check_supported()
    out = g.run(feeds, training=training)
    return {name: _raw(v) for name, v in out.items()}


def _as_graph(graph, opset):
    if isinstance(graph, Graph):
        return graph
    from ._proto import graph_from_model, graph_from_proto
    kind = type(graph).__name__
    if kind == "ModelProto":
        return graph_from_model(graph)
    if kind == "GraphProto":
        if opset is None:
            raise ValueError("run_graph of a GraphProto needs the opset (the default domain's version)")
        return graph_from_proto(graph, {"": int(opset)})
    raise TypeError(f"run_graph expected an onnx GraphProto or ModelProto, got {kind}")


def _raw(v):
    if isinstance(v, list):
        return [_raw(e) for e in v]
    return v.data if isinstance(v, Tensor) else v



