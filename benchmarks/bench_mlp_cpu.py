"""The hello-world MLP (784-500-500-10, ReLU, dropout 0.2, Adam, batch 100) on full
Fashion-MNIST: gpudl (NumPy backend) against PyTorch CPU, epochs interleaved in one
process so both see the same machine load. Prints per-epoch times, their ratio and the
test accuracy of each after the last epoch.

    python benchmarks/bench_mlp_cpu.py --epochs 20 [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import gpudl
from gpudl import optimizers, peers
from gpudl.recipes import hello_mlp, load_dataset


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

    twin = None
    if not args.no_torch:
        try:
            twin = peers.torch_twin("hello_mlp", seed=0, input_dim=784)
        except ImportError as exc:
            print(f"{exc}: timing gpudl alone")
    scores = peers.fit_beside(model, (xtr, ytr, xte, yte), twin, epochs=args.epochs,
                              batch_size=args.batch_size, learning_rate=1e-3, seed=0)
    res = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
           "date": time.strftime("%Y-%m-%d"), "epochs": args.epochs, "train_size": len(xtr),
           "gpudl_epoch_s_median": scores["gpudl_epoch_s"], "gpudl_test_accuracy": scores["accuracy"]}
    if twin is not None:
        torch = peers.import_torch()
        res.update(torch_version=torch.__version__, torch_threads=torch.get_num_threads(),
                   torch_epoch_s_median=scores["torch_epoch_s"], torch_test_accuracy=scores["torch_accuracy"],
                   ratio_epoch_time=scores["ratio"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
