"""benchmarks/bench_gpu.py's answer checks, run here under the simulator on NumPy arrays at
shrunken sizes: the GPU run then meets no new Python, only CuPy, and a wrong reference in the
bench cannot stop a GPU run before its timings."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from gpudl import backend
from gpudl.kernels import activation, conv, maxout, pooling, softmax_ce

from gpudl.kernels._launch import simulated

SIMULATED = simulated()

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gpu.py"
KERNELS = (activation, maxout, softmax_ce, conv, pooling)


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not SIMULATED, reason="the simulator run of the checks (on a GPU, bench_gpu.py runs them)")
def test_every_bench_check_passes_under_the_simulator(bench, capsys):
    checks = bench.run_checks(np, KERNELS, backend.to_numpy, sizes="simulator")
    assert checks.failed == []
    # 2 dtypes x (5 elementwise + 3 maxout shapes x 3 + 3 softmax shapes x 2 kinds x 3 + NaN flag
    # + 3 conv shapes x 4 + 3 pool shapes x 3)
    assert checks.count == 2 * (5 + 9 + 18 + 1 + 12 + 9)
    out = capsys.readouterr().out
    assert "FAIL" not in out and "ok   conv2d_backward gW (2, 3, 7, 6) float32" in out


def test_bench_check_sizes_cover_the_same_cases(bench):
    gpu, sim = bench.CHECK_SIZES["gpu"], bench.CHECK_SIZES["simulator"]
    assert gpu.keys() == sim.keys()
    for key in ("maxout", "softmax_ce", "conv", "pool"):
        assert len(gpu[key]) == len(sim[key]), key
    # the same strides, paddings, kernel sizes and groups: only the extents shrink
    assert [c[2:] for c in gpu["conv"]] == [c[2:] for c in sim["conv"]]
    assert [c[1:] for c in gpu["pool"]] == [c[1:] for c in sim["pool"]]
    assert [k for _, k in gpu["maxout"]] == [k for _, k in sim["maxout"]]


def test_a_bench_check_fails_on_a_wrong_answer(bench, capsys):
    c = bench.Checks(np.asarray)
    c.close("right", np.array([1.0, 2.0]), [1.0, 2.0])
    c.close("off", np.array([1.0, 2.1]), [1.0, 2.0])
    c.close("shape", np.array([1.0]), [1.0, 2.0])
    c.close("bits", np.array([0.0, -0.0]), [0.0, 1e-30], exact=True)
    assert c.count == 4
    assert [f.split(":")[0] for f in c.failed] == ["off", "shape", "bits"]
    assert "FAIL off  (max abs err 0.1)" in capsys.readouterr().out
