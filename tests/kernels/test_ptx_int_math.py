"""No 64-bit integer division or remainder where it costs: in the PTX for sm_90 of the index-heavy
kernels (im2col, col2im, pooling, the convolution's per-channel passes, maxout).

A 64-bit ``div``/``rem`` is a long software sequence on the GPU (NVVM guards each one with a
runtime test that falls back to ``div.u32`` when both operands fit, which is why they come in
pairs with 32-bit ones). The kernels decode a thread's position once, with 32-bit unsigned
division where the launcher guarantees the extents fit, and step through their loops by adding.

64-bit div/rem per kernel (the same for float32 and float64), before -> after this change:

================================  =====================  ==================
kernel                            total (in a loop)      total (in a loop)
================================  =====================  ==================
im2col                            12 (10)                0 (0)
col2im                            13 (10)                0 (0)
max_pool2d forward                3 (1)                  0 (0)
max_pool2d backward               12 (10)                0 (0)
bias_relu_forward                 16 (15)                0 (0)
channel_major (new)               -                      0 (0)
maxout forward                    1 (1)                  3 (0): once per thread
maxout backward                   12 (9)                 2 (0): once per thread
relu, leaky_relu (fwd, bwd)       1 (0)                  1 (0): a loop's trip count
================================  =====================  ==================

Like test_ptx.py it compiles with NVVM (numba-cuda[cu12]) and no GPU, and skips under
NUMBA_ENABLE_CUDASIM=1.
"""
import importlib
import re

import pytest

from gpudl.kernels import _launch

pytestmark = [
    pytest.mark.ptx,
    pytest.mark.skipif(_launch.simulated(),
                       reason="numba.cuda.compile_ptx does not run under NUMBA_ENABLE_CUDASIM=1; "
                              "run `pytest -m ptx tests/kernels` without it"),
]

DIV64 = re.compile(r"^\s*(?:@!?%\w+\s+)?(?:div|rem)\.[su]64\b")
LABEL = re.compile(r"^\s*(\$L__\w+):")
BRANCH = re.compile(r"\bbra(?:\.uni)?\s+(\$L__\w+);")

#: kernels (name without the float type) that must hold no 64-bit div/rem at all
NONE_AT_ALL = {
    "conv": ["im2col_kernel", "col2im_kernel"],
    "pooling": ["max_pool2d_forward_kernel", "max_pool2d_backward_kernel"],
    "activation": ["bias_relu_forward_kernel", "channel_major_kernel"],
}
#: modules none of whose kernels may divide in 64 bits inside a loop
NONE_IN_LOOPS = ["conv", "pooling", "activation", "maxout"]


def div64(ptx: str) -> tuple[int, int]:
    """(64-bit div/rem instructions, how many of them sit inside a loop).

    A loop is the stretch from a label to a later branch back to it; NVVM lays loop bodies out
    contiguously, so an instruction between the two runs once per iteration.
    """
    lines = ptx.splitlines()
    labels, loops = {}, []
    for i, line in enumerate(lines):
        label = LABEL.match(line)
        if label:
            labels[label.group(1)] = i
        branch = BRANCH.search(line)
        if branch and branch.group(1) in labels:
            loops.append((labels[branch.group(1)], i))
    divs = [i for i, line in enumerate(lines) if DIV64.match(line)]
    return len(divs), sum(any(a <= i <= b for a, b in loops) for i in divs)


def _kernels(module_name):
    module = importlib.import_module(f"gpudl.kernels.{module_name}")
    for pyfunc, signatures in module.KERNELS:
        for sig in signatures:
            yield pytest.param(pyfunc, sig, id=f"{module_name}.{pyfunc.__name__}[{sig}]")


def _compile(pyfunc, sig):
    from numba import cuda
    ptx, _ = cuda.compile_ptx(pyfunc, sig, cc=(9, 0))
    return ptx


def test_the_counter_sees_a_division_in_a_loop():
    def divides(a, d, out):
        i = 0
        while i < a.shape[0]:
            out[i] = a[i] // d
            i += 1
    total, in_loops = div64(_compile(divides, "void(int64[::1], int64, int64[::1])"))
    assert total >= 1 and in_loops == total  # NVVM unrolls the loop: a division per copy


@pytest.mark.parametrize("module_name,name", [(m, k) for m, ks in NONE_AT_ALL.items() for k in ks])
def test_index_kernels_have_no_64bit_division(module_name, name):
    module = importlib.import_module(f"gpudl.kernels.{module_name}")
    found = [(f, sigs) for f, sigs in module.KERNELS if f.__name__.rsplit("_", 1)[0] == name]
    assert len(found) == len(_launch.FLOAT_TYPES), f"gpudl.kernels.{module_name} has no {name}"
    for pyfunc, signatures in found:
        for sig in signatures:
            total, in_loops = div64(_compile(pyfunc, sig))
            assert total == 0, (f"{pyfunc.__name__} [{sig}] has {total} 64-bit div/rem "
                                f"({in_loops} in a loop); expected none")


@pytest.mark.parametrize("pyfunc,sig", [p for m in NONE_IN_LOOPS for p in _kernels(m)])
def test_no_64bit_division_inside_a_loop(pyfunc, sig):
    total, in_loops = div64(_compile(pyfunc, sig))
    assert in_loops == 0, (f"{pyfunc.__name__} [{sig}] divides in 64 bits inside a loop "
                           f"({in_loops} of its {total} 64-bit div/rem)")
