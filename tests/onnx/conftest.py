"""Every test here needs the onnx package (the ``onnx`` extra): without it the folder is not
collected, so ``make test`` on a machine without it still runs the rest."""
import importlib.util

collect_ignore_glob = [] if importlib.util.find_spec("onnx") else ["test_*.py"]


def pytest_configure(config):
    # onnx.backend.test marks each generated case with its coverage record
    config.addinivalue_line("markers", "onnx_coverage(proto, category): set by onnx.backend.test's runner")
