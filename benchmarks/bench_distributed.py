"""Data-parallel scaling on the CPU: the hello-world MLP (784-500-500-10, ReLU, dropout 0.2,
Adam) for one epoch of Fashion-MNIST, on 2 MPI ranks of one thread each against 1 rank of
one thread, at global batches of 100 and 1024.

Per configuration it prints the epoch's time, the ratio (2 ranks / 1 rank), and per step the
bytes allreduced, the time inside the allreduce (waiting for the slower rank included) and
the rest of the step (compute). It first checks the answer, in float64 on the first 2,048
images: 2 ranks must end with the weights of 1 rank to 1e-9 relative. The timed epochs run in
float32; their losses are printed side by side, not compared: the two runs sum the gradients
in another order (about 1e-7 relative), and Adam turns that into differences of up to a step
(lr) in the weights whose gradients nearly cancel, which the following steps carry on.

    python benchmarks/bench_distributed.py [--batch-sizes 100 1024] [--limit N] [--json out.json]

Each run is ``mpiexec -n R python -m mpi4py bench_distributed.py --worker ...`` with
OMP_NUM_THREADS=1 (the mpiexec beside this interpreter); the 1-rank run is a plain ``fit``
(no buffer, no collective), the 2-rank run ``fit(distributed=True)``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MPIEXEC = Path(sys.executable).parent / "mpiexec"
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


# ---- one rank -------------------------------------------------------------------------------

def worker(args):
    import gpudl
    import gpudl.distributed as dist
    from gpudl import callbacks, optimizers
    from gpudl.recipes import hello_mlp, load_dataset

    comm = dist.init("auto")
    distributed = comm.size > 1  # the 1-rank baseline is a plain fit: what training costs today
    gpudl.set_backend("numpy")
    limit = 2048 if args.check else args.limit
    (xtr, ytr), _ = load_dataset("fashion-mnist", "flat", limit=limit, data_dir=args.data_dir)
    if args.check:
        gpudl.backend.default_dtype = np.float64
        xtr = xtr.astype(np.float64)
    gpudl.set_seed(0)
    model = hello_mlp(784)
    model.compile(optimizers.Adam(1e-3), "categorical_crossentropy", ["accuracy"])

    reduce_time = [0.0]
    inner = comm.allreduce

    def timed_allreduce(buf):
        t = time.perf_counter()
        out = inner(buf)
        reduce_time[0] += time.perf_counter() - t
        return out
    comm.allreduce = timed_allreduce  # this instance only: the time spent in the collective

    class Steps(callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.times, self.reduce, self.bytes = [], [], 0

        def on_train_batch_begin(self, batch, logs=None):
            self.t0, self.r0 = time.perf_counter(), reduce_time[0]

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self.t0)
            self.reduce.append(reduce_time[0] - self.r0)
            reducer = self.model._plan.reducer
            self.bytes = 0 if reducer is None else reducer.bytes_per_step

    # warm-up (compiled loops, caches, first allocations), then one timed epoch
    model.fit(xtr, ytr, batch_size=args.batch_size, epochs=1, steps_per_epoch=3, verbose=0,
              distributed=distributed)
    gpudl.set_seed(1)
    model = hello_mlp(784)
    model.compile(optimizers.Adam(1e-3), "categorical_crossentropy", ["accuracy"])
    steps = Steps()
    comm.barrier()
    t0 = time.perf_counter()
    h = model.fit(xtr, ytr, batch_size=args.batch_size, epochs=1, verbose=0, seed=2, distributed=distributed,
                  callbacks=[steps])
    comm.barrier()
    epoch = time.perf_counter() - t0
    if comm.rank == 0:
        np.savez(args.out + ".npz", *model.get_weights())
        rec = {"ranks": comm.size, "batch_size": args.batch_size, "epoch_s": epoch, "steps": len(steps.times),
               "bytes_per_step": steps.bytes, "allreduce_ms": 1e3 * float(np.mean(steps.reduce)),
               "step_ms": 1e3 * float(np.mean(steps.times)), "loss": h.history["loss"][0],
               "accuracy": h.history["accuracy"][0]}
        rec["compute_ms"] = rec["step_ms"] - rec["allreduce_ms"]
        with open(args.out, "w") as f:
            json.dump(rec, f)


# ---- the driver -------------------------------------------------------------------------------

def run(ranks, batch_size, args, tmp, check=False):
    out = os.path.join(tmp, f"r{ranks}_b{batch_size}{'_check' if check else ''}.json")
    env = {**os.environ, **{v: "1" for v in THREAD_VARS}}
    cmd = [str(MPIEXEC), "-n", str(ranks), sys.executable, "-m", "mpi4py", __file__, "--worker",
           "--batch-size", str(batch_size), "--out", out] + (["--check"] if check else [])
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    subprocess.run(cmd, check=True, env=env, timeout=args.timeout)
    with open(out) as f:
        rec = json.load(f)
    with np.load(out + ".npz") as z:
        rec["weights"] = [z[k] for k in z.files]
    return rec


def _distance(got, want):
    """Largest difference of the weights, relative to each array's largest entry."""
    return max(float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30)) for a, b in zip(got, want))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[100, 1024])
    p.add_argument("--limit", type=int, default=None, help="first N training images only")
    p.add_argument("--data-dir", default=None, help="folder of the Fashion-MNIST IDX files")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per launch")
    p.add_argument("--json", default=None)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--batch-size", type=int, default=100, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    p.add_argument("--check", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    if not MPIEXEC.exists():
        print(f"no mpiexec beside {sys.executable}: pip install gpudl[distributed]", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for bs in args.batch_sizes:
            c1, c2 = run(1, bs, args, tmp, check=True), run(2, bs, args, tmp, check=True)
            check = _distance(c2["weights"], c1["weights"])
            if not check <= 1e-9:
                print(f"batch {bs}: 2 ranks do not reproduce 1 rank in float64: weights {check:.3g} apart "
                      "(relative)", file=sys.stderr)
                return 1
            one, two = run(1, bs, args, tmp), run(2, bs, args, tmp)
            worst = _distance(two.pop("weights"), one.pop("weights"))
            rows.append({"batch_size": bs, "one": one, "two": two, "ratio": two["epoch_s"] / one["epoch_s"],
                         "weights_rel_err": worst, "float64_check_rel_err": check})
    print(f"{'batch':>6} {'ranks':>5} {'epoch s':>8} {'ratio':>6} {'steps':>6} {'MB/step':>8} "
          f"{'allreduce ms':>12} {'compute ms':>10} {'loss':>8}")
    for r in rows:
        for rec in (r["one"], r["two"]):
            ratio = f"{r['ratio']:.2f}" if rec is r["two"] else ""
            print(f"{rec['batch_size']:>6} {rec['ranks']:>5} {rec['epoch_s']:>8.2f} {ratio:>6} {rec['steps']:>6} "
                  f"{rec['bytes_per_step'] / 1e6:>8.2f} {rec['allreduce_ms']:>12.2f} {rec['compute_ms']:>10.2f} "
                  f"{rec['loss']:>8.4f}")
        print(f"{'':>6} check (float64, 2,048 images): 2 ranks = 1 rank to "
              f"{r['float64_check_rel_err']:.2g}; float32 epoch: losses {r['one']['loss']:.5f} and "
              f"{r['two']['loss']:.5f}, weights {r['weights_rel_err']:.2g} apart")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "cpu_count": os.cpu_count(), "load": os.getloadavg()}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
