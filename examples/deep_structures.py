"""Deep structures (Lecture I): a 20-layer plain sigmoid net hardly trains, while Highway
and Residual nets of the same depth do, because the copied input carries the gradient back
to the first layers.

    python examples/deep_structures.py [--epochs 30] [--depth 20]

Data: scikit-learn's 8x8 digits scaled to [0, 1], a fixed 80/20 split. Each net trains with
Adam in a plain loop (Tensor, F.softmax_cross_entropy, optimizer.step), then prints its
test accuracy.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import gpudl
from gpudl import functional as F
from gpudl import layers
from gpudl.optimizers import Adam


def load_digits_split(seed=0, test_fraction=0.2):
    """(x_train, y_train), (x_test, y_test): float32 in [0, 1], int labels, fixed split."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train]), (x[test], y[test])


def plain_sigmoid_net(depth, width, classes=10):
    return [layers.Dense(width, activation="sigmoid") for _ in range(depth)] + [layers.Dense(classes)]


def highway_net(depth, width, classes=10):
    """A projection to ``width`` units, ``depth`` highway layers, a linear classifier."""
    return ([layers.Dense(width, activation="relu")] + [layers.Highway() for _ in range(depth)]
            + [layers.Dense(classes)])


def residual_net(depth, width, classes=10):
    """A projection, depth // 2 blocks x + f(x) with f two Dense layers, a linear classifier."""
    blocks = [layers.Residual(layers.Dense(width, activation="relu"), layers.Dense(width))
              for _ in range(depth // 2)]
    return [layers.Dense(width, activation="relu")] + blocks + [layers.Dense(classes)]


def forward(stack, x):
    for layer in stack:
        x = layer(x)
    return x


def accuracy(stack, x, y):
    with gpudl.no_grad():
        logits = forward(stack, gpudl.Tensor(x)).numpy()
    return float((logits.argmax(axis=1) == y).mean())


def train(stack, x, y, epochs, batch_size=64, learning_rate=1e-3, seed=0):
    """Adam on the mean softmax cross entropy, reshuffled each epoch; returns the last loss."""
    forward(stack, gpudl.Tensor(x[:1]))  # build every layer, so the parameters exist
    params = [p for layer in stack for p in layer.params()]
    opt = Adam(learning_rate=learning_rate)
    rng = np.random.default_rng(seed)
    loss = None
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            for p in params:
                p.grad = None
            loss = F.softmax_cross_entropy(forward(stack, gpudl.Tensor(x[idx])), y[idx])
            loss.backward()
            opt.step(params)
    return float(loss.item())


NETS = {"plain sigmoid": plain_sigmoid_net, "highway": highway_net, "residual": residual_net}


def run(epochs=30, depth=20, width=64, seed=0, verbose=True):
    """Train the three nets of the same depth; returns {name: test accuracy}."""
    (xtr, ytr), (xte, yte) = load_digits_split(seed)
    results = {}
    for name, make in NETS.items():
        gpudl.set_seed(seed)
        stack = make(depth, width)
        t0 = time.perf_counter()
        loss = train(stack, xtr, ytr, epochs, seed=seed)
        results[name] = accuracy(stack, xte, yte)
        if verbose:
            print(f"{name:>14}  depth {depth}  test accuracy {results[name]:.3f}  "
                  f"(last batch loss {loss:.3f}, {time.perf_counter() - t0:.1f} s)")
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    gpudl.set_backend("numpy")
    run(args.epochs, args.depth, args.width, args.seed)


if __name__ == "__main__":
    main()
