"""Bad input answered by a clear exception naming what was expected and what came."""
import os
import tempfile

import numpy as np
import pytest

import gpudl
from gpudl import Tensor, initializers, layers, optimizers, regularizers
from gpudl import functional as F


def built_dense():
    d = layers.Dense(10)
    d(Tensor(np.zeros((2, 784), dtype=np.float32)))
    return d


def mlp(compiled=True):
    m = gpudl.Sequential([layers.Dense(8, activation="relu"), layers.Dense(3, activation="softmax")],
                         input_shape=(4,))
    if compiled:
        m.compile("adam", "categorical_crossentropy", ["accuracy"])
    return m


X = np.random.default_rng(0).random((10, 4)).astype(np.float32)
Y = np.arange(10) % 3

CASES = [
    ("dense-wrong-last-axis", lambda: built_dense()(Tensor(np.zeros((32, 28, 28), dtype=np.float32))),
     ValueError, r"Dense 'dense' expected input with rank >= 2, last axis 784, got shape \(32, 28, 28\)"),
    ("dense-rank-1", lambda: layers.Dense(3)(Tensor(np.zeros(5))),
     ValueError, r"Dense 'dense' expected input of rank >= 2, got shape \(5,\)"),
    ("dense-units-0", lambda: layers.Dense(0), ValueError, r"Dense expected a positive integer for units, got 0"),
    ("unknown-activation", lambda: layers.Dense(3, activation="swish"),
     ValueError, r"unknown activation 'swish': expected one of 'relu', 'sigmoid', 'tanh', 'softmax', 'leaky_relu', 'linear'"),
    ("unknown-loss", lambda: mlp(False).compile("adam", "hingle"),
     ValueError, r"unknown loss 'hingle': expected one of .*'categorical_crossentropy'"),
    ("unknown-optimizer", lambda: mlp(False).compile("adamx", "mse"),
     ValueError, r"unknown optimizer 'adamx': expected one of 'sgd', 'adagrad', 'rmsprop', 'adam'"),
    ("unknown-metric", lambda: mlp(False).compile("adam", "mse", ["f1"]),
     ValueError, r"unknown metric 'f1': expected one of .*'accuracy'"),
    ("unknown-initializer", lambda: initializers.get("gaussian"),
     ValueError, r"unknown initializer 'gaussian': expected one of .*glorot_uniform"),
    ("negative-l2", lambda: regularizers.L2(-1.0), ValueError, r"L2 expected a non-negative number, got -1.0"),
    ("linear-w-rank", lambda: F.linear(Tensor(np.zeros((2, 3))), np.zeros(3)),
     ValueError, r"linear expected W of rank 2 \(in, out\), got shape \(3,\)"),
    ("linear-x-mismatch", lambda: F.linear(Tensor(np.zeros((2, 3))), np.zeros((4, 5))),
     ValueError, r"linear expected x with last axis 4 \(W is \(4, 5\)\), got shape \(2, 3\)"),
    ("maxout-not-divisible", lambda: F.maxout(Tensor(np.zeros((2, 5))), 2),
     ValueError, r"maxout expected axis 1 divisible by pieces=2, got shape \(2, 5\)"),
    ("maxout-pieces-0", lambda: layers.Maxout(0), ValueError, r"Maxout expected a positive integer number of pieces, got 0"),
    ("prelu-alpha-shape", lambda: F.prelu(Tensor(np.zeros((2, 3))), Tensor(np.zeros(4))),
     ValueError, r"prelu expected alpha of shape \(\) or \(3,\).* got alpha shape \(4,\)"),
    ("ce-label-range", lambda: F.softmax_cross_entropy(Tensor(np.zeros((2, 3))), np.array([0, 3])),
     ValueError, r"labels in \[0, 2\], got values in \[0, 3\]"),
    ("mse-shape", lambda: F.mean_squared_error(Tensor(np.zeros((2, 3))), np.zeros((3, 2))),
     ValueError, r"mean_squared_error expected targets of shape \(2, 3\), got \(3, 2\)"),
    ("dropout-rate", lambda: layers.Dropout(1.0), ValueError, r"Dropout expected a rate in \[0, 1\), got 1.0"),
    ("string-tensor", lambda: Tensor(["a", "b"]), TypeError, r"Tensor expected numeric data, got dtype <U1"),
    ("relu-int", lambda: F.relu(Tensor(np.array([1, 2]))), TypeError,
     r"relu expected a floating-point input \(float32 or float64\), got dtype int64"),
    ("bogus-backend", lambda: gpudl.set_backend("tpu"), ValueError, r"unknown backend 'tpu'"),
    ("matmul-shapes", lambda: Tensor(np.zeros((2, 3))) @ Tensor(np.zeros((4, 2))),
     ValueError, r"matmul shapes do not align: \(2, 3\) @ \(4, 2\)"),
    ("reshape-size", lambda: Tensor(np.zeros((2, 3))).reshape(4, 2),
     ValueError, r"cannot reshape an array of shape \(2, 3\) \(6 elements\) into shape \(4, 2\)"),
    ("fit-before-compile", lambda: mlp(False).fit(X, Y, verbose=0),
     RuntimeError, r"call compile\(optimizer=..., loss=...\) before fit"),
    ("fit-length-mismatch", lambda: mlp().fit(X, Y[:7], verbose=0),
     ValueError, r"x and y must have the same number of samples, got 10 and 7"),
    ("fit-empty", lambda: mlp().fit(X[:0], Y[:0], verbose=0),
     ValueError, r"expected at least one sample, got an empty array of shape \(0, 4\)"),
    ("fit-label-out-of-range", lambda: mlp().fit(X, Y + 1, verbose=0),
     ValueError, r"labels must lie in \[0, 2\] for 3 outputs, got values in \[1, 3\]"),
    ("fit-nan-input", lambda: mlp().fit(np.where(X > 0.9, np.nan, X), Y, verbose=0),
     ValueError, r"fit: x: expected finite values, got \d+ NaN or infinite entries"),
    ("fit-wrong-feature-size", lambda: mlp().fit(np.zeros((10, 5), dtype=np.float32), Y, verbose=0),
     ValueError, r"expected x of shape \(N, 4\), got \(10, 5\)"),
    ("fit-string-x", lambda: mlp().fit(np.array([["a"] * 4] * 10), Y, verbose=0),
     TypeError, r"fit: x: expected a numeric array, got dtype <U1"),
    ("fit-batch-size-0", lambda: mlp().fit(X, Y, batch_size=0, verbose=0),
     ValueError, r"fit: batch_size: expected a positive integer, got 0"),
    ("fit-validation-split", lambda: mlp().fit(X, Y, validation_split=1.5, verbose=0),
     ValueError, r"validation_split expected a number in \[0, 1\), got 1.5"),
    ("fit-onehot-width", lambda: mlp().fit(X, np.eye(4)[Y], verbose=0),
     ValueError, r"does not match the model's 3 outputs"),
    ("predict-rank", lambda: mlp().predict(np.zeros((3, 2, 2), dtype=np.float32)),
     ValueError, r"expected x of shape \(N, 4\), got \(3, 2, 2\)"),
    ("set-seed-negative", lambda: gpudl.set_seed(-3), ValueError, r"set_seed expected a non-negative integer, got -3"),
    ("optimizer-lr", lambda: optimizers.Adam(learning_rate=0.0), ValueError, r"Adam expected learning_rate > 0.0, got 0.0"),
    ("adam-beta", lambda: optimizers.Adam(beta_1=1.0), ValueError, r"Adam expected beta_1 in \[0, 1\), got 1.0"),
    ("layer-not-a-layer", lambda: gpudl.Sequential([lambda x: x]),
     TypeError, r"Sequential.add expected a gpudl layer, got function"),
    ("empty-layer-name", lambda: layers.Dense(3, name=""), ValueError, r"layer name must be a non-empty string"),
    ("input-shape-bad", lambda: gpudl.Sequential([layers.Dense(3)], input_shape=(0,)),
     ValueError, r"input_shape expected a tuple of positive integers, got \(0,\)"),
    ("leaky-alpha-type", lambda: layers.LeakyReLU("big"), ValueError, r"LeakyReLU expected a number for alpha, got 'big'"),
]


def _file(tmp, data):
    path = os.path.join(tmp, "f.bin")
    with open(path, "wb") as f:
        f.write(data)
    return path


def _truncated_model(tmp):
    path = os.path.join(tmp, "m.gpudl")
    mlp().save(path)
    data = open(path, "rb").read()
    return _file(tmp, data[: len(data) - 40])


def _conv_built():
    c = layers.Conv2D(4, 3)
    c(Tensor(np.zeros((1, 3, 8, 8), dtype=np.float32)))
    return c


TMP = tempfile.mkdtemp(prefix="gpudl-bad-")
CASES += [
    ("model-file-truncated", lambda: gpudl.load_model(_truncated_model(TMP)), gpudl.ModelFileError, r"m.gpudl|f.bin"),
    ("model-file-not-gpudl", lambda: gpudl.load_model(_file(TMP, b"PK\x03\x04 a zip, not a model")),
     gpudl.ModelFileError, r"not a gpudl|magic"),
    ("model-file-empty", lambda: gpudl.load_model(_file(TMP, b"")), gpudl.ModelFileError, r"empty|magic|short"),
    ("idx-bad-magic", lambda: gpudl.datasets.read_idx(_file(TMP, b"\x01\x02\x08\x01" + b"\x00" * 8)),
     gpudl.DatasetError, r"magic"),
    ("idx-truncated", lambda: gpudl.datasets.read_idx(_file(TMP, b"\x00\x00\x08\x01\x00\x00\x00\x10abc")),
     gpudl.DatasetError, r"expected 16 .*got 3|truncated"),
    ("conv-channels", lambda: _conv_built()(Tensor(np.zeros((1, 1, 8, 8), dtype=np.float32))),
     ValueError, r"Conv2D 'conv2d' expected input with .*axis 1 of size 3, got shape \(1, 1, 8, 8\)"),
    ("lstm-rank-2", lambda: layers.LSTM(4)(Tensor(np.zeros((32, 28), dtype=np.float32))),
     ValueError, r"LSTM 'lstm' expected input of rank 3 \(batch, timesteps, features\), got shape \(32, 28\)"),
    ("evaluate-label-range", lambda: mlp().evaluate(X, Y + 5),
     ValueError, r"evaluate: labels must lie in \[0, 2\] for 3 outputs, got values in \[5, 7\]"),
    ("predict-empty", lambda: mlp().predict(X[:0]), ValueError, r"predict: x: expected at least one sample|predict: expected at least one sample"),
    ("checkpoint-save-freq", lambda: gpudl.callbacks.ModelCheckpoint("x", save_freq=0),
     ValueError, r"save_freq 'epoch' or a positive number of batches, got 0"),
]


@pytest.mark.parametrize("name,call,exc,pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_table_is_large_enough():
    assert len(CASES) >= 40


def test_a_failed_fit_changes_no_weight():
    m = mlp()
    before = m.get_weights()
    with pytest.raises(ValueError):
        m.fit(X, Y + 1, verbose=0)
    for a, b in zip(before, m.get_weights()):
        np.testing.assert_array_equal(a, b)
