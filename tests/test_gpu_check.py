"""benchmarks/gpu_check.sh, the one GPU command, run here as its dry run: every step on the CPU
(the CuPy stand-in under Numba's simulator), so the first run on a GPU is not its first run."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _run(tmp_path, py=sys.executable, timeout=300):
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_ENABLE_CUDASIM", "PYTHONPATH")}
    env.update(OUT=str(tmp_path / "out"), PY=str(py))
    return subprocess.run(["bash", str(SCRIPT), "--dry-run"], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


@pytest.mark.skipif(sys.platform == "win32", reason="a bash script")
def test_dry_run_runs_every_step_and_ends_with_the_table(tmp_path):
    proc = _run(tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    out = proc.stdout
    table = out[out.index("gpu_check summary (DRY RUN on the CPU"):]
    for name in ("preflight", "tests", "micro", "bench"):
        assert any(line.startswith(name) and " ok " in line for line in table.splitlines()), (name, table)
    assert "gpudl micro-timings on the CPU dry run" in table
    assert "gpudl kernels vs PyTorch on the CPU" in table
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(files) <= 8 and "summary.txt" in files and "tests.log" in files, files
    assert "passed" in (tmp_path / "out" / "tests.log").read_text()
    assert "preflight ok" in (tmp_path / "out" / "preflight.log").read_text()


def test_a_failed_preflight_stops_the_run_with_one_line(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'preflight FAILED: launch: no GPU here'\nexit 1\n")
    fake.chmod(0o755)
    proc = _run(tmp_path, py=fake, timeout=60)
    assert proc.returncode == 1
    assert "gpu_check: stopped: preflight FAILED: launch: no GPU here" in proc.stdout
    assert not (tmp_path / "out" / "tests.log").exists()
    assert "preflight    exit 1" in (tmp_path / "out" / "summary.txt").read_text()


def test_preflight_dry_run_needs_the_simulator():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_preflight.py"), "--dry-run"],
                          capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert proc.returncode == 1
    assert proc.stdout.strip().splitlines()[-1].startswith("preflight FAILED:")
