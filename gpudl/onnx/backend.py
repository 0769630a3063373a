"""``gpudl.onnx.backend``: an ``onnx.backend.base.Backend`` that runs ONNX graphs on gpudl's ops.

It is the module-level backend ONNX's test suite expects (``prepare``, ``run_model``,
``run_node``, ``supports_device`` here), and the :class:`GpudlBackend` class behind them::

    import gpudl.onnx.backend as backend
    rep = backend.prepare(onnx.load("model.onnx"), device="CPU")   # "CUDA": the CuPy backend
    outputs = rep.run([x])                                           # NumPy arrays, by index or name

"CPU" runs on NumPy; "CUDA" on CuPy (a visible GPU and CuPy needed), the inputs moved to the
device and the outputs back. Every run is inference: no autograd graph is recorded.
"""
from __future__ import annotations

import numpy as np

from .. import backend as _backend
from ..autograd import Tensor, no_grad
from ._proto import graph_from_model, read_model, require_onnx
from .runtime import Graph, Node, UnsupportedOpError

require_onnx()
from onnx.backend.base import Backend, BackendRep, Device, DeviceType, namedtupledict  # noqa: E402

__all__ = ["GpudlBackend", "GpudlBackendRep", "prepare", "run_model", "run_node", "supports_device",
           "is_compatible"]


def _array_module(device):
    kind = Device(device).type if isinstance(device, str) else device
    if kind == DeviceType.CUDA:
        return _backend._import_cupy()  # raises BackendUnavailableError saying why not
    if kind != DeviceType.CPU:
        raise ValueError(f"gpudl's ONNX backend runs on device 'CPU' or 'CUDA', got {device!r}")
    return np


def _to_host(v):
    if v is None:
        return None
    if isinstance(v, list):
        return [_to_host(e) for e in v]
    return _backend.to_numpy(v.data if isinstance(v, Tensor) else v)


class GpudlBackendRep(BackendRep):
    """A prepared graph: ``run(inputs)`` -> the outputs as NumPy arrays (a tuple that also
    takes output names: ``outputs["y"]``)."""

    def __init__(self, graph: Graph, xp):
        self.graph = graph
        self.xp = xp

    @property
    def input_names(self) -> list:
        return list(self.graph.inputs)

    @property
    def output_names(self) -> list:
        return list(self.graph.outputs)

    def _feeds(self, inputs):
        names = self.graph.inputs
        if isinstance(inputs, dict):
            missing = [n for n in names if n not in inputs]
            if missing:
                raise ValueError(f"ONNX graph '{self.graph.name}' expected inputs {names}, got {sorted(inputs)} "
                                 f"(missing {missing})")
            return dict(inputs)
        if not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        if len(inputs) > len(names) + sum(1 for n in self.graph.input_types if n in self.graph.constants):
            raise ValueError(f"ONNX graph '{self.graph.name}' expected {len(names)} inputs {names}, got "
                             f"{len(inputs)}")
        order = names + [n for n in self.graph.input_types if n in self.graph.constants]
        return dict(zip(order, inputs))

    def run(self, inputs, **kwargs):
        """Run on ``inputs``: a list in the graph's input order, a dict by name, or one array."""
        feeds = self._feeds(inputs)
        with no_grad():
            out = self.graph.run(feeds, xp=self.xp)
        values = [_to_host(out[name]) for name in self.graph.outputs]
        return namedtupledict("Outputs", self.graph.outputs)(*values)


class GpudlBackend(Backend):
    """gpudl as an ONNX backend (``onnx.backend.base.Backend``)."""

    @classmethod
    def is_compatible(cls, model, device="CPU", **kwargs) -> bool:
        """Whether every op of ``model`` has an implementation and ``device`` can run here."""
        try:
            graph = graph_from_model(model)
            graph.check_supported()
        except (UnsupportedOpError, TypeError):
            return False
        return cls.supports_device(device)

    @classmethod
    def prepare(cls, model, device="CPU", **kwargs) -> GpudlBackendRep:
        """Check ``model`` (a ModelProto, a path or bytes) and make it runnable on ``device``."""
        model = read_model(model)  # onnx.checker runs here: its failure is a clear ModelFileError
        graph = graph_from_model(model)
        graph.check_supported()
        return GpudlBackendRep(graph, _array_module(device))

    @classmethod
    def run_model(cls, model, inputs, device="CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node, inputs, device="CPU", outputs_info=None, **kwargs):
        """Run one NodeProto on ``inputs`` (its present inputs, in order); ``opset_version=``
        picks the opset (default: the newest this onnx package knows)."""
        super().run_node(node, inputs, device=device, outputs_info=outputs_info, **kwargs)
        from onnx import defs  # noqa: PLC0415
        from ._proto import _node  # noqa: PLC0415
        version = int(kwargs.get("opset_version") or defs.onnx_opset_version())
        opset = {"": version}
        one = _node(node, opset, "")
        present = [n for n in one.inputs if n]
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            feeds = dict(zip(present, inputs if isinstance(inputs, (list, tuple)) else [inputs]))
        graph = Graph([Node(one.op, one.inputs, one.outputs, one.attrs, one.name, one.domain)], present,
                      [o for o in one.outputs if o], opset=opset, name=node.name or node.op_type)
        graph.check_supported()
        return GpudlBackendRep(graph, _array_module(device)).run(feeds)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        """"CPU" always; "CUDA" where CuPy sees a GPU."""
        kind = Device(device).type
        if kind == DeviceType.CPU:
            return True
        return kind == DeviceType.CUDA and _backend.cupy_available()


prepare = GpudlBackend.prepare
run_model = GpudlBackend.run_model
run_node = GpudlBackend.run_node
supports_device = GpudlBackend.supports_device
is_compatible = GpudlBackend.is_compatible
