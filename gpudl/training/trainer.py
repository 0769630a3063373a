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
from ..functional._threads import loop_scope
from ..layers.base import renamed_arg
from . import compile_utils
from .epoch_iterator import (ArrayAdapter, EpochIterator, IterableAdapter, as_array, check_batch, get_adapter,
                             unpack)
from .progbar import ProgbarLogger, _fmt
from .state import TrainingState
from .structure import first, leaves, map_leaves, standardize

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

    def __init__(self, metrics, compiled_loss=None):
        self.metrics = metrics
        self.compiled_loss = compiled_loss
        self.reset()

    def reset(self):
        self.loss, self.count = 0.0, 0
        self.parts = None
        self.metrics.reset()

    def add_loss(self, loss, m):
        self.loss = self.loss + loss.astype(np.float64) * m  # float64, as a host sum would be
        self.count += m
        cl = self.compiled_loss
        if cl is not None and cl.multi and cl.parts is not None:
            vals = [p.data.astype(np.float64) * m for p in cl.parts]
            self.parts = vals if self.parts is None else [a + b for a, b in zip(self.parts, vals)]

    def allreduce(self, comm):
        """Sum the loss sums, counts and metric states over the ranks (once an epoch), in
        rank order on every rank: every rank then logs the same numbers."""
        if comm is None or comm.size == 1:
            return
        from ..distributed import allreduce_metrics
        from ..distributed.reduce import combine_states
        local = {"loss": float(self.loss), "count": int(self.count),
                 "parts": None if self.parts is None else [float(v) for v in self.parts]}
        total = combine_states(comm.allgather_object(local))
        self.loss, self.count, self.parts = total["loss"], total["count"], total["parts"]
        allreduce_metrics(self.metrics.metrics, comm)

    def logs(self):
        """Floats: the one read of the device per epoch."""
        out = {"loss": float(self.loss) / max(self.count, 1)}
        if self.parts is not None:
            for name, v in zip(self.compiled_loss.output_names, self.parts):
                out[f"{name}_loss"] = float(v) / max(self.count, 1)
        out.update(self.metrics.results())
        return out


def _wrap(x):
    """Raw batch array(s) as Tensors: one, or a list (one per input)."""
    if isinstance(x, tuple):
        return [Tensor._wrap(a) for a in x]
    return Tensor._wrap(x)


def _to_host(out):
    return [backend.to_numpy(o) for o in out] if isinstance(out, list) else backend.to_numpy(out)


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
    def compile(self, optimizer="sgd", loss="categorical_crossentropy", metrics=None, loss_weights=None):
        """``loss`` and ``metrics`` for a model of several outputs: one for all, a list in
        output order or a dict by output name (metrics also a list of lists); ``loss_weights``
        likewise weights each output's loss in the total (Keras' compile)."""
        from ..distributed.optimizer import DistributedOptimizer
        # a DistributedOptimizer makes fit distributed by default; the model keeps (and saves)
        # the optimizer inside it, and fit does the allreduce
        self._distributed_default = isinstance(optimizer, DistributedOptimizer)
        self.optimizer = optimizer.optimizer if self._distributed_default else optim.get(optimizer)
        self.compiled_loss = compile_utils.CompiledLoss(loss, self.output_names, loss_weights)
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
        out = {"loss": self.compiled_loss.get_config(), "metrics": self.compiled_metrics.get_config()}
        if self.compiled_loss.loss_weights is not None:
            out["loss_weights"] = self.compiled_loss.weights
        return out

    @staticmethod
    def compile_from_config(comp: dict, custom_objects=None):
        """(loss, metrics[, loss_weights]) for ``compile`` from :meth:`compile_config`'s record."""
        from .. import losses, metrics

        def loss_of(v):
            return losses.deserialize(v, custom_objects) if isinstance(v, dict) else v

        def mets_of(v):
            return [metrics.deserialize(m, custom_objects) if isinstance(m, dict) else m for m in v or []]
        loss, mets = comp.get("loss"), comp.get("metrics")
        if isinstance(loss, dict) and "outputs" in loss:
            loss = [loss_of(v) for v in loss["outputs"]]
        else:
            loss = loss_of(loss)
        if isinstance(mets, dict) and "outputs" in mets:
            mets = [mets_of(v) for v in mets["outputs"]]
        else:
            mets = mets_of(mets)
        if "loss_weights" in comp:
            return loss, mets, comp["loss_weights"]
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
        total, y_pred = self._forward_loss(_wrap(x), y, sw, training=True)
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
            total, y_pred = self._forward_loss(_wrap(x), y, sw, training=True)
        return total.data, y_pred

    def predict_step(self, data):
        """The model's output(s) as arrays: one, or a list in output order."""
        x, _, _ = unpack(data)
        with no_grad():
            out = self.forward(_wrap(x))
        if isinstance(out, dict):
            out = [out[k] for k in self.output_names]
        return [o.data for o in out] if isinstance(out, (list, tuple)) else out.data

    # ---- data plumbing ------------------------------------------------------------------
    def _on_device(self):
        """Where the parameters live, from the first one (asked for every batch: no full walk)."""
        first = next(iter(self._own_and_nested_params()), None)
        return first is not None and backend.is_cupy_array(first.data)

    def _x_dtype(self):
        return np.dtype(self.dtype or backend.default_dtype)

    def _to_model(self, a, cast=False):
        """Array(s) moved to the model's backend (x cast to each input's dtype: the model's
        float dtype, or an integer Input's own)."""
        if isinstance(a, tuple):
            dts = self.input_dtypes if cast else [None] * len(a)
            return tuple(self._to_model_one(v, cast, dt) for v, dt in zip(a, dts))
        return self._to_model_one(a, cast, self.input_dtypes[0] if cast else None)

    def _to_model_one(self, a, cast, input_dtype=None):
        if a is None:
            return None
        on = self._on_device()
        if backend.is_cupy_array(a) != on:
            a = backend.to_backend(a, "cupy" if on else "numpy")
        if cast:
            want = input_dtype if input_dtype is not None and input_dtype.kind in "iub" else self._x_dtype()
            if a.dtype != want:
                a = a.astype(want)
        return a

    def _standardize(self, x, y, sw, what):
        """x, y and sample_weight in the trainer's form (an array, or a tuple per input/output)."""
        x = standardize(x, self.input_names, f"{what}: x", as_array)
        y = standardize(y, self.output_names, f"{what}: y", as_array)
        if sw is not None and len(self.output_names) > 1 and not isinstance(sw, (list, tuple, dict)):
            sw = as_array(sw, f"{what}: sample_weight")  # one weight per sample, for every output
        else:
            sw = standardize(sw, self.output_names, f"{what}: sample_weight", as_array)
        return x, y, sw

    def _prepare_arrays(self, x, y, sample_weight, what, finite_x=True, need_y=True):
        """Whole arrays, checked once before any step: types, lengths, shape against the model,
        finite values (unless TerminateOnNaN answers them), targets against the outputs."""
        if x is None:
            raise ValueError(f"{what}: expected an array, got None")
        x, y, sw = self._standardize(x, y, sample_weight, what)
        if need_y and y is None:
            raise ValueError(f"{what}: expected targets y for array x, got None")
        x0 = first(x)
        for name, a in [("x", v) for v in leaves(x)[1:]] + [("y", v) for v in leaves(y) if v is not None] + \
                [("sample_weight", v) for v in leaves(sw) if v is not None]:
            if len(a) != len(x0):
                raise ValueError(f"{what}: x and {name} must have the same number of samples, "
                                 f"got {len(x0)} and {len(a)}")
        if len(x0) == 0:
            raise ValueError(f"{what}: expected at least one sample, got an empty array of shape {x0.shape}")
        for a in leaves(sw):
            if a is not None and a.ndim != 1:
                raise ValueError(f"{what}: sample_weight expected shape ({len(x0)},), got {tuple(a.shape)}")
        if not self.built:
            self.build(tuple(x0.shape[1:]))
        for a, shape, name in zip(leaves(x), self.input_shapes, self.input_names):
            if tuple(a.shape[1:]) != tuple(shape):
                which = f" for input {name!r}" if isinstance(x, tuple) else ""
                raise ValueError(f"{what}: {self.describe()} expected x{which} of shape (N, "
                                 f"{', '.join(map(str, shape))}), got {tuple(a.shape)}")
            if finite_x:
                _check_finite(a, f"{what}: x")
        if y is not None:
            ids_checked = self.compiled_loss.check_targets(self, y, what)
            self.compiled_metrics.check_targets(self, y, what, ids_checked)
            for a in leaves(y):
                if a.dtype.kind == "f":
                    _check_finite(a, f"{what}: y")
        for a in leaves(sw):
            if a is not None:
                _check_finite(a, f"{what}: sample_weight")
        return x, y, sw

    def _place(self, x, y, sw, keep_x_on_host=False):
        """Host arrays go to the model's device once (x cast there), so no step copies a
        batch; arrays that would take over half the free device memory stay on the host."""
        if not self._on_device():
            return x, y, sw
        need = 0 if keep_x_on_host else sum(
            len(a) * int(np.prod(a.shape[1:])) * self._x_dtype().itemsize
            for a in leaves(x) if not backend.is_cupy_array(a))
        need += sum(a.nbytes for a in leaves(y) + leaves(sw) if a is not None and not backend.is_cupy_array(a))
        if need and need > backend.device_free_bytes() // 2:
            return x, y, sw
        if not keep_x_on_host:
            x = self._to_model(x, cast=True)
        return x, self._to_model(y), self._to_model(sw)

    def _batch_to_model(self, batch, checked, index, finite):
        """A batch from the iterator, checked (unless it came from validated arrays) and on
        the model's device, x in the model's float dtype."""
        if not checked:
            batch = check_batch(batch, index, self.input_shapes, finite=finite, standardize=self._standardize)
            if not self.built:
                self.build(tuple(first(batch[0]).shape[1:]))
        x, y, sw = unpack(batch)
        return self._to_model(x, cast=True), self._to_model(y), self._to_model(sw)

    def _class_weights(self, y, sw, class_weight):
        """Keras: each sample's weight times its class's (integer ids or one-hot rows)."""
        if class_weight is None:
            return sw
        if isinstance(y, tuple):
            raise ValueError("fit: class_weight applies to a model with one output; for several outputs "
                             "pass sample_weight per output")
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
            validation_batch_size=None, seed=None, augment=None, resume_from=None, distributed=None, *,
            nb_epoch=None):
        """Mini-batch training with a fresh shuffle every epoch; returns a History.

        ``epochs`` defaults to 1; ``nb_epoch=`` is its Keras 1 name (a DeprecationWarning).

        ``distributed=True``: data-parallel over ``gpudl.distributed.world()`` (a world of one
        without a launcher, where it trains exactly as ``fit`` does). ``batch_size`` is the
        global batch: every rank walks the same shuffle and takes its share of each batch,
        the gradients are summed in one allreduce per step, the logs over all ranks; only
        rank 0 prints and writes files. None: True when compiled with a DistributedOptimizer.
        """
        epochs = renamed_arg("fit", "nb_epoch", nb_epoch, "epochs", epochs, epochs is not None)
        if epochs is None:
            epochs = 1
        self._require_compiled("fit")
        comm = self._fit_world(distributed)
        plan = _FitPlan(self, x, y, batch_size, epochs, verbose, callbacks, validation_split,
                        validation_data, shuffle, class_weight, sample_weight, steps_per_epoch,
                        validation_steps, validation_batch_size, augment, comm)
        start_batch, epoch0 = self._start_position(resume_from, seed, initial_epoch)
        self._check_resume_batch(start_batch, plan)
        if comm is not None:
            self._sync_start(comm)
            if comm.rank != 0:
                verbose = 0
        from .. import distributed as dist
        was_writer = dist._set_writer(comm is None or comm.rank == 0)
        st = self.training_state
        st.world_size = 1 if comm is None else comm.size
        st.global_batch_size = plan.batch_size if plan.samples is not None else None
        history = History()
        # History and the progress bar last, as in Keras: they see what other callbacks added
        cbl = CallbackList(plan.callbacks + [history, ProgbarLogger(verbose)], self)
        cbl.set_params({"epochs": plan.epochs, "steps": plan.iterator.steps, "verbose": verbose,
                        "samples": plan.samples})
        self.stop_training, self.history = False, history
        cbl.on_train_begin({})
        try:
            with loop_scope():  # a CNN's steps: BLAS held to one thread, the pool does the products
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
            dist._set_writer(was_writer)
        return history

    def _fit_world(self, distributed):
        """The communicator of a distributed fit, or None."""
        if distributed is None:
            distributed = self.__dict__.get("_distributed_default", False)
        if not isinstance(distributed, (bool, np.bool_)):
            raise TypeError(f"fit: distributed expected True, False or None, got {distributed!r}")
        if not distributed:
            return None
        from ..distributed import world
        return world()

    def _sync_start(self, comm):
        """Rank 0's weights (moving statistics included) and generator state everywhere: the
        ranks start identical and draw the same shuffles, mask keys and augmentations."""
        if comm.size == 1:
            return
        if not self.built:
            raise ValueError(f"fit(distributed=True): {self.describe()} is not built, so its ranks would "
                             "each make their own initial weights; give it an input shape (input_shape= "
                             "or model.build(shape)) before a distributed fit on this data")
        from ..distributed import broadcast_parameters
        broadcast_parameters(self, 0, comm)
        grandom.set_state(comm.bcast_object(grandom.get_state(), 0))

    def _check_resume_batch(self, start_batch, plan):
        """A mid-epoch position counts global batches: it only means the same samples with the
        batch size it was saved with."""
        saved = self.training_state.saved_global_batch_size
        if start_batch and saved is not None and plan.samples is not None and saved != plan.batch_size:
            raise ValueError(f"fit: the checkpoint stopped after batch {start_batch} of an epoch with a "
                             f"global batch_size of {saved}; resume it with batch_size={saved}, got "
                             f"{plan.batch_size}")

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
                                "epoch_rng_state": ost.epoch_rng_state, "world_size": ost.saved_world_size,
                                "global_batch_size": ost.saved_global_batch_size}, path=resume_from,
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
            if not self._fit_batch(plan, cbl, epoch, b, batch):
                return None
        exhausted = getattr(plan.iterator.adapter, "exhausted", False)
        if not ran or exhausted and sums.count == 0:
            return None
        plan.iterator.end()
        sums.allreduce(plan.comm)
        logs = sums.logs()
        self._average_statistics(plan.comm)
        st.end_epoch(epoch)
        if plan.validation is not None:
            val = self._evaluate_logs(plan.validation, plan.validation_batch_size, plan.validation_steps,
                                      comm=plan.comm)
            logs.update({f"val_{k}": v for k, v in val.items()})
        if exhausted:
            self.stop_training = True
        return logs

    def _fit_batch(self, plan, cbl, epoch, b, batch) -> bool:
        """One training batch: this rank's share, augmented, one step, the sums and the batch
        logs. False when a non-finite loss stopped training (TerminateOnNaN)."""
        st, sums = self.training_state, plan.sums
        cbl.on_train_batch_begin(b, {})
        xb, yb, swb = self._batch_to_model(batch, plan.checked, b, finite=not plan.check_finite)
        if plan.augment is not None and not plan.augment_share:
            xb = self._augment(plan, xb, 0)  # a callable without sample_offset: the whole batch
        (xb, yb, swb), offset, n_global = plan.share(b, xb, yb, swb)
        if plan.augment is not None and plan.augment_share:
            xb = self._augment(plan, xb, offset)
        swb = self._class_weights(yb, swb, plan.class_weight)
        st.batch = b + 1
        m = len(first(xb))
        # one key per step from the shared generator: masks are keyed on it and on each
        # sample's place in the global batch (see gpudl.random.training_step)
        with grandom.training_step(self.optimizer.iterations, offset):
            if plan.reducer is None:
                loss, y_pred, value = self.train_step((xb, yb, swb), plan.check_finite)
                batch_loss = loss
            else:
                loss, y_pred, value, batch_loss = self._dp_train_step(
                    plan, (xb, yb, swb), m / n_global, plan.check_finite)
        if m:
            sums.add_loss(loss, m)
            if value is None or math.isfinite(value):
                self.compiled_metrics.update(yb, y_pred, swb)
        # batch logs: the device scalar on the GPU unless it was read anyway (TerminateOnNaN);
        # in a distributed fit the loss of the global batch, the same on every rank
        if value is None:
            value_or_loss = batch_loss if backend.is_cupy_array(batch_loss) else float(batch_loss)
        else:
            value_or_loss = value
        cbl.on_train_batch_end(b, {"loss": value_or_loss, "epoch": epoch, "size": n_global})
        return not (self.stop_training and not math.isfinite(value if value is not None else float(batch_loss)))

    def _augment(self, plan, x, offset):
        """``plan.augment`` on this rank's rows: told their offset in the global batch when it
        takes ``sample_offset`` (then its draws are per global sample)."""
        rng = grandom.get_rng()
        if plan.augment_offset:
            fn = lambda a: plan.augment(backend.to_numpy(a), rng, sample_offset=offset)  # noqa: E731
        else:
            fn = lambda a: plan.augment(backend.to_numpy(a), rng)  # noqa: E731
        return self._to_model(map_leaves(fn, x), cast=True)

    def _dp_train_step(self, plan, data, weight, check_finite=False):
        """One data-parallel update: this rank's share of the global batch forward and back
        (nothing when its share is empty), the gradients and the loss, weighted by the share
        ``weight``, summed over the ranks in one allreduce, then the update on every rank.

        Returns ``(local loss or None, y_pred, value, global batch loss)``; ``value`` the
        global loss's float when ``check_finite`` asks (a non-finite one skips the update on
        every rank alike)."""
        x, y, sw = unpack(data)
        self.train(True)
        params = self.trainable_params()
        for p in params:
            p.grad = None
        loss = y_pred = None
        if weight > 0:
            total, y_pred = self._forward_loss(_wrap(x), y, sw, training=True)
            total.backward()
            loss = total.data
        grads, (global_loss,) = plan.reducer.reduce(params, [p.grad for p in params], weight,
                                                   extras=[0.0 if loss is None else loss])
        for p in params:
            p.grad = None  # the buffer's views stay the reducer's
        value = None
        if check_finite:
            value = float(global_loss)
            if not math.isfinite(value):
                return loss, y_pred, value, global_loss
        if any(g is not None for g in grads):
            self.optimizer._apply(params, grads, "step")
        return loss, y_pred, value, global_loss

    def _average_statistics(self, comm):
        """Moving statistics (BatchNormalization's) are each rank's own during the epoch; their
        mean over the ranks at its end keeps the ranks identical for validation and saving."""
        if comm is None or comm.size == 1:
            return
        stats = [p.data for p in self.params() if getattr(p, "trainable", True) is False]
        if stats:
            from ..distributed.reduce import average_arrays
            average_arrays(comm, stats)

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

    def _evaluate_logs(self, data, batch_size, steps=None, comm=None):
        """{"loss": ..., metric: ...} over ``data``: an EpochIterator, or (x, y[, sw]). With a
        communicator of several ranks each evaluates its share of every batch and the sums
        are added over the ranks."""
        owned = not isinstance(data, EpochIterator)
        it = self._eval_iterator(*unpack(data), batch_size, steps, "evaluate") if owned else data
        training = self.training
        self.train(False)
        sums = _Sums(self.compiled_metrics, self.compiled_loss)
        sums.reset()
        try:
            it.begin(grandom.get_rng())
            for b, batch in it.batches():
                xb, yb, swb = self._batch_to_model(batch, it.adapter.checked, b, finite=True)
                if comm is not None and comm.size > 1:
                    (xb, yb, swb), _, _ = _take_share(it.adapter, comm, b, xb, yb, swb)
                if len(first(xb)) == 0:
                    continue
                loss, y_pred = self.test_step((xb, yb, swb))
                sums.add_loss(loss, len(first(xb)))
                self.compiled_metrics.update(yb, y_pred, swb)
        finally:
            self.train(training)
            if owned:
                it.close()
        sums.allreduce(comm)
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
        with loop_scope():
            logs = self._evaluate_logs((x, y, sample_weight), batch_size, steps)
        cbl.on_test_end(logs)
        if verbose:
            print(_fmt(logs))
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=None, verbose=0, steps=None, callbacks=None):
        """Outputs for x, as a host NumPy array (a list of them, in output order, for a model
        of several outputs; a dict when its outputs were given as one)."""
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
            with loop_scope():
                for b, batch in it.batches():
                    if not adapter.checked:
                        batch = check_batch(batch, b, self.input_shapes, need_y=False, standardize=self._standardize)
                    xb = self._to_model(unpack(batch)[0], cast=True)
                    outs.append(_to_host(self.predict_step((xb,))))
        finally:
            self.train(training)
            it.close()
        if not outs:
            raise ValueError("predict: the data gave no batch")
        return self._output_structure(outs)

    def _output_structure(self, outs):
        """Per-batch outputs joined: an array, a list per output, or a dict by output name."""
        if not isinstance(outs[0], list):
            return np.concatenate(outs, axis=0)
        joined = [np.concatenate([o[i] for o in outs], axis=0) for i in range(len(outs[0]))]
        if getattr(self, "_output_kind", None) == "dict":
            return dict(zip(self.output_names, joined))
        return joined

    # ---- one batch ----------------------------------------------------------------------
    def _one_batch(self, x, y, sample_weight, what):
        x, y, sw = self._prepare_arrays(x, y, sample_weight, what)
        return self._to_model(x, cast=True), self._to_model(y), self._to_model(sw)

    def _result(self, loss, y, y_pred, sw, return_dict):
        self.compiled_metrics.reset()
        self.compiled_metrics.update(y, y_pred, sw)
        logs = {"loss": float(loss)}
        if self.compiled_loss.multi:
            for name, part in zip(self.compiled_loss.output_names, self.compiled_loss.parts):
                logs[f"{name}_loss"] = float(part.data)
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
            return self._output_structure([_to_host(self.predict_step((self._to_model(xa, cast=True),)))])
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
                 validation_steps, validation_batch_size, augment, comm=None):
        self.comm = comm
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
                n_all = len(first(xa))
                n_val = int(n_all * validation_split)
                if n_val < 1 or n_val >= n_all:
                    raise ValueError(f"fit: validation_split={validation_split} of {n_all} samples leaves "
                                     f"{n_val} for validation and {n_all - n_val} for training; need at "
                                     "least one of each")

                def tail(a):
                    return None if a is None else map_leaves(lambda v: v[-n_val:], a)

                def head(a):
                    return None if a is None else map_leaves(lambda v: v[:-n_val], a)
                val = (tail(xa), tail(ya), tail(swa))
                xa, ya, swa = head(xa), head(ya), head(swa)
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
        self.sums = _Sums(model.compiled_metrics, model.compiled_loss)
        self._plan_distributed(model, adapter, augment, comm)
        model._plan = self

    def _plan_distributed(self, model, adapter, augment, comm):
        """How each rank takes its share of a batch, and the gradient reducer (None: plain fit)."""
        from ..distributed.reduce import GradientReducer
        many = comm is not None and comm.size > 1
        if many and isinstance(adapter, IterableAdapter):
            raise ValueError("fit(distributed=True): a generator or iterable gives each rank its own "
                             "batches, which need not agree; pass arrays or a gpudl.data.Dataset "
                             "(every rank reads the same global batch and takes its share)")
        # an augmentation told each share's offset draws per global sample; one that is not
        # told runs on the whole global batch on every rank (the same draws), then is shared
        self.augment_offset = augment is not None and _takes_sample_offset(augment)
        self.augment_share = augment is not None and (self.augment_offset or not many)
        if many and isinstance(adapter, ArrayAdapter) and not (augment is not None and not self.augment_share):
            adapter.part = (comm.rank, comm.size)  # read only this rank's rows of each batch
        if many and self.validation is not None and isinstance(self.validation.adapter, ArrayAdapter):
            self.validation.adapter.part = (comm.rank, comm.size)
        self.reducer = None if comm is None else GradientReducer(comm)

    def share(self, b, x, y, sw):
        """(this rank's (x, y, sw), its offset in global batch ``b``, the global batch's size)."""
        if self.comm is None or self.comm.size == 1:
            return (x, y, sw), 0, len(first(x))
        return _take_share(self.iterator.adapter, self.comm, b, x, y, sw)


def _takes_sample_offset(fn) -> bool:
    """Whether a callable accepts ``sample_offset=`` (RandomShiftRotate does)."""
    import inspect
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "sample_offset" in params


def _take_share(adapter, comm, b, x, y, sw):
    """This rank's rows of global batch ``b`` (already cut by an ArrayAdapter reading its part),
    their offset in the batch and the batch's size."""
    from ..distributed.reduce import share
    if getattr(adapter, "part", None) is not None:
        n = adapter.batch_len(b)
        lo, _ = share(n, comm.rank, comm.size)
        return (x, y, sw), lo, n
    n = len(first(x))
    lo, hi = share(n, comm.rank, comm.size)

    def cut(a):
        return None if a is None else map_leaves(lambda v: v[lo:hi], a)
    return (cut(x), cut(y), cut(sw)), lo, n
