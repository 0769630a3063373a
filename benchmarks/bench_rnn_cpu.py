"""CPU benchmark: the LSTM(128) row reader (28 steps of 28 pixels) + Dense(10), trained
with Adam, in gpudl (NumPy) and in PyTorch, one process, same threads, same batches.

First checks that both compute the same forward from the same weights, warms both up,
then times a fixed number of training batches (forward, backward, Adam step) and prints
each library's time per batch and the ratio gpudl / PyTorch.

    python benchmarks/bench_rnn_cpu.py --batches 50 --batch-size 128 --threads 1
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, default=50, help="timed training batches per library (50)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--units", type=int, default=128)
    p.add_argument("--warmup", type=int, default=3, help="untimed batches first (3)")
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS/intra-op threads for both libraries (1: on a shared or busy machine, "
                        "multi-threaded BLAS spins and both figures turn to noise)")
    p.add_argument("--synthetic", action="store_true", help="random images instead of Fashion-MNIST")
    p.add_argument("--profile", action="store_true", help="also print a cProfile of the gpudl loop")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    threads = args.threads
    # before numpy loads OpenBLAS, so both libraries get the same number of threads
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)

    import numpy as np
    try:
        import torch
    except ImportError:
        sys.exit("bench_rnn_cpu needs PyTorch (pip install torch) for the comparison")
    torch.set_num_threads(threads)

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import gpudl
    from gpudl import functional as F
    from gpudl import layers, optimizers

    gpudl.set_backend("numpy")
    gpudl.set_seed(0)
    n_total = args.batch_size * (args.batches + args.warmup)
    x, y, source = load_rows(n_total, args.synthetic)

    # ---- the two models, same weights ---------------------------------------------------
    lstm, head = layers.LSTM(args.units), layers.Dense(10)
    head(lstm(x[:2]))
    t_lstm = torch.nn.LSTM(28, args.units, batch_first=True)
    t_head = torch.nn.Linear(args.units, 10)
    with torch.no_grad():
        t_lstm.weight_ih_l0.copy_(torch.from_numpy(lstm.W.data.T.copy()))
        t_lstm.weight_hh_l0.copy_(torch.from_numpy(lstm.U.data.T.copy()))
        t_lstm.bias_ih_l0.copy_(torch.from_numpy(lstm.b.data.copy()))
        t_lstm.bias_hh_l0.zero_()
        t_head.weight.copy_(torch.from_numpy(head.W.data.T.copy()))
        t_head.bias.copy_(torch.from_numpy(head.b.data.copy()))

    xb = x[:args.batch_size]
    with gpudl.no_grad():
        ours = head(lstm(xb)).numpy()
    with torch.no_grad():
        theirs = t_head(t_lstm(torch.from_numpy(xb))[0][:, -1]).numpy()
    err = float(np.abs(ours - theirs).max())
    if not np.allclose(ours, theirs, rtol=1e-4, atol=1e-5):
        sys.exit(f"forward check failed: gpudl and PyTorch logits differ by up to {err:.3g}")

    # ---- training loops -----------------------------------------------------------------
    params = lstm.params() + head.params()
    opt = optimizers.Adam(learning_rate=1e-3)

    def gpudl_batch(i):
        sl = slice(i * args.batch_size, (i + 1) * args.batch_size)
        for p in params:
            p.grad = None
        loss = F.softmax_cross_entropy(head(lstm(x[sl])), y[sl])
        loss.backward()
        opt.step(params)
        return loss.item()

    t_params = list(t_lstm.parameters()) + list(t_head.parameters())
    t_opt = torch.optim.Adam(t_params, lr=1e-3, eps=1e-7)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))

    def torch_batch(i):
        sl = slice(i * args.batch_size, (i + 1) * args.batch_size)
        t_opt.zero_grad(set_to_none=True)
        out, _ = t_lstm(tx[sl])
        loss = torch.nn.functional.cross_entropy(t_head(out[:, -1]), ty[sl])
        loss.backward()
        t_opt.step()
        return loss.item()

    # interleaved blocks, so both libraries meet the same load on a shared machine
    for i in range(args.warmup):
        gpudl_batch(i)
        torch_batch(i)
    t_ours = t_theirs = 0.0
    l_ours, l_theirs, ratios = [], [], []
    block = max(1, min(5, args.batches))
    for start in range(0, args.batches, block):
        idx = range(args.warmup + start, args.warmup + min(start + block, args.batches))
        t0 = time.perf_counter()
        l_ours += [gpudl_batch(i) for i in idx]
        t1 = time.perf_counter()
        l_theirs += [torch_batch(i) for i in idx]
        t2 = time.perf_counter()
        t_ours += t1 - t0
        t_theirs += t2 - t1
        ratios.append((t1 - t0) / (t2 - t1))

    print(f"data: {source}; {args.batches} batches of {args.batch_size}, LSTM({args.units}) over 28 steps "
          f"+ Dense(10), Adam; threads: {threads} (numpy {np.__version__}, torch {torch.__version__})")
    print(f"forward check: max |gpudl - torch| logit difference {err:.2e}")
    print(f"gpudl  : {t_ours:7.2f} s  ({1000 * t_ours / args.batches:6.1f} ms/batch)  "
          f"loss {l_ours[0]:.3f} -> {l_ours[-1]:.3f}")
    print(f"PyTorch: {t_theirs:7.2f} s  ({1000 * t_theirs / args.batches:6.1f} ms/batch)  "
          f"loss {l_theirs[0]:.3f} -> {l_theirs[-1]:.3f}")
    print(f"ratio gpudl / PyTorch: {t_ours / t_theirs:.2f}x "
          f"(median over {len(ratios)} interleaved blocks: {float(np.median(ratios)):.2f}x)")

    if args.profile:
        import cProfile
        import pstats
        prof = cProfile.Profile()
        prof.enable()
        for i in range(min(10, args.batches)):
            gpudl_batch(i)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)


def load_rows(n, synthetic):
    """n Fashion-MNIST training images as (n, 28, 28) float32 rows in [0, 1], and labels."""
    import numpy as np
    if not synthetic:
        try:
            from gpudl.datasets import fashion_mnist
            (x, y), _ = fashion_mnist.load_data(download=False)
            if len(x) >= n:
                return (x[:n].astype(np.float32) / 255, y[:n].astype(np.int64), "Fashion-MNIST")
        except Exception as exc:  # no local copy: time on random images instead
            print(f"Fashion-MNIST unavailable ({exc}); using random images", file=sys.stderr)
    rng = np.random.default_rng(0)
    return (rng.random((n, 28, 28), dtype=np.float32), rng.integers(0, 10, n).astype(np.int64), "random images")


if __name__ == "__main__":
    main()
