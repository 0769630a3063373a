"""Callbacks against scripted logs (Keras 3's counting), then each in a real fit."""
import csv
import math
import os

import numpy as np
import pytest

import gpudl
from gpudl import callbacks, layers
from gpudl.callbacks import (CSVLogger, Callback, CallbackList, EarlyStopping, LambdaCallback,
                             ReduceLROnPlateau)


# ---------------------------------------------------------------------------------------------
# a stand-in model: its "weights" are the epoch they were set at, so a restore is readable

class StubOptimizer:
    def __init__(self, learning_rate=0.1):
        self.learning_rate = learning_rate


class StubModel:
    def __init__(self, learning_rate=0.1):
        self.optimizer = StubOptimizer(learning_rate)
        self.stop_training = False
        self.w = -1
        self.saved = []

    def get_weights(self):
        return [np.array(self.w)]

    def set_weights(self, weights):
        self.w = int(weights[0])

    def save(self, path, _checkpoint=None):
        self.saved.append((path, _checkpoint))


def drive(cb, values, monitor="val_loss", model=None, extra=None):
    """Run the epoch hooks over scripted values; returns (epochs run, model, epoch logs)."""
    model = model or StubModel()
    cbl = CallbackList([cb], model)
    cbl.on_train_begin({})
    seen = []
    try:
        for epoch, v in enumerate(values):
            model.w = epoch
            cbl.on_epoch_begin(epoch, {})
            logs = {monitor: v, **(extra or {})}
            cbl.on_epoch_end(epoch, logs)
            seen.append(logs)
            if model.stop_training:
                break
    finally:
        cbl.on_train_end({})
    return len(seen), model, seen


def digits_data():
    from gpudl.datasets import digits
    (xtr, ytr), (xte, yte) = digits.load_data()
    f = lambda a: (a.reshape(len(a), -1) / 16.0).astype(np.float32)
    return (f(xtr), ytr), (f(xte), yte)


def small_mlp(lr=1e-2):
    m = gpudl.Sequential([layers.Dense(16, activation="relu"), layers.Dense(10, activation="softmax")],
                         input_shape=(64,))
    m.compile(gpudl.optimizers.Adam(lr), "categorical_crossentropy", ["accuracy"])
    return m


class Scripted(Callback):
    """Overwrites the epoch logs' val_loss with a script (placed before the callback under test)."""

    def __init__(self, values, key="val_loss"):
        self.values, self.key = values, key

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]


# ---------------------------------------------------------------------------------------------
# Callback base and CallbackList

EPOCH_HOOKS = ["on_epoch_begin", "on_epoch_end"]
BATCH_HOOKS = ["on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end",
               "on_test_batch_begin", "on_test_batch_end", "on_predict_batch_begin", "on_predict_batch_end"]
LOGS_HOOKS = ["on_train_begin", "on_train_end", "on_test_begin", "on_test_end",
              "on_predict_begin", "on_predict_end"]


def call_hook(target, hook):
    if hook in LOGS_HOOKS:
        return getattr(target, hook)({"k": 1})
    return getattr(target, hook)(3, {"k": 1})


@pytest.mark.parametrize("hook", EPOCH_HOOKS + BATCH_HOOKS + LOGS_HOOKS)
def test_callback_base_has_every_keras_hook(hook):
    assert call_hook(Callback(), hook) is None


def test_train_batch_hooks_default_to_the_old_names():
    got = []

    class Old(Callback):
        def on_batch_begin(self, batch, logs=None):
            got.append(("begin", batch))

        def on_batch_end(self, batch, logs=None):
            got.append(("end", batch))

    Old().on_train_batch_begin(4, {})
    Old().on_train_batch_end(4, {})
    Old().on_test_batch_end(4, {})  # a test batch is not a training batch
    assert got == [("begin", 4), ("end", 4)]


class Recorder(Callback):
    def __init__(self):
        self.calls = []


for _h in EPOCH_HOOKS + BATCH_HOOKS + LOGS_HOOKS:
    if _h in ("on_batch_begin", "on_batch_end"):
        continue  # left to the default aliases, as most callbacks do
    setattr(Recorder, _h, (lambda name: lambda self, *a: self.calls.append((name, a)))(_h))


def test_callback_list_forwards_every_hook():
    r = Recorder()
    cbl = CallbackList([r], StubModel())
    for hook in EPOCH_HOOKS + BATCH_HOOKS + LOGS_HOOKS:
        call_hook(cbl, hook)
    names = [c[0] for c in r.calls]
    # on_batch_* is the same event as on_train_batch_*: it reaches the train-batch hook
    expected = [h for h in EPOCH_HOOKS + BATCH_HOOKS + LOGS_HOOKS]
    expected = [{"on_batch_begin": "on_train_batch_begin", "on_batch_end": "on_train_batch_end"}.get(h, h)
                for h in expected]
    assert names == expected
    assert r.calls[0] == ("on_epoch_begin", (3, {"k": 1}))
    assert ("on_train_begin", ({"k": 1},)) in r.calls


def test_a_batch_reaches_each_callback_once_whichever_name_it_overrides():
    counts = {"old": 0, "new": 0}

    class Old(Callback):
        def on_batch_end(self, batch, logs=None):
            counts["old"] += 1

    class New(Callback):
        def on_train_batch_end(self, batch, logs=None):
            counts["new"] += 1

    cbl = CallbackList([Old(), New()], StubModel())
    cbl.on_batch_end(0, {})        # the name gpudl's fit calls today
    cbl.on_train_batch_end(1, {})  # the Keras trainer's name
    assert counts == {"old": 2, "new": 2}


def test_set_params_and_set_model():
    a, b = Callback(), Callback()
    model = StubModel()
    cbl = CallbackList([a], model, epochs=3, steps=7, verbose=0)
    assert a.model is model and a.params == {"epochs": 3, "steps": 7, "verbose": 0}
    cbl.append(b)
    assert b.model is model and b.params == a.params
    other = StubModel()
    cbl.set_model(other)
    cbl.set_params({"epochs": 5, "steps": 1, "verbose": 2})
    assert a.model is other and b.params["epochs"] == 5
    assert Callback().params is None


def test_callback_list_refuses_other_objects():
    with pytest.raises(TypeError, match="Callback objects, got function"):
        CallbackList([lambda: None], StubModel())


# ---------------------------------------------------------------------------------------------
# EarlyStopping

IMPROVES_ONCE = [1.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2]


@pytest.mark.parametrize("patience,epochs_run", [(1, 3), (2, 4), (3, 5)])
def test_early_stopping_stops_after_patience_epochs_without_improvement(patience, epochs_run):
    # best at epoch 2 (1-based), then never: patience p stops at epoch 2 + p, as Keras does
    es = EarlyStopping(patience=patience)
    ran, model, _ = drive(es, IMPROVES_ONCE)
    assert ran == epochs_run and es.stopped_epoch == epochs_run - 1 and model.stop_training
    assert es.best == 0.5 and es.best_epoch == 1 and model.w == 1


@pytest.mark.parametrize("patience", [0, 1, 2, 3])
def test_early_stopping_matches_keras_patience_test(patience):
    # keras/src/callbacks/early_stopping_test.py: stopped_epoch == max(patience, 1) + 2
    es = EarlyStopping(monitor="loss", patience=patience)
    drive(es, [10.0, 9.0, 8.0, 9.0, 8.9, 8.8, 8.7, 8.6, 8.5], monitor="loss")
    assert es.stopped_epoch == max(patience, 1) + 2


def test_early_stopping_restores_best_weights_keras_case():
    es = EarlyStopping(patience=2)  # restore_best_weights=True is gpudl's default
    ran, model, _ = drive(es, [0.2, 0.15, 0.1, 0.11, 0.12])
    assert ran == 5 and es.stopped_epoch == 4 and model.w == 2


def test_early_stopping_without_restore_keeps_last_weights():
    es = EarlyStopping(patience=1, restore_best_weights=False)
    ran, model, _ = drive(es, IMPROVES_ONCE)
    assert ran == 3 and model.w == 2 and es.best_weights is None


def test_early_stopping_baseline_never_beaten():
    # Keras: no epoch beats the baseline -> stop after patience epochs, restore the best of them
    es = EarlyStopping(patience=5, baseline=0.5)
    ran, model, _ = drive(es, [0.9, 0.8, 0.7, 0.71, 0.72, 0.73, 0.74])
    assert ran == 5 and model.w == 2


def test_early_stopping_baseline_beaten_resets_the_wait():
    es = EarlyStopping(patience=2, baseline=0.5)
    ran, model, _ = drive(es, [0.9, 0.4, 0.45, 0.46, 0.47])
    assert ran == 4 and es.stopped_epoch == 3 and model.w == 1


def test_early_stopping_baseline_keeps_going_while_the_best_improves():
    # Keras 3's code: an improvement on the best returns before the patience check, even
    # above the baseline; wait still grows, so the first stall past patience stops
    es = EarlyStopping(patience=2, baseline=0.1)
    ran, model, _ = drive(es, [0.9, 0.8, 0.7, 0.6, 0.65, 0.5])
    assert ran == 5 and es.stopped_epoch == 4 and model.w == 3


def test_early_stopping_another_callback_stops_and_best_is_restored():
    es = EarlyStopping(patience=5, baseline=0.5)
    model = StubModel()

    class StopAt3(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 3:
                self.model.stop_training = True

    cbl = CallbackList([es, StopAt3()], model)
    cbl.on_train_begin({})
    for epoch, v in enumerate([0.9, 0.8, 0.7, 0.71, 0.72, 0.73]):
        model.w = epoch
        cbl.on_epoch_end(epoch, {"val_loss": v})
        if model.stop_training:
            break
    cbl.on_train_end({})
    assert epoch == 3 and model.w == 2 and es.stopped_epoch is None


def test_early_stopping_start_from_epoch_ignores_the_warm_up():
    es = EarlyStopping(patience=1, start_from_epoch=3)
    ran, model, _ = drive(es, [0.1, 0.2, 0.3, 1.0, 0.9, 0.95, 0.96])
    assert ran == 6 and es.stopped_epoch == 5 and es.best == 0.9 and model.w == 4


def test_early_stopping_patience_zero_with_start_from_epoch():
    es = EarlyStopping(patience=0, start_from_epoch=2)
    ran, _, _ = drive(es, [5.0, 6.0, 7.0, 8.0, 9.0])
    assert ran == 4  # epoch 3 sets the best, epoch 4 does not improve


def test_early_stopping_min_delta_is_absolute():
    es = EarlyStopping(patience=2, min_delta=0.1)
    ran, model, _ = drive(es, [1.0, 0.95, 0.91, 0.85, 0.5])
    assert ran == 3 and model.w == 0  # 0.95 and 0.91 are not better by more than 0.1


def test_early_stopping_max_mode_for_accuracy():
    es = EarlyStopping(monitor="val_accuracy", patience=1)
    ran, model, _ = drive(es, [0.5, 0.8, 0.7, 0.9], monitor="val_accuracy")
    assert es.mode == "max" and ran == 3 and model.w == 1


def test_early_stopping_reads_device_scalars():
    es = EarlyStopping(patience=1)
    ran, model, _ = drive(es, [np.array(1.0), np.float32(0.5), np.array(0.7, dtype=np.float32)])
    assert ran == 3 and model.w == 1 and isinstance(es.best, float)


def test_early_stopping_state_resets_across_fits():
    es = EarlyStopping(patience=1)
    drive(es, IMPROVES_ONCE)
    ran, _, _ = drive(es, [3.0, 2.0, 1.0, 2.0])
    assert ran == 4 and es.best == 1.0 and es.stopped_epoch == 3


def test_early_stopping_missing_monitor_is_an_error():
    es = EarlyStopping(monitor="val_loss")
    with pytest.raises(ValueError, match="monitors 'val_loss', which is not among the logged values"):
        drive(es, [1.0], monitor="loss")


@pytest.mark.parametrize("kwargs,pattern", [
    ({"patience": -1}, "non-negative integer patience"),
    ({"patience": 1.5}, "non-negative integer patience"),
    ({"min_delta": -0.1}, "min_delta >= 0"),
    ({"baseline": float("nan")}, "baseline None or a finite number"),
    ({"baseline": "low"}, "baseline None or a finite number"),
    ({"start_from_epoch": -2}, "non-negative integer start_from_epoch"),
    ({"mode": "up"}, "mode must be"),
])
def test_early_stopping_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        EarlyStopping(**kwargs)


def test_early_stopping_verbose(capsys):
    drive(EarlyStopping(patience=1, verbose=1), IMPROVES_ONCE)
    err = capsys.readouterr().err
    assert "Epoch 3: early stopping" in err and "best epoch, 2" in err


def test_early_stopping_in_fit_stops_after_patience_and_restores():
    (xtr, ytr), _ = digits_data()
    m = small_mlp()
    snaps = []

    class Snap(Callback):
        def on_epoch_end(self, epoch, logs=None):
            snaps.append(m.get_weights())

    es = EarlyStopping(patience=2)
    h = m.fit(xtr[:200], ytr[:200], epochs=10, verbose=0,
              callbacks=[Scripted([1.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1, 1, 1]), Snap(), es])
    assert len(h.epoch) == 4 and es.stopped_epoch == 3
    for w, s in zip(m.get_weights(), snaps[1]):
        np.testing.assert_array_equal(w, s)


# ---------------------------------------------------------------------------------------------
# ReduceLROnPlateau

def lrs(seen):
    return [logs["learning_rate"] for logs in seen]


def test_reduce_lr_after_patience_epochs_and_logs_the_rate():
    cb = ReduceLROnPlateau(patience=3, factor=0.1)
    _, model, seen = drive(cb, [1.0] * 8, model=StubModel(0.1))
    # e0 sets the best; e1..e3 wait 1..3 -> reduce at e3; again at e6
    assert lrs(seen) == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001])
    assert model.optimizer.learning_rate == pytest.approx(0.001)
    assert isinstance(model.optimizer.learning_rate, float)


def test_reduce_lr_cooldown_keras_case():
    # keras reduce_lr_on_plateau_test: patience 1, cooldown 2, 4 epochs -> reduced twice
    cb = ReduceLROnPlateau(patience=1, factor=0.1, min_delta=100, cooldown=2)
    _, model, seen = drive(cb, [1.0, 0.9, 0.8, 0.7])
    assert model.optimizer.learning_rate == pytest.approx(0.001)
    assert lrs(seen) == pytest.approx([0.1, 0.1, 0.01, 0.01])


def test_reduce_lr_honors_min_lr():
    cb = ReduceLROnPlateau(patience=1, factor=0.1, min_delta=10, min_lr=0.005)
    _, model, _ = drive(cb, [1.0, 1.0, 1.0, 1.0])
    assert model.optimizer.learning_rate == 0.005


def test_reduce_lr_min_delta_is_absolute():
    cb = ReduceLROnPlateau(patience=1, factor=0.5, min_delta=1e-4)
    _, model, seen = drive(cb, [1.0, 1.0 - 5e-5, 0.5])
    # 0.99995 is not better than 1.0 by more than 1e-4 -> reduce at e1; 0.5 is an improvement
    assert lrs(seen) == pytest.approx([0.1, 0.1, 0.05]) and model.optimizer.learning_rate == 0.05
    assert cb.best == 0.5 and cb.wait == 0


def test_reduce_lr_improvement_resets_wait():
    cb = ReduceLROnPlateau(patience=2, factor=0.5)
    _, model, _ = drive(cb, [1.0, 1.0, 0.9, 0.9, 0.8, 0.8])
    assert model.optimizer.learning_rate == 0.1 and cb.wait == 1


def test_reduce_lr_max_mode():
    cb = ReduceLROnPlateau(monitor="val_accuracy", patience=1, factor=0.5)
    _, model, _ = drive(cb, [0.5, 0.6, 0.6], monitor="val_accuracy")
    assert cb.mode == "max" and model.optimizer.learning_rate == 0.05


def test_reduce_lr_state_resets_across_fits():
    cb = ReduceLROnPlateau(patience=1, cooldown=2, min_delta=0)
    cb.set_model(StubModel())
    cb.on_train_begin()
    cb.best, cb.wait, cb.cooldown_counter = 0.5, 3, 2
    cb.on_train_begin()
    assert cb.best is None and cb.wait == 0 and cb.cooldown_counter == 0


def test_reduce_lr_factor_must_be_below_one():
    with pytest.raises(ValueError, match="does not support a factor >= 1.0"):
        ReduceLROnPlateau(factor=1.0)


@pytest.mark.parametrize("kwargs,pattern", [
    ({"factor": 0.0}, "factor in \\(0, 1\\)"),
    ({"factor": float("nan")}, "a number factor"),
    ({"patience": -1}, "non-negative integer patience"),
    ({"cooldown": 0.5}, "non-negative integer cooldown"),
    ({"min_lr": -1.0}, "min_lr >= 0"),
    ({"min_delta": -1.0}, "min_delta >= 0"),
])
def test_reduce_lr_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        ReduceLROnPlateau(**kwargs)


class FakeSchedule:
    def __call__(self, step):
        return 0.1


class ScheduledOptimizer:
    """As an optimizer built on a schedule: the rate is not settable."""

    def __init__(self, reads_as_float):
        self.reads_as_float = reads_as_float

    @property
    def learning_rate(self):
        return 0.1 if self.reads_as_float else FakeSchedule()

    @learning_rate.setter
    def learning_rate(self, value):
        raise TypeError("this optimizer was created with a schedule")


def test_reduce_lr_refuses_a_schedule_at_train_begin():
    model = StubModel()
    model.optimizer = ScheduledOptimizer(reads_as_float=False)
    with pytest.raises(TypeError, match="ReduceLROnPlateau needs a float learning rate.*FakeSchedule"):
        drive(ReduceLROnPlateau(patience=0), [1.0, 1.0], model=model)


def test_reduce_lr_refuses_a_schedule_when_setting():
    model = StubModel()
    model.optimizer = ScheduledOptimizer(reads_as_float=True)
    with pytest.raises(TypeError, match="ReduceLROnPlateau needs a float learning rate") as info:
        drive(ReduceLROnPlateau(patience=0), [1.0, 1.0], model=model)
    assert isinstance(info.value.__cause__, TypeError)


def test_reduce_lr_verbose(capsys):
    drive(ReduceLROnPlateau(patience=1, factor=0.5, verbose=1), [1.0, 1.0])
    assert "Epoch 2: ReduceLROnPlateau reducing learning rate to 0.05." in capsys.readouterr().err


def test_reduce_lr_in_fit():
    (xtr, ytr), _ = digits_data()
    m = small_mlp(lr=1e-2)
    seen = []
    rec = LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(logs["learning_rate"]))
    cb = ReduceLROnPlateau(monitor="loss", patience=1, factor=0.5, min_delta=1e9)
    m.fit(xtr[:200], ytr[:200], epochs=3, verbose=0, callbacks=[cb, rec])
    assert seen == pytest.approx([1e-2, 1e-2, 5e-3])
    assert m.optimizer.learning_rate == pytest.approx(2.5e-3)


# ---------------------------------------------------------------------------------------------
# CSVLogger

def read_rows(path, sep=","):
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=sep))


def log_epochs(cb, rows, model=None):
    model = model or StubModel()
    cbl = CallbackList([cb], model)
    cbl.on_train_begin({})
    for epoch, logs in enumerate(rows):
        cbl.on_epoch_end(epoch, dict(logs))
    cbl.on_train_end({})


def test_csv_logger_columns_and_values(tmp_path):
    path = tmp_path / "log.csv"
    log_epochs(CSVLogger(path), [
        {"val_loss": 0.25, "loss": 0.5, "accuracy": 1},
        {"val_loss": float("nan"), "loss": np.array(0.125), "accuracy": np.float32(0.5)},
    ])
    rows = read_rows(path)
    assert rows[0] == ["epoch", "accuracy", "loss", "val_loss"]
    assert rows[1] == ["0", "1.0", "0.5", "0.25"]
    assert rows[2] == ["1", "0.5", "0.125", "nan"]
    assert path.read_bytes().endswith(b"\r\n")  # excel dialect rows, as Keras writes them


def test_csv_logger_adds_val_columns_and_na_as_keras(tmp_path):
    path = tmp_path / "log.csv"
    log_epochs(CSVLogger(path), [{"loss": 1.0}, {"loss": 0.5, "val_loss": 0.75}])
    assert read_rows(path) == [["epoch", "loss", "val_loss"], ["0", "1.0", "NA"], ["1", "0.5", "0.75"]]


def test_csv_logger_separator(tmp_path):
    path = tmp_path / "log.tsv"
    log_epochs(CSVLogger(path, separator="\t"), [{"loss": 1.0, "val_loss": 2.0}])
    assert path.read_text().splitlines()[0] == "epoch\tloss\tval_loss"


def test_csv_logger_append_keeps_header_and_rows(tmp_path):
    path = tmp_path / "log.csv"
    log_epochs(CSVLogger(path), [{"loss": 1.0, "val_loss": 2.0}, {"loss": 0.9, "val_loss": 1.9}])
    log_epochs(CSVLogger(path, append=True), [{"loss": 0.8, "val_loss": 1.8}])
    rows = read_rows(path)
    assert rows == [["epoch", "loss", "val_loss"], ["0", "1.0", "2.0"], ["1", "0.9", "1.9"], ["0", "0.8", "1.8"]]


def test_csv_logger_append_follows_the_existing_header(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("epoch,val_loss,loss\r\n0,2.0,1.0\r\n")
    with pytest.warns(UserWarning, match="no column for \\['accuracy'\\]"):
        log_epochs(CSVLogger(path, append=True), [{"loss": 0.8, "val_loss": 1.8, "accuracy": 0.5},
                                                  {"loss": 0.7, "accuracy": 0.6}])
    assert read_rows(path) == [["epoch", "val_loss", "loss"], ["0", "2.0", "1.0"],
                               ["0", "1.8", "0.8"], ["1", "NA", "0.7"]]


def test_csv_logger_append_ends_an_unterminated_last_row(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("epoch,loss\n0,1.0")
    log_epochs(CSVLogger(path, append=True), [{"loss": 0.5}])
    assert read_rows(path) == [["epoch", "loss"], ["0", "1.0"], ["0", "0.5"]]


def test_csv_logger_append_to_a_missing_file_writes_the_header(tmp_path):
    path = tmp_path / "new.csv"
    log_epochs(CSVLogger(path, append=True), [{"loss": 0.5, "val_loss": 1.0}])
    assert read_rows(path)[0] == ["epoch", "loss", "val_loss"]


def test_csv_logger_without_append_starts_over(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("old,stuff\n1,2\n")
    cb = CSVLogger(path)
    cb.set_model(StubModel())
    cb.on_train_begin({})
    assert path.read_text() == ""  # Keras opens the file with mode "w" at train begin
    cb.on_epoch_end(0, {"loss": 0.5, "val_loss": 1.0})
    assert read_rows(path) == [["epoch", "loss", "val_loss"], ["0", "0.5", "1.0"]]


def _two_good_epochs(path):
    cb = CSVLogger(path)
    cb.set_model(StubModel())
    cb.on_train_begin({})
    cb.on_epoch_end(0, {"loss": 1.0, "val_loss": 2.0})
    cb.on_epoch_end(1, {"loss": 0.5, "val_loss": 1.5})
    return cb, path.read_bytes()


GOOD_ROWS = [["epoch", "loss", "val_loss"], ["0", "1.0", "2.0"], ["1", "0.5", "1.5"]]


def test_csv_logger_killed_at_replace_keeps_the_earlier_rows(tmp_path, monkeypatch):
    path = tmp_path / "log.csv"
    cb, before = _two_good_epochs(path)

    def killed(src, dst):
        raise KeyboardInterrupt("killed before the rename")

    with monkeypatch.context() as mp:
        mp.setattr(os, "replace", killed)
        with pytest.raises(KeyboardInterrupt):
            cb.on_epoch_end(2, {"loss": 0.25, "val_loss": 1.25})
    assert path.read_bytes() == before and read_rows(path) == GOOD_ROWS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv"]  # no temp file left
    cb.on_epoch_end(2, {"loss": 0.25, "val_loss": 1.25})  # the next epoch writes the whole file
    assert read_rows(path) == GOOD_ROWS + [["2", "0.25", "1.25"]]


def test_csv_logger_killed_mid_write_keeps_the_earlier_rows(tmp_path, monkeypatch):
    path = tmp_path / "log.csv"
    cb, before = _two_good_epochs(path)
    real_write = os.write

    def torn(fd, data):
        real_write(fd, bytes(data[: len(data) // 2]))  # half of it reaches the disk
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as mp:
        mp.setattr(os, "write", torn)
        with pytest.raises(OSError, match="No space left"):
            cb.on_epoch_end(2, {"loss": 0.25, "val_loss": 1.25})
    assert path.read_bytes() == before and read_rows(path) == GOOD_ROWS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv"]


def test_csv_logger_short_writes_are_completed(tmp_path, monkeypatch):
    path = tmp_path / "log.csv"
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:3])))
    log_epochs(CSVLogger(path), [{"loss": 1.0, "val_loss": 2.0}, {"loss": 0.5, "val_loss": 1.5}])
    monkeypatch.undo()
    assert read_rows(path) == GOOD_ROWS


def test_csv_logger_sweeps_temp_files_of_a_killed_writer(tmp_path):
    path = tmp_path / "log.csv"
    stale = tmp_path / ".log.csv.tmp-999999999-0123456789ab"  # no such process
    stale.write_text("epoch,lo")
    log_epochs(CSVLogger(path), [{"loss": 1.0, "val_loss": 2.0}])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv"]


def test_csv_logger_in_fit(tmp_path):
    (xtr, ytr), _ = digits_data()
    path = tmp_path / "train.csv"
    m = small_mlp()
    h = m.fit(xtr[:300], ytr[:300], epochs=3, validation_split=0.2, verbose=0, callbacks=[CSVLogger(path)])
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert [float(r[key]) for r in rows] == h.history[key]  # str(float) reads back exactly


# ---------------------------------------------------------------------------------------------
# LambdaCallback

def test_lambda_callback_signatures():
    got = []
    cb = LambdaCallback(
        on_epoch_begin=lambda epoch, logs: got.append(("epoch_begin", epoch, logs)),
        on_epoch_end=lambda epoch, logs: got.append(("epoch_end", epoch, logs)),
        on_batch_begin=lambda batch, logs: got.append(("batch_begin", batch, logs)),
        on_batch_end=lambda batch, logs: got.append(("batch_end", batch, logs)),
        on_train_begin=lambda logs: got.append(("train_begin", logs)),
        on_train_end=lambda logs: got.append(("train_end", logs)),
        on_test_end=lambda logs: got.append(("test_end", logs)),
    )
    cbl = CallbackList([cb], StubModel())
    cbl.on_train_begin({"a": 1})
    cbl.on_epoch_begin(0, {})
    cbl.on_train_batch_begin(0, {})
    cbl.on_train_batch_end(0, {"loss": 1.0})
    cbl.on_batch_end(1, {"loss": 2.0})
    cbl.on_epoch_end(0, {"loss": 1.5})
    cbl.on_test_end({"loss": 3.0})
    cbl.on_train_end({})
    assert got == [("train_begin", {"a": 1}), ("epoch_begin", 0, {}), ("batch_begin", 0, {}),
                   ("batch_end", 0, {"loss": 1.0}), ("batch_end", 1, {"loss": 2.0}),
                   ("epoch_end", 0, {"loss": 1.5}), ("test_end", {"loss": 3.0}), ("train_end", {})]


def test_lambda_callback_train_batch_names_take_precedence():
    got = []
    cb = LambdaCallback(on_train_batch_end=lambda batch, logs: got.append(("train", batch)),
                        on_batch_end=lambda batch, logs: got.append(("old", batch)))
    CallbackList([cb], StubModel()).on_train_batch_end(2, {})
    assert got == [("train", 2)]  # as Keras: the override replaces the alias


def test_lambda_callback_bad_arguments():
    with pytest.raises(TypeError, match="callable on_epoch_end"):
        LambdaCallback(on_epoch_end=3)
    with pytest.raises(TypeError, match="unknown hook 'on_epoch_finish'"):
        LambdaCallback(on_epoch_finish=lambda e, l: None)


def test_lambda_callback_in_fit():
    (xtr, ytr), _ = digits_data()
    m = small_mlp()
    events = {"train_begin": 0, "train_end": 0, "epochs": [], "batches": 0, "losses": []}
    cb = LambdaCallback(
        on_train_begin=lambda logs: events.__setitem__("train_begin", events["train_begin"] + 1),
        on_epoch_end=lambda epoch, logs: events["epochs"].append(epoch),
        on_batch_end=lambda batch, logs: (events.__setitem__("batches", events["batches"] + 1),
                                          events["losses"].append(float(logs["loss"]))),
        on_train_end=lambda logs: events.__setitem__("train_end", events["train_end"] + 1),
    )
    m.fit(xtr[:100], ytr[:100], batch_size=25, epochs=2, verbose=0, callbacks=[cb])
    assert events["train_begin"] == 1 and events["train_end"] == 1
    assert events["epochs"] == [0, 1] and events["batches"] == 8
    assert all(math.isfinite(v) for v in events["losses"])


# ---------------------------------------------------------------------------------------------
# the existing callbacks with device-scalar batch logs

def test_terminate_on_nan_reads_0d_arrays(capsys):
    t = callbacks.TerminateOnNaN()
    model = StubModel()
    cbl = CallbackList([t], model)
    cbl.on_train_batch_end(0, {"loss": np.array(1.0, dtype=np.float32), "epoch": 0})
    assert not model.stop_training
    cbl.on_train_batch_end(1, {"loss": np.array(np.nan, dtype=np.float32), "epoch": 2})
    assert model.stop_training and t.terminated_at == (2, 1)
    assert "invalid loss nan" in capsys.readouterr().err


def test_model_checkpoint_batch_saves_read_0d_arrays():
    model = StubModel()
    ck = callbacks.ModelCheckpoint("ck.gpudl", save_freq=2)
    cbl = CallbackList([ck], model)
    for b, loss in enumerate([1.0, 0.9, 0.8, np.nan]):
        cbl.on_train_batch_end(b, {"loss": np.array(loss, dtype=np.float32)})
    assert len(model.saved) == 1  # batch 2 saved, batch 4's NaN loss is not


def test_model_checkpoint_best_only_reads_0d_arrays():
    model = StubModel()
    ck = callbacks.ModelCheckpoint("ck.gpudl", save_best_only=True)
    drive(ck, [np.array(0.5), np.float32(0.7), np.array(0.25)], model=model)
    assert len(model.saved) == 2 and ck.best == 0.25 and isinstance(ck.best, float)


def test_learning_rate_scheduler_refuses_a_schedule():
    model = StubModel()
    model.optimizer = ScheduledOptimizer(reads_as_float=False)
    cb = callbacks.LearningRateScheduler(lambda e, lr: lr)
    cb.set_model(model)
    with pytest.raises(TypeError, match="LearningRateScheduler needs a float learning rate"):
        cb.on_epoch_begin(0, {})


def test_learning_rate_scheduler_accepts_numpy_floats():
    model = StubModel()
    cb = callbacks.LearningRateScheduler(lambda e, lr: np.float32(0.5) * lr)
    cb.set_model(model)
    cb.on_epoch_begin(0, {})
    assert model.optimizer.learning_rate == pytest.approx(0.05) and type(model.optimizer.learning_rate) is float
