"""Sequential: fit / evaluate / predict / summary / save / resume and the callbacks."""
import os

import numpy as np
import pytest

import gpudl
from gpudl import callbacks, layers
from gpudl.errors import ModelFileError


def digits_data():
    from gpudl.datasets import digits
    (xtr, ytr), (xte, yte) = digits.load_data()
    f = lambda a: (a.reshape(len(a), -1) / 16.0).astype(np.float32)
    return (f(xtr), ytr), (f(xte), yte)


def small_mlp(dropout=0.0, n_in=64):
    seq = [layers.Dense(32, activation="relu")]
    if dropout:
        seq.append(layers.Dropout(dropout))
    seq.append(layers.Dense(10, activation="softmax"))
    m = gpudl.Sequential(seq, input_shape=(n_in,))
    m.compile(gpudl.optimizers.Adam(1e-2), "categorical_crossentropy", ["accuracy"])
    return m


def test_mlp_learns_digits_and_reports_metrics():
    (xtr, ytr), (xte, yte) = digits_data()
    m = small_mlp()
    assert m.fused  # softmax + categorical_crossentropy trains through the fused op
    h = m.fit(xtr, ytr, batch_size=32, epochs=8, validation_split=0.1, verbose=0)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert h.history["loss"][-1] < h.history["loss"][0]
    res = m.evaluate(xte, yte, return_dict=True)
    assert res["accuracy"] > 0.93
    p = m.predict(xte[:5])
    assert p.shape == (5, 10) and np.allclose(p.sum(1), 1, atol=1e-5)
    # one-hot labels train the same way
    assert m.evaluate(xte, np.eye(10)[yte], return_dict=True)["loss"] == pytest.approx(res["loss"], rel=1e-6)


def test_each_epoch_draws_a_fresh_shuffle(monkeypatch):
    seen = []
    m = small_mlp(n_in=4)
    orig = m.train_step

    def spy(data, check_finite=False):
        seen.append(data[0][:, 0].copy())
        return orig(data, check_finite)

    monkeypatch.setattr(m, "train_step", spy)
    x = np.arange(40, dtype=np.float32).reshape(10, 4)
    m.fit(x, np.arange(10) % 10, batch_size=10, epochs=3, verbose=0, seed=1)
    orders = [tuple(s) for s in seen]
    assert len(set(orders)) == 3 and all(sorted(o) == sorted(orders[0]) for o in orders)
    seen.clear()
    m.fit(x, np.arange(10) % 10, batch_size=10, epochs=1, shuffle=False, verbose=0)
    assert tuple(seen[0]) == tuple(x[:, 0])


def test_summary_lists_shapes_and_counts():
    m = gpudl.Sequential([layers.Dense(500, activation="relu"), layers.Dropout(0.2),
                          layers.Dense(10, activation="softmax")], input_shape=(784,))
    text = m.summary(print_fn=None)
    assert "(None, 500)" in text and "392,500" in text and "5,010" in text and "Total params: 397,510" in text


def test_mse_with_integer_labels_and_sigmoid_net():
    (xtr, ytr), _ = digits_data()
    m = gpudl.Sequential([layers.Dense(16, activation="sigmoid"), layers.Dense(10, activation="softmax")],
                         input_shape=(64,))
    m.compile("sgd", "mse", ["accuracy"])
    assert not m.fused
    h = m.fit(xtr[:200], ytr[:200], epochs=2, verbose=0)
    assert np.isfinite(h.history["loss"]).all()


def _weights_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


def test_save_load_round_trip(tmp_path):
    (xtr, ytr), (xte, yte) = digits_data()
    m = small_mlp(dropout=0.2)
    m.fit(xtr[:300], ytr[:300], epochs=1, verbose=0)
    path = tmp_path / "m.gpudl"
    m.save(path)
    m2 = gpudl.load_model(path)
    assert _weights_equal(m, m2)
    np.testing.assert_array_equal(m.predict(xte), m2.predict(xte))
    assert m2.loss == m.loss and m2.metrics == m.metrics and type(m2.optimizer) is type(m.optimizer)
    assert m2.optimizer.iterations == m.optimizer.iterations


def test_fit_two_save_load_fit_two_equals_fit_four(tmp_path):
    (xtr, ytr), _ = digits_data()
    x, y = xtr[:400], ytr[:400]
    gpudl.set_seed(5)
    a = small_mlp(dropout=0.3)
    a.fit(x, y, batch_size=32, epochs=4, verbose=0, seed=9)

    gpudl.set_seed(5)
    b = small_mlp(dropout=0.3)
    b.fit(x, y, batch_size=32, epochs=2, verbose=0, seed=9)
    b.save(tmp_path / "b.gpudl")
    gpudl.set_seed(1234)  # disturb the global generator: the file carries its own state
    c = gpudl.load_model(tmp_path / "b.gpudl")
    c.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert _weights_equal(a, c)


def test_resume_from_mid_epoch_checkpoint_is_exact(tmp_path):
    (xtr, ytr), _ = digits_data()
    x, y = xtr[:320], ytr[:320]
    gpudl.set_seed(2)
    a = small_mlp(dropout=0.3)
    a.fit(x, y, batch_size=32, epochs=3, verbose=0, seed=4)

    gpudl.set_seed(2)
    b = small_mlp(dropout=0.3)
    ck = tmp_path / "ck.gpudl"

    class Interrupt(callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            if logs["epoch"] == 1 and batch == 4:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        b.fit(x, y, batch_size=32, epochs=3, verbose=0, seed=4,
              callbacks=[callbacks.ModelCheckpoint(ck, save_freq=5), Interrupt()])
    gpudl.set_seed(99)
    c = small_mlp(dropout=0.3)
    c.fit(x, y, batch_size=32, epochs=3, verbose=0, resume_from=ck)
    assert _weights_equal(a, c)


class _Scripted(callbacks.Callback):
    """Overwrites logs with scripted val_loss values (a run whose last epoch is worse)."""

    def __init__(self, values):
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.values[epoch]


@pytest.mark.parametrize("values,patience,stops", [
    ([1.0, 0.5, 0.7, 0.9, 0.95], 1, True),    # stops early
    ([1.0, 0.5, 0.4, 0.6, 0.45], 5, False),   # runs out of epochs, last epoch worse than best
])
def test_early_stopping_restores_best_weights_in_every_path(values, patience, stops):
    (xtr, ytr), _ = digits_data()
    m = small_mlp()
    snapshots = []

    class Snap(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append(self.model.get_weights())

    es = callbacks.EarlyStopping(monitor="val_loss", patience=patience)
    h = m.fit(xtr[:200], ytr[:200], epochs=5, verbose=0, callbacks=[_Scripted(values), Snap(), es])
    best = int(np.argmin(values[:len(h.epoch)]))
    assert (es.stopped_epoch is not None) == stops
    for w, s in zip(m.get_weights(), snapshots[best]):
        np.testing.assert_array_equal(w, s)


def test_early_stopping_restores_when_another_callback_stops():
    (xtr, ytr), _ = digits_data()
    m = small_mlp()
    snaps = []

    class StopAt3(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snaps.append(self.model.get_weights())
            if epoch == 2:
                self.model.stop_training = True

    es = callbacks.EarlyStopping(monitor="val_loss", patience=10)
    m.fit(xtr[:200], ytr[:200], epochs=5, verbose=0, callbacks=[_Scripted([0.9, 0.3, 0.8, 1, 1]), StopAt3(), es])
    for w, s in zip(m.get_weights(), snaps[1]):
        np.testing.assert_array_equal(w, s)


def test_model_checkpoint_best_only_and_kept_across_resume(tmp_path):
    (xtr, ytr), _ = digits_data()
    path = tmp_path / "best.gpudl"
    m = small_mlp()
    ck = callbacks.ModelCheckpoint(path, monitor="val_loss", save_best_only=True)
    m.fit(xtr[:200], ytr[:200], epochs=3, verbose=0, callbacks=[_Scripted([0.5, 0.2, 0.9]), ck])
    assert ck.best == 0.2
    saved = path.read_bytes()
    m2 = small_mlp()
    ck2 = callbacks.ModelCheckpoint(path, monitor="val_loss", save_best_only=True)
    m2.fit(xtr[:200], ytr[:200], epochs=5, verbose=0, resume_from=path,
           callbacks=[_Scripted([9, 9, 9, 0.3, 0.4]), ck2])
    assert ck2.best == 0.2 and path.read_bytes() == saved  # 0.3 is no improvement on the stored 0.2


def test_terminate_on_nan_stops_at_that_batch_and_keeps_checkpoint(tmp_path):
    (xtr, ytr), _ = digits_data()
    x = xtr[:256].copy()
    m = small_mlp()
    path = tmp_path / "ck.gpudl"
    m.fit(x, ytr[:256], epochs=1, verbose=0, callbacks=[callbacks.ModelCheckpoint(path)])
    before_file = path.read_bytes()
    before = m.get_weights()
    # a loss that turns NaN at the 3rd batch: a huge learning rate would do it too, but
    # this is exact: corrupt one weight on the 3rd batch begin
    class Poison(callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.layers[-1].b.data[0] = np.nan
    t = callbacks.TerminateOnNaN()
    m.fit(x, ytr[:256], batch_size=32, epochs=2, verbose=0, shuffle=False,
          callbacks=[Poison(), t, callbacks.ModelCheckpoint(path)])
    assert t.terminated_at == (0, 2)
    assert path.read_bytes() == before_file
    assert np.isfinite(m.layers[0].W.data).all()  # the NaN batch's update was not applied


def test_learning_rate_scheduler():
    (xtr, ytr), _ = digits_data()
    m = small_mlp()
    seen = []
    sched = callbacks.LearningRateScheduler(lambda e, lr: 0.1 / (e + 1))

    class Rec(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(self.model.optimizer.learning_rate)

    m.fit(xtr[:100], ytr[:100], epochs=3, verbose=0, callbacks=[sched, Rec()])
    assert seen == pytest.approx([0.1, 0.05, 0.1 / 3])


def test_augmentation_from_fit():
    from gpudl.augment import RandomShiftRotate
    (xtr, ytr), (xte, yte) = digits_data()
    m = small_mlp()
    aug = RandomShiftRotate(1, 10.0, image_shape=(8, 8))
    calls = []

    def counting(xb, rng):
        out = aug(xb, rng)
        calls.append(float(np.abs(out - xb).sum()))
        return out

    m.fit(xtr, ytr, batch_size=32, epochs=3, verbose=0, augment=counting)
    assert len(calls) == 3 * int(np.ceil(len(xtr) / 32)) and min(calls) > 0  # every batch, changed
    assert m.evaluate(xte, yte, return_dict=True)["accuracy"] > 0.7  # 8x8 digits: a 1-pixel shift is a big change


def test_corrupt_model_file_raises_model_file_error(tmp_path):
    m = small_mlp()
    path = tmp_path / "m.gpudl"
    m.save(path)
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ModelFileError):
        gpudl.load_model(path)
    path.write_bytes(b"not a model at all")
    with pytest.raises(ModelFileError):
        gpudl.load_model(path)


def test_verbose_prints_epoch_lines(capsys):
    (xtr, ytr), _ = digits_data()
    m = small_mlp()
    m.fit(xtr[:64], ytr[:64], epochs=2, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 2/2" in out and "samples/s" in out and "accuracy:" in out


def test_live_progress_bar_on_a_terminal(capsys, monkeypatch):
    import sys
    (xtr, ytr), _ = digits_data()
    m = small_mlp()
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    m.fit(xtr[:640], ytr[:640], batch_size=32, epochs=1, verbose=1)
    out = capsys.readouterr().out
    assert "\r" in out and "ETA" in out and "samples/s" in out and "loss" in out
    m.fit(xtr[:64], ytr[:64], epochs=1, verbose=0)
    assert capsys.readouterr().out == ""
