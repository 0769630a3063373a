"""Micro-timings of gpudl's GPU hot path, about 20 seconds: what one small step pays on the host.

- the host cost of one kernel launch through gpudl's launcher, with 1 and with 6 array
  arguments (CuPy arrays converted for Numba, on the reused external stream), beside a CuPy
  ufunc and torch.relu on the same tiny array;
- a dropout mask three ways on (128, 64, 12, 12) float32: gpudl's counter-based kernel (hash
  and multiply in one pass), a fresh CuPy Generator per call (what gpudl did before), and one
  reused CuPy Generator plus a compare and multiply;
- ``float()`` of a 0-d device array: the round trip a host read of a loss costs.

Usage: ``python benchmarks/gpu_micro.py`` on a GPU machine; ``--dry-run`` runs every line on
the CPU, with gpudl's CuPy stand-in (PYTHONPATH=tests/fakecupy) under NUMBA_ENABLE_CUDASIM=1,
at tiny sizes (times meaningless). Prints one table; exit status 1 if any row failed.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import traceback

import numpy as np
from numba import cuda  # a module global: the simulator swaps it inside the probe kernels

SIZES = {"gpu": {"launch": 1024, "dropout": (128, 64, 12, 12), "calls": 2000, "reps": 7},
         "dry": {"launch": 64, "dropout": (2, 3, 4, 4), "calls": 3, "reps": 2}}


def _host_us(fn, sync, calls, reps):
    """Median host microseconds per call over ``reps`` batches of ``calls`` calls, synced
    before and after each batch (so queued work from the batch before is not counted)."""
    fn()
    sync()
    times = []
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        t1 = time.perf_counter()
        sync()
        times.append((t1 - t0) / calls * 1e6)
    return statistics.median(times)


def _device_us(cp, fn, calls, reps, dry):
    """Median device microseconds per call (CUDA events; wall clock in a dry run)."""
    if dry:
        return _host_us(fn, lambda: None, calls, reps)
    fn()
    cp.cuda.get_current_stream().synchronize()
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    times = []
    for _ in range(reps):
        start.record()
        for _ in range(calls):
            fn()
        stop.record()
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop) * 1e3 / calls)
    return statistics.median(times)


def _probe_kernels():
    """Two trivial kernels (1 and 6 array arguments) that time the launcher, not the work."""
    def one(a):
        i = cuda.grid(1)
        if i < a.size:
            a[i] = a[i]

    def six(a, b, c, d, e, f):
        i = cuda.grid(1)
        if i < a.size:
            f[i] = a[i] + b[i] + c[i] + d[i] + e[i]

    return (cuda.jit("void(float32[::1])")(one),
            cuda.jit("void(float32[::1], float32[::1], float32[::1], float32[::1], float32[::1], float32[::1])")(six))


def launch_rows(cp, torch, size, dry):
    from gpudl.kernels import _launch
    from gpudl.kernels import activation as KA
    n, calls, reps = size["launch"], size["calls"], size["reps"]
    sync = cp.cuda.get_current_stream().synchronize
    a = cp.ones(n, dtype=cp.float32)
    arrays = [cp.ones(n, dtype=cp.float32) for _ in range(6)]
    one, six = _probe_kernels()
    grid = _launch.blocks(n, 128)
    rows = [
        ("launch, 1 array argument", _host_us(lambda: _launch.launch(one, grid, 128, a), sync, calls, reps), "host us"),
        ("launch, 6 array arguments", _host_us(lambda: _launch.launch(six, grid, 128, *arrays), sync, calls, reps),
         "host us"),
        ("gpudl relu_forward (checks + launch)", _host_us(lambda: KA.relu_forward(a), sync, calls, reps), "host us"),
        ("CuPy ufunc a + 1", _host_us(lambda: a + 1, sync, calls, reps), "host us"),
    ]
    if torch is not None and not dry:
        t = torch.from_dlpack(a)
        rows.append(("torch.relu", _host_us(lambda: torch.relu(t), torch.cuda.synchronize, calls, reps), "host us"))
    return rows


def dropout_rows(cp, torch, size, dry):
    from gpudl import Tensor
    from gpudl import functional as F
    shape, calls, reps = size["dropout"], max(1, size["calls"] // 20), size["reps"]
    x = Tensor(cp.ones(shape, dtype=cp.float32))
    rate = np.float32(0.25)
    scale = np.float32(1 / 0.75)
    seeds = iter(range(10**9))
    reused = cp.random.default_rng(0)

    def counter_based():
        return F.dropout(x, 0.25)

    def fresh_generator():  # gpudl before: a new cuRAND generator on every call
        u = cp.random.default_rng(next(seeds)).random(shape, dtype=cp.float32)
        return x.data * ((u >= rate) * scale)

    def reused_generator():
        u = reused.random(shape, dtype=cp.float32)
        return x.data * ((u >= rate) * scale)

    return [(f"dropout {shape}: counter-based kernel", _device_us(cp, counter_based, calls, reps, dry), "device us"),
            (f"dropout {shape}: fresh Generator per call", _device_us(cp, fresh_generator, calls, reps, dry),
             "device us"),
            (f"dropout {shape}: one reused Generator", _device_us(cp, reused_generator, calls, reps, dry),
             "device us")]


def read_rows(cp, torch, size, dry):
    v = cp.ones(16, dtype=cp.float32).sum()
    return [("float() of a 0-d device array", _host_us(lambda: float(v), lambda: None, size["calls"] // 4 or 1,
                                                      size["reps"]), "host us")]


ROWS = (("launch", launch_rows), ("dropout", dropout_rows), ("read", read_rows))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true",
                   help="run every line on the CPU (the CuPy stand-in under the simulator), tiny sizes")
    args = p.parse_args(argv)
    from gpudl import backend
    from gpudl.errors import BackendUnavailableError
    from gpudl.kernels import _launch
    if args.dry_run and not _launch.simulated():
        print("gpu_micro: --dry-run needs NUMBA_ENABLE_CUDASIM=1 and PYTHONPATH=tests/fakecupy", file=sys.stderr)
        return 2
    try:
        backend.set_backend("cupy")
    except BackendUnavailableError as exc:
        print(f"gpu_micro: no GPU to run on: {exc}", file=sys.stderr)
        return 2
    cp = backend.get_xp()
    torch = None
    if not args.dry_run:
        try:
            import torch
            if not torch.cuda.is_available():
                torch = None
        except Exception:
            torch = None
    size = SIZES["dry" if args.dry_run else "gpu"]
    rows, failed = [], []
    try:
        for key, fn in ROWS:
            try:
                rows += fn(cp, torch, size, args.dry_run)
            except Exception as exc:
                traceback.print_exc()
                failed.append(key)
                rows.append((f"{key}: FAILED", None, f"{type(exc).__name__}: {exc}"[:60]))
    except KeyboardInterrupt:
        failed.append("interrupted")
        rows.append(("interrupted (timeout or Ctrl-C): rows so far", None, ""))
    where = "CPU dry run (times meaningless)" if args.dry_run else "GPU"
    print(f"\ngpudl micro-timings on the {where}")
    for name, us, unit in rows:
        print(f"{name:48s} {'-' if us is None else f'{us:10.1f}':>10s}  {unit}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
