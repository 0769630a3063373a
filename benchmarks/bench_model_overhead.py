"""What the functional graph costs over a plain stack: the hello-world MLP trained as a
Sequential and as the same layers in a gpudl.Model, epochs interleaved, on the same data.

    python benchmarks/bench_model_overhead.py [--samples 20000] [--repeats 5]

Prints each form's median epoch time and their ratio (Model / Sequential); both models
start from the same weights and must end with the same weights (checked first).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import gpudl  # noqa: E402
from gpudl import layers  # noqa: E402


def _layers():
    return [layers.Dense(500, activation="relu"), layers.Dropout(0.2), layers.Dense(500, activation="relu"),
            layers.Dropout(0.2), layers.Dense(10, activation="softmax")]


def build(kind):
    ls = _layers()
    if kind == "sequential":
        model = gpudl.Sequential(ls, input_shape=(784,))
    else:
        x = gpudl.Input(shape=(784,))
        h = x
        for layer in ls:
            h = layer(h)
        model = gpudl.Model(x, h)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=20000)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.random((args.samples, 784), dtype=np.float32)
    y = rng.integers(0, 10, args.samples)
    gpudl.set_seed(0)
    seq = build("sequential")
    graph = build("model")
    graph.set_weights(seq.get_weights())
    # the same answer first: one epoch from the same weights and seed lands on the same weights
    for m in (seq, graph):
        gpudl.set_seed(1)
        m.fit(x[:2000], y[:2000], batch_size=128, epochs=1, verbose=0)
    for a, b in zip(seq.get_weights(), graph.get_weights()):
        np.testing.assert_array_equal(a, b)
    times = {"sequential": [], "model": []}
    for _ in range(args.repeats):
        for kind, m in (("sequential", seq), ("model", graph)):
            t0 = time.perf_counter()
            m.fit(x, y, batch_size=128, epochs=1, verbose=0)
            times[kind].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"hello-world MLP, {args.samples} samples, batch 128, median of {args.repeats} interleaved epochs")
    print(f"  Sequential {med['sequential']:.3f} s   Model {med['model']:.3f} s   ratio {med['model'] / med['sequential']:.3f}")
    return med


if __name__ == "__main__":
    main()
