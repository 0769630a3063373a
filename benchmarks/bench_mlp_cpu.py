"""The hello-world MLP (784-500-500-10, ReLU, dropout 0.2, Adam, batch 100) on full
Fashion-MNIST: gpudl (NumPy backend) against PyTorch CPU, epochs interleaved in one
process so both see the same machine load. Prints per-epoch times, their ratio and the
test accuracy of each after the last epoch.

    python benchmarks/bench_mlp_cpu.py --epochs 20 [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np

import gpudl
from gpudl import optimizers
from gpudl.recipes import hello_mlp, load_dataset


def torch_model(torch):
    nn = torch.nn
    return nn.Sequential(nn.Linear(784, 500), nn.ReLU(), nn.Dropout(0.2), nn.Linear(500, 500), nn.ReLU(),
                         nn.Dropout(0.2), nn.Linear(500, 10))


def torch_epoch(torch, model, opt, x, y, batch_size, gen):
    model.train()
    perm = torch.randperm(len(x), generator=gen)
    loss_fn = torch.nn.functional.cross_entropy
    for s in range(0, len(x), batch_size):
        idx = perm[s:s + batch_size]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        opt.step()


def torch_accuracy(torch, model, x, y):
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--limit", type=int, default=None, help="first N training images only")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    gpudl.set_backend("numpy")
    (xtr, ytr), (xte, yte) = load_dataset("fashion-mnist", "flat", limit=args.limit)
    gpudl.set_seed(0)
    model = hello_mlp(784)
    model.compile(optimizers.Adam(1e-3), "categorical_crossentropy", ["accuracy"])

    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            print("PyTorch is not installed: timing gpudl alone")
    if torch is not None:
        torch.manual_seed(0)
        tm = torch_model(torch)
        topt = torch.optim.Adam(tm.parameters(), lr=1e-3, eps=1e-7)
        txtr, tytr = torch.from_numpy(xtr), torch.from_numpy(ytr)
        txte, tyte = torch.from_numpy(xte), torch.from_numpy(yte)
        gen = torch.Generator().manual_seed(0)

    g_times, t_times = [], []

    class Interleave(gpudl.callbacks.Callback):
        """Times each gpudl epoch, then runs one PyTorch epoch (outside gpudl's timing)."""

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            g_times.append(time.perf_counter() - self.t0)
            line = f"epoch {epoch + 1:2d}: gpudl {g_times[-1]:.2f} s (loss {logs['loss']:.4f})"
            if torch is not None:
                t0 = time.perf_counter()
                torch_epoch(torch, tm, topt, txtr, tytr, args.batch_size, gen)
                t_times.append(time.perf_counter() - t0)
                line += f", torch {t_times[-1]:.2f} s"
            print(line, flush=True)

    model.fit(xtr, ytr, batch_size=args.batch_size, epochs=args.epochs, verbose=0, callbacks=[Interleave()])

    g_acc = model.evaluate(xte, yte)["accuracy"]
    res = {"machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores",
           "date": time.strftime("%Y-%m-%d"), "epochs": args.epochs, "train_size": len(xtr),
           "gpudl_epoch_s_median": statistics.median(g_times), "gpudl_test_accuracy": g_acc}
    rows = [("gpudl (NumPy)", f"{res['gpudl_epoch_s_median']:.2f}", f"{g_acc:.4f}")]
    if torch is not None:
        t_acc = torch_accuracy(torch, tm, txte, tyte)
        res.update(torch_version=torch.__version__, torch_threads=torch.get_num_threads(),
                   torch_epoch_s_median=statistics.median(t_times), torch_test_accuracy=t_acc,
                   ratio_epoch_time=statistics.median(g_times) / statistics.median(t_times))
        rows.append((f"PyTorch {torch.__version__} CPU", f"{res['torch_epoch_s_median']:.2f}", f"{t_acc:.4f}"))
    print()
    print(f"{'':24s}{'s/epoch (median)':>18s}{'test acc':>10s}")
    for r in rows:
        print(f"{r[0]:24s}{r[1]:>18s}{r[2]:>10s}")
    if torch is not None:
        print(f"epoch-time ratio gpudl/torch: {res['ratio_epoch_time']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
