"""The one place gpudl.onnx meets ONNX protobufs: importing ``onnx``, reading model files,
decoding attributes and tensors, and turning a graph into the interpreter's plain Graph.

``onnx`` is imported on first use only (``require_onnx``), so importing gpudl never needs it.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import ModelFileError
from ._values import ONNX_DTYPES, onnx_dtype
from .runtime import Graph, Node

__all__ = ["require_onnx", "read_model", "attributes", "to_array", "graph_from_model", "graph_from_proto",
           "opset_of", "OnnxModelFileError"]


class OnnxModelFileError(ModelFileError):
    """An ONNX model file that cannot be read: missing, empty, truncated, corrupt, or failing
    ``onnx.checker``."""


def require_onnx():
    """The ``onnx`` package, or an ImportError saying how to install it."""
    try:
        import onnx  # noqa: PLC0415  (optional dependency, loaded on first use)
    except ImportError as exc:
        raise ImportError(f"gpudl.onnx needs the 'onnx' package ({exc}): pip install 'gpudl[onnx]' "
                          "(or pip install onnx)") from None
    return onnx


def read_model(source, check=True):
    """An ``onnx.ModelProto`` from a path, bytes or a ModelProto, checked with
    ``onnx.checker.check_model``; external data next to a path is loaded. Every way a file can
    be unusable (missing, empty, truncated, not protobuf, an invalid model) raises
    OnnxModelFileError (a gpudl.ModelFileError) naming the file and what is wrong."""
    onnx = require_onnx()
    where = "ONNX model bytes"
    if isinstance(source, onnx.ModelProto):
        model, where = source, "ONNX model"
    elif isinstance(source, (bytes, bytearray)):
        model = _parse(onnx, bytes(source), where)
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        where = f"ONNX model file {path!r}"
        if not os.path.exists(path):
            raise OnnxModelFileError(f"{where} does not exist")
        if not os.path.isfile(path):
            raise OnnxModelFileError(f"{where} is not a regular file")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise OnnxModelFileError(f"{where} cannot be read: {exc}") from None
        model = _parse(onnx, data, where)
        if _has_external_data(model):
            try:
                from onnx.external_data_helper import load_external_data_for_model  # noqa: PLC0415
                load_external_data_for_model(model, os.path.dirname(os.path.abspath(path)))
            except Exception as exc:
                raise OnnxModelFileError(f"{where}: its external tensor data cannot be loaded: {exc}") from None
    else:
        raise TypeError(f"read_model expected a path, bytes or an onnx.ModelProto, got {type(source).__name__}")
    if check:
        try:
            onnx.checker.check_model(model)
        except Exception as exc:  # onnx.checker.ValidationError and kin
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise OnnxModelFileError(f"{where} is not a valid ONNX model (onnx.checker: {first})") from None
    return model


def _parse(onnx, data, where):
    if not data:
        raise OnnxModelFileError(f"{where} is empty (0 bytes): expected a serialized ONNX ModelProto")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError: truncated or not protobuf at all
        raise OnnxModelFileError(f"{where} is not a readable ONNX model ({len(data)} bytes; protobuf could not "
                                 f"decode it: {exc}); is it truncated or another kind of file?") from None
    if not model.HasField("graph") or model.ir_version < 1:
        raise OnnxModelFileError(f"{where} holds no ONNX model ({len(data)} bytes decode to a ModelProto "
                                 f"with ir_version {model.ir_version} and {'a' if model.HasField('graph') else 'no'} "
                                 "graph): is it another kind of file?")
    return model


def _has_external_data(model):
    from onnx import TensorProto  # noqa: PLC0415
    return any(t.data_location == TensorProto.EXTERNAL for t in model.graph.initializer)


def to_array(tensor) -> np.ndarray:
    """A TensorProto as a NumPy array (``onnx.numpy_helper``), writable, of a dtype gpudl runs."""
    return tensor_to_array(tensor)


def attributes(node) -> dict:
    """A NodeProto's attributes as Python values: int, float, str, lists of them, NumPy arrays
    for tensors, ``onnx.GraphProto`` for subgraphs (the ops that take one read it)."""
    return {a.name: _attribute(a, None, f"node '{node.name or node.op_type}': ") for a in node.attribute}


def opset_of(model) -> dict:
    return {(imp.domain if imp.domain != "ai.onnx" else ""): int(imp.version) for imp in model.opset_import}


def graph_from_model(model) -> Graph:
    """The interpreter's Graph of a ModelProto (or path, or bytes); local functions inlined."""
    model = read_model(model, check=False)
    if len(model.functions):
        from onnx import inliner  # noqa: PLC0415
        model = inliner.inline_local_functions(model)
    return graph_from_proto(model.graph, opset_of(model))


def tensor_to_array(t, where="") -> np.ndarray:
    """A TensorProto as a NumPy array of one of the dtypes gpudl runs."""
    from onnx import numpy_helper  # noqa: PLC0415
    if t.data_type not in ONNX_DTYPES:
        onnx_dtype(t.data_type, f"{where}tensor '{t.name}': ")  # raises naming the type
    return np.array(numpy_helper.to_array(t))


def _value_type(vi):
    """(dtype or None, shape: ints, None or the axis's symbolic name) of a ValueInfoProto."""
    tt = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
    if tt is None:
        return None, None
    dtype = np.dtype(ONNX_DTYPES[tt.elem_type]) if tt.elem_type in ONNX_DTYPES else None
    if not tt.HasField("shape"):
        return dtype, None
    dims = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        else:
            dims.append(d.dim_param or None)
    return dtype, tuple(dims)


def graph_from_proto(g, opset, where="") -> Graph:
    """A GraphProto (a model's graph or a subgraph attribute) as a Graph."""
    constants = {}
    for init in g.initializer:
        constants[init.name] = tensor_to_array(init, where)
    for sp in g.sparse_initializer:
        from onnx import numpy_helper  # noqa: PLC0415
        constants[sp.values.name] = np.array(numpy_helper.to_array(sp))
    inputs = [vi.name for vi in g.input if vi.name not in constants]
    types = {vi.name: _value_type(vi) for vi in g.input}
    nodes = [_node(n, opset, where) for n in g.node]
    return Graph(nodes, inputs, [o.name for o in g.output], constants, opset, name=g.name or "graph",
                 input_types=types)


def _node(n, opset, where):
    attrs = {a.name: _attribute(a, opset, f"{where}node '{n.name or n.op_type}': ") for a in n.attribute}
    return Node(n.op_type, list(n.input), list(n.output), attrs, n.name, n.domain)


def _attribute(a, opset, where):
    from onnx import AttributeProto as A  # noqa: PLC0415
    t = a.type
    if t == A.FLOAT:
        return float(a.f)
    if t == A.INT:
        return int(a.i)
    if t == A.STRING:
        return a.s.decode("utf-8", "replace")
    if t == A.TENSOR:
        return tensor_to_array(a.t, where)
    if t == A.GRAPH:
        return a.g if opset is None else graph_from_proto(a.g, opset, where)
    if t == A.FLOATS:
        return [float(v) for v in a.floats]
    if t == A.INTS:
        return [int(v) for v in a.ints]
    if t == A.STRINGS:
        return [s.decode("utf-8", "replace") for s in a.strings]
    if t == A.TENSORS:
        return [tensor_to_array(v, where) for v in a.tensors]
    if t == A.GRAPHS:
        return list(a.graphs) if opset is None else [graph_from_proto(v, opset, where) for v in a.graphs]
    return None  # sparse tensors and type protos: no op gpudl runs reads them
