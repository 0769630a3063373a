"""The trainer (gpudl.training): the defects it fixed, data from anywhere, Keras's returns."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest

import gpudl
from gpudl import callbacks, layers, losses, metrics
from gpudl.data import Dataset


def _blobs(n=120, d=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (classes, d))
    y = rng.integers(0, classes, n)
    x = (centers[y] + rng.normal(0, 1, (n, d))).astype(np.float32)
    return x, y


def _mlp(d=6, classes=3, act="softmax", units=None):
    return gpudl.Sequential([layers.Dense(16, activation="relu"),
                             layers.Dense(units or classes, activation=act)], input_shape=(d,))


# ---- defects -----------------------------------------------------------------------------

def test_accuracy_of_one_sigmoid_unit_is_binary_not_always_one():
    x, y = _blobs(classes=2)
    m = _mlp(act="sigmoid", units=1)
    m.compile("adam", "binary_crossentropy", ["accuracy"])
    assert m.fused  # sigmoid + binary cross entropy train on logits
    yy = y.reshape(-1, 1).astype(np.float32)
    before = m.evaluate(x, yy, return_dict=True)["accuracy"]
    pred = m.predict(x)
    assert before == pytest.approx(((pred > 0.5) == (yy > 0.5)).mean())
    assert before < 1.0  # argmax over one column would say 1.0
    h = m.fit(x, yy, epochs=30, batch_size=16, verbose=0)
    assert h.history["accuracy"][-1] > 0.9


def test_a_parameter_reached_twice_is_listed_saved_and_stepped_once(tmp_path):
    shared = layers.Dense(4, activation="tanh")
    m = gpudl.Sequential([layers.Dense(4), layers.Residual(shared, shared), layers.Dense(3, activation="softmax")],
                         input_shape=(5,))
    m.build()
    ids = [id(p) for p in m.params()]
    assert len(ids) == len(set(ids)) == 6
    m.compile(gpudl.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((8, 5), dtype=np.float32)
    y = np.arange(8) % 3
    w0 = shared.W.numpy().copy()
    m.train_on_batch(x, y)
    # the gradient of the shared W sums both uses; SGD applies it once: w0 - lr * grad
    grad = shared.W.grad
    np.testing.assert_allclose(shared.W.numpy(), w0 - 0.1 * gpudl.to_numpy(grad), rtol=1e-6, atol=1e-7)
    m.save(tmp_path / "m.gpudl")
    m2 = gpudl.load_model(tmp_path / "m.gpudl")
    assert len(m2.params()) == 6


def test_fit_logs_every_compiled_metric_for_train_and_validation(tmp_path):
    x, y = _blobs(n=150)
    m = _mlp()
    m.compile("adam", "categorical_crossentropy", ["accuracy", "mse", metrics.Precision(name="precision")])
    log = tmp_path / "log.csv"
    h = m.fit(x, np.eye(3)[y], epochs=3, batch_size=32, validation_split=0.2, verbose=0,
              callbacks=[callbacks.CSVLogger(log)])
    want = {"loss", "accuracy", "mse", "precision"}
    assert set(h.history) == want | {f"val_{k}" for k in want}
    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    for k in h.history:
        assert [float(r[k]) for r in rows] == pytest.approx(h.history[k], rel=1e-12)
    # the validation figures are evaluate's on the held-out rows, computed the same way
    n_val = int(150 * 0.2)
    ev = m.evaluate(x[-n_val:], np.eye(3)[y[-n_val:]], return_dict=True, batch_size=256)
    for k in want:
        assert ev[k] == pytest.approx(h.history[f"val_{k}"][-1], rel=1e-5, abs=1e-7)


def test_summary_counts_frozen_parameters_apart():
    m = gpudl.Sequential([layers.Dense(8), layers.Dense(3, activation="softmax")], input_shape=(5,))
    m.layers[0].trainable = False
    text = m.summary(print_fn=None)
    assert "Total params: 75" in text and "Trainable params: 27" in text and "Non-trainable params: 48" in text


def test_a_frozen_layer_is_not_updated():
    x, y = _blobs()
    m = _mlp()
    m.compile("adam", "sparse_categorical_crossentropy")
    m.build()
    m.layers[0].trainable = False
    frozen = [p.numpy().copy() for p in m.layers[0].params()]
    m.fit(x, y, epochs=2, verbose=0)
    for a, p in zip(frozen, m.layers[0].params()):
        np.testing.assert_array_equal(a, p.numpy())


@pytest.mark.parametrize("onehot", [False, True], ids=["labels_NT", "labels_NTC"])
def test_many_to_many_outputs_train_with_cross_entropy(onehot):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5, 3)).astype(np.float32)
    y = (x[:, :, 0] > 0).astype(np.int64) + (x[:, :, 1] > 1)  # a tag per step, 3 classes
    m = gpudl.Sequential([layers.SimpleRNN(16, return_sequences=True), layers.Dense(3, activation="softmax")],
                         input_shape=(5, 3))
    m.compile(gpudl.optimizers.Adam(0.02), "categorical_crossentropy", ["accuracy"])
    assert m.fused
    target = np.eye(3, dtype=np.float32)[y] if onehot else y
    h = m.fit(x, target, epochs=25, batch_size=16, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0] * 0.6
    assert h.history["accuracy"][-1] > 0.85
    pred = m.predict(x)
    assert pred.shape == (64, 5, 3)


# ---- data from anywhere --------------------------------------------------------------------

class _Batches(Dataset):
    def __init__(self, x, y, bs, **kw):
        super().__init__(**kw)
        self.x, self.y, self.bs = x, y, bs
        self.ends = 0

    def __len__(self):
        return math.ceil(len(self.x) / self.bs)

    def __getitem__(self, i):
        s = slice(i * self.bs, (i + 1) * self.bs)
        return self.x[s], self.y[s]

    def on_epoch_end(self):
        self.ends += 1


def _fit_weights(data_kind, workers=1):
    x, y = _blobs(n=100)
    gpudl.set_seed(3)
    m = _mlp()
    m.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    if data_kind == "arrays":
        m.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    elif data_kind == "dataset":
        ds = _Batches(x, y, 16, workers=workers)
        m.fit(ds, epochs=3, shuffle=False, verbose=0)
        assert ds.ends == 3
    else:
        def gen():
            while True:
                for i in range(0, 100, 16):
                    yield x[i:i + 16], y[i:i + 16]
        m.fit(gen(), steps_per_epoch=7, epochs=3, verbose=0)
    return m.get_weights()


@pytest.mark.parametrize("kind,workers", [("dataset", 1), ("dataset", 3), ("generator", 1)])
def test_dataset_and_generator_give_the_weights_arrays_give(kind, workers):
    for a, b in zip(_fit_weights("arrays"), _fit_weights(kind, workers)):
        np.testing.assert_array_equal(a, b)


def _bad_generator(bad):
    x, y = _blobs(n=64)
    for i in range(4):
        xb, yb = x[i * 16:(i + 1) * 16], y[i * 16:(i + 1) * 16]
        if i == 2:
            xb, yb = bad(xb, yb)
        yield xb, yb


@pytest.mark.parametrize("bad,pattern", [
    (lambda x, y: (x[:, :4], y), r"batch 2: expected x of shape \(N, 6\), got \(16, 4\)"),
    (lambda x, y: (x[None], y), r"batch 2: expected x of shape \(N, 6\), got \(1, 16, 6\)"),
    (lambda x, y: (x, y[:5]), r"batch 2: x has 16 samples but y has 5"),
    (lambda x, y: (np.where(x > 1, np.nan, x), y), r"batch 2: x holds \d+ NaN"),
    (lambda x, y: (x.astype(str), y), r"batch 2: x: expected a numeric array, got dtype <U"),
], ids=["wrong-width", "wrong-rank", "lengths", "nan", "dtype"])
def test_a_malformed_generator_batch_names_its_index_and_saves_nothing(tmp_path, bad, pattern):
    m = _mlp()
    m.compile("adam", "sparse_categorical_crossentropy")
    path = tmp_path / "ck.gpudl"
    m.fit(_blobs(n=32)[0], _blobs(n=32)[1], epochs=1, verbose=0, callbacks=[callbacks.ModelCheckpoint(path)])
    saved = path.read_bytes()
    with pytest.raises((ValueError, TypeError), match=pattern):
        m.fit(_bad_generator(bad), epochs=1, verbose=0,
              callbacks=[callbacks.ModelCheckpoint(path, save_freq=1)])
    # batches 0 and 1 were saved mid-epoch by save_freq=1: the file is whole and loads
    assert gpudl.load_model(path) is not None
    assert path.read_bytes() != saved


def test_a_generator_that_runs_out_stops_training_with_a_warning():
    x, y = _blobs(n=48)
    m = _mlp()
    m.compile("adam", "sparse_categorical_crossentropy")
    gen = ((x[i:i + 16], y[i:i + 16]) for i in range(0, 48, 16))
    with pytest.warns(RuntimeWarning, match="ran out of data"):
        h = m.fit(gen, epochs=3, verbose=0)
    assert len(h.history["loss"]) == 1


def test_evaluate_and_predict_take_a_dataset():
    x, y = _blobs(n=50)
    m = _mlp()
    m.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    ds = _Batches(x, y, 16)
    assert m.evaluate(ds, return_dict=True) == pytest.approx(m.evaluate(x, y, return_dict=True))
    class _X(_Batches):
        def __getitem__(self, i):
            return super().__getitem__(i)[0]
    np.testing.assert_allclose(m.predict(_X(x, y, 16)), m.predict(x), rtol=1e-6)


# ---- Keras's return values and the one-batch calls -------------------------------------------

def test_evaluate_returns_what_keras_returns():
    x, y = _blobs()
    m = _mlp()
    m.compile("adam", "sparse_categorical_crossentropy")
    assert isinstance(m.evaluate(x, y), float)
    m.compile("adam", "sparse_categorical_crossentropy", ["accuracy", "mse"])
    res = m.evaluate(x, y)
    d = m.evaluate(x, y, return_dict=True)
    assert isinstance(res, list) and res == pytest.approx([d["loss"], d["accuracy"], d["mse"]])
    assert list(d) == ["loss", "accuracy", "mse"]


def test_on_batch_calls():
    x, y = _blobs(n=16)
    m = _mlp()
    m.compile(gpudl.optimizers.SGD(0.05), "sparse_categorical_crossentropy", ["accuracy"])
    before = m.test_on_batch(x, y, return_dict=True)
    out = m.train_on_batch(x, y)
    assert out == pytest.approx([before["loss"], before["accuracy"]], rel=1e-5)
    after = m.test_on_batch(x, y)
    assert after[0] < before["loss"]
    np.testing.assert_allclose(m.predict_on_batch(x), m.predict(x), rtol=1e-6)


def test_sample_weight_and_class_weight():
    x, y = _blobs(n=60)
    m = _mlp()
    m.compile("sgd", "sparse_categorical_crossentropy")
    w = np.where(y == 0, 2.0, 0.5).astype(np.float32)
    plain = m.evaluate(x, y)
    per = losses.SparseCategoricalCrossentropy(reduction="none")(y, gpudl.Tensor(m.predict(x))).numpy()
    assert m.evaluate(x, y, sample_weight=w) == pytest.approx((per * w).mean(), rel=1e-5)
    assert plain == pytest.approx(per.mean(), rel=1e-5)
    # class_weight is a weight per class id: the same update as the matching sample weights
    gpudl.set_seed(1)
    a = _mlp()
    a.compile("sgd", "sparse_categorical_crossentropy")
    a.fit(x, y, sample_weight=w, epochs=1, shuffle=False, verbose=0, seed=2)
    gpudl.set_seed(1)
    b = _mlp()
    b.compile("sgd", "sparse_categorical_crossentropy")
    b.fit(x, y, class_weight={0: 2.0, 1: 0.5, 2: 0.5}, epochs=1, shuffle=False, verbose=0, seed=2)
    for p, q in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(p, q, rtol=1e-6, atol=1e-7)


def test_add_loss_adds_to_the_training_loss():
    class Penalised(layers.Dense):
        def forward(self, x, logits=False):
            out = super().forward(x, logits=logits)
            self.add_loss((self.W * self.W).sum() * 0.5)
            return out
    x, y = _blobs(n=32)
    gpudl.set_seed(0)
    m = gpudl.Sequential([Penalised(3, activation="softmax")], input_shape=(6,))
    m.compile("sgd", "sparse_categorical_crossentropy")
    gpudl.set_seed(0)
    plain = gpudl.Sequential([layers.Dense(3, activation="softmax")], input_shape=(6,))
    plain.compile("sgd", "sparse_categorical_crossentropy")
    W = m.layers[0].W.numpy()
    assert m.evaluate(x, y) == pytest.approx(plain.evaluate(x, y) + 0.5 * (W * W).sum(), rel=1e-5)


def test_a_user_callable_loss_and_metric():
    def sq(y_true, y_pred):
        return ((y_pred - y_true) ** 2).mean(axis=-1)

    def max_err(y_true, y_pred):
        return abs(y_pred - y_true).max(axis=-1)
    x, y = _blobs()
    t = np.eye(3, dtype=np.float32)[y]
    m = _mlp()
    m.compile("adam", sq, [max_err])
    h = m.fit(x, t, epochs=3, verbose=0)
    assert set(h.history) == {"loss", "max_err"} and h.history["loss"][-1] < h.history["loss"][0]


def test_training_state_is_one_object(tmp_path):
    x, y = _blobs(n=64)
    m = _mlp()
    m.compile("adam", "sparse_categorical_crossentropy")
    m.fit(x, y, epochs=2, batch_size=16, verbose=0, seed=0)
    st = m.training_state.state_dict()
    assert st["epoch"] == 2 and st["batch"] == 0 and "rng_state" in st
    other = _mlp()
    other.training_state.load_state_dict(st)
    assert other.epoch == 2


def test_the_live_bar_draws_the_running_loss(monkeypatch):
    import io
    import sys

    class Tty(io.StringIO):
        def isatty(self):
            return True
    out = Tty()
    monkeypatch.setattr(sys, "stdout", out)
    x, y = _blobs(n=64)
    m = _mlp()
    m.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    m.fit(x, y, epochs=2, batch_size=16, verbose=1)
    text = out.getvalue()
    assert "Epoch 1/2" in text and "Epoch 2/2" in text
    assert "\r16/64 [" in text and "samples/s" in text and "loss: " in text and "accuracy: " in text
    assert text.count("64/64 - ") == 2  # one closing line per epoch
