"""Shared fixtures: every test starts on the NumPy backend with a fixed seed."""
from __future__ import annotations

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
