"""Lecture II's recurrent network on images: read each 28x28 image row by row, 28 steps
of 28 pixels, with one LSTM(128) layer (or GRU, or Elman RNN), and classify its last
state with Dense(10, softmax).

    python examples/rnn_rows.py                       # Fashion-MNIST, LSTM, 10 epochs
    python examples/rnn_rows.py --limit 2000 --epochs 2 --dataset mnist
    python examples/rnn_rows.py --cell gru --torch    # GRU, timed against PyTorch's nn.GRU

Prints the time of each epoch and the final test accuracy. On a busy shared machine,
OPENBLAS_NUM_THREADS=1 keeps multi-threaded BLAS from spinning against other work.
"""
from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import gpudl  # noqa: E402
from gpudl import optimizers, peers, recipes  # noqa: E402


def parse_args(argv=None):
    p = peers.example_parser("LSTM reading images row by row (28 steps of 28 pixels)", epochs=10)
    p.add_argument("--cell", choices=sorted(recipes.RNN_CELLS), default="lstm",
                   help="the recurrent layer: lstm (default), gru (reset after, as PyTorch) or simple (Elman, tanh)")
    p.add_argument("--units", type=int, default=128)
    return peers.parse_example_args(p, argv)


def load(dataset, limit, data_dir=None):
    from gpudl import datasets
    module = datasets.fashion_mnist if dataset == "fashion-mnist" else datasets.mnist
    (x_train, y_train), (x_test, y_test) = module.load_data(path=data_dir)
    if limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]
        x_test, y_test = x_test[:max(limit // 5, 10)], y_test[:max(limit // 5, 10)]
    # (N, 28, 28): row t of each image is the input at step t
    scale = np.float32(1 / 255)
    return (x_train.astype(np.float32) * scale, y_train.astype(np.int64),
            x_test.astype(np.float32) * scale, y_test.astype(np.int64))


def main(argv=None):
    args = parse_args(argv)
    print(f"backend: {gpudl.set_backend(args.backend)}")
    gpudl.set_seed(args.seed)
    x_train, y_train, x_test, y_test = load(args.dataset, args.limit, args.data_dir)
    print(f"{args.dataset}: {len(x_train)} training and {len(x_test)} test images, "
          f"read as {x_train.shape[1]} steps of {x_train.shape[2]} pixels")

    model = recipes.rnn_rows(args.cell, rows=28, cols=28, units=args.units)
    model.compile(optimizer=optimizers.Adam(learning_rate=args.learning_rate),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    model.summary()
    twin = peers.torch_twin("rnn_rows", seed=args.seed, cell=args.cell, units=args.units) if args.torch else None
    return peers.fit_beside(model, (x_train, y_train, x_test, y_test), twin, epochs=args.epochs,
                            batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed)


if __name__ == "__main__":
    main()
