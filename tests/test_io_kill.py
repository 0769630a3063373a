"""A save killed at any moment leaves the old file or the new one, never a broken one.

A child process saves model A and model B alternately to one path, in a loop, and is
SIGKILLed at 100 seeded random moments (a fresh child each time, forked from a launcher
started with sys.executable). After each kill the file must load and equal A or B
exactly; the parent's next save must sweep the temp file the dead child left behind.
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import gpudl
from gpudl.io import load_file, save_file

pytestmark = pytest.mark.skipif(os.name != "posix", reason="needs POSIX SIGKILL")

KILLS = 100
PACKAGE_DIR = str(Path(gpudl.__file__).resolve().parent)

# Run by both the parent and each child, so both hold the very same two models.
MODELS_SRC = """
import numpy as np

def make_models():
    a = np.random.default_rng(1)
    b = np.random.default_rng(2)
    model_a = ({"W1": a.standard_normal((256, 1024)).astype(np.float32),
                "b1": a.standard_normal(1024).astype(np.float32),
                "W2": a.standard_normal((1024, 64)).astype(np.float64),
                "step": np.array(1000, dtype=np.int64)},
               {"name": "A", "epoch": 3, "optimizer": {"name": "Adam", "lr": 0.001}})
    model_b = ({"W1": b.standard_normal((256, 1024)).astype(np.float32),
                "b1": b.standard_normal(1024).astype(np.float32),
                "W2": b.standard_normal((1024, 64)).astype(np.float64),
                "mask": b.random(4096) < 0.5,
                "step": np.array(2000, dtype=np.int64)},
               {"name": "B", "epoch": 7, "optimizer": {"name": "SGD", "lr": 0.1}})
    return model_a, model_b
"""

# The launcher is a fresh Python that imports numpy and gpudl.io once, then for each
# request forks a child that saves A, B, A, B, ... to one path until the launcher SIGKILLs
# it after the given delay. Forking keeps a hundred fresh writers cheap; the launcher, as
# the killed child's parent, reaps it before answering, so the pid it kills cannot have
# been reused and the parent sees the file only once the writer is gone.
LAUNCHER_SRC = MODELS_SRC + """
import os
import signal
import sys
import time
import types

# Import gpudl.io without running gpudl/__init__ (the whole library): io needs only numpy
# and gpudl.errors.
package = types.ModuleType("gpudl")
package.__path__ = [sys.argv[1]]
sys.modules["gpudl"] = package
from gpudl.io import save_file

path = sys.argv[2]
models = make_models()


def save_forever():
    i = 0
    while True:
        arrays, meta = models[i % 2]
        save_file(path, arrays, meta)
        i += 1


print("ready", flush=True)
for line in sys.stdin:
    delay = float(line)
    pid = os.fork()
    if pid == 0:
        try:
            save_forever()
        finally:
            os._exit(3)  # reached only if a save raised; its traceback is on stderr
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        print("signal", os.WTERMSIG(status), flush=True)
    else:
        print("exit", os.WEXITSTATUS(status), flush=True)
"""


def _models():
    namespace = {}
    exec(MODELS_SRC, namespace)
    return namespace["make_models"]()


def _which(path, models):
    """'A' or 'B' if the file at path holds exactly that model; fails otherwise."""
    meta, arrays = load_file(path)
    for arrays_ref, meta_ref in models:
        if meta == meta_ref:
            assert list(arrays) == list(arrays_ref)
            for name, ref in arrays_ref.items():
                assert arrays[name].dtype == ref.dtype and arrays[name].shape == ref.shape
                assert np.array_equal(arrays[name], ref), name
            return meta["name"]
    raise AssertionError(f"file holds neither model: meta {meta}")


def _temps(folder):
    return [n for n in os.listdir(folder) if ".tmp-" in n]


def test_killed_saves_leave_old_or_new_file(tmp_path):
    models = _models()
    model_b = models[1]
    path = tmp_path / "model.gdl"

    # scale the kill moments to this machine: the child should be caught before its first
    # save, in the middle of saves, and between them
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    durations = []
    for _ in range(3):
        start = time.perf_counter()
        save_file(scratch / "m.gdl", *models[0])
        durations.append(time.perf_counter() - start)
    window = 4 * sorted(durations)[1]

    rng = random.Random(20240611)
    seen = {"A": 0, "B": 0, "missing": 0, "temp_left": 0}
    ever_saved = False
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OPENBLAS_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    errors = open(tmp_path / "launcher.err", "w+")
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER_SRC, PACKAGE_DIR, str(path)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
                                text=True, bufsize=1, env=env)

    def ask(line=None):
        if line is not None:
            launcher.stdin.write(line + "\n")
            launcher.stdin.flush()
        answer = launcher.stdout.readline()
        if not answer:
            errors.seek(0)
            pytest.fail(f"launcher died: {errors.read()}")
        return answer.strip()

    try:
        assert ask() == "ready"
        for kill in range(KILLS):
            status = ask(repr(rng.uniform(0, window)))
            if status != f"signal {int(signal.SIGKILL)}":
                errors.seek(0)
                pytest.fail(f"kill {kill}: the writer ended by itself ({status}): "
                            f"{errors.read()}")

            if path.exists():
                seen[_which(path, models)] += 1
                ever_saved = True
            else:
                assert not ever_saved, f"kill {kill}: the file vanished"
                seen["missing"] += 1
            seen["temp_left"] += bool(_temps(tmp_path))

            save_file(path, *model_b)  # the parent's save sweeps what the dead writer left
            assert _temps(tmp_path) == [], f"kill {kill}: temp files remain after a save"
            assert _which(path, models) == "B"
    finally:
        launcher.stdin.close()
        try:
            launcher.wait(timeout=10)
        except subprocess.TimeoutExpired:
            launcher.kill()
            launcher.wait()
        errors.close()

    # the kills really hit both a finished save (A is only ever written by the child)
    # and a save in progress (a temp file was left behind)
    assert seen["A"] > 0 and seen["temp_left"] > 0, seen
    assert seen["missing"] <= 1, seen
    print(f"kills: {seen}")
