"""Sequential: Keras' model API (compile / fit / evaluate / predict / summary / save)."""
from __future__ import annotations

import math
import sys
import time

import numpy as np

from . import backend
from . import functional as F
from . import optimizers as optim
from . import random as grandom
from .autograd import Tensor, no_grad
from .callbacks import CallbackList, History, TerminateOnNaN
from .errors import ModelFileError
from .layers.base import Layer, get_layer_class

__all__ = ["Sequential", "load_model", "LOSSES", "METRICS"]

LOSSES = ("categorical_crossentropy", "sparse_categorical_crossentropy", "softmax_cross_entropy",
          "mse", "mean_squared_error")
METRICS = ("accuracy", "acc", "mse", "mae")
FORMAT = "gpudl-model"
FORMAT_VERSION = 1


# ---- input validation ------------------------------------------------------------------

def _as_array(a, what):
    if isinstance(a, Tensor):
        a = a.data
    if isinstance(a, np.ndarray) or backend.is_cupy_array(a):
        arr = a
    else:
        if a is None:
            raise ValueError(f"{what}: expected an array, got None")
        arr = np.asarray(a)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{what}: expected a numeric array, got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{what}: expected an array with a batch axis, got a scalar")
    return arr


def _check_finite(arr, what):
    if arr.dtype.kind == "f":
        xp = backend.get_array_module(arr)
        if not bool(xp.isfinite(arr).all()):
            bad = int((~xp.isfinite(arr)).sum())
            raise ValueError(f"{what}: expected finite values, got {bad} NaN or infinite entries")


def _positive_int(what, v):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{what}: expected a positive integer, got {v!r}")
    return int(v)


class _Progress:
    """One line per epoch, or a live bar (samples/s, loss, ETA) on a terminal."""

    def __init__(self, verbose, epochs, n):
        self.verbose, self.epochs, self.n = verbose, epochs, n
        self.live = verbose == 1 and sys.stdout.isatty()

    def start(self, epoch):
        self.epoch, self.t0, self.last = epoch, time.perf_counter(), 0.0
        if self.verbose:
            print(f"Epoch {epoch + 1}/{self.epochs}", flush=True)

    def update(self, seen, loss_sum, count):
        """Redraw at most every 0.1 s; the running loss sum (a device scalar on the GPU) is read
        only then, so a step never waits on the GPU for the bar."""
        if not self.live:
            return
        now = time.perf_counter()
        if now - self.last < 0.1 and seen < self.n:
            return
        self.last = now
        loss = float(loss_sum) / max(count, 1)
        el = now - self.t0
        rate = seen / el if el > 0 else 0.0
        eta = (self.n - seen) / rate if rate > 0 else 0.0
        width = 30
        done = int(width * seen / max(self.n, 1))
        bar = "=" * max(done - 1, 0) + (">" if done < width else "=") + "." * (width - done)
        sys.stdout.write(f"\r{seen}/{self.n} [{bar}] {rate:,.0f} samples/s - ETA {eta:.0f}s - loss {loss:.4f}")
        sys.stdout.flush()

    def end(self, logs):
        if not self.verbose:
            return
        el = time.perf_counter() - self.t0
        parts = " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())
        prefix = "\r" if self.live else ""
        print(f"{prefix}{self.n}/{self.n} - {el:.1f}s - {self.n / max(el, 1e-9):,.0f} samples/s - {parts}", flush=True)


class Sequential(Layer):
    """A stack of layers; ``model(x)`` runs them in order."""

    def __init__(self, layers=None, input_shape=None, name=None):
        super().__init__(name)
        self.layers: list[Layer] = []
        for layer in layers or []:
            self.add(layer)
        self.input_shape = None if input_shape is None else self._check_input_shape(input_shape)
        self.optimizer = None
        self.loss = None
        self.metrics: list[str] = []
        self.stop_training = False
        self.epoch = 0              # completed epochs (the training position)
        self._output_shapes = None
        self._resume_info = None
        self._pending_rng_state = None
        self.history = None

    @staticmethod
    def _check_input_shape(shape):
        if isinstance(shape, int):
            shape = (shape,)
        try:
            shape = tuple(int(s) for s in shape)
        except (TypeError, ValueError):
            raise ValueError(f"input_shape expected a tuple of positive integers, got {shape!r}") from None
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"input_shape expected a tuple of positive integers, got {shape!r}")
        return shape

    def add(self, layer):
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expected a gpudl layer, got {type(layer).__name__}")
        if any(layer is l for l in self.layers):
            raise ValueError(f"{layer.describe()} is already in this model")
        self.layers.append(layer)
        self.built = False

    def sublayers(self):
        return list(self.layers)

    # ---- building and running ---------------------------------------------------------
    def build(self, x=None):
        """Build every layer from ``input_shape`` with one dummy sample; records output shapes."""
        if isinstance(x, Tensor):
            shape = x.shape[1:]
        elif x is not None:
            shape = self._check_input_shape(x)
        else:
            shape = self.input_shape
        if shape is None:
            raise ValueError(f"{self.describe()} cannot be built without an input shape: pass input_shape= "
                             "or call it on data first")
        if self.input_shape is None:
            self.input_shape = tuple(shape)
        if not self.layers:
            raise ValueError(f"{self.describe()} has no layers")
        dummy = Tensor(np.zeros((1,) + tuple(self.input_shape), dtype=backend.default_dtype))
        training = self.training
        self.train(False)
        shapes = []
        with no_grad():
            h = dummy
            for layer in self.layers:
                h = layer(h)
                shapes.append(h.shape[1:])
        self.train(training)
        self._output_shapes = shapes
        self.built = True
        self.dtype = self.layers[0].dtype

    def __call__(self, x, **kwargs):
        if not isinstance(x, Tensor):
            x = Tensor(_as_array(x, f"{self.describe()} input"))
        if not self.built:
            self.build(x)
        if self.input_shape is not None and tuple(x.shape[1:]) != tuple(self.input_shape):
            raise ValueError(f"{self.describe()} expected input of shape (batch, "
                             f"{', '.join(map(str, self.input_shape))}), got shape {x.shape}")
        return self.forward(x, **kwargs)

    def forward(self, x, logits=False):
        """Run the layers; ``logits=True`` stops before a final softmax (the fused loss path)."""
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if logits and i == last:
                if type(layer).__name__ == "Softmax":
                    return x
                return layer(x, logits=True)
            x = layer(x)
        return x

    def _ends_in_softmax(self):
        last = self.layers[-1] if self.layers else None
        if last is None:
            return False
        if type(last).__name__ == "Softmax":
            return getattr(last, "axis", -1) in (-1, 1)
        return type(last).__name__ == "Dense" and isinstance(last.activation, str) and \
            last.activation.lower() == "softmax"

    # ---- compile ----------------------------------------------------------------------
    def compile(self, optimizer="sgd", loss="categorical_crossentropy", metrics=None):
        self.optimizer = optim.get(optimizer)
        if not isinstance(loss, str) or loss.lower() not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}: expected one of {', '.join(map(repr, LOSSES))}")
        self.loss = loss.lower()
        metrics = list(metrics or [])
        for m in metrics:
            if not isinstance(m, str) or m.lower() not in METRICS:
                raise ValueError(f"unknown metric {m!r}: expected one of {', '.join(map(repr, METRICS))}")
        self.metrics = ["accuracy" if m.lower() == "acc" else m.lower() for m in metrics]
        if not self.built and self.input_shape is not None:
            self.build()
        return self

    def _require_compiled(self, what):
        if self.optimizer is None or self.loss is None:
            raise RuntimeError(f"{self.describe()}: call compile(optimizer=..., loss=...) before {what}")

    @property
    def fused(self) -> bool:
        """True when a final softmax and cross entropy train through the fused op."""
        return self.loss in ("categorical_crossentropy", "sparse_categorical_crossentropy") and self._ends_in_softmax()

    def _loss_value(self, x_batch, y_batch):
        """Forward and the data loss (no regularisation) on one batch; returns (loss, output)."""
        if self.fused:
            z = self.forward(x_batch, logits=True)
            return F.softmax_cross_entropy(z, y_batch), z
        out = self.forward(x_batch)
        if self.loss == "softmax_cross_entropy":
            return F.softmax_cross_entropy(out, y_batch), out
        if self.loss in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
            return F.categorical_crossentropy(out, y_batch), out
        target = y_batch
        if y_batch.ndim == 1 and y_batch.dtype.kind in "iu" and out.ndim == 2 and out.shape[1] > 1:
            xp = backend.get_array_module(y_batch)
            target = xp.eye(out.shape[1], dtype=out.dtype)[y_batch]
        if tuple(target.shape) != tuple(out.shape):
            raise ValueError(f"loss {self.loss!r} expected targets of shape {out.shape}, got {tuple(target.shape)}")
        return F.mean_squared_error(out, Tensor._wrap(target.astype(out.dtype, copy=False))), out

    def _penalty(self):
        total = None
        for p in self.params():
            if getattr(p, "regularizer", None) is not None:
                r = p.regularizer(p)
                total = r if total is None else total + r
        return total

    # ---- data plumbing ----------------------------------------------------------------
    def _prepare(self, x, y, what, finite_x=True):
        x = _as_array(x, f"{what}: x")
        if y is not None:
            y = _as_array(y, f"{what}: y")
            if len(x) != len(y):
                raise ValueError(f"{what}: x and y must have the same number of samples, got {len(x)} and {len(y)}")
        if len(x) == 0:
            raise ValueError(f"{what}: expected at least one sample, got an empty array of shape {x.shape}")
        if not self.built:
            self.build(tuple(x.shape[1:]))
        if tuple(x.shape[1:]) != tuple(self.input_shape):
            raise ValueError(f"{what}: {self.describe()} expected x of shape (N, "
                             f"{', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}")
        if finite_x:
            _check_finite(x, f"{what}: x")
        if y is not None:
            self._check_targets(y, what)
        return x, y

    def _check_targets(self, y, what):
        out_shape = self._output_shapes[-1] if self._output_shapes else None
        if out_shape is None or len(out_shape) != 1:
            return
        c = out_shape[0]
        if y.ndim == 1:
            if self.loss in ("categorical_crossentropy", "sparse_categorical_crossentropy",
                             "softmax_cross_entropy") or ("accuracy" in self.metrics and c > 1):
                if y.dtype.kind not in "iu":
                    raise TypeError(f"{what}: integer class labels expected for 1-D y, got dtype {y.dtype}")
                lo, hi = int(y.min()), int(y.max())
                if lo < 0 or hi >= c:
                    raise ValueError(f"{what}: labels must lie in [0, {c - 1}] for {c} outputs, "
                                     f"got values in [{lo}, {hi}]")
        elif y.ndim == 2:
            if y.shape[1] != c:
                raise ValueError(f"{what}: y of shape {tuple(y.shape)} does not match the model's "
                                 f"{c} outputs (expected (N, {c}) or integer labels (N,))")
            _check_finite(y, f"{what}: y")
        else:
            raise ValueError(f"{what}: expected y of shape (N,) or (N, {c}), got {tuple(y.shape)}")

    def _batch(self, arr, idx, float_dtype=None):
        """arr[idx] moved to the model's backend (and cast to its float dtype)."""
        b = arr[idx]
        on_cupy = self._on_cupy()
        if backend.is_cupy_array(b) != on_cupy:
            b = backend.to_backend(b, "cupy" if on_cupy else "numpy")
        if float_dtype is not None and b.dtype != float_dtype:
            b = b.astype(float_dtype)
        return b

    def _on_cupy(self):
        # called for every batch: look at the first parameter only, not the whole list
        for layer in self.layers:
            ps = layer.params()
            if ps:
                return backend.is_cupy_array(ps[0].data)
        return False

    def _x_dtype(self):
        return np.dtype(self.dtype or backend.default_dtype)

    # ---- training ---------------------------------------------------------------------
    def train_on_batch(self, x, y):
        """One optimizer step on one batch; returns the batch loss (float)."""
        self._require_compiled("train_on_batch")
        x, y = self._prepare(x, y, "train_on_batch")
        loss, _, _ = self._step(self._batch(x, slice(None), self._x_dtype()), self._batch(y, slice(None)),
                                check_finite=False)
        return float(loss)

    def _step(self, xb, yb, check_finite):
        """One update; returns (loss, output, value). ``loss`` is a 0-d array on the model's
        device, never read here; ``value`` is its float only when ``check_finite`` asks for it
        (one device read per step, for TerminateOnNaN), else None."""
        self.train(True)
        params = self.params()
        for p in params:
            p.grad = None
        data_loss, out = self._loss_value(Tensor._wrap(xb), yb)
        pen = self._penalty()
        total = data_loss if pen is None else data_loss + pen
        value = None
        if check_finite:
            value = float(total.data)
            if not math.isfinite(value):
                return total.data, out, value  # leave the weights as they were: no backward, no update
        total.backward()
        self.optimizer.step(params)
        return total.data, out, value

    def _place(self, x, y, what, keep_x_on_host=False):
        """Move host data to the model's device once (x cast to the model's float dtype there),
        so no step copies a batch; data that does not fit stays on the host, batch by batch."""
        if not self._on_cupy():
            return x, y
        xdt = self._x_dtype()
        need = (0 if keep_x_on_host or backend.is_cupy_array(x) else len(x) * int(np.prod(x.shape[1:])) * xdt.itemsize) \
            + (0 if backend.is_cupy_array(y) else y.nbytes)
        if need and need > backend.device_free_bytes() // 2:
            return x, y
        if not keep_x_on_host:
            x = backend.to_backend(x, "cupy")
            if x.dtype != xdt:
                x = x.astype(xdt)
        return x, backend.to_backend(y, "cupy")

    def fit(self, x, y, batch_size=32, epochs=1, validation_split=0.0, validation_data=None,
            shuffle=True, callbacks=None, verbose=1, seed=None, initial_epoch=None, augment=None,
            resume_from=None):
        """Mini-batch training with a fresh shuffle every epoch; returns a History."""
        self._require_compiled("fit")
        batch_size = _positive_int("fit: batch_size", batch_size)
        epochs = _positive_int("fit: epochs", epochs)
        if not isinstance(validation_split, (int, float)) or not 0.0 <= validation_split < 1.0:
            raise ValueError(f"fit: validation_split expected a number in [0, 1), got {validation_split!r}")
        if verbose not in (0, 1, 2):
            raise ValueError(f"fit: verbose expected 0, 1 or 2, got {verbose!r}")
        if augment is not None and not callable(augment):
            raise TypeError(f"fit: augment expected a callable (x_batch, rng) -> x_batch, got {type(augment).__name__}")
        cbs = list(callbacks or [])
        # with TerminateOnNaN the run itself answers a non-finite batch (it stops there, that
        # batch's update unapplied); without it, non-finite inputs are refused before training
        check_finite = any(isinstance(c, TerminateOnNaN) for c in cbs)
        x, y = self._prepare(x, y, "fit", finite_x=not check_finite)
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("fit: validation_data expected a pair (x_val, y_val)")
            x_val, y_val = self._prepare(validation_data[0], validation_data[1], "fit: validation_data")
        elif validation_split:
            n_val = int(len(x) * validation_split)
            if n_val < 1 or n_val >= len(x):
                raise ValueError(f"fit: validation_split={validation_split} of {len(x)} samples leaves "
                                 f"{n_val} for validation and {len(x) - n_val} for training; need at least one of each")
            x, x_val = x[:-n_val], x[-n_val:]
            y, y_val = y[:-n_val], y[-n_val:]
        else:
            x_val = y_val = None

        start_batch = 0
        if resume_from is not None:
            start_batch = self._resume(resume_from)  # restores weights, optimizer, RNG, position
            epoch0 = self.epoch
        else:
            if seed is not None:
                grandom.set_seed(seed)
            elif self._pending_rng_state is not None:
                grandom.set_state(self._pending_rng_state)  # a loaded model continues its stream
            epoch0 = 0 if initial_epoch is None else int(initial_epoch)
        self._pending_rng_state = None
        end_epoch = epochs  # Keras: train epochs epoch0 .. epochs-1

        x, y = self._place(x, y, "fit", keep_x_on_host=augment is not None)
        if x_val is not None:
            x_val, y_val = self._place(x_val, y_val, "fit: validation_data")
        history = History()
        cbl = CallbackList([history] + cbs, self)
        n = len(x)
        steps = math.ceil(n / batch_size)
        progress = _Progress(verbose, end_epoch, n)
        xdt = self._x_dtype()
        self.stop_training = False
        self.history = history
        cbl.on_train_begin({})
        try:
            for epoch in range(epoch0, end_epoch):
                rng = grandom.get_rng()
                self._epoch_rng_state = rng.bit_generator.state
                perm = rng.permutation(n) if shuffle else None
                # the epoch's order goes to the data's device once, not a slice of it per step
                order = perm if perm is None or not backend.is_cupy_array(x) else backend.to_backend(perm, "cupy")
                if start_batch:
                    grandom.set_state(self._resume_info["training"]["rng_state"])
                cbl.on_epoch_begin(epoch, {})
                progress.start(epoch)
                # sums stay where the model runs (0-d device arrays on the GPU): read at epoch end
                total, count, correct = 0.0, 0, 0
                self._nan_batch = None
                for b in range(start_batch, steps):
                    lo, hi = b * batch_size, min((b + 1) * batch_size, n)
                    xb, yb = self._take(x, order, lo, hi), self._take(y, order, lo, hi)
                    if augment is not None:
                        xb = augment(backend.to_numpy(xb), grandom.get_rng())
                    xb = self._batch(xb, slice(None), xdt)
                    yb = self._batch(yb, slice(None))
                    self._batch_position = (epoch, b + 1)
                    loss, out, value = self._step(xb, yb, check_finite)
                    m = hi - lo
                    total = total + loss.astype(np.float64) * m  # float64, as the host sum was
                    count += m
                    if "accuracy" in self.metrics and out.ndim == 2 and (value is None or math.isfinite(value)):
                        correct = correct + self._correct(out.data, yb)
                    progress.update(hi, total, count)
                    # batch logs: a float on the host; on the GPU the device scalar unless the loss
                    # was read anyway (TerminateOnNaN), so a callback that reads it chooses to sync
                    batch_loss = value if value is not None else (loss if backend.is_cupy_array(loss) else float(loss))
                    cbl.on_batch_end(b, {"loss": batch_loss, "epoch": epoch, "size": m})
                    if self.stop_training and not math.isfinite(value if value is not None else float(loss)):
                        self._nan_batch = (epoch, b)
                        break
                start_batch = 0
                if self._nan_batch is not None:
                    break
                logs = {"loss": float(total) / count}
                if "accuracy" in self.metrics:
                    logs["accuracy"] = int(correct) / count
                self.epoch = epoch + 1
                self._batch_position = (epoch + 1, 0)
                if x_val is not None:
                    val = self.evaluate(x_val, y_val, batch_size=max(batch_size, 256), _checked=True)
                    logs.update({f"val_{k}": v for k, v in val.items()})
                progress.end(logs)
                cbl.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
        finally:
            cbl.on_train_end({})
            self._resume_info = None
        return history

    @staticmethod
    def _take(arr, order, lo, hi):
        """Rows lo:hi of the epoch's order (a plain slice without shuffling)."""
        if order is None:
            return arr[lo:hi]
        return arr[order[lo:hi]]

    @staticmethod
    def _correct(out, yb):
        """How many rows the argmax gets right, as a 0-d array where ``out`` lives (no read)."""
        pred = out.argmax(axis=1)
        truth = yb if yb.ndim == 1 else yb.argmax(axis=1)
        return (pred == truth).sum()

    # ---- inference --------------------------------------------------------------------
    def evaluate(self, x, y, batch_size=256, verbose=0, _checked=False):
        """Loss (with regularisation, as in training) and metrics over (x, y)."""
        self._require_compiled("evaluate")
        batch_size = _positive_int("evaluate: batch_size", batch_size)
        if not _checked:
            x, y = self._prepare(x, y, "evaluate")
        training = self.training
        self.train(False)
        # sums stay on the model's device and are read once at the end
        total, correct, sq, ab, n = 0.0, 0, 0.0, 0.0, len(x)
        xdt = self._x_dtype()
        try:
            with no_grad():
                pen = self._penalty()
                pen_value = 0.0 if pen is None else float(pen.data)
                for s in range(0, n, batch_size):
                    sl = slice(s, s + batch_size)
                    xb, yb = self._batch(x, sl, xdt), self._batch(y, sl)
                    loss, out = self._loss_value(Tensor._wrap(xb), yb)
                    m = len(xb)
                    total = total + loss.data.astype(np.float64) * m
                    if "accuracy" in self.metrics:
                        correct = correct + self._correct(out.data, yb)
                    if "mse" in self.metrics or "mae" in self.metrics:
                        o = (F.softmax(out).data if self.fused else out.data).astype(np.float64)
                        xp = backend.get_array_module(o)
                        t = yb
                        if t.ndim == 1 and o.ndim == 2:
                            t = xp.eye(o.shape[1])[t]
                        d = o - t
                        axes = tuple(range(1, o.ndim))
                        sq = sq + (d * d).mean(axis=axes).sum()
                        ab = ab + xp.abs(d).mean(axis=axes).sum()
        finally:
            self.train(training)
        logs = {"loss": float(total) / n + pen_value}
        if "accuracy" in self.metrics:
            logs["accuracy"] = int(correct) / n
        if "mse" in self.metrics:
            logs["mse"] = float(sq) / n
        if "mae" in self.metrics:
            logs["mae"] = float(ab) / n
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        return logs

    def predict(self, x, batch_size=256):
        """Outputs for x, as a host NumPy array."""
        batch_size = _positive_int("predict: batch_size", batch_size)
        x, _ = self._prepare(x, None, "predict")
        training = self.training
        self.train(False)
        outs = []
        try:
            with no_grad():
                for s in range(0, len(x), batch_size):
                    xb = self._batch(x, slice(s, s + batch_size), self._x_dtype())
                    outs.append(backend.to_numpy(self.forward(Tensor._wrap(xb)).data))
        finally:
            self.train(training)
        return np.concatenate(outs, axis=0)

    # ---- description ------------------------------------------------------------------
    def summary(self, print_fn=print) -> str:
        """A table of layers, output shapes and parameter counts; printed and returned."""
        if not self.built:
            self.build()
        rows = [("Layer (type)", "Output Shape", "Param #")]
        for layer, shape in zip(self.layers, self._output_shapes):
            count = sum(int(p.size) for p in layer.params())
            rows.append((f"{layer.name} ({type(layer).__name__})", str((None,) + tuple(shape)), f"{count:,}"))
        widths = [max(len(r[i]) for r in rows) + 2 for i in range(3)]
        line = "-" * sum(widths)
        out = [f'Model: "{self.name}"', line, "".join(c.ljust(w) for c, w in zip(rows[0], widths)), "=" * sum(widths)]
        for r in rows[1:]:
            out.append("".join(c.ljust(w) for c, w in zip(r, widths)))
        total = sum(int(p.size) for p in self.params())
        out += ["=" * sum(widths), f"Total params: {total:,}", f"Trainable params: {total:,}", line]
        text = "\n".join(out)
        if print_fn is not None:
            print_fn(text)
        return text

    def count_params(self) -> int:
        return sum(int(p.size) for p in self.params())

    # ---- weights ----------------------------------------------------------------------
    def get_weights(self) -> list:
        """Host copies of every parameter, in ``params()`` order."""
        return [backend.to_numpy(p.data).copy() for p in self.params()]

    def set_weights(self, weights) -> None:
        params = self.params()
        weights = list(weights)
        if len(weights) != len(params):
            raise ValueError(f"set_weights expected {len(params)} arrays, got {len(weights)}")
        for p, w in zip(params, weights):
            w = backend.to_numpy(w)
            if tuple(w.shape) != p.shape:
                raise ValueError(f"set_weights: parameter {p.name} expected shape {p.shape}, got {tuple(w.shape)}")
            p.data[...] = backend.to_backend(w.astype(p.dtype, copy=False), backend.backend_of(p.data))

    def to(self, name: str) -> "Sequential":
        """Move parameters and optimizer state to backend ``name``."""
        super().to(name)
        if self.optimizer is not None:
            for st in self.optimizer._state.values():
                for k in st:
                    st[k] = backend.to_backend(st[k], name)
        return self

    # ---- config and files -------------------------------------------------------------
    def get_config(self) -> dict:
        return {"name": self.name, "input_shape": list(self.input_shape) if self.input_shape else None,
                "layers": [{"class": type(l).__name__, "config": l.get_config()} for l in self.layers]}

    @classmethod
    def from_config(cls, config: dict) -> "Sequential":
        layers = [get_layer_class(item["class"]).from_config(item["config"]) for item in config["layers"]]
        return cls(layers, input_shape=config.get("input_shape"), name=config.get("name"))

    def save(self, path, _checkpoint=None) -> None:
        """Architecture (JSON), weights, optimizer state, training position and RNG state,
        written atomically (temp file, fsync, rename): never a pickle."""
        from . import io
        if not self.built:
            self.build()
        arrays = {f"param/{i}": backend.to_numpy(p.data) for i, p in enumerate(self.params())}
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "backend": backend.get_backend(),
                "model": {"class": type(self).__name__, "config": self.get_config()},
                "dtype": str(np.dtype(self.dtype or backend.default_dtype))}
        if self.optimizer is not None:
            meta["compile"] = {"optimizer": {"class": type(self.optimizer).__name__,
                                             "config": self.optimizer.get_config(),
                                             "iterations": self.optimizer.iterations},
                               "loss": self.loss, "metrics": self.metrics}
            for k, v in self.optimizer.get_state(self.params()).items():
                arrays[f"opt/{k}"] = v
        epoch, batch = getattr(self, "_batch_position", (self.epoch, 0))
        training = {"epoch": int(epoch), "batch": int(batch), "rng_state": _jsonable(grandom.get_state())}
        if batch:
            training["epoch_rng_state"] = _jsonable(self._epoch_rng_state)
        meta["training"] = training
        if _checkpoint is not None:
            meta["checkpoint"] = _checkpoint
        io.save_file(path, arrays, meta)

    def _resume(self, path) -> int:
        """Load weights, optimizer and position from ``path``; returns the batch to start at."""
        other = load_model(path)
        if [p.shape for p in other.params()] != [p.shape for p in self.params()]:
            raise ModelFileError(f"{path}: its parameters {[p.shape for p in other.params()]} do not match "
                                 f"this model's {[p.shape for p in self.params()]}")
        self.set_weights(other.get_weights())
        if other.optimizer is not None and type(other.optimizer) is type(self.optimizer):
            self.optimizer.set_state(self.params(), other.optimizer.get_state(other.params()),
                                     other.optimizer.iterations)
        info = other._resume_info
        info["path"] = str(path)
        self._resume_info = info
        tr = info["training"]
        self.epoch = int(tr["epoch"])
        if tr.get("batch"):
            grandom.set_state(tr["epoch_rng_state"])  # regenerates that epoch's shuffle
            return int(tr["batch"])
        grandom.set_state(tr["rng_state"])
        return 0


def _jsonable(state):
    """numpy's generator state holds Python ints already; copy it into plain dicts."""
    if isinstance(state, dict):
        return {k: _jsonable(v) for k, v in state.items()}
    if isinstance(state, (np.integer,)):
        return int(state)
    return state


def load_model(path) -> Sequential:
    """Rebuild a saved model (architecture, weights, optimizer); raises ModelFileError."""
    from . import io
    meta, arrays = io.load_file(path)
    try:
        if meta.get("format") != FORMAT:
            raise ModelFileError(f"{path}: expected a {FORMAT!r} file, got format {meta.get('format')!r}")
        if meta.get("version") != FORMAT_VERSION:
            raise ModelFileError(f"{path}: expected model format version {FORMAT_VERSION}, got {meta.get('version')!r}")
        mcfg = meta["model"]
        if mcfg.get("class") != "Sequential":
            raise ModelFileError(f"{path}: expected a Sequential model, got {mcfg.get('class')!r}")
        model = Sequential.from_config(mcfg["config"])
        model.build()
        params = model.params()
        n_params = sum(1 for k in arrays if k.startswith("param/"))
        if n_params != len(params):
            raise ModelFileError(f"{path}: the architecture has {len(params)} parameters, the file holds {n_params}")
        if meta.get("dtype", "float32") not in ("float16", "float32", "float64"):
            raise ModelFileError(f"{path}: expected a float16/float32/float64 model dtype, got {meta.get('dtype')!r}")
        dtype = np.dtype(meta.get("dtype", "float32"))
        for i, p in enumerate(params):
            w = arrays.get(f"param/{i}")
            if w is None or tuple(w.shape) != p.shape:
                raise ModelFileError(f"{path}: parameter {i} ({p.name}) expected shape {p.shape}, "
                                     f"got {None if w is None else tuple(w.shape)}")
            p.data = backend.to_backend(w.astype(dtype, copy=False), backend.backend_of(p.data))
        comp = meta.get("compile")
        if comp:
            oc = comp["optimizer"]
            model.compile(optim.from_config(oc["class"], oc["config"]), comp["loss"], comp["metrics"])
            state = {k[len("opt/"):]: v for k, v in arrays.items() if k.startswith("opt/")}
            model.optimizer.set_state(params, state, int(oc.get("iterations", 0)))
        tr = meta.get("training") or {}
        model.epoch = int(tr.get("epoch", 0))
        model._batch_position = (model.epoch, int(tr.get("batch", 0)))
        if tr.get("batch"):
            model._epoch_rng_state = tr.get("epoch_rng_state")
        model._resume_info = {"training": tr, "checkpoint": meta.get("checkpoint")}
        # fit() on the loaded model continues the saved random stream (exact resume)
        model._pending_rng_state = tr.get("rng_state") if not tr.get("batch") else None
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"{path}: invalid model description in the file: {type(exc).__name__}: {exc}") from None
    return model
