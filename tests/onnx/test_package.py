"""gpudl.onnx's entry points: importing gpudl loads no onnx, and the names stay what API.md says."""
from __future__ import annotations

import importlib
import subprocess
import sys

import gpudl


def test_importing_gpudl_onnx_loads_no_onnx():
    code = ("import sys, gpudl, gpudl.onnx; "
            "print(sorted(m for m in sys.modules if m == 'onnx' or m.startswith('onnx.') or m == 'onnxruntime'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_export_and_load_stay_functions_after_their_modules_load():
    importlib.import_module("gpudl.onnx.exporter")
    importlib.import_module("gpudl.onnx.importer")
    assert callable(gpudl.onnx.export) and gpudl.onnx.export.__module__ == "gpudl.onnx"
    assert callable(gpudl.onnx.load) and gpudl.onnx.load.__module__ == "gpudl.onnx"
    assert gpudl.onnx.backend.supports_device("CPU")


def test_a_saved_imported_model_loads_in_a_fresh_process(tmp_path):
    """A model file holding generic ONNX nodes loads where gpudl.onnx was never imported."""
    import numpy as np
    onnx = __import__("onnx")
    from onnx import TensorProto, helper
    graph = helper.make_graph(
        [helper.make_node("Erf", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])])
    src = tmp_path / "erf.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(src))
    model = gpudl.onnx.load(src)
    assert [type(layer).__name__ for layer in model.layers][-1] == "OnnxNode"
    x = np.linspace(-2, 2, 6, dtype=np.float32).reshape(2, 3)
    want = model.predict(x)
    saved = tmp_path / "erf.gpudl"
    model.save(saved)
    np.save(tmp_path / "x.npy", x)
    code = ("import sys, numpy as np, gpudl; m = gpudl.load_model(sys.argv[1]); "
            "np.save(sys.argv[2], m.predict(np.load(sys.argv[3])))")
    subprocess.run([sys.executable, "-c", code, str(saved), str(tmp_path / "y.npy"), str(tmp_path / "x.npy")],
                   check=True, capture_output=True, text=True)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), want)
