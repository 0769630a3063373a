"""Training runs shared by the multi-rank launches (tests/distributed/dp_worker.py, one process
per rank under mpiexec) and the in-process single-rank references (test_mpi_ranks.py): each
builds the same model from the same seed and calls fit(distributed=True)."""
from __future__ import annotations

import json

import numpy as np

import gpudl
from gpudl import augment, backend, callbacks, layers, optimizers


def _data(n, features, classes, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    y = rng.integers(0, classes, n)
    return x, y


def _mlp(features, classes, dtype):
    backend.default_dtype = np.dtype(dtype)
    try:
        gpudl.set_seed(11)
        m = gpudl.Sequential([
            layers.Dense(12, activation="relu", kernel_regularizer="l2"), layers.Dropout(0.3),
            layers.Dense(12, activation="tanh", kernel_regularizer="l1"), layers.Dropout(0.2, seed=5),
            layers.Dense(classes, activation="softmax")], input_shape=(features,))
        m.build()  # the parameters in ``dtype``
        return m
    finally:
        backend.default_dtype = np.float32


def sgd64():
    """float64, SGD with Nesterov momentum, L1/L2, global_clipnorm, dropout (one layer with its
    own seed); 34 training samples in global batches of 16 (the last holds 2: on 3 ranks one
    share is empty), validation, EarlyStopping and ReduceLROnPlateau deciding from the logs."""
    x, y = _data(42, 8, 4, 1)
    m = _mlp(8, 4, "float64")
    m.compile(optimizers.SGD(0.05, momentum=0.9, nesterov=True, global_clipnorm=0.5),
              "sparse_categorical_crossentropy", ["accuracy"])
    cbs = [callbacks.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=False),
           callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=10.0)]
    h = m.fit(x, y, batch_size=16, epochs=4, validation_split=0.2, verbose=0, seed=3, callbacks=cbs,
              distributed=True)
    return m, h


def adam32():
    """float32 Adam with clipnorm and weight decay, dropout, RandomShiftRotate augmentation on
    4x4 images, sample weights, one-hot targets, AUC; 45 samples in global batches of 10."""
    x, y = _data(45, 16, 3, 2)
    x, y = x.astype(np.float32), np.eye(3, dtype=np.float32)[y]
    sw = np.random.default_rng(4).uniform(0.5, 1.5, 45)
    m = _mlp(16, 3, "float32")
    m.compile(optimizers.Adam(3e-3, clipnorm=1.0, weight_decay=1e-3), "categorical_crossentropy",
              ["accuracy", gpudl.metrics.AUC(num_thresholds=20)])
    aug = augment.RandomShiftRotate(max_shift=1, max_rotation=15.0, image_shape=(4, 4))
    h = m.fit(x, y, sample_weight=sw, batch_size=10, epochs=3, verbose=0, seed=8, augment=aug,
              validation_data=(x[:20], y[:20]), distributed=True)
    return m, h


def tiny():
    """A global batch of one sample: on several ranks every step leaves some share empty."""
    x, y = _data(7, 8, 4, 5)
    m = _mlp(8, 4, "float64")
    m.compile(optimizers.Adam(1e-2), "sparse_categorical_crossentropy", ["accuracy"])
    h = m.fit(x, y, batch_size=1, epochs=2, verbose=0, seed=2, distributed=True)
    return m, h


class Interrupt(callbacks.Callback):
    """Stops training (on every rank alike) at epoch ``epoch``, after batch ``batch``."""

    def __init__(self, epoch, batch):
        self.at = (epoch, batch)

    def on_train_batch_end(self, batch, logs=None):
        if (logs["epoch"], batch) == self.at:
            raise KeyboardInterrupt


def _ckpt_model():
    x, y = _data(60, 8, 4, 6)
    m = _mlp(8, 4, "float64")
    m.compile(optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy", ["accuracy"])
    return m, x, y


def ckpt_full():
    m, x, y = _ckpt_model()
    h = m.fit(x, y, batch_size=16, epochs=3, verbose=0, seed=4, distributed=True)
    return m, h


def ckpt_interrupted(path):
    """The same run, a checkpoint every 2 batches (rank 0 writes it), stopped mid-epoch 2."""
    m, x, y = _ckpt_model()
    try:
        m.fit(x, y, batch_size=16, epochs=3, verbose=0, seed=4, distributed=True,
              callbacks=[callbacks.ModelCheckpoint(path, save_freq=2), Interrupt(1, 2)])
    except KeyboardInterrupt:
        pass
    return m, None


def ckpt_resumed(path):
    m, x, y = _ckpt_model()
    gpudl.set_seed(1000 + gpudl.distributed.rank())  # disturb: the file and rank 0 carry the state
    h = m.fit(x, y, batch_size=16, epochs=3, verbose=0, distributed=True, resume_from=path)
    return m, h


def fails():
    """Rank 1 raises in a callback at its third step while the others go on to the allreduce."""
    class Boom(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if gpudl.distributed.rank() == 1 and batch == 2:
                raise RuntimeError("rank 1 fails on purpose")
    x, y = _data(200, 8, 4, 7)
    m = _mlp(8, 4, "float64")
    m.compile("sgd", "sparse_categorical_crossentropy")
    m.fit(x, y, batch_size=8, epochs=50, verbose=0, distributed=True, callbacks=[Boom()])
    return m, None


def save_result(path, model, history, extra=None):
    """Weights (npz) and History (JSON beside it)."""
    np.savez(path, *model.get_weights())
    record = {"history": None if history is None else history.history,
              "epochs": None if history is None else history.epoch, **(extra or {})}
    with open(str(path) + ".json", "w") as f:
        json.dump(record, f)


def load_result(path):
    with np.load(path) as z:
        weights = [z[f"arr_{i}"] for i in range(len(z.files))]
    with open(str(path) + ".json") as f:
        return weights, json.load(f)
