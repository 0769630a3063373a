"""The trainer, apart from the model (Keras' ``trainers/trainer.py``): compile, fit, evaluate,
predict, their one-batch forms, and the steps they are made of.

A model class mixes this in and provides ``forward(x, logits=False)``, ``params()``,
``build(input_shape)``, ``input_shape``, ``output_activation()`` and ``losses`` (from
``add_loss``). The loop reads the device only at logging time: loss and metric sums stay
0-d arrays where the model runs, read once an epoch (and by the live progress bar when it
redraws, and each step only when TerminateOnNaN needs the loss).
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from .. import optimizers as optim
from .. import random as grandom
from ..autograd import Tensor, no_grad
from ..callbacks import CallbackList, History, TerminateOnNaN
from ..layers.base import renamed_arg
from . import compile_utils
from .epoch_iterator import ArrayAdapter, EpochIterator, as_array, check_batch, get_adapter, unpack
from .progbar import ProgbarLogger, _fmt
from .state import TrainingState

__all__ = ["Trainer"]


def _positive_int(what, v):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{what}: expected a positive integer, got {v!r}")
    return int(v)


def _check_finite(arr, what):
    if arr is not None and arr.dtype.kind == "f":
        xp = backend.get_array_module(arr)
        if not bool(xp.isfinite(arr).all()):
            bad = int((~xp.isfinite(arr)).sum())
            raise ValueError(f"{what}: expected finite values, got {bad} NaN or infinite entries")


class _Sums:
    """Running sums of the loss and of every metric over an epoch, where the model runs."""

    def __init__(self, metrics):
        self.metrics = metrics
        self.reset()

    def reset(self):
        self.loss, self.count = 0.0, 0
        self.metrics.reset()

    def add_loss(self, loss, m):
        self.loss = self.loss + loss.astype(np.float64) * m  # float64, as a host sum would be
        self.count += m

    def logs(self):
        """Floats: the one read of the device per epoch."""
        out = {"loss": float(self.loss) / max(self.count, 1)}
        out.update(self.metrics.results())
        return out


class Trainer:
    """compile / fit / evaluate / predict for a model (mixed into Sequential)."""

    optimizer = None
    compiled_loss = None
    compiled_metrics = None
    stop_training = False
    history = None

    @property
    def training_state(self) -> TrainingState:
        st = self.__dict__.get("_training_state")
        if st is None:
            st = self.__dict__["_training_state"] = TrainingState()
        return st

    @property
    def epoch(self) -> int:
        """Completed epochs (the training position)."""
        return self.training_state.epoch

    @epoch.setter
    def epoch(self, value):
        self.training_state.epoch = int(value)

    # ---- compile ------------------------------------------------------------------------
    def compile(self, optimizer="sgd", loss="categorical_crossentropy", metrics=None):
        self.optimizer = optim.get(optimizer)
        self.compiled_loss = compile_utils.CompiledLoss(loss)
        self.compiled_metrics = compile_utils.CompiledMetrics(metrics, self.compiled_loss)
        if not self.built and self.input_shape is not None:
            self.build()
        return self

    @property
    def loss(self):
        """The compiled loss as given (its name for strings)."""
        return None if self.compiled_loss is None else self.compiled_loss.identifier

    @property
    def metrics(self) -> list:
        """The compiled metrics' names, in their log order."""
        return [] if self.compiled_metrics is None else self.compiled_metrics.names

    @property
    def fused(self) -> bool:
        """True when the last layer's activation and the loss train fused on logits."""
        return self.compiled_loss is not None and self.compiled_loss.fused_with(self) is not None

    def compile_config(self) -> dict:
        """The loss and metrics as saved in a model file (strings stay strings)."""
        return {"loss": self.compiled_loss.get_config(), "metrics": self.compiled_metrics.get_config()}

    @staticmethod
    def compile_from_config(comp: dict):
        """(loss, metrics) for ``compile`` from :meth:`compile_config`'s record."""
        from .. import losses, metrics
        loss = comp.get("loss")
        loss = losses.deserialize(loss) if isinstance(loss, dict) else loss
        mets = [metrics.deserialize(m) if isinstance(m, dict) else m for m in comp.get("metrics") or []]
        return loss, mets

    def _require_compiled(self, what):
        if self.optimizer is None or self.compiled_loss is None:
            raise RuntimeError(f"{self.describe()}: call compile(optimizer=..., loss=...) before {what}")

    # ---- the steps ----------------------------------------------------------------------
    def _forward_loss(self, x, y, sample_weight, training):
        """(total loss Tensor incl. penalties and add_loss terms, prediction for metrics)."""
        self._clear_losses()
        data_loss, y_pred = self.compiled_loss(self, x, y, sample_weight)
        total = data_loss
        extra = self.losses
        if training:
            pen = self._penalty()
            if pen is not None:
                extra = extra + [pen]
        for term in extra:
            total = total + term
        return total, y_pred

    def train_step(self, data, check_finite=False):
        """One update on one batch ``(x, y[, sample_weight])`` already on the model's device.

        Returns ``(loss, y_pred, value)``: the loss a 0-d array never read here; ``value`` its
        float when ``check_finite`` asks (then a non-finite loss skips the update), else None.
        """
        x, y, sw = unpack(data)
        self.train(True)
        params = self.trainable_params()
        for p in params:
            p.grad = None
        total, y_pred = self._forward_loss(Tensor._wrap(x), y, sw, training=True)
        value = None
        if check_finite:
            value = float(total.data)
            if not math.isfinite(value):
                return total.data, y_pred, value  # weights untouched: no backward, no update
        total.backward()
        self.optimizer.step(params)
        return total.data, y_pred, value

    def test_step(self, data):
        """Loss (with penalties, as in training) and prediction on one batch, no update."""
        x, y, sw = unpack(data)
        with no_grad():
            total, y_pred = self._forward_loss(Tensor._wrap(x), y, sw, training=True)
        return total.data, y_pred

    def predict_step(self, data):
        x, _, _ = unpack(data)
        with no_grad():
            return self.forward(Tensor._wrap(x)).data

    # ---- data plumbing ------------------------------------------------------------------
    def _on_device(self):
        """Where the parameters live, from the first one (asked for every batch: no full walk)."""
        first = next(iter(self._own_and_nested_params()), None)
        return first is not None and backend.is_cupy_array(first.data)

    def _x_dtype(self):
        return np.dtype(self.dtype or backend.default_dtype)

    def _to_model(self, a, cast=False):
        """An array moved to the model's backend (x cast to the model's float dtype)."""
        if a is None:
            return None
        on = self._on_device()
        if backend.is_cupy_array(a) != on:
            a = backend.to_backend(a, "cupy" if on else "numpy")
        if cast and a.dtype != self._x_dtype():
            a = a.astype(self._x_dtype())
        return a

    def _prepare_arrays(self, x, y, sample_weight, what, finite_x=True, need_y=True):
        """Whole arrays, checked once before any step: types, lengths, shape against the model,
        finite values (unless TerminateOnNaN answers them), targets against the outputs."""
        x = as_array(x, f"{what}: x")
        y = as_array(y, f"{what}: y")
        sw = as_array(sample_weight, f"{what}: sample_weight")
        if x is None:
            raise ValueError(f"{what}: expected an array, got None")
        if need_y and y is None:
            raise ValueError(f"{what}: expected targets y for array x, got None")
        for name, a in (("y", y), ("sample_weight", sw)):
            if a is not None and len(a) != len(x):
                raise ValueError(f"{what}: x and {name} must have the same number of samples, "
                                 f"got {len(x)} and {len(a)}")
        if len(x) == 0:
            raise ValueError(f"{what}: expected at least one sample, got an empty array of shape {x.shape}")
        if sw is not None and sw.ndim != 1:
            raise ValueError(f"{what}: sample_weight expected shape ({len(x)},), got {tuple(sw.shape)}")
        if not self.built:
            self.build(tuple(x.shape[1:]))
        if tuple(x.shape[1:]) != tuple(self.input_shape):
            raise ValueError(f"{what}: {self.describe()} expected x of shape (N, "
                             f"{', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}")
        if finite_x:
            _check_finite(x, f"{what}: x")
        if y is not None:
            ids_checked = self.compiled_loss.check_targets(self, y, what)
            self.compiled_metrics.check_targets(self, y, what, ids_checked)
            if y.dtype.kind == "f":
                _check_finite(y, f"{what}: y")
        if sw is not None:
            _check_finite(sw, f"{what}: sample_weight")
        return x, y, sw

    def _place(self, x, y, sw, keep_x_on_host=False):
        """Host arrays go to the model's device once (x cast there), so no step copies a
        batch; arrays that would take over half the free device memory stay on the host."""
        if not self._on_device():
            return x, y, sw
        need = 0 if keep_x_on_host or backend.is_cupy_array(x) else \
            len(x) * int(np.prod(x.shape[1:])) * self._x_dtype().itemsize
        need += sum(a.nbytes for a in (y, sw) if a is not None and not backend.is_cupy_array(a))
        if need and need > backend.device_free_bytes() // 2:
            return x, y, sw
        if not keep_x_on_host:
            x = self._to_model(x, cast=True)
        return x, self._to_model(y), self._to_model(sw)

    def _batch_to_model(self, batch, checked, index, finite):
        """A batch from the iterator, checked (unless it came from validated arrays) and on
        the model's device, x in the model's float dtype."""
        if not checked:
            batch = check_batch(batch, index, self.input_shape, finite=finite)
            if not self.built:
                self.build(tuple(batch[0].shape[1:]))
        x, y, sw = unpack(batch)
        return self._to_model(x, cast=True), self._to_model(y), self._to_model(sw)

    def _class_weights(self, y, sw, class_weight):
        """Keras: each sample's weight times its class's (integer ids or one-hot rows)."""
        if class_weight is None:
            return sw
        xp = backend.get_array_module(y)
        ids = y if y.ndim == 1 or (y.ndim > 1 and y.dtype.kind in "iu") else y.argmax(axis=-1)
        top = max(class_weight) + 1
        key = (id(class_weight), xp.__name__)
        cached = self.__dict__.get("_class_table")
        if cached is not None and cached[0] == key:
            table = cached[1]  # on the device once per fit, not once per step
        else:
            table = np.ones(top, dtype=np.float32)
            for k, v in class_weight.items():
                table[k] = v
            table = xp.asarray(table) if xp is not np else table
            self.__dict__["_class_table"] = (key, table)
        w = table[xp.clip(ids, 0, top - 1)]
        if w.ndim > 1:
            w = w.mean(axis=tuple(range(1, w.ndim)))
        return w if sw is None else sw * w

    # ---- fit ----------------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=None, verbose=1, callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=None, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, seed=None, augment=None, resume_from=None, *, nb_epoch=None):
        """Mini-batch training with a fresh shuffle every epoch; returns a History.

        ``epochs`` defaults to 1; ``nb_epoch=`` is its Keras 1 name (a DeprecationWarning)."""
        epochs = renamed_arg("fit", "nb_epoch", nb_epoch, "epochs", epochs, epochs is not None)
        if epochs is None:
            epochs = 1
        self._require_compiled("fit")
        plan = _FitPlan(self, x, y, batch_size, epochs, verbose, callbacks, validation_split,
                        validation_data, shuffle, class_weight, sample_weight, steps_per_epoch,
                        validation_steps, validation_batch_size, augment)
        start_batch, epoch0 = self._start_position(resume_from, seed, initial_epoch)
        history = History()
        # History and the progress bar last, as in Keras: they see what other callbacks added
        cbl = CallbackList(plan.callbacks + [history, ProgbarLogger(verbose)], self)
        cbl.set_params({"epochs": plan.epochs, "steps": plan.iterator.steps, "verbose": verbose,
                        "samples": plan.samples})
        self.stop_training, self.history = False, history
        cbl.on_train_begin({})
        try:
            for epoch in range(epoch0, plan.epochs):
                logs = self._fit_epoch(plan, cbl, epoch, start_batch)
                start_batch = 0
                if logs is None:  # a non-finite loss stopped it, or the data ran out
                    break
                cbl.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
        finally:
            cbl.on_train_end({})
            plan.iterator.close()
            if plan.validation is not None:
                plan.validation.close()
            self._plan = None  # drops the references to this fit's (device) data
            self.__dict__.pop("_class_table", None)
            self.training_state.resumed_from = self.training_state.checkpoint = None
        return history

    def _start_position(self, resume_from, seed, initial_epoch):
        """(batch to start at, first epoch), after restoring a checkpoint or seeding."""
        st = self.training_state
        if resume_from is not None:
            from ..models import load_model
            other = load_model(resume_from)
            if [p.shape for p in other.params()] != [p.shape for p in self.params()]:
                from ..errors import ModelFileError
                raise ModelFileError(f"{resume_from}: its parameters {[p.shape for p in other.params()]} do not "
                                     f"match this model's {[p.shape for p in self.params()]}")
            self.set_weights(other.get_weights())
            if other.optimizer is not None and type(other.optimizer) is type(self.optimizer):
                self.optimizer.set_state(self.params(), other.optimizer.get_state(other.params()),
                                         other.optimizer.iterations)
            ost = other.training_state
            st.load_state_dict({"epoch": ost.epoch, "batch": ost.batch, "rng_state": ost.saved_rng_state,
                                "epoch_rng_state": ost.epoch_rng_state}, path=resume_from,
                               checkpoint=ost.checkpoint)
            if st.batch:
                grandom.set_state(st.epoch_rng_state)  # regenerates that epoch's shuffle
                return st.batch, st.epoch
            grandom.set_state(st.saved_rng_state)
            st.pending_rng_state = None
            return 0, st.epoch
        if seed is not None:
            grandom.set_seed(seed)
        elif st.pending_rng_state is not None:
            grandom.set_state(st.pending_rng_state)  # a loaded model continues its stream
        st.pending_rng_state = None
        return 0, 0 if initial_epoch is None else int(initial_epoch)

    def _fit_epoch(self, plan, cbl, epoch, start_batch):
        st = self.training_state
        rng = grandom.get_rng()
        st.begin_epoch(epoch, rng.bit_generator.state)
        plan.iterator.begin(rng)
        if start_batch:
            grandom.set_state(st.saved_rng_state)  # the mid-epoch stream, after the shuffle
            st.batch = start_batch
        cbl.on_epoch_begin(epoch, {})
        sums = plan.sums
        sums.reset()
        ran = False
        for b, batch in plan.iterator.batches(start_batch):
            ran = True
            cbl.on_train_batch_begin(b, {})
            xb, yb, swb = self._batch_to_model(batch, plan.checked, b, finite=not plan.check_finite)
            if plan.augment is not None:
                xb = self._to_model(plan.augment(backend.to_numpy(xb), grandom.get_rng()), cast=True)
            swb = self._class_weights(yb, swb, plan.class_weight)
            st.batch = b + 1
            loss, y_pred, value = self.train_step((xb, yb, swb), plan.check_finite)
            m = len(xb)
            sums.add_loss(loss, m)
            if value is None or math.isfinite(value):
                self.compiled_metrics.update(yb, y_pred, swb)
            # batch logs: the device scalar on the GPU unless it was read anyway (TerminateOnNaN)
            batch_loss = value if value is not None else (loss if backend.is_cupy_array(loss) else float(loss))
            cbl.on_train_batch_end(b, {"loss": batch_loss, "epoch": epoch, "size": m})
            if self.stop_training and not math.isfinite(value if value is not None else float(loss)):
                return None
        exhausted = getattr(plan.iterator.adapter, "exhausted", False)
        if not ran or exhausted and sums.count == 0:
            return None
        plan.iterator.end()
        logs = sums.logs()
        st.end_epoch(epoch)
        if plan.validation is not None:
            val = self._evaluate_logs(plan.validation, plan.validation_batch_size, plan.validation_steps)
            logs.update({f"val_{k}": v for k, v in val.items()})
        if exhausted:
            self.stop_training = True
        return logs

    # ---- evaluate / predict -------------------------------------------------------------
    def _eval_iterator(self, x, y, sample_weight, batch_size, steps, what):
        adapter = get_adapter(x, y, sample_weight, batch_size, shuffle=False, steps=steps, what=what)
        if adapter is None:
            x, y, sw = self._prepare_arrays(x, y, sample_weight, what)
            x, y, sw = self._place(x, y, sw)
            adapter = ArrayAdapter(x, y, sw, batch_size, shuffle=False)
            if steps is not None:
                adapter.steps = min(adapter.steps, int(steps))
        return EpochIterator(adapter)

    def _evaluate_logs(self, data, batch_size, steps=None):
        """{"loss": ..., metric: ...} over ``data``: an EpochIterator, or (x, y[, sw])."""
        owned = not isinstance(data, EpochIterator)
        it = self._eval_iterator(*unpack(data), batch_size, steps, "evaluate") if owned else data
        training = self.training
        self.train(False)
        sums = _Sums(self.compiled_metrics)
        sums.reset()
        try:
            it.begin(grandom.get_rng())
            for b, batch in it.batches():
                xb, yb, swb = self._batch_to_model(batch, it.adapter.checked, b, finite=True)
                loss, y_pred = self.test_step((xb, yb, swb))
                sums.add_loss(loss, len(xb))
                self.compiled_metrics.update(yb, y_pred, swb)
        finally:
            self.train(training)
            if owned:
                it.close()
        if sums.count == 0:
            raise ValueError("evaluate: the data gave no batch")
        return sums.logs()

    def evaluate(self, x=None, y=None, batch_size=None, verbose=0, sample_weight=None, steps=None,
                 callbacks=None, return_dict=False):
        """Keras' return: the loss alone without metrics, else ``[loss, *metrics]``;
        ``return_dict=True`` gives ``{"loss": ..., name: ...}``."""
        self._require_compiled("evaluate")
        batch_size = 32 if batch_size is None else _positive_int("evaluate: batch_size", batch_size)
        cbl = CallbackList(list(callbacks or []), self)
        cbl.on_test_begin({})
        logs = self._evaluate_logs((x, y, sample_weight), batch_size, steps)
        cbl.on_test_end(logs)
        if verbose:
            print(_fmt(logs))
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=None, verbose=0, steps=None, callbacks=None):
        """Outputs for x, as a host NumPy array."""
        batch_size = 32 if batch_size is None else _positive_int("predict: batch_size", batch_size)
        adapter = get_adapter(x, None, None, batch_size, shuffle=False, steps=steps, what="predict")
        if adapter is None:
            xa, _, _ = self._prepare_arrays(x, None, None, "predict", need_y=False)
            adapter = ArrayAdapter(xa, None, None, batch_size, shuffle=False)
        it = EpochIterator(adapter)
        training = self.training
        self.train(False)
        outs = []
        try:
            it.begin(grandom.get_rng())
            for b, batch in it.batches():
                if not adapter.checked:
                    batch = check_batch(batch, b, self.input_shape, need_y=False)
                xb = self._to_model(unpack(batch)[0], cast=True)
                outs.append(backend.to_numpy(self.predict_step((xb,))))
        finally:
            self.train(training)
            it.close()
        if not outs:
            raise ValueError("predict: the data gave no batch")
        return np.concatenate(outs, axis=0)

    # ---- one batch ----------------------------------------------------------------------
    def _one_batch(self, x, y, sample_weight, what):
        x, y, sw = self._prepare_arrays(x, y, sample_weight, what)
        return self._to_model(x, cast=True), self._to_model(y), self._to_model(sw)

    def _result(self, loss, y, y_pred, sw, return_dict):
        self.compiled_metrics.reset()
        self.compiled_metrics.update(y, y_pred, sw)
        logs = {"loss": float(loss)}
        logs.update(self.compiled_metrics.results())
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """One update on one batch; returns what ``evaluate`` would for that batch, before the update."""
        self._require_compiled("train_on_batch")
        x, y, sw = self._one_batch(x, y, sample_weight, "train_on_batch")
        sw = self._class_weights(y, sw, class_weight)
        loss, y_pred, _ = self.train_step((x, y, sw))
        return self._result(loss, y, y_pred, sw, return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        self._require_compiled("test_on_batch")
        x, y, sw = self._one_batch(x, y, sample_weight, "test_on_batch")
        training = self.training
        self.train(False)
        try:
            loss, y_pred = self.test_step((x, y, sw))
        finally:
            self.train(training)
        return self._result(loss, y, y_pred, sw, return_dict)

    def predict_on_batch(self, x):
        xa, _, _ = self._prepare_arrays(x, None, None, "predict_on_batch", need_y=False)
        training = self.training
        self.train(False)
        try:
            return backend.to_numpy(self.predict_step((self._to_model(xa, cast=True),)))
        finally:
            self.train(training)

    def running_logs(self) -> dict:
        """The epoch's running loss and metrics so far, as floats (reads the device)."""
        plan = getattr(self, "_plan", None)
        return {} if plan is None else plan.sums.logs()


class _FitPlan:
    """What one ``fit`` call trains on and how: validated arguments, the epoch iterator, the
    validation data, the callbacks; built before any epoch runs, so bad input fails first."""

    def __init__(self, model, x, y, batch_size, epochs, verbose, callbacks, validation_split,
                 validation_data, shuffle, class_weight, sample_weight, steps_per_epoch,
                 validation_steps, validation_batch_size, augment):
        self.batch_size = 32 if batch_size is None else _positive_int("fit: batch_size", batch_size)
        self.epochs = _positive_int("fit: epochs", epochs)
        if steps_per_epoch is not None:
            steps_per_epoch = _positive_int("fit: steps_per_epoch", steps_per_epoch)
        if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float)) \
                or not 0.0 <= validation_split < 1.0:
            raise ValueError(f"fit: validation_split expected a number in [0, 1), got {validation_split!r}")
        if verbose not in (0, 1, 2):
            raise ValueError(f"fit: verbose expected 0, 1 or 2, got {verbose!r}")
        if augment is not None and not callable(augment):
            raise TypeError(f"fit: augment expected a callable (x_batch, rng) -> x_batch, got {type(augment).__name__}")
        if class_weight is not None:
            if not isinstance(class_weight, dict) or not all(
                    isinstance(k, (int, np.integer)) and k >= 0 and isinstance(v, (int, float)) and math.isfinite(v)
                    for k, v in class_weight.items()):
                raise ValueError("fit: class_weight expected a dict {class id >= 0: finite weight}, "
                                 f"got {class_weight!r}")
        self.class_weight = class_weight
        self.augment = augment
        self.callbacks = list(callbacks or [])
        # with TerminateOnNaN the run itself answers a non-finite batch (it stops there, that
        # batch's update unapplied); without it, non-finite inputs are refused before training
        self.check_finite = any(isinstance(c, TerminateOnNaN) for c in self.callbacks)
        self.validation_batch_size = validation_batch_size or max(self.batch_size, 256)
        self.validation_steps = validation_steps
        adapter = get_adapter(x, y, sample_weight, self.batch_size, shuffle, steps_per_epoch, "fit")
        if adapter is None:
            xa, ya, swa = model._prepare_arrays(x, y, sample_weight, "fit", finite_x=not self.check_finite)
            val = None
            if validation_data is None and validation_split:
                n_val = int(len(xa) * validation_split)
                if n_val < 1 or n_val >= len(xa):
                    raise ValueError(f"fit: validation_split={validation_split} of {len(xa)} samples leaves "
                                     f"{n_val} for validation and {len(xa) - n_val} for training; need at "
                                     "least one of each")
                val = (xa[-n_val:], ya[-n_val:], None if swa is None else swa[-n_val:])
                xa, ya, swa = xa[:-n_val], ya[:-n_val], None if swa is None else swa[:-n_val]
            xa, ya, swa = model._place(xa, ya, swa, keep_x_on_host=augment is not None)
            adapter = ArrayAdapter(xa, ya, swa, self.batch_size, shuffle)
            if steps_per_epoch is not None:
                adapter.steps = min(adapter.steps, steps_per_epoch)
            self.samples = adapter.n
            validation = val
        else:
            if validation_split:
                raise ValueError("fit: validation_split needs array data; pass validation_data= "
                                 "with a Dataset or a generator")
            self.samples = None
            validation = None
        if validation_data is not None:
            if isinstance(validation_data, (tuple, list)):
                if len(validation_data) not in (2, 3):
                    raise ValueError("fit: validation_data expected (x_val, y_val) or (x_val, y_val, "
                                     f"sample_weight), got {len(validation_data)} items")
                validation = tuple(validation_data) + (None,) * (3 - len(validation_data))
            else:
                validation = (validation_data, None, None)
        self.validation = None if validation is None else model._eval_iterator(
            *validation, self.validation_batch_size, validation_steps, "fit: validation_data")
        self.checked = adapter.checked
        self.iterator = EpochIterator(adapter)
        self.sums = _Sums(model.compiled_metrics)
        model._plan = self
