"""Peak resident memory of one Keras mnist_cnn training step at batch 128 (NumPy backend).

    python benchmarks/mem_cnn_step.py [--batch-size 128] [--steps 1]

Prints the process's peak RSS (getrusage ru_maxrss) after importing, after building the
model, and after the training step(s); the goal is under 1 GiB.
"""
from __future__ import annotations

import argparse
import resource

import numpy as np


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=1)
    args = p.parse_args(argv)
    import gpudl
    from gpudl.recipes import mnist_cnn
    after_import = peak_mib()
    gpudl.set_seed(0)
    model = mnist_cnn()
    model.compile("adam", "categorical_crossentropy", ["accuracy"])
    after_build = peak_mib()
    rng = np.random.default_rng(0)
    n = args.batch_size * args.steps
    x = rng.random((n, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, size=n)
    model.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0)
    after_step = peak_mib()
    print(f"peak RSS: {after_import:.0f} MiB after import, {after_build:.0f} MiB after build, "
          f"{after_step:.0f} MiB after {args.steps} training step(s) at batch {args.batch_size} "
          f"({'under' if after_step < 1024 else 'OVER'} the 1 GiB goal)")
    return 0 if after_step < 1024 else 1


if __name__ == "__main__":
    raise SystemExit(main())
