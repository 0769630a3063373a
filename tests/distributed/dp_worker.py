"""One rank of a test launch: ``mpiexec -n N python -m mpi4py dp_worker.py OUT SCENARIO...``.

Each scenario of dp_scenarios.py runs in turn on every rank; each rank writes its weights and
History to OUT/<scenario>.rank<r>.npz (+ .json) for the test to compare."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gpudl.distributed as dist  # noqa: E402
import dp_scenarios as scenarios  # noqa: E402


def main(out, names):
    comm = dist.init("mpi")
    ck = os.path.join(out, "ck.gpudl")
    for name in names:
        fn = getattr(scenarios, name)
        model, history = fn(ck) if name in ("ckpt_interrupted", "ckpt_resumed") else fn()
        scenarios.save_result(os.path.join(out, f"{name}.rank{comm.rank}.npz"), model, history,
                              {"size": comm.size, "world_size": model.training_state.world_size})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
