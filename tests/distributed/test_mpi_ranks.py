"""Data-parallel training on 2 and 3 real MPI ranks (mpiexec beside the interpreter, mpi4py),
against the same runs on one rank in this process.

Four launches in all (each ~2 s here): 2 ranks (the scenarios, and a run stopped mid-epoch
after a checkpoint), 2 ranks again (the resume, in fresh processes), 3 ranks (uneven shares,
an empty share in the last batch), and 2 ranks where one rank raises. Every launch has a
timeout and is killed with its process group, so nothing can hang the run.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import gpudl

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import dp_scenarios as scenarios  # noqa: E402

MPIEXEC = Path(sys.executable).parent / "mpiexec"

pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install gpudl[distributed])")
if not MPIEXEC.exists():
    pytest.skip(f"no mpiexec beside {sys.executable} (pip install gpudl[distributed] brings mpich's)",
                allow_module_level=True)

LAUNCH_TIMEOUT = 90  # s: generous for a loaded 2-core machine; a hang fails, never blocks


def launch(n, out, names, timeout=LAUNCH_TIMEOUT):
    """Run dp_worker.py on ``n`` ranks; (returncode, stderr, seconds). The whole process group
    is killed on timeout."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "NUMBA_NUM_THREADS": "1"}
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    cmd = [str(MPIEXEC), "-n", str(n), sys.executable, "-m", "mpi4py", str(HERE / "dp_worker.py"), str(out), *names]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"mpiexec -n {n} {' '.join(names)} ran past {timeout} s")
    return proc.returncode, err, time.perf_counter() - t0


def _ok(rc, err, what):
    assert rc == 0, f"{what} failed (exit {rc}):\n{err[-4000:]}"


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    out = tmp_path_factory.mktemp("two")
    rc, err, _ = launch(2, out, ["sgd64", "adam32", "tiny", "ckpt_full", "ckpt_interrupted"])
    _ok(rc, err, "2 ranks")
    return out


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    out = tmp_path_factory.mktemp("three")
    rc, err, _ = launch(3, out, ["sgd64", "adam32", "tiny"])
    _ok(rc, err, "3 ranks")
    return out


def _ranks(out, name, n):
    return [scenarios.load_result(out / f"{name}.rank{r}.npz") for r in range(n)]


def _reference(name):
    gpudl.set_seed(0)
    model, history = getattr(scenarios, name)()
    return model.get_weights(), history


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def _history_rel(got, want):
    worst = 0.0
    assert sorted(got) == sorted(want), (sorted(got), sorted(want))
    for k, vals in want.items():
        assert len(got[k]) == len(vals), (k, got[k], vals)
        for g, w in zip(np.ravel(got[k]), np.ravel(vals)):
            worst = max(worst, abs(g - w) / max(abs(w), 1e-12))
    return worst


TOL = {"sgd64": 1e-12, "tiny": 1e-12, "ckpt_full": 1e-12, "adam32": 1e-6}


def _check(out, name, n):
    results = _ranks(out, name, n)
    w0, rec0 = results[0]
    for r, (w, rec) in enumerate(results[1:], 1):
        assert all(np.array_equal(a, b) for a, b in zip(w0, w)), f"{name}: rank {r}'s weights differ from rank 0's"
        assert rec["history"] == rec0["history"] and rec["epochs"] == rec0["epochs"], \
            f"{name}: rank {r}'s History differs from rank 0's"
    assert rec0["size"] == n and rec0["world_size"] == n
    ref_w, ref_h = _reference(name)
    assert rec0["epochs"] == ref_h.epoch, f"{name}: the callbacks stopped at another epoch"
    worst = max(_rel(a, b) for a, b in zip(w0, ref_w))
    assert worst <= TOL[name], f"{name} on {n} ranks: weights differ from 1 rank by {worst:.3g} (relative)"
    hist = _history_rel(rec0["history"], ref_h.history)
    assert hist <= 10 * TOL[name], f"{name} on {n} ranks: History differs from 1 rank by {hist:.3g}"
    for k, vals in rec0["history"].items():
        assert np.all(np.isfinite(vals)), (name, k, vals)


@pytest.mark.parametrize("name", ["sgd64", "adam32", "tiny"])
def test_two_ranks_equal_one(two, name):
    _check(two, name, 2)


@pytest.mark.parametrize("name", ["sgd64", "adam32", "tiny"])
def test_three_ranks_equal_one(three, name):
    _check(three, name, 3)


def test_resume_on_two_ranks_equals_the_uninterrupted_run(two):
    _check(two, "ckpt_full", 2)
    ck = two / "ck.gpudl"
    assert ck.exists()
    meta = gpudl.io.load_file(ck)[0]
    assert meta["training"]["world_size"] == 2 and meta["training"]["global_batch_size"] == 16
    assert (meta["training"]["epoch"], meta["training"]["batch"]) == (1, 2)
    rc, err, _ = launch(2, two, ["ckpt_resumed"])
    _ok(rc, err, "resume on 2 ranks")
    full = _ranks(two, "ckpt_full", 2)[0]
    for w, rec in _ranks(two, "ckpt_resumed", 2):
        assert all(np.array_equal(a, b) for a, b in zip(w, full[0])), "the resumed run's weights differ"
        assert rec["epochs"] == [1, 2]
        assert rec["history"]["loss"][-1] == full[1]["history"]["loss"][-1]


def test_a_failing_rank_ends_the_job_with_its_error(tmp_path):
    rc, err, seconds = launch(2, tmp_path, ["fails"], timeout=30)
    assert rc != 0
    assert "rank 1 fails on purpose" in err
    assert seconds < 10, f"the job took {seconds:.1f} s to end after a rank failed"
