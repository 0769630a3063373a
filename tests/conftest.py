"""Shared fixtures: every test starts on the NumPy backend with a fixed seed."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

import gpudl
from gpudl import backend
from gpudl.layers.base import reset_name_counters

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MNIST_DIR = SHARED / "datasets" / "mnist"


@pytest.fixture(autouse=True)
def _fresh_state():
    gpudl.set_backend("numpy")
    gpudl.set_seed(0)
    reset_name_counters()
    yield
    gpudl.set_backend("numpy")


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def backend_name(request):
    """Parametrizes a test over both backends; the CuPy case skips without a GPU."""
    if request.param == "cupy" and not backend.cupy_available():
        pytest.skip("CuPy backend unavailable: no CuPy package or no CUDA GPU here")
    gpudl.set_backend(request.param)
    return request.param


# GPUDL_TEST_TIMEOUT=N fails a test that runs past N seconds (the GPU check sets it, so one
# hung test costs its own time, not the run's); SIGALRM interrupts Python code in the main
# thread, which is where pytest runs the tests.
_TEST_TIMEOUT = float(os.environ.get("GPUDL_TEST_TIMEOUT", "0") or 0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    if _TEST_TIMEOUT <= 0 or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expired(signum, frame):
        raise TimeoutError(f"{item.nodeid} ran past GPUDL_TEST_TIMEOUT={_TEST_TIMEOUT:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, _TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# On gpudl's CuPy stand-in every kernel runs in Numba's simulator (about a millisecond a
# thread). A test marked ``stand_in_sample(n)`` keeps its first ``n`` device cases in the
# stand-in tier and marks the others ``slow`` there (``-m gpu`` still runs them all); NumPy
# cases and a real GPU run every case.
def _on_stand_in() -> bool:
    import importlib.util
    spec = importlib.util.find_spec("cupy")
    return spec is not None and spec.origin is not None and "fakecupy" in spec.origin


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    if not _on_stand_in():
        return
    seen: dict = {}
    for item in items:
        marker = item.get_closest_marker("stand_in_sample")
        if marker is None or item.get_closest_marker("gpu") is None:
            continue
        key = (item.fspath, item.originalname)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > marker.args[0]:
            item.add_marker(pytest.mark.slow)
