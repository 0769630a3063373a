"""The GPU check's first minute: can gpudl's GPU path run here at all?

Prints the versions, where numba-cuda found NVVM and libdevice, compiles one kernel for this
GPU, then launches ReLU and the fused softmax-CE on CuPy arrays and checks them against NumPy.
Any failure ends it with exit status 1 and one line starting ``preflight FAILED:`` that says
what broke; ``--dry-run`` does the same on the CPU (gpudl's CuPy stand-in, PYTHONPATH=
tests/fakecupy, under NUMBA_ENABLE_CUDASIM=1), where the compile step is left to the PTX tests.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

import numpy as np


def _version(name):
    try:
        return getattr(importlib.import_module(name), "__version__", "?")
    except Exception as exc:  # absent or broken: say which
        return f"unavailable ({type(exc).__name__})"


def versions():
    names = ("numpy", "numba", "numba_cuda", "cupy", "torch")
    print(f"python {sys.version.split()[0]}; " + ", ".join(f"{n} {_version(n)}" for n in names))
    print(f"CUDA_HOME={os.environ.get('CUDA_HOME', '(unset)')}")


def nvvm():
    from numba.cuda import cuda_paths
    paths = cuda_paths.get_cuda_paths()
    for key in ("nvvm", "libdevice"):
        entry = paths.get(key)
        where = getattr(entry, "info", None) or "(not found)"
        by = getattr(entry, "by", "?")
        print(f"{key}: {where} (found by {by})")
        if not getattr(entry, "info", None):
            raise RuntimeError(f"numba-cuda found no {key}: set CUDA_HOME to the CUDA toolkit "
                               "(e.g. /usr/local/cuda) or install numba-cuda[cu12]/[cu13]")


def compile_one():
    from numba import cuda
    from gpudl.kernels import activation
    pyfunc, sigs = activation.KERNELS[0]
    cc = cuda.get_current_device().compute_capability
    t0 = time.perf_counter()
    ptx, _ = cuda.compile_ptx(pyfunc, sigs[0], cc=cc)
    print(f"compiled {pyfunc.__name__} for sm_{cc[0]}{cc[1]} in {time.perf_counter() - t0:.1f} s "
          f"({len(ptx.splitlines())} PTX lines)")


def launch_and_check():
    from gpudl import backend
    from gpudl.kernels import activation, softmax_ce
    backend.set_backend("cupy")
    cp = backend.get_xp()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 33)).astype(np.float32)
    labels = rng.integers(0, 33, 64)
    y = backend.to_numpy(activation.relu_forward(cp.asarray(x)))
    np.testing.assert_array_equal(y, np.maximum(x, 0), err_msg="relu_forward on CuPy differs from NumPy")
    loss, grad, flag = softmax_ce.softmax_cross_entropy(cp.asarray(x), cp.asarray(labels))
    z = x.astype(np.float64) - x.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    want = -np.log(p[np.arange(64), labels]).mean()
    np.testing.assert_allclose(float(loss), want, rtol=1e-5, err_msg="softmax-CE loss differs from NumPy")
    p[np.arange(64), labels] -= 1
    np.testing.assert_allclose(backend.to_numpy(grad), p / 64, rtol=1e-4, atol=1e-7,
                               err_msg="softmax-CE gradient differs from NumPy")
    if int(flag[0]) != 0:
        raise RuntimeError(f"softmax-CE raised its flag ({int(flag[0])}) on finite logits and valid labels")
    print("relu_forward and softmax_cross_entropy on CuPy arrays match NumPy")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="on the CPU: the CuPy stand-in under the simulator")
    args = p.parse_args(argv)
    steps = [("versions", versions), ("NVVM", nvvm), ("compile", compile_one), ("launch", launch_and_check)]
    if args.dry_run:
        try:
            from gpudl.kernels import _launch
        except Exception as exc:
            print(f"preflight FAILED: import: {type(exc).__name__}: {exc}")
            return 1
        if not _launch.simulated():
            print("preflight FAILED: --dry-run needs NUMBA_ENABLE_CUDASIM=1 and PYTHONPATH=tests/fakecupy")
            return 1
        steps = [s for s in steps if s[0] != "compile"]
        print("dry run: the compile is left to the PTX tests (the simulator compiles nothing)")
    for name, step in steps:
        try:
            step()
        except Exception as exc:
            print(f"preflight FAILED: {name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            return 1
    print("preflight ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
