import os
import subprocess
import sys
import types

import numpy as np
import pytest

import gpudl
from gpudl import backend


def test_default_numpy_and_switch():
    assert gpudl.get_backend() == "numpy"
    assert gpudl.backend.xp is np
    assert gpudl.set_backend("NumPy") == "numpy"


def test_unknown_backend_lists_choices():
    with pytest.raises(ValueError, match=r"unknown backend 'torch': expected one of 'numpy', 'cupy', 'auto'"):
        gpudl.set_backend("torch")


def test_auto_falls_back_to_numpy_with_reason():
    if backend.cupy_available():
        pytest.skip("a GPU is present: auto picks CuPy")
    assert gpudl.set_backend("auto") == "numpy"
    assert backend.describe().startswith("numpy (auto: backend 'cupy'")


def test_cupy_unavailable_is_a_clear_error():
    if backend.cupy_available():
        pytest.skip("a GPU is present")
    with pytest.raises(gpudl.BackendUnavailableError, match=r"backend 'cupy'.*(not installed|driver|device|failed)"):
        gpudl.set_backend("cupy")
    assert gpudl.get_backend() == "numpy"  # unchanged after the failed switch


def test_env_variable_selects_backend():
    code = "import gpudl; print(gpudl.get_backend())"
    env = dict(os.environ, GPUDL_BACKEND="numpy")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "numpy"
    env["GPUDL_BACKEND"] = "bogus"
    bad = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown backend 'bogus'" in bad.stderr


#: what ``import gpudl`` must not load: the GPU stack, the compilers, the optional peers and extras
HEAVY = ("cupy", "numba", "gpudl.kernels", "torch", "scipy", "sklearn", "matplotlib", "onnx", "onnxruntime",
         "mpi4py", "gymnasium", "gensim", "jax")


def test_import_is_light():
    """``import gpudl`` loads none of the heavy modules (its time is a benchmark's business,
    not a unit test's: on a loaded machine any fixed bound is a coin toss)."""
    code = (f"import sys, gpudl; print(' '.join(m for m in {HEAVY!r} if m in sys.modules) or 'none')")
    env = {k: v for k, v in os.environ.items() if k != "GPUDL_BACKEND"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["none"], f"import gpudl loaded {out.stdout.strip()}"


def _fake_cupy_array():
    cls = types.new_class("ndarray")
    cls.__module__ = "cupy"
    return cls()


def test_mixed_backends_name_both_types():
    with pytest.raises(TypeError, match=r"numpy\.ndarray \(numpy\) and cupy\.ndarray \(cupy\)"):
        backend.check_same_backend([np.zeros(2), _fake_cupy_array()], "Add")


def test_to_numpy_of_tensor_and_list():
    t = gpudl.Tensor([1.0, 2.0])
    assert isinstance(gpudl.to_numpy(t), np.ndarray)
    assert gpudl.to_numpy([1, 2]).tolist() == [1, 2]
    assert t.dtype == np.float32  # float32 default
    assert gpudl.Tensor(np.zeros(2, dtype=np.float64)).dtype == np.float64  # float64 kept
