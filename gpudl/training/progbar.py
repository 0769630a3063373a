"""The progress display of ``fit``, as a callback (Keras' ProgbarLogger).

verbose=1 on a terminal: a live bar redrawn at most every 0.1 s (samples/s, running loss and
metrics, ETA); its figures are read from the device only when it redraws. verbose=2, or 1
without a terminal: one line per epoch. verbose=0: nothing.
"""
from __future__ import annotations

import sys
import time

from ..callbacks import Callback

__all__ = ["ProgbarLogger"]


def _value(v):
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(f"{e:.4f}" for e in v) + "]"
    return f"{v:.4f}"


def _fmt(logs):
    return " - ".join(f"{k}: {_value(v)}" for k, v in logs.items())


class ProgbarLogger(Callback):
    def __init__(self, verbose=1, stream=None):
        self.verbose = verbose
        self.stream = stream

    def _out(self):
        return self.stream or sys.stdout

    def on_train_begin(self, logs=None):
        params = getattr(self, "params", None) or {}
        self.epochs = params.get("epochs", 1)
        self.samples = params.get("samples")
        self.steps = params.get("steps")
        self.live = self.verbose == 1 and self._out().isatty()

    def on_epoch_begin(self, epoch, logs=None):
        self.t0, self.last, self.seen = time.perf_counter(), 0.0, 0
        if self.verbose:
            print(f"Epoch {epoch + 1}/{self.epochs}", file=self._out(), flush=True)

    def on_train_batch_end(self, batch, logs=None):
        self.seen += int((logs or {}).get("size", 0))
        if not self.live:
            return
        now = time.perf_counter()
        total = self.samples
        if now - self.last < 0.1 and (total is None or self.seen < total):
            return
        self.last = now
        el = now - self.t0
        rate = self.seen / el if el > 0 else 0.0
        running = self.model.running_logs()  # reads the device: only here, at redraw time
        if total:
            eta = (total - self.seen) / rate if rate > 0 else 0.0
            width = 30
            done = int(width * self.seen / max(total, 1))
            bar = "=" * max(done - 1, 0) + (">" if done < width else "=") + "." * (width - done)
            head = f"\r{self.seen}/{total} [{bar}] {rate:,.0f} samples/s - ETA {eta:.0f}s"
        else:
            head = f"\r{self.seen} samples - {rate:,.0f} samples/s"
        self._out().write(f"{head} - {_fmt(running)}")
        self._out().flush()

    def on_epoch_end(self, epoch, logs=None):
        if not self.verbose:
            return
        el = time.perf_counter() - self.t0
        prefix = "\r" if self.live else ""
        print(f"{prefix}{self.seen}/{self.seen} - {el:.1f}s - {self.seen / max(el, 1e-9):,.0f} samples/s - "
              f"{_fmt(logs or {})}", file=self._out(), flush=True)
