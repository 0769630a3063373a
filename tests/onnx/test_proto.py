"""gpudl.onnx._proto: reading model files and decoding them; every bad file is a clear error."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import gpudl
from gpudl.errors import ModelFileError
from gpudl.onnx import _proto
from gpudl.onnx.graph import run_graph
from gpudl.onnx.ops import unsupported
from gpudl.onnx.runtime import UnsupportedOpError


def _model(nodes, inputs, outputs, inits=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _relu_model():
    return _model([helper.make_node("Relu", ["x"], ["y"])],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])])


def test_reads_a_valid_file_and_bytes(tmp_path):
    path = tmp_path / "relu.onnx"
    path.write_bytes(_relu_model().SerializeToString())
    for source in (path, str(path), path.read_bytes(), _relu_model()):
        model = _proto.read_model(source)
        assert [n.op_type for n in model.graph.node] == ["Relu"]


@pytest.mark.parametrize("what, content, message", [
    ("empty", b"", "is empty"),
    ("random", bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8)), "not a readable ONNX model"
     "|holds no ONNX model"),
    ("text", b"this is not a protobuf \xff\xfe" * 10, "not a readable ONNX model|holds no ONNX model"),
])
def test_bad_files_raise_model_file_error(tmp_path, what, content, message):
    path = tmp_path / f"{what}.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=message) as info:
        _proto.read_model(path)
    assert f"{what}.onnx" in str(info.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ModelFileError, match=r"missing\.onnx.* does not exist"):
        _proto.read_model(tmp_path / "missing.onnx")
    with pytest.raises(ModelFileError, match="not a regular file"):
        _proto.read_model(tmp_path)


def test_truncated_file(tmp_path):
    w = numpy_helper.from_array(np.arange(600, dtype=np.float32).reshape(20, 30), "W")
    model = _model([helper.make_node("MatMul", ["x", "W"], ["y"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 20])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 30])], [w])
    data = model.SerializeToString()
    path = tmp_path / "half.onnx"
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(ModelFileError, match=r"half\.onnx.*(truncated|holds no ONNX model|not a valid)"):
        _proto.read_model(path)


def test_checker_failure_names_the_problem(tmp_path):
    # an output nothing produces: onnx.checker refuses the graph
    model = _model([helper.make_node("Relu", ["x"], ["y"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                   [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 3])])
    path = tmp_path / "bad_graph.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelFileError, match=r"bad_graph\.onnx.*not a valid ONNX model \(onnx\.checker"):
        _proto.read_model(path)
    assert _proto.read_model(path, check=False).graph.output[0].name == "z"


def test_unknown_ops_are_all_listed_before_running():
    nodes = [helper.make_node("FrobnicateA", ["x"], ["a"], domain="example.ops"),
             helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Frobnicate", ["b"], ["y"])]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])])
    model.opset_import.append(helper.make_opsetid("example.ops", 1))
    assert unsupported(model) == ["Frobnicate", "example.ops.FrobnicateA"]
    assert unsupported(model.graph) == ["Frobnicate", "example.ops.FrobnicateA"]
    with pytest.raises(UnsupportedOpError, match=r"Frobnicate, example\.ops\.FrobnicateA"):
        run_graph(model, {"x": np.ones((2, 3), np.float32)})
    assert issubclass(UnsupportedOpError, ValueError)


def test_unknown_op_inside_a_subgraph_is_listed():
    body = helper.make_graph([helper.make_node("Mystery", [], ["o"])], "then", [],
                             [helper.make_tensor_value_info("o", TensorProto.FLOAT, [1])])
    other = helper.make_graph([helper.make_node("Constant", [], ["o"], value_floats=[1.0])], "else", [],
                              [helper.make_tensor_value_info("o", TensorProto.FLOAT, [1])])
    node = helper.make_node("If", ["c"], ["y"], then_branch=body, else_branch=other)
    model = _model([node], [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    assert unsupported(model) == ["Mystery"]


def test_attributes_and_to_array():
    t = numpy_helper.from_array(np.arange(6, dtype=np.int64).reshape(2, 3), "t")
    node = helper.make_node("Foo", ["x"], ["y"], alpha=0.5, axis=-1, mode="reflect", pads=[1, 2], value=t,
                            scales=[1.5, 2.0], names=["a", "b"])
    attrs = _proto.attributes(node)
    assert attrs["alpha"] == 0.5 and attrs["axis"] == -1 and attrs["mode"] == "reflect"
    assert attrs["pads"] == [1, 2] and attrs["scales"] == [1.5, 2.0] and attrs["names"] == ["a", "b"]
    np.testing.assert_array_equal(attrs["value"], np.arange(6).reshape(2, 3))
    a = _proto.to_array(t)
    assert a.dtype == np.int64 and a.flags.writeable
    bf16 = helper.make_tensor("b", TensorProto.BFLOAT16, [1], [1.0])
    with pytest.raises(TypeError, match="bfloat16"):
        _proto.to_array(bf16)


def test_run_graph_returns_arrays_on_the_inputs_backend():
    model = _relu_model()
    x = np.array([[-1.0, 0.5, 2.0]], np.float32)
    out = run_graph(model.graph, {"x": x}, opset=17)
    np.testing.assert_array_equal(out["y"], np.maximum(x, 0))
    with pytest.raises(ValueError, match="needs the opset"):
        run_graph(model.graph, {"x": x})


def test_backend_prepare_reports_bad_files(tmp_path):
    import gpudl.onnx.backend as backend
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty"):
        backend.prepare(str(path))
    rep = backend.prepare(_relu_model())
    out = rep.run([np.array([[-2.0, 1.0, 3.0]], np.float32)])
    np.testing.assert_array_equal(out["y"], [[0.0, 1.0, 3.0]])
    np.testing.assert_array_equal(out[0], out["y"])
    assert backend.supports_device("CPU")
    assert backend.supports_device("CUDA") == gpudl.backend.cupy_available()
