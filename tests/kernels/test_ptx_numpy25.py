"""Every kernel signature compiles to PTX under NumPy 2.5 as well as under the installed NumPy.

NumPy 2.5 removed ``np.row_stack``, and numba-cuda 0.30.4 registers an overload of it on its
first compile: without gpudl's alias (``gpudl/kernels/__init__.py``) no kernel builds there.
The registry serves NumPy 2.4 at most, so a child process stands in for 2.5 by deleting the
alias before anything imports numba, then compiles every (kernel, signature) pair that
test_ptx.py compiles under the installed NumPy.
"""
import subprocess
import sys
import textwrap

import pytest

from gpudl.kernels import _launch

from test_ptx import MODULES  # tests/kernels is on sys.path (pytest prepend mode)

pytestmark = [
    pytest.mark.ptx,
    pytest.mark.skipif(_launch.simulated(),
                       reason="numba.cuda.compile_ptx does not run under NUMBA_ENABLE_CUDASIM=1"),
]

CHILD = textwrap.dedent("""
    import importlib, sys
    import numpy
    if hasattr(numpy, "row_stack"):
        del numpy.row_stack          # what NumPy 2.5 removed
    assert not hasattr(numpy, "row_stack")
    from numba import cuda
    count = 0
    for name in sys.argv[1:]:
        module = importlib.import_module("gpudl.kernels." + name)
        for pyfunc, signatures in module.KERNELS:
            for sig in signatures:
                ptx, _ = cuda.compile_ptx(pyfunc, sig, cc=(9, 0))
                if ".target sm_90" not in ptx:
                    sys.exit(f"{pyfunc.__name__} [{sig}]: PTX not built for sm_90")
                count += 1
    print("compiled", count)
""")


def test_every_signature_compiles_without_row_stack():
    proc = subprocess.run([sys.executable, "-c", CHILD, *MODULES], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"compiling under a NumPy without row_stack failed:\n{proc.stderr[-3000:]}"
    expected = sum(len(sigs) for name in MODULES
                   for _, sigs in __import__(f"gpudl.kernels.{name}", fromlist=["KERNELS"]).KERNELS)
    assert proc.stdout.split() == ["compiled", str(expected)], proc.stdout
