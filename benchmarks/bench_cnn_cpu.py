"""CPU benchmark: gpudl's conv2d (NumPy im2col + BLAS) and max pooling against PyTorch CPU,
one process, the same data, the same number of threads.

First checks that both libraries give the same outputs and gradients, warms both up, then
times them in interleaved pairs (so both meet the same load on a shared machine) and
prints the median time of each and the median of the per-pair ratios gpudl / PyTorch.

    python benchmarks/bench_cnn_cpu.py [--repeats 7] [--threads N] [--json out.json]
    python benchmarks/bench_cnn_cpu.py --mnist-epoch [--samples 6000]   # whole-model epoch
    python benchmarks/bench_cnn_cpu.py --algorithms       # each conv2d algorithm per shape

``--algorithms`` times every applicable conv2d algorithm (forward + backward, forced with
``gpudl.backend.conv_algorithm``) on the mnist_cnn layers and a VGG-style 3x3 stack, beside
PyTorch in the same interleaved rounds, then lets ``auto`` choose on a fresh cache and reports
its pick, how far that pick is from the fastest, and what the timing cost.

Threads: by default the count numpy's BLAS already uses (threadpoolctl tells it, else the
CPU count), and PyTorch is set to match; ``--threads N`` sets both before numpy loads.

Idle threads: PyTorch's OpenMP threads busy-wait after each op by default, so in interleaved
runs they held the cores during gpudl's turn (a mnist_cnn epoch measured 1.20x that way
against 1.11x without). The script sets ``OMP_WAIT_POLICY=PASSIVE`` before torch loads
(unless the environment sets it): PyTorch's own times were no slower with it (conv2d
fwd+bwd alone 67-77 ms either way). gpudl's threads block when idle, and it holds
OpenBLAS's to one thread, so neither side spins during the other's turn.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

CONV = dict(N=128, C=32, F=64, H=26, W=26, k=3)
POOL_SHAPE = (128, 64, 24, 24)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=7, help="timed interleaved pairs per workload (7)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs of each first (2)")
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS / intra-op threads for both libraries (default: numpy's BLAS count)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--mnist-epoch", action="store_true",
                   help="also time one training epoch of the Keras mnist_cnn model in both libraries")
    p.add_argument("--samples", type=int, default=6000, help="samples in that epoch (6000; 60000 is MNIST's)")
    p.add_argument("--algorithms", action="store_true",
                   help="time each conv2d algorithm on the mnist_cnn and VGG-style shapes, and auto's pick")
    p.add_argument("--skip-ops", action="store_true", help="skip the default op workloads")
    return p.parse_args(argv)


def blas_threads(np):
    try:
        from threadpoolctl import threadpool_info
        counts = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
        if counts:
            return max(counts)
    except ImportError:
        pass
    return os.cpu_count() or 1


def timed_pairs(ours, theirs, repeats, warmup):
    """Interleaved (ours, theirs) timings after a warm-up; returns both lists in seconds."""
    for _ in range(warmup):
        ours()
        theirs()
    t_ours, t_theirs = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ours()
        t1 = time.perf_counter()
        theirs()
        t2 = time.perf_counter()
        t_ours.append(t1 - t0)
        t_theirs.append(t2 - t1)
    return t_ours, t_theirs


def summary(name, shape, t_ours, t_theirs):
    ratios = [a / b for a, b in zip(t_ours, t_theirs)]
    return {"workload": name, "shape": shape, "gpudl_ms": 1e3 * statistics.median(t_ours),
            "torch_ms": 1e3 * statistics.median(t_theirs), "gpudl_min_ms": 1e3 * min(t_ours),
            "torch_min_ms": 1e3 * min(t_theirs), "ratio": statistics.median(ratios)}


def close(name, ours, theirs, rtol, atol):
    import numpy as np
    err = float(np.abs(ours - theirs).max())
    scale = float(np.abs(theirs).max()) or 1.0
    if not np.allclose(ours, theirs, rtol=rtol, atol=atol * scale):
        sys.exit(f"check failed before timing: gpudl and PyTorch {name} differ by up to {err:.3g} "
                 f"(largest value {scale:.3g})")


# ---- the op workloads -------------------------------------------------------------------

def conv_workload(np, torch, gpudl, F, rng):
    c = CONV
    x = rng.standard_normal((c["N"], c["C"], c["H"], c["W"])).astype(np.float32)
    W = (rng.standard_normal((c["F"], c["C"], c["k"], c["k"])) * 0.1).astype(np.float32)
    b = rng.standard_normal(c["F"]).astype(np.float32)
    ho, wo = c["H"] - c["k"] + 1, c["W"] - c["k"] + 1
    gy = rng.standard_normal((c["N"], c["F"], ho, wo)).astype(np.float32)
    tgy = torch.from_numpy(gy)

    def ours():
        xt = gpudl.Tensor(x, requires_grad=True)
        Wt, bt = gpudl.Parameter(W), gpudl.Parameter(b)
        y = F.conv2d(xt, Wt, bt)
        y.backward(gy)
        return y.data, xt.grad, Wt.grad, bt.grad

    def theirs():
        xt = torch.from_numpy(x).requires_grad_()
        Wt, bt = torch.from_numpy(W).requires_grad_(), torch.from_numpy(b).requires_grad_()
        y = torch.nn.functional.conv2d(xt, Wt, bt)
        y.backward(tgy)
        return y.detach().numpy(), xt.grad.numpy(), Wt.grad.numpy(), bt.grad.numpy()

    for name, a, t in zip(("outputs", "input gradients", "weight gradients", "bias gradients"), ours(), theirs()):
        close(f"conv2d {name}", a, t, rtol=1e-4, atol=1e-5)
    shape = f"x ({c['N']}, {c['C']}, {c['H']}, {c['W']}), W ({c['F']}, {c['C']}, {c['k']}, {c['k']})"
    return "conv2d fwd+bwd", shape, ours, theirs


def conv_forward_workload(np, torch, gpudl, F, rng):
    c = CONV
    x = rng.standard_normal((c["N"], c["C"], c["H"], c["W"])).astype(np.float32)
    W = (rng.standard_normal((c["F"], c["C"], c["k"], c["k"])) * 0.1).astype(np.float32)

    def ours():
        with gpudl.no_grad():
            return F.conv2d(gpudl.Tensor(x), gpudl.Tensor(W)).data

    def theirs():
        with torch.no_grad():
            return torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(W)).numpy()

    close("conv2d outputs", ours(), theirs(), rtol=1e-4, atol=1e-5)
    return "conv2d fwd", "same", ours, theirs


def pool_workload(np, torch, gpudl, F, rng):
    x = rng.standard_normal(POOL_SHAPE).astype(np.float32)
    gy = rng.standard_normal((POOL_SHAPE[0], POOL_SHAPE[1], POOL_SHAPE[2] // 2, POOL_SHAPE[3] // 2)).astype(np.float32)
    tgy = torch.from_numpy(gy)

    def ours():
        xt = gpudl.Tensor(x, requires_grad=True)
        y = F.max_pool2d(xt, 2)
        y.backward(gy)
        return y.data, xt.grad

    def theirs():
        xt = torch.from_numpy(x).requires_grad_()
        y = torch.nn.functional.max_pool2d(xt, 2)
        y.backward(tgy)
        return y.detach().numpy(), xt.grad.numpy()

    for name, a, t in zip(("outputs", "input gradients"), ours(), theirs()):
        close(f"max_pool2d {name}", a, t, rtol=0, atol=0)
    return "max_pool2d 2x2 fwd+bwd", f"x {POOL_SHAPE}", ours, theirs


# ---- each conv2d algorithm per shape -------------------------------------------------------

#: (name, N, C, K, H, W, padding): the two convolutions of Keras' mnist_cnn, and a VGG-style stack
ALGORITHM_SHAPES = [
    ("mnist_cnn conv1", 128, 1, 32, 28, 28, 0),
    ("mnist_cnn conv2", 128, 32, 64, 26, 26, 0),
    ("vgg 64->64 @32", 32, 64, 64, 32, 32, 1),
    ("vgg 128->128 @16", 32, 128, 128, 16, 16, 1),
]


def algorithm_rows(np, torch, gpudl, F, repeats, warmup):
    """Per shape: each applicable algorithm and PyTorch, fwd+bwd with bias and ReLU, timed in
    interleaved rounds; then auto's choice on a fresh cache, its timing cost and its slowdown
    against the fastest forced algorithm."""
    from gpudl.functional import conv_algorithms as A
    rows = []
    for name, n, c, k, h, w, pad in ALGORITHM_SHAPES:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, c, h, w)).astype(np.float32)
        W = (rng.standard_normal((k, c, 3, 3)) * np.sqrt(2.0 / (9 * c))).astype(np.float32)
        b = rng.standard_normal(k).astype(np.float32)
        gy = rng.standard_normal((n, k, h + 2 * pad - 2, w + 2 * pad - 2)).astype(np.float32)
        tgy = torch.from_numpy(gy)

        def ours(alg, relu=True):
            def run():
                gpudl.backend.conv_algorithm = alg
                xt, Wt, bt = gpudl.Tensor(x, requires_grad=True), gpudl.Parameter(W), gpudl.Parameter(b)
                y = F.conv2d(xt, Wt, bt, padding=pad, activation="relu" if relu else None)
                y.backward(gy)
                return y.data, xt.grad, Wt.grad, bt.grad
            return run

        def theirs(relu=True):
            xt = torch.from_numpy(x).requires_grad_()
            Wt, bt = torch.from_numpy(W).requires_grad_(), torch.from_numpy(b).requires_grad_()
            y = torch.nn.functional.conv2d(xt, Wt, bt, padding=pad)
            if relu:
                y = torch.relu(y)
            y.backward(tgy)
            return y.detach().numpy(), xt.grad.numpy(), Wt.grad.numpy(), bt.grad.numpy()

        geom = A.Geometry(x.shape, W.shape, (1, 1), (pad,) * 4, gy.shape[2:], (1, 1), 1, np.float32)
        algs = [a.name for a in A.algorithms_for(geom, "numpy")]
        # checked without the ReLU: outputs within rounding of 0 may take either side of its
        # kink in two libraries, which moves whole gradient entries
        ref = theirs(relu=False)
        for alg in algs:
            for what, a, t in zip(("outputs", "input gradients", "weight gradients", "bias gradients"),
                                  ours(alg, relu=False)(), ref):
                close(f"conv2d ({alg}) {what} on {name}", a, t, rtol=1e-3, atol=1e-4)
        # float32 error against a float64 reference (im2col on float64 copies, no ReLU):
        # max |error| / max |reference| of the output, input gradient and weight gradient
        gpudl.backend.conv_algorithm = "im2col"
        x64, W64, b64 = (gpudl.Tensor(v.astype(np.float64), requires_grad=True) for v in (x, W, b))
        y64 = F.conv2d(x64, W64, b64, padding=pad)
        y64.backward(gy.astype(np.float64))
        ref64 = (y64.data, x64.grad, W64.grad)
        errors = {alg: [float(np.abs(a - r).max() / np.abs(r).max()) for a, r in zip(ours(alg, relu=False)()[:3], ref64)]
                  for alg in algs}
        runs = {alg: ours(alg) for alg in algs}
        for _ in range(warmup):
            for fn in runs.values():
                fn()
            theirs()
        times = {alg: [] for alg in algs}
        times["torch"] = []
        for _ in range(repeats):
            for alg, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                times[alg].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            theirs()
            times["torch"].append(time.perf_counter() - t0)
        med = {a: statistics.median(t) for a, t in times.items()}
        # auto on a fresh cache: its first call pays the timing; which algorithm did it keep?
        A.clear_choices()
        gpudl.backend.conv_algorithm = "auto"
        t0 = time.perf_counter()
        ours("auto")()
        first_call = time.perf_counter() - t0
        (chosen, _), = [v for v in A.choices().values()]
        tuning, _ = A.tuning_seconds()
        fastest = min(algs, key=med.get)
        rows.append({"workload": f"conv {name}", "shape": f"x ({n}, {c}, {h}, {w}), W ({k}, {c}, 3, 3), pad {pad}",
                     "ms": {a: 1e3 * v for a, v in med.items()},
                     "ratio": {a: statistics.median(p / q for p, q in zip(times[a], times["torch"])) for a in algs},
                     "auto": chosen, "fastest": fastest, "auto_vs_fastest": med[chosen] / med[fastest],
                     "tuning_ms": 1e3 * tuning, "tuning_calls": tuning / med[chosen] if med[chosen] else 0.0,
                     "first_call_ms": 1e3 * first_call, "float32_error": errors})
    return rows


def print_algorithm_rows(rows):
    print("conv2d fwd+bwd (bias, ReLU) per algorithm, median ms and ratio to PyTorch; auto's pick")
    for r in rows:
        parts = "  ".join(f"{a} {r['ms'][a]:.1f} ({r['ratio'][a]:.2f}x)" for a in r["ratio"])
        print(f"{r['workload']:<24} torch {r['ms']['torch']:.1f}  {parts}")
        print(f"{'':<24} auto chose {r['auto']} (fastest {r['fastest']}, {r['auto_vs_fastest']:.2f}x of it); "
              f"timing cost {r['tuning_ms']:.0f} ms = {r['tuning_calls']:.1f} calls  [{r['shape']}]")
        errs = "  ".join(f"{a} " + " / ".join(f"{e:.1e}" for e in v) for a, v in r["float32_error"].items())
        print(f"{'':<24} float32 error of y / gx / gW against float64: {errs}")


# ---- the whole-model epoch (Keras' mnist_cnn recipe) ------------------------------------

def gpudl_mnist_cnn():
    """Keras' mnist_cnn in gpudl (gpudl.recipes.mnist_cnn), compiled with Adam."""
    from gpudl.recipes import mnist_cnn
    model = mnist_cnn()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def mnist_epoch_rows(np, samples, chunk_batches=8, batch_size=128):
    """One epoch of ``samples`` images in each library, run in interleaved chunks of
    ``chunk_batches`` batches (gpudl chunk, then the same chunk in PyTorch), so both see the
    same machine load; the ratio is the total time's, with the median chunk ratio beside it."""
    import statistics

    from gpudl import peers
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(samples, 1, 28, 28)).astype(np.float32)  # timing only: data is irrelevant
    y = rng.integers(0, 10, size=samples)
    model = gpudl_mnist_cnn()
    trainer = peers.TorchTrainer(peers.torch_twin("mnist_cnn"), x, y, batch_size, device="cpu")

    model.fit(x[:batch_size], y[:batch_size], batch_size=batch_size, epochs=1, verbose=0)  # warm-up
    trainer.epoch(0, batch_size)
    ours, theirs = [], []
    step = chunk_batches * batch_size
    for lo in range(0, samples, step):
        hi = min(lo + step, samples)
        t0 = time.perf_counter()
        model.fit(x[lo:hi], y[lo:hi], batch_size=batch_size, epochs=1, verbose=0)
        ours.append(time.perf_counter() - t0)
        theirs.append(trainer.epoch(lo, hi))
    return [{"workload": "mnist_cnn epoch", "shape": f"{samples} samples, batch {batch_size}",
             "gpudl_ms": 1e3 * sum(ours), "torch_ms": 1e3 * sum(theirs), "ratio": sum(ours) / sum(theirs),
             "median_chunk_ratio": statistics.median(a / b for a, b in zip(ours, theirs))}]


def main(argv=None):
    args = parse_args(argv)
    if args.threads is not None:
        # before numpy loads OpenBLAS, so both libraries get the same number of threads
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see the docstring
    import numpy as np
    try:
        import torch
    except ImportError:
        sys.exit("bench_cnn_cpu needs PyTorch (pip install torch) for the comparison")
    threads = args.threads or blas_threads(np)
    torch.set_num_threads(threads)

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import gpudl
    from gpudl import functional as F
    gpudl.set_backend("numpy")

    rng = np.random.default_rng(0)
    rows = []
    for make in () if args.skip_ops else (conv_workload, conv_forward_workload, pool_workload):
        name, shape, ours, theirs = make(np, torch, gpudl, F, rng)
        rows.append(summary(name, shape, *timed_pairs(ours, theirs, args.repeats, args.warmup)))
    algo_rows = algorithm_rows(np, torch, gpudl, F, args.repeats, args.warmup) if args.algorithms else []
    gpudl.backend.conv_algorithm = "auto"
    if args.mnist_epoch:
        rows += mnist_epoch_rows(np, args.samples)

    print(f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; "
          f"numpy {np.__version__}, torch {torch.__version__}, {threads} thread(s) each "
          f"(numpy BLAS {blas_threads(np)}, torch {torch.get_num_threads()}), {platform.processor() or platform.machine()}")
    print(f"median of {args.repeats} interleaved runs after {args.warmup} warm-up; ratio = median of per-pair gpudl/torch")
    print(f"{'workload':<24} {'gpudl ms':>10} {'torch ms':>10} {'ratio':>7}  shape")
    for r in rows:
        if "skipped" in r:
            print(f"{r['workload']:<24} skipped: {r['skipped']}")
            continue
        print(f"{r['workload']:<24} {r['gpudl_ms']:>10.1f} {r['torch_ms']:>10.1f} {r['ratio']:>7.2f}  {r['shape']}")
    if algo_rows:
        print_algorithm_rows(algo_rows)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"threads": threads, "numpy": np.__version__, "torch": torch.__version__,
                       "repeats": args.repeats, "results": rows, "algorithms": algo_rows}, fh, indent=2)
    return rows


if __name__ == "__main__":
    main()
