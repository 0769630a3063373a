"""gpudl's CPU threads (gpudl.functional._threads): the split GEMMs give the same bits on any
thread count and agree with NumPy's matmul; BLAS is held to one thread inside an op and put
back after, also when blocks nest."""
from __future__ import annotations

import numpy as np
import pytest

import gpudl
from gpudl import functional as F
from gpudl.functional import _threads


@pytest.fixture
def thread_counts():
    old = _threads.threads()
    yield
    _threads.set_threads(old)


@pytest.mark.parametrize("m,k,n", [(128, 9216, 128), (9216, 128, 128), (128, 128, 9216), (3, 5, 7), (300, 40, 70)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_matches_matmul_and_not_the_thread_count(thread_counts, m, k, n, dtype):
    rng = np.random.default_rng(m + n)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    outs = []
    for t in (1, 2, 3):
        _threads.set_threads(t)
        outs.append(_threads.gemm(a, b))
        outs.append(_threads.gemm(a.T.copy().T, b))  # a transposed (Fortran-ordered) operand
    for o in outs[2::2]:  # each layout on 2 and 3 threads as on 1 (the two layouts may round apart)
        np.testing.assert_array_equal(o, outs[0])
    for o in outs[3::2]:
        np.testing.assert_array_equal(o, outs[1])
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for o in outs[:2]:
        np.testing.assert_allclose(o, a.astype(np.float64) @ b, rtol=tol, atol=tol * np.sqrt(k))


def test_gemm_writes_into_out_and_passes_other_arrays_to_matmul():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((600, 64)).astype(np.float32)
    b = rng.standard_normal((64, 200)).astype(np.float32)
    out = np.empty((600, 200), np.float32)
    assert _threads.gemm(a, b, out=out) is out
    np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-4)
    ints = np.arange(6).reshape(2, 3)
    np.testing.assert_array_equal(_threads.gemm(ints, ints.T), ints @ ints.T)  # not floating: plain matmul
    mixed = _threads.gemm(a[:4, :3].astype(np.float64), np.ones((3, 2), np.float32))
    assert mixed.dtype == np.float64


def test_single_blas_nests_and_puts_the_count_back():
    libs = _threads._blas_libraries()
    if not libs:
        pytest.skip("threadpoolctl sees no BLAS library")
    before = [lib.get_num_threads() for lib in libs]
    with _threads.single_blas():
        assert all(lib.get_num_threads() == 1 for lib in libs)
        with _threads.single_blas():
            assert all(lib.get_num_threads() == 1 for lib in libs)
        assert all(lib.get_num_threads() == 1 for lib in libs)  # the inner block leaves it held
    assert [lib.get_num_threads() for lib in libs] == before
    with pytest.raises(RuntimeError):
        with _threads.single_blas():
            raise RuntimeError("boom")
    assert [lib.get_num_threads() for lib in libs] == before  # put back after an error too


def test_dense_gradients_do_not_depend_on_the_thread_count(thread_counts):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((128, 1000)).astype(np.float32)
    W = rng.standard_normal((1000, 130)).astype(np.float32)
    b = rng.standard_normal(130).astype(np.float32)
    gy = rng.standard_normal((128, 130)).astype(np.float32)
    outs = []
    for t in (1, 2):
        _threads.set_threads(t)
        xt, Wt, bt = (gpudl.Tensor(v, requires_grad=True) for v in (x, W, b))
        y = F.linear(xt, Wt, bt)
        y.backward(gy)
        outs.append((y.numpy(), xt.grad, Wt.grad, bt.grad))
    for a, c in zip(*outs):
        np.testing.assert_array_equal(a, c)
    np.testing.assert_allclose(outs[0][0], x.astype(np.float64) @ W + b, rtol=1e-4, atol=1e-3)
