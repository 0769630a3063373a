"""Every kernel, for every one of its explicit signatures, compiles to PTX for sm_90 (the H100).

Runs on a machine without a GPU: numba-cuda[cu12] brings NVVM as a wheel. The simulator cannot
compile, so under NUMBA_ENABLE_CUDASIM=1 these tests skip (``make test`` runs them in a second
step without it). A float32 kernel must not contain float64 arithmetic: an untyped literal or
a Python float slipping into float32 math costs a conversion and a slow FP64 unit on the GPU.
"""
import importlib

import pytest

from gpudl.kernels import _launch

MODULES = ["activation", "maxout", "softmax_ce", "conv", "pooling", "recurrent", "dropout", "normalization",
           "word2vec", "scatter"]


def _cases():
    for name in MODULES:
        module = importlib.import_module(f"gpudl.kernels.{name}")
        for pyfunc, signatures in module.KERNELS:
            for sig in signatures:
                yield pytest.param(pyfunc, sig, id=f"{name}.{pyfunc.__name__}[{sig}]")


pytestmark = [
    pytest.mark.ptx,
    pytest.mark.skipif(_launch.simulated(),
                       reason="numba.cuda.compile_ptx does not run under NUMBA_ENABLE_CUDASIM=1; "
                              "run `pytest -m ptx tests/kernels` without it"),
]


def test_every_module_lists_kernels():
    for name in MODULES:
        module = importlib.import_module(f"gpudl.kernels.{name}")
        assert module.KERNELS, f"gpudl.kernels.{name}.KERNELS is empty"


@pytest.mark.parametrize("pyfunc,sig", list(_cases()))
def test_compiles_for_sm90(pyfunc, sig):
    from numba import cuda
    ptx, _ = cuda.compile_ptx(pyfunc, sig, cc=(9, 0))
    assert ".target sm_90" in ptx, f"{pyfunc.__name__}: PTX not built for sm_90"
    if "float64" not in sig:
        f64 = [line.strip() for line in ptx.splitlines() if ".f64" in line]
        assert not f64, (f"{pyfunc.__name__} [{sig}] is a float32 kernel but its PTX has "
                         f"{len(f64)} float64 instruction(s), e.g. {f64[:3]}")
