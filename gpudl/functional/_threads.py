"""gpudl's own CPU threads (NumPy backend): the thread count, a pool that runs independent
blocks of work at once, and GEMMs split over that pool with BLAS held to one thread.

Why not BLAS's own threads: OpenBLAS's worker threads busy-wait for about 2^28 cycles after
each multithreaded call (its THREAD_TIMEOUT, read once when numpy loads), so after one GEMM
they hold the cores that the next compiled loop or NumPy pass wants: on two cores a
mnist_cnn step ran 1.5x slower after its Dense layers' products than with BLAS at one thread.
So gpudl's hot products (conv2d's, Dense's) are cut into independent parts (rows or columns of
the result, or a batch of products; never the contracted axis, so no sum is split) that this
pool runs with BLAS at one thread: no BLAS worker ever wakes, so none spins. The parts depend
on the sizes alone, never on the thread count, so every result is the same on any number of
threads.

No numba here: ``import gpudl`` and a model without convolutions stay free of it.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["threads", "set_threads", "run_blocks", "single_blas", "matmul_batched", "matmul_split", "gemm"]

_pool = None
_pool_lock = threading.Lock()
_threads = None


def threads() -> int:
    """Threads the compiled loops use: ``GPUDL_CPU_THREADS``, else the CPUs this process may run on."""
    global _threads
    if _threads is None:
        env = os.environ.get("GPUDL_CPU_THREADS")
        if env is not None:
            try:
                _threads = max(1, int(env))
            except ValueError:
                raise ValueError(f"GPUDL_CPU_THREADS expected a positive integer, got {env!r}") from None
        else:
            try:
                _threads = len(os.sched_getaffinity(0))
            except AttributeError:  # pragma: no cover (not Linux)
                _threads = os.cpu_count() or 1
    return _threads


def set_threads(n: int) -> None:
    """Use ``n`` threads from now on (the work split, and so every result, stays the same)."""
    global _threads, _pool
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_threads expected a positive int, got {n!r}")
    with _pool_lock:
        _threads = n
        if _pool is not None:
            _pool.shutdown(wait=False)
            _pool = None


def run_blocks(fn, n_jobs, *args):
    """fn(*args, lo, hi) over [0, n_jobs) split into one contiguous range per thread; the last
    runs in the calling thread. The loops are compiled with nogil, so the threads run at once.
    A job is one output plane or row, and each is computed by one call in a fixed order, so the
    results do not depend on the number of threads."""
    global _pool
    n = min(threads(), n_jobs)
    if n <= 1:
        fn(*args, 0, n_jobs)
        return
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=threads() - 1, thread_name_prefix="gpudl-cpu")
        pool = _pool
    bounds = [i * n_jobs // n for i in range(n + 1)]
    futures = [pool.submit(fn, *args, bounds[i], bounds[i + 1]) for i in range(n - 1)]
    fn(*args, bounds[n - 1], bounds[n])
    for f in futures:
        f.result()


# ---- BLAS held to one thread ---------------------------------------------------------------------

_blas = None
_blas_lock = threading.Lock()
_blas_depth = 0
_blas_saved = []


def _blas_libraries():
    """threadpoolctl's controllers of the loaded BLAS libraries ([] without threadpoolctl)."""
    global _blas
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController
            _blas = ThreadpoolController().select(user_api="blas").lib_controllers
        except ImportError:  # without threadpoolctl: BLAS keeps its own threads
            _blas = []
    return _blas


class single_blas:
    """BLAS held to one thread inside the block (process-wide, as BLAS settings are).

    Nested blocks cost nothing: only the outermost sets the count (two calls into the BLAS
    library, about 2 us) and puts back the count it found."""

    def __enter__(self):
        global _blas_depth
        with _blas_lock:
            if _blas_depth == 0:
                libs = _blas_libraries()
                _blas_saved[:] = [lib.get_num_threads() for lib in libs]
                for lib in libs:
                    lib.set_num_threads(1)
            _blas_depth += 1
        return self

    def __exit__(self, *exc):
        global _blas_depth
        with _blas_lock:
            _blas_depth -= 1
            if _blas_depth == 0:
                for lib, n in zip(_blas_libraries(), _blas_saved):
                    lib.set_num_threads(n)
        return False


def _split_ok():
    """Whether BLAS can be held to one thread. On one gpudl thread the parts still run (one
    after another) under it: the same parts and the same one-thread BLAS kernels as on any
    other count, so the bits match (multithreaded OpenBLAS rounds some elements differently)."""
    return bool(_blas_libraries())


def matmul_batched(a, b, out):
    """out[i] = a[i] @ b[i] for a stack of products, the stack split over the threads."""
    if not _split_ok():
        np.matmul(a, b, out=out)
        return out
    with single_blas():
        run_blocks(lambda lo, hi: np.matmul(a[lo:hi], b[lo:hi], out=out[lo:hi]), out.shape[0])
    return out


#: a split GEMM's parts: at least _PART rows or columns each, at most _MAX_PARTS of them
_PART = 2048
_MAX_PARTS = 16


def _split(a, b, out, axis, parts):
    n = out.shape[axis]
    bounds = [i * n // parts for i in range(parts + 1)]

    def part(lo, hi):
        for i in range(lo, hi):
            r0, r1 = bounds[i], bounds[i + 1]
            if axis == 0:
                np.matmul(a[r0:r1], b, out=out[r0:r1])
            else:
                np.matmul(a, b[:, r0:r1], out=out[:, r0:r1])

    with single_blas():
        run_blocks(part, parts)
    return out


def matmul_split(a, b, out, axis):
    """out = a @ b (2-D), a's rows (axis 0) or b's columns (axis 1) split over the threads."""
    if not _split_ok():
        np.matmul(a, b, out=out)
        return out
    # the parts depend on the size alone, never on the thread count: BLAS may round a part's
    # edge differently from the whole, so the same parts must be computed whatever runs them
    return _split(a, b, out, axis, max(1, min(_MAX_PARTS, out.shape[axis] // _PART)))


#: gemm's parts: at least _GEMM_PART rows or columns each (a multiple of the kernels' widths)
_GEMM_PART = 64
#: products below this many multiply-adds run whole (BLAS at one thread): a split costs more
_GEMM_MIN_MACS = 1 << 20


def gemm(a, b, out=None):
    """a @ b (into ``out`` when given). For 2-D NumPy floating arrays of one dtype it runs with
    BLAS at one thread: whole when small, else the longer side of the result cut into parts
    of at least 64 that the threads run at once (the same parts on any thread count). Any
    other arrays (CuPy's, integers, stacks) go to their own matmul."""
    if (not isinstance(a, np.ndarray) or not isinstance(b, np.ndarray) or a.ndim != 2 or b.ndim != 2
            or a.dtype != b.dtype or a.dtype.kind != "f" or not _split_ok()
            or (out is not None and out.dtype != a.dtype)):
        if out is None:
            return a @ b
        from .. import backend
        return backend.get_array_module(a).matmul(a, b, out=out)
    m, k = a.shape
    n = b.shape[1]
    if out is None:
        out = np.empty((m, n), dtype=a.dtype)
    if m * n * k < _GEMM_MIN_MACS:
        with single_blas():
            return np.matmul(a, b, out=out)
    axis = 0 if m >= n else 1
    parts = max(1, min(_MAX_PARTS, out.shape[axis] // _GEMM_PART))
    return _split(a, b, out, axis, parts)
