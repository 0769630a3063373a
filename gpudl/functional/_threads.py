"""gpudl's own CPU threads (NumPy backend): the thread count, a pool that runs independent
blocks of work at once (the compiled loops of convolution and pooling), and GEMMs split over
that pool.

BLAS is held to one thread while the pool works. OpenBLAS's worker threads busy-wait for about
2^28 cycles after each multithreaded call (its THREAD_TIMEOUT, read once when numpy loads), so
after a Dense layer's product they held the core that the next convolution's loops wanted: on
two cores the mnist_cnn conv2 backward took 95 ms after the Dense layers against 48 with BLAS
at one thread. Setting OpenBLAS to one thread parks its surplus workers at once (measured: a
compiled loop ran 13.7 ms just after a 2-thread GEMM, 6.8 when the count went to one in
between, 7.2 with no GEMM) for about 2 us, but setting it back lets a still-spinning worker
resume. Hence three levels:

* ``run_blocks`` holds BLAS at one thread while the pool runs;
* ``held_gemm`` (the products inside a convolution) always runs held;
* ``loop_scope`` (around ``fit``, ``evaluate``, ``predict``) keeps the hold from the first time
  the pool runs to the end of the loop, and ``gemm`` (Dense's products) is split over the pool
  while it is held. A loop that never runs the pool (an MLP, an RNN) keeps BLAS's own threads,
  which beat any split of its products here.

Split products are cut into parts fixed by the sizes alone (rows or columns of the result;
never the contracted axis, so no sum is split) and run on one-thread BLAS, so every result
is the same on any number of threads.

No numba here: ``import gpudl`` and a model without convolutions stay free of it.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["threads", "set_threads", "run_blocks", "single_blas", "blas_held", "loop_scope", "matmul_split",
           "gemm", "held_gemm"]

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
    results do not depend on the number of threads. BLAS is held to one thread throughout
    (single_blas): its idle workers are parked, not spinning on the cores the blocks run on,
    and a product inside a block rounds the same whichever thread runs it."""
    global _pool
    n = min(threads(), n_jobs)
    _hold_for_the_loop()
    with single_blas():
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


def _hold():
    global _blas_depth
    with _blas_lock:
        if _blas_depth == 0:
            libs = _blas_libraries()
            _blas_saved[:] = [lib.get_num_threads() for lib in libs]
            for lib in libs:
                lib.set_num_threads(1)
        _blas_depth += 1


def _release():
    global _blas_depth
    with _blas_lock:
        _blas_depth -= 1
        if _blas_depth == 0:
            for lib, n in zip(_blas_libraries(), _blas_saved):
                lib.set_num_threads(n)


def blas_held() -> bool:
    """Whether BLAS is held to one thread now (inside single_blas, or a loop the pool ran in)."""
    return _blas_depth > 0


class single_blas:
    """BLAS held to one thread inside the block (process-wide, as BLAS settings are).

    Nested blocks cost nothing: only the outermost sets the count (two calls into the BLAS
    library, about 2 us) and puts back the count it found."""

    def __enter__(self):
        _hold()
        return self

    def __exit__(self, *exc):
        _release()
        return False


_loops = 0  # loop_scope blocks open
_loop_hold = False  # whether one of them holds BLAS


class loop_scope:
    """Around a training or inference loop (``fit``, ``evaluate``, ``predict``): from the
    first time the pool runs inside it, BLAS stays held to one thread until the loop ends, and
    the Dense products in between are split over the pool (``gemm``) instead of waking BLAS's
    workers, which would then spin through the next convolution. A loop that never runs the
    pool (a multilayer perceptron, an RNN) keeps BLAS's own threads for its products: they beat
    any split of them here (a 784-500-500-10 MLP epoch 0.8x PyTorch's with them, 1.06x split)."""

    def __enter__(self):
        global _loops
        with _blas_lock:
            _loops += 1
        return self

    def __exit__(self, *exc):
        global _loops, _loop_hold
        with _blas_lock:
            _loops -= 1
            release = _loops == 0 and _loop_hold
            if release:
                _loop_hold = False
        if release:
            _release()
        return False


def _hold_for_the_loop():
    """Called when the pool runs: inside a loop_scope, hold BLAS to its end (once)."""
    global _loop_hold
    if _loops and not _loop_hold:
        with _blas_lock:
            take = _loops > 0 and not _loop_hold
            if take:
                _loop_hold = True
        if take:
            _hold()


def _split_ok():
    """Whether BLAS can be held to one thread. On one gpudl thread the parts still run (one
    after another) under it: the same parts and the same one-thread BLAS kernels as on any
    other count, so the bits match (multithreaded OpenBLAS rounds some elements differently)."""
    return bool(_blas_libraries())


#: a split GEMM's parts: at least _PART rows or columns each, at most _MAX_PARTS of them
_PART = 2048
_MAX_PARTS = 16


def matmul_split(a, b, out, axis):
    """out = a @ b (2-D), a's rows (axis 0) or b's columns (axis 1) split over the threads."""
    if not _split_ok():
        np.matmul(a, b, out=out)
        return out
    # the parts depend on the size alone, never on the thread count: BLAS may round a part's
    # edge differently from the whole, so the same parts must be computed whatever runs them
    return _matmul_parts(a, b, out, axis, max(1, min(_MAX_PARTS, out.shape[axis] // _PART)))


def _matmul_parts(a, b, out, axis, parts):
    """out = a @ b as ``parts`` products of consecutive rows (axis 0) or columns (axis 1)."""
    n = out.shape[axis]
    bounds = [i * n // parts for i in range(parts + 1)]

    def part(lo, hi):
        for i in range(lo, hi):
            r0, r1 = bounds[i], bounds[i + 1]
            if axis == 0:
                np.matmul(a[r0:r1], b, out=out[r0:r1])
            else:
                np.matmul(a, b[:, r0:r1], out=out[:, r0:r1])

    run_blocks(part, parts)
    return out


#: gemm's parts: at least this many rows or columns each
_GEMM_PART = 64
#: products below this many multiply-adds run whole: a split costs more than it gains
_GEMM_MIN_MACS = 1 << 20


def gemm(a, b):
    """a @ b. While BLAS is held to one thread (blas_held: inside a loop that runs the pool)
    a large product of 2-D NumPy floating arrays is cut into parts of at least 64 rows or
    columns of the result that the pool runs at once (the same parts on any thread count);
    otherwise, and for any other arrays, it is plain matmul on BLAS's own threads."""
    if (not _blas_depth or not isinstance(a, np.ndarray) or not isinstance(b, np.ndarray)
            or a.ndim != 2 or b.ndim != 2 or a.dtype != b.dtype or a.dtype.kind != "f"):
        return a @ b
    m, k = a.shape
    n = b.shape[1]
    if m * n * k < _GEMM_MIN_MACS:
        return a @ b
    out = np.empty((m, n), dtype=a.dtype)
    axis = 0 if m >= n else 1
    parts = max(1, min(_MAX_PARTS, out.shape[axis] // _GEMM_PART))
    return _matmul_parts(a, b, out, axis, parts)


def held_gemm(a, b):
    """a @ b with BLAS held to one thread whatever the loop around it (the products inside a
    convolution, so a conv never leaves BLAS workers spinning): small products whole, large
    ones split over the pool as gemm splits them. Other arrays: plain matmul."""
    if (not isinstance(a, np.ndarray) or not isinstance(b, np.ndarray) or a.ndim != 2 or b.ndim != 2
            or a.dtype != b.dtype or a.dtype.kind != "f" or not _split_ok()):
        return a @ b
    with single_blas():
        return gemm(a, b)
