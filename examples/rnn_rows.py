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

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import gpudl  # noqa: E402
from gpudl import callbacks, optimizers, recipes  # noqa: E402


#: --cell -> the PyTorch module of the same model (gpudl's layer: gpudl.recipes.RNN_CELLS)
TORCH_CELLS = {"lstm": "LSTM", "gru": "GRU", "simple": "RNN"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="LSTM reading images row by row (28 steps of 28 pixels)")
    p.add_argument("--dataset", choices=["fashion-mnist", "mnist"], default="fashion-mnist")
    p.add_argument("--cell", choices=sorted(TORCH_CELLS), default="lstm",
                   help="the recurrent layer: lstm (default), gru (reset after, as PyTorch) or simple (Elman, tanh)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--units", type=int, default=128)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="train on the first N images and test on the first N/5 (a quick run)")
    p.add_argument("--backend", choices=["numpy", "cupy", "auto"], default="numpy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--torch", action="store_true",
                   help="after each gpudl epoch, train the same model one epoch in PyTorch CPU "
                        "(timed apart) and compare epoch times and test accuracy")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or (args.limit is not None and args.limit < 10):
        p.error("--epochs and --batch-size must be positive and --limit at least 10")
    return args


class EpochTimer(callbacks.Callback):
    """Prints each epoch's wall time beside its loss and accuracy; with ``peer`` (a callable
    running one epoch of the PyTorch model) runs and times that after each epoch."""

    def __init__(self, peer=None):
        self.peer, self.times, self.peer_times = peer, [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)
        logs = logs or {}
        scores = "  ".join(f"{k} {v:.4f}" for k, v in logs.items())
        line = f"epoch {epoch + 1}: {self.times[-1]:6.1f} s  {scores}"
        if self.peer is not None:
            t0 = time.perf_counter()
            self.peer()
            self.peer_times.append(time.perf_counter() - t0)
            line += f"  | PyTorch epoch {self.peer_times[-1]:6.1f} s"
        print(line, flush=True)


def torch_peer(x_train, y_train, cell, units, batch_size, lr, seed):
    """The same model in PyTorch CPU: (run_one_epoch, test_accuracy(x, y))."""
    import torch
    torch.manual_seed(seed)

    class RowReader(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = getattr(torch.nn, TORCH_CELLS[cell])(x_train.shape[2], units, batch_first=True)
            self.out = torch.nn.Linear(units, 10)

        def forward(self, x):
            return self.out(self.rnn(x)[0][:, -1])

    model = RowReader()
    opt = torch.optim.Adam(model.parameters(), lr=lr, eps=1e-7)
    tx, ty = torch.from_numpy(x_train), torch.from_numpy(y_train)

    def epoch():
        model.train()
        order = torch.randperm(len(tx))
        for s in range(0, len(tx), batch_size):
            idx = order[s:s + batch_size]
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(tx[idx]), ty[idx]).backward()
            opt.step()

    def accuracy(x, y):
        model.eval()
        with torch.no_grad():
            return float((model(torch.from_numpy(x)).argmax(1) == torch.from_numpy(y)).float().mean())
    return epoch, accuracy


def load(dataset, limit):
    from gpudl import datasets
    module = datasets.fashion_mnist if dataset == "fashion-mnist" else datasets.mnist
    (x_train, y_train), (x_test, y_test) = module.load_data()
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
    x_train, y_train, x_test, y_test = load(args.dataset, args.limit)
    print(f"{args.dataset}: {len(x_train)} training and {len(x_test)} test images, "
          f"read as {x_train.shape[1]} steps of {x_train.shape[2]} pixels")

    model = recipes.rnn_rows(args.cell, rows=28, cols=28, units=args.units)
    model.compile(optimizer=optimizers.Adam(learning_rate=args.learning_rate),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    model.summary()
    peer = accuracy = None
    if args.torch:
        peer, accuracy = torch_peer(x_train, y_train, args.cell, args.units, args.batch_size, args.learning_rate, args.seed)
    timer = EpochTimer(peer)
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, shuffle=True,
              callbacks=[timer], verbose=0, seed=args.seed)
    scores = model.evaluate(x_test, y_test, batch_size=500)
    print(f"test accuracy: {scores['accuracy']:.4f}  (test loss {scores['loss']:.4f})")
    if peer is not None:
        import statistics
        g, t = statistics.median(timer.times), statistics.median(timer.peer_times)
        print(f"PyTorch test accuracy: {accuracy(x_test, y_test):.4f}")
        print(f"median epoch: gpudl {g:.1f} s, PyTorch {t:.1f} s, ratio {g / t:.2f}")
    return scores


if __name__ == "__main__":
    main()
