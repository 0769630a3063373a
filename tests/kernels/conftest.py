"""Shared setup for the CUDA kernel tests.

The same tests run on NumPy arrays under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``,
as ``make test`` sets) and on CuPy arrays on a real GPU (marked ``gpu``): the array module is a
fixture parameter, never a second copy of a test.
"""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest


def _find_cupy():
    """The cupy module if it is the test device, without importing a real CuPy (CUDA init)."""
    spec = importlib.util.find_spec("cupy")
    if spec is None or spec.origin is None or "fakecupy" not in spec.origin:
        return None
    import cupy  # noqa: PLC0415
    return cupy

try:
    import numba  # noqa: F401
except ImportError:
    pytest.skip("the CUDA kernel tests need numba (pip install -e '.[test]' or gpudl[kernels])",
                allow_module_level=True)

from gpudl import backend  # noqa: E402
from gpudl.errors import BackendUnavailableError  # noqa: E402
from gpudl.kernels import _launch  # noqa: E402

SIMULATED = _launch.simulated()
#: the strict CuPy stand-in of tests/fakecupy is what ``import cupy`` finds: its arrays live in
#: host memory, so the simulator runs the kernels on them (make test's gpu tier)
TEST_DEVICE = bool(getattr(sys.modules.get("cupy") or _find_cupy(), "__gpudl_test_device__", False))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "ptx: compiles every kernel signature to PTX for sm_90 (no GPU, no simulator)")


def _cupy_module():
    """CuPy, asked of gpudl's backend (the one place that imports it), or a skip saying why."""
    try:
        return backend.get_array_module(backend.to_backend(np.zeros(1), "cupy"))
    except BackendUnavailableError as exc:
        pytest.skip(f"no usable GPU for the CuPy run: {exc}")


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module the kernels get: numpy (simulator) or cupy (real GPU)."""
    if request.param == "numpy":
        if not SIMULATED:
            pytest.skip("NumPy arrays run the kernels under Numba's CUDA simulator: "
                        "set NUMBA_ENABLE_CUDASIM=1 (make test does)")
        return np
    if SIMULATED and not TEST_DEVICE:
        pytest.skip("NUMBA_ENABLE_CUDASIM=1 replaces the GPU with the simulator; the CuPy run needs "
                    "a real GPU without it, or the test device (PYTHONPATH=tests/fakecupy)")
    return _cupy_module()


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return np.dtype(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def poison(xp):
    """poison(*nbytes): hand NaN-filled blocks back to the allocator before a launcher runs.

    The launchers allocate their outputs with ``empty``; CuPy's pool (and, for small arrays,
    malloc) hands the most recently freed block of a size out first, so an output element a
    kernel forgot to write reads as NaN instead of an earlier test's right answer.
    """
    def fill(*nbytes):
        for n in nbytes:
            block = xp.full(max(1, -(-int(n) // 8)), np.nan, dtype=np.float64)
            del block
    return fill


@pytest.fixture
def tol(dtype):
    """dict(rtol=, atol=) for comparing a result of ``dtype`` with a float64 reference."""
    if dtype == np.float32:
        return {"rtol": 2e-5, "atol": 1e-6}
    return {"rtol": 1e-12, "atol": 1e-13}
