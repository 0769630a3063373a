"""Training callbacks (Keras names): History, EarlyStopping, ModelCheckpoint,
TerminateOnNaN, LearningRateScheduler."""
from __future__ import annotations

import math
import sys

import numpy as np

__all__ = ["Callback", "History", "EarlyStopping", "ModelCheckpoint", "TerminateOnNaN",
           "LearningRateScheduler", "CallbackList"]


class Callback:
    """Hooks called by ``fit``; ``self.model`` is set before training starts."""

    model = None

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_batch_begin(self, batch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...


class CallbackList:
    def __init__(self, callbacks, model):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be gpudl.callbacks.Callback objects, got {type(cb).__name__}")
            cb.set_model(model)

    def __getattr__(self, hook):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def call(*args, **kwargs):
            for cb in self.callbacks:
                getattr(cb, hook)(*args, **kwargs)
        return call


class History(Callback):
    """Per-epoch logs: ``history.history["loss"]``, ``history.epoch``."""

    def __init__(self):
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


def _mode_for(monitor, mode):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        mode = "max" if ("acc" in monitor or monitor.endswith("auc")) else "min"
    return mode


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    With ``restore_best_weights`` the best epoch's weights are put back whenever training
    ends: stopped early, run out of epochs, or stopped by another callback.
    """

    def __init__(self, monitor="val_loss", patience=0, min_delta=0.0, restore_best_weights=True,
                 mode="auto", verbose=0):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping expected a non-negative integer patience, got {patience!r}")
        if not isinstance(min_delta, (int, float)) or min_delta < 0:
            raise ValueError(f"EarlyStopping expected min_delta >= 0, got {min_delta!r}")
        self.monitor, self.patience, self.min_delta = monitor, patience, float(min_delta)
        self.restore_best_weights = bool(restore_best_weights)
        self.mode = _mode_for(monitor, mode)
        self.verbose = verbose
        self.stopped_epoch = None

    def _better(self, value, best):
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = None
        self.best_weights = None
        self.stopped_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise ValueError(f"EarlyStopping monitors {self.monitor!r}, which is not among the logged "
                             f"values {sorted(logs)}: pass validation data or monitor 'loss'")
        value = logs[self.monitor]
        if self.best_epoch is None or self._better(value, self.best):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
            if self.verbose:
                print(f"EarlyStopping: restored the weights of epoch {self.best_epoch + 1} "
                      f"({self.monitor} = {self.best:.4g})", file=sys.stderr)


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
        prior = getattr(self.model, "_resume_info", None) or {}
        ck = prior.get("checkpoint") or {}
        if prior.get("path") == self.path and ck.get("monitor") == self.monitor and ck.get("best") is not None:
            self.best = float(ck["best"])

    def on_batch_end(self, batch, logs=None):
        # mid-epoch saves hold the batch position and RNG state: resuming is exact
        loss = (logs or {}).get("loss")
        if self.save_freq != "epoch" and (batch + 1) % self.save_freq == 0 and loss is not None \
                and math.isfinite(loss):
            self.model.save(self.path, _checkpoint={"monitor": self.monitor, "best": self.best})

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            if self.monitor not in logs:
                raise ValueError(f"ModelCheckpoint monitors {self.monitor!r}, which is not among the logged "
                                 f"values {sorted(logs)}")
            value = logs[self.monitor]
            if not (isinstance(value, float) and math.isfinite(value)) or not self._better(value):
                return
            self.best = value
        elif self.monitor in logs and np.isfinite(logs[self.monitor]) and self._better(logs[self.monitor]):
            self.best = logs[self.monitor]
        self.model.save(self.path, _checkpoint={"monitor": self.monitor, "best": self.best})
        if self.verbose:
            print(f"ModelCheckpoint: saved {self.path} after epoch {epoch + 1}", file=sys.stderr)


class TerminateOnNaN(Callback):
    """Stop at the batch whose loss is NaN or infinite, before its update is applied.

    ``fit`` skips the update of that batch, so the weights (and every checkpoint written
    before) stay as they were after the last good batch.
    """

    def __init__(self):
        self.terminated_at = None

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            epoch = (logs or {}).get("epoch", 0)
            self.terminated_at = (epoch, batch)
            self.model.stop_training = True
            print(f"TerminateOnNaN: epoch {epoch + 1}, batch {batch}: invalid loss {loss}, "
                  "terminating training (that batch's update was not applied)", file=sys.stderr)


class LearningRateScheduler(Callback):
    """``schedule(epoch, lr) -> new lr`` applied at the start of each epoch."""

    def __init__(self, schedule, verbose=0):
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler expected a callable schedule(epoch, lr), got {schedule!r}")
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        opt = self.model.optimizer
        lr = self.schedule(epoch, opt.learning_rate)
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"LearningRateScheduler: schedule returned {lr!r} for epoch {epoch}; "
                             "expected a positive finite number")
        opt.learning_rate = float(lr)
        if self.verbose:
            print(f"epoch {epoch + 1}: learning rate {lr:.4g}", file=sys.stderr)
