"""Training callbacks (Keras 3 names and counting): History, EarlyStopping, ModelCheckpoint,
TerminateOnNaN, LearningRateScheduler, ReduceLROnPlateau, CSVLogger, LambdaCallback.

Batch logs may hold 0-d device arrays (the loss on the GPU, left unread so a step does not
wait for the device); a callback that needs the number calls ``float(v)`` and so chooses to
synchronize. Epoch logs are read the same way, so either kind works everywhere.
"""
from __future__ import annotations

import csv
import io
import math
import numbers
import os
import sys
import warnings

import numpy as np

from .io import _remove_stale_temps, write_atomically  # the model file's atomic save

__all__ = ["Callback", "History", "EarlyStopping", "ModelCheckpoint", "TerminateOnNaN",
           "LearningRateScheduler", "ReduceLROnPlateau", "CSVLogger", "LambdaCallback",
           "CallbackList"]

# every hook a callback can receive, with its arguments (Keras's Callback)
_EPOCH_HOOKS = ("on_epoch_begin", "on_epoch_end")
_BATCH_HOOKS = ("on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end",
                "on_test_batch_begin", "on_test_batch_end", "on_predict_batch_begin",
                "on_predict_batch_end")
_LOGS_HOOKS = ("on_train_begin", "on_train_end", "on_test_begin", "on_test_end",
               "on_predict_begin", "on_predict_end")
_HOOKS = _EPOCH_HOOKS + _BATCH_HOOKS + _LOGS_HOOKS


class Callback:
    """Hooks called by ``fit`` / ``evaluate`` / ``predict``.

    ``self.model`` is set before training starts; ``self.params`` (``epochs``, ``steps``,
    ``verbose``) when the trainer passes them. As in Keras, ``on_train_batch_begin`` /
    ``on_train_batch_end`` call the older names ``on_batch_begin`` / ``on_batch_end`` unless
    overridden, so a callback written against either name sees each training batch once.
    """

    model = None
    params = None

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_batch_begin(self, batch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs)  # Keras: the old name is the default

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs)

    def on_test_begin(self, logs=None): ...
    def on_test_end(self, logs=None): ...
    def on_test_batch_begin(self, batch, logs=None): ...
    def on_test_batch_end(self, batch, logs=None): ...
    def on_predict_begin(self, logs=None): ...
    def on_predict_end(self, logs=None): ...
    def on_predict_batch_begin(self, batch, logs=None): ...
    def on_predict_batch_end(self, batch, logs=None): ...


class CallbackList(Callback):
    """Calls one hook on every callback, in order, with the same ``logs`` dict.

    ``on_batch_begin`` / ``on_batch_end`` here are the same event as ``on_train_batch_begin``
    / ``on_train_batch_end``: each reaches a callback through its ``on_train_batch_*`` (whose
    default is its ``on_batch_*``), which is how a Keras trainer delivers a batch. A loop calls
    one of the two names per batch, never both.
    """

    def __init__(self, callbacks=None, model=None, **params):
        self.callbacks = []
        self.model = model
        self.params = params or None
        for cb in callbacks or []:
            self.append(cb)

    def append(self, cb):
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be gpudl.callbacks.Callback objects, got {type(cb).__name__}")
        if self.model is not None:
            cb.set_model(self.model)
        if self.params:
            cb.set_params(self.params)
        self.callbacks.append(cb)

    def set_model(self, model):
        self.model = model
        for cb in self.callbacks:
            cb.set_model(model)

    def set_params(self, params):
        self.params = params
        if params:
            for cb in self.callbacks:
                cb.set_params(params)

    def _call(self, hook, *args):
        for cb in self.callbacks:
            getattr(cb, hook)(*args)

    # positional calls: a LambdaCallback function may name its arguments as it likes
    def on_train_begin(self, logs=None): self._call("on_train_begin", logs)
    def on_train_end(self, logs=None): self._call("on_train_end", logs)
    def on_epoch_begin(self, epoch, logs=None): self._call("on_epoch_begin", epoch, logs)
    def on_epoch_end(self, epoch, logs=None): self._call("on_epoch_end", epoch, logs)
    def on_batch_begin(self, batch, logs=None): self._call("on_train_batch_begin", batch, logs)
    def on_batch_end(self, batch, logs=None): self._call("on_train_batch_end", batch, logs)
    def on_train_batch_begin(self, batch, logs=None): self._call("on_train_batch_begin", batch, logs)
    def on_train_batch_end(self, batch, logs=None): self._call("on_train_batch_end", batch, logs)
    def on_test_begin(self, logs=None): self._call("on_test_begin", logs)
    def on_test_end(self, logs=None): self._call("on_test_end", logs)
    def on_test_batch_begin(self, batch, logs=None): self._call("on_test_batch_begin", batch, logs)
    def on_test_batch_end(self, batch, logs=None): self._call("on_test_batch_end", batch, logs)
    def on_predict_begin(self, logs=None): self._call("on_predict_begin", logs)
    def on_predict_end(self, logs=None): self._call("on_predict_end", logs)
    def on_predict_batch_begin(self, batch, logs=None): self._call("on_predict_batch_begin", batch, logs)
    def on_predict_batch_end(self, batch, logs=None): self._call("on_predict_batch_end", batch, logs)


class History(Callback):
    """Per-epoch logs: ``history.history["loss"]``, ``history.epoch``."""

    def __init__(self):
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


# ---------------------------------------------------------------------------------------------
# argument checks and the monitored quantity, shared by the monitoring callbacks

def _mode_for(monitor, mode):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        mode = "max" if ("acc" in monitor or monitor.endswith("auc")) else "min"
    return mode


def _is_real(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _count(cls, arg, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
        raise ValueError(f"{cls} expected a non-negative integer {arg}, got {v!r}")
    return int(v)


def _min_delta(cls, v):
    if not _is_real(v) or not math.isfinite(v) or v < 0:
        raise ValueError(f"{cls} expected min_delta >= 0, got {v!r}")
    return float(v)


def _monitored(cls, monitor, logs):
    """The monitored value as a float; a missing one is a configuration error, said once."""
    logs = logs or {}
    if monitor not in logs:
        raise ValueError(f"{cls} monitors {monitor!r}, which is not among the logged values "
                         f"{sorted(logs)}: pass validation data or monitor 'loss'")
    return float(logs[monitor])  # a 0-d device array is read here, once per epoch


def _improved(mode, min_delta, value, reference):
    # Keras 3 MonitorCallback._is_improvement: op(value - delta, reference), with delta
    # negated for 'min'; written the same way so the float rounding is the same too
    if reference is None:
        return True
    if mode == "min":
        return value + min_delta < reference
    return value - min_delta > reference


def _writes() -> bool:
    """False on a rank > 0 of a distributed fit: messages and files are rank 0's alone (every
    rank still makes the same decisions, from the same logs)."""
    from . import distributed
    return distributed.is_writer()


def _say(msg):
    if _writes():
        print(msg, file=sys.stderr)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    Counting is Keras 3's: every monitored epoch adds one to ``wait``, an improvement resets
    it to 0, and training stops at the first epoch that does not improve once ``wait >=
    patience``. A loss best at epoch 2 then never better stops after 2 + patience epochs.

    ``baseline``: an improvement on the best so far that does not also beat the baseline does
    not reset ``wait``, so training stops if the baseline is not beaten within ``patience``
    epochs. ``start_from_epoch``: epochs before it are not monitored (a warm-up).

    With ``restore_best_weights`` (gpudl's default, Keras's is False) the best epoch's weights
    are put back whenever training ends: stopped early, run out of epochs, or stopped by
    another callback; as in Keras, also when no epoch beat the baseline.
    """

    def __init__(self, monitor="val_loss", patience=0, min_delta=0.0, restore_best_weights=True,
                 mode="auto", verbose=0, baseline=None, start_from_epoch=0):
        self.patience = _count("EarlyStopping", "patience", patience)
        self.min_delta = _min_delta("EarlyStopping", min_delta)
        if baseline is not None and (not _is_real(baseline) or not math.isfinite(baseline)):
            raise ValueError(f"EarlyStopping expected baseline None or a finite number, got {baseline!r}")
        self.baseline = None if baseline is None else float(baseline)
        self.start_from_epoch = _count("EarlyStopping", "start_from_epoch", start_from_epoch)
        self.monitor = monitor
        self.restore_best_weights = bool(restore_best_weights)
        self.mode = _mode_for(monitor, mode)
        self.verbose = verbose
        self._reset()

    def _reset(self):
        self.wait = 0
        self.best = None
        self.best_epoch = None
        self.best_weights = None
        self.stopped_epoch = None

    def on_train_begin(self, logs=None):
        self._reset()  # one instance serves several fit() calls

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored("EarlyStopping", self.monitor, logs)
        if epoch < self.start_from_epoch:
            return
        # Keras also snapshots the weights here when none are kept yet; the first monitored
        # epoch always improves on best=None below, so that copy is the same one
        self.wait += 1
        if _improved(self.mode, self.min_delta, current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or _improved(self.mode, self.min_delta, current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch is not None and self.verbose:
            _say(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
            if self.verbose:
                _say(f"EarlyStopping: restored the weights of the end of the best epoch, "
                     f"{self.best_epoch + 1} ({self.monitor} = {self.best:.4g})")


class ModelCheckpoint(Callback):
    """Save the model (weights, optimizer, training position, RNG state) after each epoch.

    With ``save_best_only`` only an improvement of ``monitor`` is saved; the best value is
    stored in the file, so a run resumed from it keeps comparing against it.
    """

    def __init__(self, path, monitor="val_loss", save_best_only=False, mode="auto", verbose=0,
                 save_freq="epoch"):
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1):
            raise ValueError(f"ModelCheckpoint expected save_freq 'epoch' or a positive number of batches, "
                             f"got {save_freq!r}")
        self.save_freq = save_freq
        self.path = str(path)
        self.monitor, self.save_best_only = monitor, bool(save_best_only)
        self.mode = _mode_for(monitor, mode)
        self.verbose = verbose
        self.best = None

    def _better(self, value):
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def on_train_begin(self, logs=None):
        self.best = None
        # a run resumed from this very file keeps comparing against the best stored in it
        state = getattr(self.model, "training_state", None)
        ck = (getattr(state, "checkpoint", None) or {}) if state is not None else {}
        if state is not None and state.resumed_from == self.path and ck.get("monitor") == self.monitor \
                and ck.get("best") is not None:
            self.best = float(ck["best"])

    def on_batch_end(self, batch, logs=None):
        # mid-epoch saves hold the batch position and RNG state: resuming is exact; the loss
        # (a device scalar on the GPU) is read only on the batches that save
        loss = (logs or {}).get("loss")
        if self.save_freq != "epoch" and (batch + 1) % self.save_freq == 0 and loss is not None \
                and math.isfinite(float(loss)) and _writes():
            self.model.save(self.path, _checkpoint={"monitor": self.monitor, "best": self.best})

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            if self.monitor not in logs:
                raise ValueError(f"ModelCheckpoint monitors {self.monitor!r}, which is not among the logged "
                                 f"values {sorted(logs)}")
            value = _as_float(logs[self.monitor])
            if value is None or not math.isfinite(value) or not self._better(value):
                return
            self.best = value
        elif self.monitor in logs:
            value = _as_float(logs[self.monitor])
            if value is not None and math.isfinite(value) and self._better(value):
                self.best = value
        if _writes():
            self.model.save(self.path, _checkpoint={"monitor": self.monitor, "best": self.best})
        if self.verbose:
            _say(f"ModelCheckpoint: saved {self.path} after epoch {epoch + 1}")


def _as_float(v):
    """float(v) for a number or a 0-d array; None for anything else (a string, a vector)."""
    if isinstance(v, (str, bytes, bool)):
        return None
    if _is_real(v) or getattr(v, "ndim", None) == 0:
        try:
            return float(v)
        except (TypeError, ValueError):
            return None
    return None


class TerminateOnNaN(Callback):
    """Stop at the batch whose loss is NaN or infinite, before its update is applied.

    ``fit`` skips the update of that batch, so the weights (and every checkpoint written
    before) stay as they were after the last good batch.
    """

    def __init__(self):
        self.terminated_at = None

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = float(loss)  # reads a device scalar: fit reads the loss anyway with this callback
        if not math.isfinite(loss):
            epoch = (logs or {}).get("epoch", 0)
            self.terminated_at = (epoch, batch)
            self.model.stop_training = True
            _say(f"TerminateOnNaN: epoch {epoch + 1}, batch {batch}: invalid loss {loss}, "
                 "terminating training (that batch's update was not applied)")


# ---------------------------------------------------------------------------------------------
# the learning rate: a float attribute of the optimizer (a schedule object sets its own rate)

def _float_lr(cls, optimizer):
    if optimizer is None:
        raise ValueError(f"{cls} needs a compiled model: model.optimizer is None")
    lr = optimizer.learning_rate
    if _is_real(lr) or (getattr(lr, "ndim", None) == 0 and getattr(lr.dtype, "kind", "") in "fiu"):
        return float(lr)
    raise TypeError(_schedule_message(cls, optimizer, lr))


def _schedule_message(cls, optimizer, lr):
    return (f"{cls} needs a float learning rate, but {type(optimizer).__name__}.learning_rate is "
            f"{type(lr).__name__} ({lr!r}), a schedule that sets the rate itself: give the "
            f"optimizer a float learning_rate to use {cls}, or keep the schedule without it")


def _set_lr(cls, optimizer, value):
    try:
        optimizer.learning_rate = float(value)
    except TypeError as e:  # an optimizer driven by a schedule refuses a plain rate
        raise TypeError(_schedule_message(cls, optimizer, optimizer.learning_rate)) from e


class LearningRateScheduler(Callback):
    """``schedule(epoch, lr) -> new lr`` applied at the start of each epoch."""

    def __init__(self, schedule, verbose=0):
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler expected a callable schedule(epoch, lr), got {schedule!r}")
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        opt = self.model.optimizer
        lr = self.schedule(epoch, _float_lr("LearningRateScheduler", opt))
        if not _is_real(lr) or not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"LearningRateScheduler: schedule returned {lr!r} for epoch {epoch}; "
                             "expected a positive finite number")
        _set_lr("LearningRateScheduler", opt, lr)
        if self.verbose:
            _say(f"epoch {epoch + 1}: learning rate {lr:.4g}")


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` has stalled for ``patience`` epochs.

    Keras 3's algorithm: an improvement (by more than ``min_delta``, absolute) resets ``wait``;
    otherwise, outside a cooldown, ``wait`` grows and at ``patience`` the rate becomes
    ``max(lr * factor, min_lr)`` (unless it is already at ``min_lr``), after which ``cooldown``
    epochs pass with ``wait`` held at 0. Each epoch's logs get the rate it ran with, as
    ``"learning_rate"``. The optimizer's ``learning_rate`` must be a float, not a schedule.
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        if not _is_real(factor) or not math.isfinite(factor):
            raise ValueError(f"ReduceLROnPlateau expected a number factor, got {factor!r}")
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau does not support a factor >= 1.0, got factor={factor!r}")
        if factor <= 0.0:
            raise ValueError(f"ReduceLROnPlateau expected a factor in (0, 1), got factor={factor!r}")
        if not _is_real(min_lr) or not math.isfinite(min_lr) or min_lr < 0:
            raise ValueError(f"ReduceLROnPlateau expected min_lr >= 0, got {min_lr!r}")
        self.monitor = monitor
        self.factor = float(factor)
        self.patience = _count("ReduceLROnPlateau", "patience", patience)
        self.cooldown = _count("ReduceLROnPlateau", "cooldown", cooldown)
        self.min_delta = _min_delta("ReduceLROnPlateau", min_delta)
        self.min_lr = float(min_lr)
        self.mode = _mode_for(monitor, mode)
        self.verbose = verbose
        self._reset()

    def _reset(self):
        self.best = None
        self.cooldown_counter = 0
        self.wait = 0

    def in_cooldown(self):
        return self.cooldown_counter > 0

    def on_train_begin(self, logs=None):
        self._reset()
        _float_lr("ReduceLROnPlateau", self.model.optimizer)  # a schedule is refused before epoch 1

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        opt = self.model.optimizer
        lr = _float_lr("ReduceLROnPlateau", opt)
        logs["learning_rate"] = lr
        current = _monitored("ReduceLROnPlateau", self.monitor, logs)
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if _improved(self.mode, self.min_delta, current, self.best):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            # Keras compares against min_lr as float32: a rate that rounds to it is at it
            if self.wait >= self.patience and lr > float(np.float32(self.min_lr)):
                new_lr = max(lr * self.factor, self.min_lr)
                _set_lr("ReduceLROnPlateau", opt, new_lr)
                if self.verbose:
                    _say(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr}.")
                self.cooldown_counter = self.cooldown
                self.wait = 0


class CSVLogger(Callback):
    """One row per epoch in a CSV file: ``epoch``, then the logged keys sorted (Keras 3).

    As Keras: the columns are fixed by the first epoch's logs, and when they hold no ``val_``
    key the ``val_`` twins are added (validation may come later), a missing value is ``NA``,
    numbers are written as ``str(float(v))`` (``nan``, ``inf``), the header is written with
    the first row, and ``append=False`` empties the file when training begins. With
    ``append=True`` an existing file keeps its header and rows and new rows follow its columns
    (a key it has no column for is left out, with a warning), so every row fits the header.

    A crash at any moment leaves the file as it was after the previous epoch: see ``_write``.
    """

    def __init__(self, filename, separator=",", append=False):
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"CSVLogger expected a one-character separator, got {separator!r}")
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = bool(append)
        self.keys = None
        self._fieldnames = None
        self._content = ""
        self._warned = set()

    def _writer(self, buf):
        return csv.writer(buf, delimiter=self.sep)  # excel dialect, as Keras: \r\n rows

    def on_train_begin(self, logs=None):
        self.keys, self._fieldnames, self._warned = None, None, set()
        self._content = ""
        if not _writes():
            return
        folder, base = os.path.split(os.path.abspath(self.filename))
        _remove_stale_temps(folder, base)  # left by a writer killed between open and replace
        if self.append and os.path.exists(self.filename):
            with open(self.filename, newline="", encoding="utf-8") as f:
                self._content = f.read()
            first = next(csv.reader(io.StringIO(self._content), delimiter=self.sep), None)
            if first:
                self._fieldnames = first
                self.keys = [k for k in first if k != "epoch"]
            if self._content and not self._content.endswith("\n"):
                self._content += "\r\n"  # a last row without its line end: end it, keep it
        else:
            self._write("")  # Keras opens the file with mode "w" here

    def on_epoch_end(self, epoch, logs=None):
        if not _writes():
            return
        logs = logs or {}
        buf = io.StringIO()
        w = self._writer(buf)
        if self._fieldnames is None:
            keys = sorted(k for k in logs if k != "epoch")
            if keys and not any(k.startswith("val_") for k in keys):
                keys += [f"val_{k}" for k in keys]
            self.keys, self._fieldnames = keys, ["epoch"] + keys
            w.writerow(self._fieldnames)
        left_out = set(logs) - set(self.keys) - {"epoch"} - self._warned
        if left_out:
            self._warned |= left_out
            warnings.warn(f"CSVLogger: {self.filename} has no column for {sorted(left_out)}; "
                          "those values are not written", stacklevel=2)
        row = {k: _csv_value(logs.get(k, "NA")) for k in self.keys}
        row["epoch"] = epoch
        w.writerow([row[k] for k in self._fieldnames])
        content = self._content + buf.getvalue()
        self._write(content)
        self._content = content  # only what reached the disk

    def _write(self, content):
        # Why a whole-file atomic replace and not an append: an append of one line, even with
        # a single os.write and fsync, can reach the disk in part (a short write on a full
        # disk, a power cut mid-page), leaving a torn last row that the next run appends
        # after. Writing the complete file to a temp file in the same folder, fsyncing it,
        # then os.replace over the log means a reader, or the file after a crash at any
        # point, sees either the previous complete file or the new one. Rewriting costs one
        # small file per epoch, nothing beside an epoch of training.
        data = content.encode("utf-8")

        def write(fd):
            view = memoryview(data)
            while view:  # os.write may write less than asked: go on until all is out
                view = view[os.write(fd, view):]
        write_atomically(self.filename, write)


def _csv_value(v):
    """Keras 3: a log value is float(v) where that works (pythonify_logs), a vector is
    written as "[a, b]", anything else as str."""
    if isinstance(v, str):
        return v
    f = _as_float(v)
    if f is not None:
        return f
    try:
        return f'"[{", ".join(map(str, v))}]"'
    except TypeError:
        return v


class LambdaCallback(Callback):
    """A callback from plain functions, each with the hook's arguments (Keras 3):
    ``on_epoch_begin(epoch, logs)``, ``on_epoch_end(epoch, logs)``, ``on_batch_begin(batch,
    logs)``, ``on_batch_end(batch, logs)``, ``on_train_batch_begin(batch, logs)``,
    ``on_train_batch_end(batch, logs)``, ``on_train_begin(logs)``, ``on_train_end(logs)``;
    any other hook of Callback by its name as a keyword.
    """

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_batch_begin=None, on_batch_end=None,
                 on_train_begin=None, on_train_end=None, on_train_batch_begin=None,
                 on_train_batch_end=None, **kwargs):
        given = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                     on_batch_begin=on_batch_begin, on_batch_end=on_batch_end,
                     on_train_begin=on_train_begin, on_train_end=on_train_end,
                     on_train_batch_begin=on_train_batch_begin, on_train_batch_end=on_train_batch_end)
        for name, fn in kwargs.items():
            if name not in _HOOKS:
                raise TypeError(f"LambdaCallback got an unknown hook {name!r}; hooks are {', '.join(_HOOKS)}")
            given[name] = fn
        for name, fn in given.items():
            if fn is None:
                continue
            if not callable(fn):
                raise TypeError(f"LambdaCallback expected a callable {name}, got {fn!r}")
            setattr(self, name, fn)  # an instance attribute: called without self, as in Keras
