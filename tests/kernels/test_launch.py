"""gpudl's launch path on a real GPU, checked without one: Numba's dispatcher and CuPy are
replaced by stand-ins that record what ``_launch.launch`` hands them and raise Numba's
low-occupancy warning the way numba-cuda's ``_LaunchConfiguration`` does, when built."""
import importlib.metadata
import re
import types
import warnings

import numpy as np
import pytest

from gpudl.kernels import _launch
from gpudl.kernels import activation

try:
    from numba.cuda.core.errors import NumbaPerformanceWarning
except ImportError:  # pragma: no cover  (numba's own CUDA target)
    from numba.core.errors import NumbaPerformanceWarning


class FakeCupyArray:
    """What gpudl's backend takes for a CuPy array (its type's module starts with "cupy")."""


FakeCupyArray.__module__ = "cupy._fake"


class FakeDispatcher:
    """A specialized dispatcher: ``[grid, block, stream]`` builds a configuration, warning of a
    small grid as numba-cuda does (dispatcher.py, _LaunchConfiguration.__init__)."""

    def __init__(self):
        self.built = []
        self.calls = []

    def __getitem__(self, config):
        griddim = config[0] if isinstance(config[0], tuple) else (config[0],)
        blocks = int(np.prod(griddim))
        if blocks < 128:
            warnings.warn(NumbaPerformanceWarning(
                f"Grid size {blocks} will likely result in GPU under-utilization due to low occupancy."))
        self.built.append(config)
        return lambda *args: self.calls.append((config, args))


@pytest.fixture
def gpu(monkeypatch):
    """``_launch`` as it runs on a GPU: not simulated, CuPy's current stream at ``state.ptr``."""
    state = types.SimpleNamespace(ptr=0, made=[])

    class Stream:
        def __init__(self, kind, ptr):
            self.kind, self.ptr = kind, ptr
            state.made.append((kind, ptr))

    fake_cuda = types.SimpleNamespace(
        legacy_default_stream=lambda: Stream("legacy", 1),
        external_stream=lambda ptr: Stream("external", ptr),
        as_cuda_array=lambda a, sync=True: ("device array", a, sync),
    )
    fake_xp = types.SimpleNamespace(cuda=types.SimpleNamespace(
        get_current_stream=lambda: types.SimpleNamespace(ptr=state.ptr)))
    monkeypatch.setattr(_launch, "simulated", lambda: False)
    monkeypatch.setattr(_launch, "cuda", fake_cuda)
    monkeypatch.setattr(_launch, "get_array_module", lambda *a: fake_xp)
    monkeypatch.setattr(_launch, "_streams", {})
    monkeypatch.setattr(_launch, "_configs", {}, raising=False)
    return state


def test_gpu_launch_raises_no_low_occupancy_warning_and_configures_once(gpu):
    kernel = FakeDispatcher()
    x, y = FakeCupyArray(), FakeCupyArray()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        for _ in range(3):
            _launch.launch(kernel, (2, 3, 1), 128, x, 5, y)
    assert len(kernel.built) == 1, "the configured launch is built once per grid and stream"
    config, args = kernel.calls[-1]
    assert len(kernel.calls) == 3
    # CuPy's null stream goes to Numba as the legacy default stream, made once
    assert gpu.made == [("legacy", 1)] and config[2].kind == "legacy"
    # the arrays reach the dispatcher as they are: Numba views them through DLPack
    assert args[0] is x and args[1] == 5 and args[2] is y


def test_each_cupy_stream_gets_one_numba_stream(gpu):
    kernel = FakeDispatcher()
    x = FakeCupyArray()
    for ptr in (77, 77, 0, 77):
        gpu.ptr = ptr
        _launch.launch(kernel, 200, 128, x)
    assert gpu.made == [("external", 77), ("legacy", 1)]
    assert len(kernel.built) == 2 and len(kernel.calls) == 4


def test_older_numba_cuda_gets_device_arrays_without_a_sync(gpu, monkeypatch):
    monkeypatch.setattr(_launch, "_direct", False)
    kernel = FakeDispatcher()
    x = FakeCupyArray()
    _launch.launch(kernel, 200, 128, x, 3)
    _, args = kernel.calls[0]
    assert args == (("device array", x, False), 3)


def test_a_users_own_kernel_still_warns(gpu):
    kernel = FakeDispatcher()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _launch.launch(kernel, 1, 32, FakeCupyArray())
    # outside gpudl's launches the filter is gone: the same warning reaches the user
    with pytest.warns(NumbaPerformanceWarning, match="under-utilization due to low occupancy"):
        kernel[1, 32, 0]
    # and no filter was left behind for the rest of the process
    assert not any(f[1] is not None and "occupancy" in f[1].pattern for f in warnings.filters)


def test_message_pattern_matches_numba_cudas_warning():
    try:
        files = importlib.metadata.files("numba-cuda") or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("numba-cuda is not installed")
    source = [f for f in files if str(f).endswith("numba/cuda/dispatcher.py")]
    if not source:
        pytest.skip("numba-cuda's dispatcher.py is not where 0.30 keeps it")
    text = source[0].read_text()
    # the f-string of _LaunchConfiguration.__init__, split over two source lines there
    parts = re.findall(r'f?"(Grid size \{grid_size\} will likely result in GPU )"\s*'
                       r'"(under-utilization due to low occupancy\.)"', text)
    assert parts, "numba-cuda's low-occupancy message changed: update LOW_OCCUPANCY_MESSAGE"
    message = "".join(parts[0]).replace("{grid_size}", "12")
    assert re.match(_launch.LOW_OCCUPANCY_MESSAGE, message)


@pytest.mark.skipif(not _launch.simulated(), reason="launches under Numba's simulator (NUMBA_ENABLE_CUDASIM=1)")
def test_simulated_launch_emits_no_warning():
    x = np.linspace(-1, 1, 40, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = activation.relu_forward(x)  # a 2-block grid: far under Numba's 128
    np.testing.assert_array_equal(y, np.maximum(x, 0))
