"""gpudl's CPU threads (gpudl.functional._threads): the split GEMMs give the same bits on any
thread count and agree with NumPy's matmul; BLAS is held to one thread while the pool works
and put back after, also when blocks nest or raise."""
from __future__ import annotations

import numpy as np
import pytest

from gpudl.functional import _threads


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_split_products_match_matmul_and_not_the_thread_count(set_threads, axis, dtype):
    rng = np.random.default_rng(axis)
    a = rng.standard_normal((5000, 40)).astype(dtype)
    b = rng.standard_normal((40, 4500)).astype(dtype)
    if axis == 1:
        a = a[:70]
    else:
        b = b[:, :60]
    outs = []
    for t in (1, 2, 3):
        set_threads(t)
        out = np.empty((a.shape[0], b.shape[1]), dtype)
        outs.append(_threads.matmul_split(a, b, out, axis))
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(outs[0], a.astype(np.float64) @ b, rtol=tol, atol=tol * 10)


def test_the_pool_holds_blas_to_one_thread(set_threads):
    libs = _threads._blas_libraries()
    if not libs:
        pytest.skip("threadpoolctl sees no BLAS library")
    before = [lib.get_num_threads() for lib in libs]
    seen = []
    set_threads(2)
    _threads.run_blocks(lambda lo, hi: seen.append([lib.get_num_threads() for lib in libs]), 4)
    assert seen and all(counts == [1] * len(libs) for counts in seen)
    assert [lib.get_num_threads() for lib in libs] == before


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


def test_a_loop_that_runs_the_pool_holds_blas_to_its_end_and_splits_products(set_threads):
    libs = _threads._blas_libraries()
    if not libs:
        pytest.skip("threadpoolctl sees no BLAS library")
    before = [lib.get_num_threads() for lib in libs]
    rng = np.random.default_rng(2)
    a = rng.standard_normal((300, 500)).astype(np.float32)
    b = rng.standard_normal((500, 400)).astype(np.float32)
    plain = _threads.gemm(a, b)  # outside any hold: BLAS's own matmul
    np.testing.assert_array_equal(plain, a @ b)
    set_threads(2)
    with _threads.loop_scope():
        assert not _threads.blas_held()  # nothing ran the pool yet: BLAS keeps its threads
        np.testing.assert_array_equal(_threads.gemm(a, b), plain)
        _threads.run_blocks(lambda lo, hi: None, 2)
        assert _threads.blas_held() and all(lib.get_num_threads() == 1 for lib in libs)
        split = _threads.gemm(a, b)  # now cut into parts over the pool
        with _threads.loop_scope():  # a nested loop (evaluate inside fit) changes nothing
            _threads.run_blocks(lambda lo, hi: None, 2)
        assert _threads.blas_held()
        set_threads(1)
        np.testing.assert_array_equal(_threads.gemm(a, b), split)  # the same parts on one thread
    assert not _threads.blas_held()
    assert [lib.get_num_threads() for lib in libs] == before
    np.testing.assert_allclose(split, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3)
