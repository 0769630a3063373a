"""The tutorial's reference models, built one way for the CLI, examples and benchmarks."""
from __future__ import annotations

import numpy as np

from . import layers
from .models import Sequential

__all__ = ["hello_mlp", "mnist_cnn", "lstm_rows", "rnn_rows", "RNN_CELLS", "load_dataset", "DATASETS"]

DATASETS = ("mnist", "fashion-mnist", "digits")


def hello_mlp(input_dim=784, hidden=500, classes=10, dropout=0.2, activation="relu"):
    """The hello world: input-500-500-10, ReLU, dropout, softmax (Keras' mnist_mlp shape)."""
    return Sequential([
        layers.Dense(hidden, activation=activation), layers.Dropout(dropout),
        layers.Dense(hidden, activation=activation), layers.Dropout(dropout),
        layers.Dense(classes, activation="softmax"),
    ], input_shape=(input_dim,))


def mnist_cnn(input_shape=(1, 28, 28), classes=10, batchnorm=False):
    """Keras' mnist_cnn: conv32-conv64-pool-dropout-128-dropout-10. ``batchnorm``: True or
    "pre" puts a BatchNormalization between each convolution and its ReLU (Ioffe and
    Szegedy's place), "post" after each convolution's ReLU."""
    if batchnorm not in (False, True, "pre", "post"):
        raise ValueError(f"mnist_cnn expected batchnorm False, True, 'pre' or 'post', got {batchnorm!r}")
    if batchnorm in (True, "pre"):
        convs = [layers.Conv2D(32, 3), layers.BatchNormalization(), layers.ReLU(),
                 layers.Conv2D(64, 3), layers.BatchNormalization(), layers.ReLU()]
    elif batchnorm == "post":
        convs = [layers.Conv2D(32, 3, activation="relu"), layers.BatchNormalization(),
                 layers.Conv2D(64, 3, activation="relu"), layers.BatchNormalization()]
    else:
        convs = [layers.Conv2D(32, 3, activation="relu"), layers.Conv2D(64, 3, activation="relu")]
    return Sequential([
        *convs,
        layers.MaxPool2D(2), layers.Dropout(0.25), layers.Flatten(),
        layers.Dense(128, activation="relu"), layers.Dropout(0.5),
        layers.Dense(classes, activation="softmax"),
    ], input_shape=input_shape)


#: the recurrent layer of rnn_rows, by name
RNN_CELLS = {"lstm": "LSTM", "gru": "GRU", "simple": "SimpleRNN"}


def rnn_rows(cell="lstm", rows=28, cols=28, units=128, classes=10):
    """Lecture II's many-to-one RNN: read an image row by row with one recurrent layer
    (``cell`` one of RNN_CELLS), classify from the last state."""
    if cell not in RNN_CELLS:
        raise ValueError(f"rnn_rows expected cell in {', '.join(map(repr, RNN_CELLS))}, got {cell!r}")
    return Sequential([getattr(layers, RNN_CELLS[cell])(units), layers.Dense(classes, activation="softmax")],
                      input_shape=(rows, cols))


def lstm_rows(rows=28, cols=28, units=128, classes=10):
    """rnn_rows with an LSTM, the tutorial's example."""
    return rnn_rows("lstm", rows, cols, units, classes)


def load_dataset(name, layout="flat", limit=None, data_dir=None):
    """(x_train, y_train), (x_test, y_test) scaled to [0, 1] float32.

    layout: "flat" (N, H*W), "image" (N, 1, H, W) or "rows" (N, H, W).
    """
    from . import datasets
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: expected one of {', '.join(map(repr, DATASETS))}")
    if name == "digits":
        (xtr, ytr), (xte, yte) = datasets.digits.load_data()
        scale = 16.0
    else:
        mod = datasets.mnist if name == "mnist" else datasets.fashion_mnist
        (xtr, ytr), (xte, yte) = mod.load_data(path=data_dir)
        scale = 255.0
    if limit:
        xtr, ytr = xtr[:limit], ytr[:limit]

    def shape(x):
        x = (x.astype(np.float32) / np.float32(scale))
        if layout == "flat":
            return x.reshape(len(x), -1)
        if layout == "image":
            return x[:, None]
        if layout == "rows":
            return x
        raise ValueError(f"unknown layout {layout!r}: expected 'flat', 'image' or 'rows'")
    return (shape(xtr), ytr.astype(np.int64)), (shape(xte), yte.astype(np.int64))
