"""benchmarks/bench_gpu.py, run here as a dry run: its answer checks and every timed workload
under the simulator on NumPy arrays at shrunken sizes (and PyTorch CPU when installed), so the
scarce GPU run meets no untried line, only CuPy, and a wrong reference cannot spoil it."""
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


@pytest.mark.skipif(not SIMULATED, reason="the dry run is the simulator's (on a GPU, bench_gpu.py runs for real)")
def test_dry_run_runs_every_check_and_workload(bench, capsys):
    assert bench.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    # 2 dtypes x (5 elementwise + 3 maxout shapes x 3 + 3 softmax shapes x 2 kinds x 3 + NaN flag
    # + 3 conv shapes x 4 + 3 pool shapes x 3)
    assert f"{2 * (5 + 9 + 18 + 1 + 12 + 9)} checks in" in out and ", 0 failed" in out
    assert "FAIL" not in out and "ok   conv2d_backward gW (2, 3, 7, 6) float32" in out
    table = out[out.index("gpudl kernels vs PyTorch on the CPU (dry run"):].splitlines()[3:]
    names = [line[:50].strip() for line in table]
    assert names == ["relu fwd 1,000 f32", "relu bwd 1,000 f32", "maxout k=4 fwd dense (6, 16)",
                     "maxout k=4 fwd NCHW (2, 8, 3, 3)", "softmax-CE fwd+bwd 5x40",
                     "conv fwd+bwd 2x3->4 6x6 3x3 FP32", "conv fwd+bwd 2x3->4 6x6 3x3 TF32",
                     "maxpool 2x2 fwd+bwd (2, 3, 4, 4)", "LSTM(5) fwd+bwd 3 steps, batch 2",
                     "relu launch, 64 floats (host us/call)"]
    assert all(float(line[50:61]) > 0 for line in table), "every workload has a time"


@pytest.mark.skipif(not SIMULATED, reason="runs the workloads in the simulator")
def test_a_failing_workload_loses_only_its_row(bench, monkeypatch, capsys):
    def broken(*args):
        raise RuntimeError("no such kernel")
    monkeypatch.setattr(bench, "WORKLOADS", (("relu", bench.relu_rows), ("ce", broken), ("pool", bench.pool_rows)))
    rows, errors = bench.run_timings(np, KERNELS, None, bench.WallClock(np, None), sizes="simulator")
    assert errors == ["broken: RuntimeError: no such kernel"]
    assert [r[0] for r in rows] == ["relu fwd 1,000 f32", "relu bwd 1,000 f32", "ce: FAILED",
                                    "maxpool 2x2 fwd+bwd (2, 3, 4, 4)"]
    bench.print_table("here", rows, errors)
    out = capsys.readouterr().out
    assert "1 CHECK(S) OR WORKLOAD(S) FAILED" in out
    assert "ce: FAILED" in out and "RuntimeError: no such kernel" in out


def test_dry_run_needs_the_simulator(bench, monkeypatch, capsys):
    from gpudl.kernels import _launch
    monkeypatch.setattr(_launch, "simulated", lambda: False)
    assert bench.main(["--dry-run"]) == 2
    assert "--dry-run needs NUMBA_ENABLE_CUDASIM=1" in capsys.readouterr().err


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


@pytest.mark.skipif(not SIMULATED, reason="the dry run is the simulator's")
def test_an_interrupt_keeps_the_rows_so_far(bench, capsys, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt  # what `timeout -s INT` delivers
    workloads = list(bench.WORKLOADS)
    workloads[2] = ("ce", interrupted)
    monkeypatch.setattr(bench, "WORKLOADS", tuple(workloads))
    monkeypatch.setattr(bench, "run_checks", lambda *a, **k: type("C", (), {"count": 0, "failed": []})())
    assert bench.main(["--dry-run"]) == 1
    out = capsys.readouterr().out
    table = out[out.index("gpudl kernels vs PyTorch on the CPU (dry run"):]
    assert "relu fwd 1,000 f32" in table and "maxout k=4 fwd dense (6, 16)" in table
    assert "ce: INTERRUPTED" in table and "conv fwd+bwd" not in table
