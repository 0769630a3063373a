"""DLPack: gpudl tensors and other libraries' arrays share one buffer, in both directions.

Each round trip is checked by writing through one side and reading the other: a copy would
pass an equality check but fail these.
"""
from __future__ import annotations

import numpy as np
import pytest

import gpudl
from gpudl import Tensor


def _ptr(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


# ---- NumPy ------------------------------------------------------------------------------

def test_from_numpy_shares_memory_both_ways():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = gpudl.from_dlpack(a)
    assert isinstance(t, Tensor) and t.backend == "numpy"
    assert t.shape == (3, 4) and t.dtype == np.float32
    assert not t.requires_grad and t.creator is None
    assert _ptr(t.data) == _ptr(a)
    a[0, 0] = -5.0
    assert t.data[0, 0] == -5.0
    t.data[2, 3] = 99.0
    assert a[2, 3] == 99.0


def test_numpy_reads_a_tensor_without_a_copy():
    t = Tensor(np.linspace(0, 1, 10).astype(np.float64))
    a = np.from_dlpack(t)
    assert _ptr(a) == _ptr(t.data)
    a[3] = 42.0
    assert t.data[3] == 42.0
    assert t.__dlpack_device__() == (1, 0)


def test_strided_views_keep_their_layout():
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    view = base[:, ::2].T  # non-contiguous
    t = gpudl.from_dlpack(view)
    np.testing.assert_array_equal(t.data, view)
    base[2, 4] = -1.0
    assert t.data[2, 2] == -1.0


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32, np.int64, np.uint8, np.bool_])
def test_dtypes_survive(dtype):
    a = (np.arange(6) % 2).astype(dtype)
    t = gpudl.from_dlpack(a)
    assert t.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(np.from_dlpack(t), a)


def test_a_tensor_in_gives_a_leaf_on_the_same_buffer():
    p = gpudl.Parameter(np.ones((2, 2), np.float32))
    t = gpudl.from_dlpack(p)
    assert not t.requires_grad
    assert _ptr(t.data) == _ptr(p.data)


def test_no_gradient_crosses_the_boundary():
    p = gpudl.Parameter(np.full(3, 2.0))
    with pytest.raises(RuntimeError, match="requires grad.*detach"):
        p.__dlpack__()
    shared = gpudl.from_dlpack(np.from_dlpack(p.detach()))
    # what is computed from the shared tensor has no path back to p
    out = (shared * shared).sum()
    assert not out.requires_grad
    loss = (p * p).sum()
    loss.backward()
    np.testing.assert_allclose(p.grad, [4.0, 4.0, 4.0])


def test_copy_true_gives_its_own_buffer():
    a = np.zeros(4, np.float32)
    t = gpudl.from_dlpack(a, copy=True)
    a[0] = 1.0
    assert t.data[0] == 0.0


# ---- bad input ----------------------------------------------------------------------------

def test_a_non_array_names_what_was_expected():
    with pytest.raises(TypeError, match=r"__dlpack__ and __dlpack_device__.*got list"):
        gpudl.from_dlpack([1.0, 2.0])


class _OnOpenCL:
    def __dlpack__(self, **kwargs):
        raise AssertionError("must not be asked for its buffer")

    def __dlpack_device__(self):
        return (4, 1)


def test_an_unknown_device_is_refused_before_reading():
    with pytest.raises(ValueError, match=r"host \(CPU\) or CUDA.*OpenCL \(device 1\)"):
        gpudl.from_dlpack(_OnOpenCL())


# ---- PyTorch ------------------------------------------------------------------------------

@pytest.mark.torch
def test_torch_round_trip_shares_memory():
    torch = pytest.importorskip("torch")
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    t = gpudl.from_dlpack(x)
    assert t.shape == (2, 3) and t.dtype == np.float32
    x[1, 2] = 100.0
    assert t.data[1, 2] == 100.0
    t.data[0, 0] = -7.0
    assert x[0, 0].item() == -7.0

    y = torch.from_dlpack(gpudl.Tensor(np.zeros((2, 2), np.float64)))
    assert y.dtype == torch.float64
    back = gpudl.from_dlpack(y)
    y[0, 1] = 3.0
    assert back.data[0, 1] == 3.0


@pytest.mark.torch
def test_torch_tensor_that_requires_grad_is_refused_by_torch():
    torch = pytest.importorskip("torch")
    with pytest.raises((RuntimeError, BufferError), match="grad"):
        gpudl.from_dlpack(torch.ones(2, requires_grad=True))
    t = gpudl.from_dlpack(torch.ones(2, requires_grad=True).detach())
    assert not t.requires_grad


@pytest.mark.torch
def test_a_trained_layer_output_goes_to_torch_without_a_copy():
    torch = pytest.importorskip("torch")
    layer = gpudl.layers.Dense(4)
    with gpudl.no_grad():
        out = layer(Tensor(np.ones((3, 5), np.float32)))
    y = torch.from_dlpack(out)
    np.testing.assert_array_equal(y.numpy(), out.data)
    assert y.data_ptr() == _ptr(out.data)


# ---- JAX ----------------------------------------------------------------------------------

def test_jax_round_trip():
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    x = jnp.arange(8, dtype=jnp.float32).reshape(2, 4)
    t = gpudl.from_dlpack(x)
    np.testing.assert_array_equal(t.data, np.asarray(x))
    # JAX arrays are immutable: sharing shows as one buffer address
    assert _ptr(t.data) == x.unsafe_buffer_pointer()

    # JAX imports a buffer without a copy only when it is 64-byte aligned: make sure it is
    buf = np.empty(5 + 16, dtype=np.float32)
    lo = (-buf.ctypes.data % 64) // 4
    aligned = buf[lo:lo + 5]
    aligned[:] = np.arange(5)
    src = Tensor(aligned)
    assert _ptr(src.data) % 64 == 0
    y = jax.dlpack.from_dlpack(src)
    np.testing.assert_array_equal(np.asarray(y), src.data)
    assert y.unsafe_buffer_pointer() == _ptr(src.data)


# ---- CuPy (the strict stand-in in make test's gpu tier; a real GPU where there is one) ----

@pytest.mark.gpu
def test_cupy_round_trip_shares_device_memory():
    cupy = pytest.importorskip("cupy")
    gpudl.set_backend("cupy")
    t = Tensor(np.arange(6, dtype=np.float32))
    assert t.backend == "cupy"
    assert tuple(t.__dlpack_device__())[0] == 2
    c = cupy.from_dlpack(t)
    c[0] = 50.0
    assert float(t.data[0]) == 50.0

    src = cupy.zeros((2, 3), dtype=cupy.float32)
    back = gpudl.from_dlpack(src)
    assert back.backend == "cupy"
    src[1, 1] = 8.0
    assert float(back.data[1, 1]) == 8.0


@pytest.mark.gpu
def test_a_host_buffer_stays_on_the_host_until_moved():
    pytest.importorskip("cupy")
    gpudl.set_backend("cupy")
    a = np.ones(3, np.float32)
    t = gpudl.from_dlpack(a)
    assert t.backend == "numpy"  # never an implicit copy to the device
    moved = t.to("cupy")
    assert moved.backend == "cupy"
    np.testing.assert_array_equal(moved.numpy(), a)
