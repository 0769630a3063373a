"""Lecture II's recurrent layers: SimpleRNN, LSTM, GRU, and the Bidirectional and
TimeDistributed wrappers (Keras API, batch-first input (batch, timesteps, features)).

A recurrent layer projects every step's input with one matmul ``x @ W + b``, then runs
one fused cell op per step (gpudl.functional.recurrent); the autograd walks that chain
backwards, which is backpropagation through time.

Parameters, Keras' layout on every backend (``k`` gate blocks of ``units`` columns):

=========  ============  ==============  ==============================================
layer      W (kernel)    U (recurrent)   b (bias)
=========  ============  ==============  ==============================================
SimpleRNN  (F, units)    (units, units)  (units,)
LSTM       (F, 4*units)  (units, 4*u.)   (4*units,), gates i, f, c, o
GRU        (F, 3*units)  (units, 3*u.)   (2, 3*units) with reset_after (row 0 input
                                         bias, row 1 recurrent bias), else (3*units,);
                                         gates z, r, h
=========  ============  ==============  ==============================================

Keras' masks, dropout and statefulness, on every layer:

- ``layer(x, mask=m)``, ``m`` (batch, timesteps) boolean or 0/1 (or the mask a Masking or
  Embedding(mask_zero=True) layer computes): a masked step carries the states through;
  its output is the carried h, or zeros with ``zero_output_for_mask=True``; the last state
  is the last unmasked step's. The select runs inside the fused step ops.
- ``dropout`` (on the inputs) and ``recurrent_dropout`` (on the state fed to the recurrent
  matmul), while training only: one mask per call, the same at every step, drawn
  counter-based as gpudl.functional.dropout draws (first the input mask's key, then the
  recurrent mask's, each from ``gpudl.random.mask_key``), so both backends draw the same.
- ``stateful=True``: each call's final states (detached) are the next call's initial
  states; ``reset_state()`` zeroes them.
"""
from __future__ import annotations

import inspect
import math

import numpy as np

from .. import activations, backend
from .. import functional as F
from .. import random as grandom
from .. import regularizers
from ..autograd import Tensor, concatenate, stack
from ..functional.dropout import dropout_scale, keep_mask
from ..functional.recurrent import (RNN_ACTIVATIONS, gru_cell, gru_sequence, lstm_sequence,
                                    simple_rnn_cell, unstack)
from .base import InputSpec, Layer, get_layer_class
from .core import _act_name, _init_name, _positive_int, _reg_config

__all__ = ["SimpleRNN", "LSTM", "GRU", "Bidirectional", "TimeDistributed"]

_SEQ_RANK = "rank 3 (batch, timesteps, features)"


def _as_tensor_input(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def _rate(cls, arg, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
        raise ValueError(f"{cls} expected {arg} in [0, 1), got {v!r}")
    return float(v)


def _check_mask(layer, x, mask):
    """The mask as a (batch, timesteps) array on x's backend (None stays None): shape,
    dtype kind and backend are checked, values never read."""
    if mask is None:
        return None
    a = mask.data if isinstance(mask, Tensor) else mask
    if not (hasattr(a, "shape") and hasattr(a, "dtype")):
        a = _xp_of(x).asarray(a)
    want = tuple(x.shape[:2])
    if tuple(a.shape) != want:
        raise ValueError(f"{layer.describe()} expected a mask of shape {want} (batch, timesteps), "
                         f"got shape {tuple(a.shape)}")
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{layer.describe()} expected a boolean or 0/1 mask, got dtype {a.dtype}")
    backend.check_same_backend([x.data, a], layer.describe())
    return a


def _sequence_mask(mask):
    """compute_mask's view of a mask that came in (a list's first entry, a Tensor's array)."""
    if isinstance(mask, (list, tuple)):
        mask = mask[0] if mask else None
    return mask.data if isinstance(mask, Tensor) else mask


class _Recurrent(Layer):
    """What SimpleRNN, LSTM and GRU share: arguments, checks, the time loop, masks,
    dropout and kept states."""

    input_ndim = 3
    supports_masking = True
    #: gate blocks in W, U and b
    gates = 1
    #: states carried from step to step (LSTM: h and c)
    n_states = 1

    def __init__(self, units, return_sequences=False, return_state=False, go_backwards=False,
                 use_bias=True, kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, dropout=0.0, recurrent_dropout=0.0, stateful=False,
                 zero_output_for_mask=False, name=None):
        super().__init__(name)
        cls = type(self).__name__
        self.units = _positive_int(cls, "units", units)
        self.dropout = _rate(cls, "dropout", dropout)
        self.recurrent_dropout = _rate(cls, "recurrent_dropout", recurrent_dropout)
        self.stateful = bool(stateful)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self._states = None  # stateful: the last call's final states (detached Tensors)
        self._states_reset = True  # the kept states are zeros (a new batch size may come)
        self._pending_mask = None
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.recurrent_initializer = recurrent_initializer
        self.bias_initializer = bias_initializer
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self._pending_state = None

    # Keras' names for the parameters
    @property
    def kernel(self):
        return self.W

    @property
    def recurrent_kernel(self):
        return self.U

    @property
    def bias(self):
        return self.b if self.use_bias else None

    # ---- call ---------------------------------------------------------------------
    def __call__(self, x, initial_state=None, mask=None):
        """``layer(x)``, ``layer(x, initial_state=[h0] / [h0, c0])`` (states (batch, units)),
        ``layer(x, mask=m)`` (m (batch, timesteps), boolean or 0/1)."""
        x = _as_tensor_input(x)
        if x.ndim != 3:
            raise ValueError(f"{self.describe()} expected input of {_SEQ_RANK}, got shape {x.shape}")
        if x.shape[1] < 1:
            raise ValueError(f"{self.describe()} expected at least one timestep, got shape {x.shape}")
        self._pending_state = initial_state
        self._pending_mask = _check_mask(self, x, mask)
        try:
            return super().__call__(x)
        finally:
            self._pending_state = self._pending_mask = None

    def build(self, x):
        n_in = x.shape[-1]
        k = self.gates * self.units
        self.add_param("W", (n_in, k), self.kernel_initializer, self.kernel_regularizer, like=x)
        self.add_param("U", (self.units, k), self.recurrent_initializer, self.recurrent_regularizer, like=x)
        if self.use_bias:
            self.add_param("b", self._bias_shape(), self._bias_init(), self.bias_regularizer, like=x)
        xp = _xp_of(x)
        for p in self.params():
            # the orthogonal initializer can hand back a Fortran-ordered array; keep one
            # C-ordered layout so in-place edits of p.data (loading, gradcheck) see flat views
            p.data = xp.ascontiguousarray(p.data)
        self.input_spec = InputSpec(axes={-1: n_in})  # the rank is checked in __call__

    def _bias_shape(self):
        return (self.gates * self.units,)

    def _bias_init(self):
        return self.bias_initializer

    def forward(self, x, initial_state=None, mask=None):
        if initial_state is None:
            initial_state = self._pending_state
        mask = self._pending_mask if mask is None else _check_mask(self, x, mask)
        states = self._initial_states(x, initial_state)
        xp = _xp_of(x)
        if self.training and self.dropout > 0:  # one (batch, features) mask for every step
            keep = self._dropout_mask(self.dropout, (x.shape[0], x.shape[2]), x)
            x = x * Tensor._wrap(keep.reshape(x.shape[0], 1, x.shape[2]))
        rec_mask = None
        if self.training and self.recurrent_dropout > 0:
            rec_mask = self._dropout_mask(self.recurrent_dropout, (x.shape[0], self.units), x)
        m = None
        if mask is not None:  # time-major, in processing order, 0/1 in x's dtype
            m = mask.T if mask.dtype.kind == "b" else (mask != 0).T
            if self.go_backwards:
                m = m[::-1]
            m = xp.ascontiguousarray(m).astype(x.dtype)
        b_in = self._input_bias()
        # time-major, so each step's projection is one contiguous (batch, k*units) block
        xw = F.linear(x.transpose(1, 0, 2), self.W, b_in)
        if self.go_backwards:
            xw = xw[::-1]
        seq, states = self._scan(xw, states, m, rec_mask)
        if self.stateful:  # detached copies: no graph across calls, the (T, N, n) buffers freed
            self._states = [Tensor._wrap(s.data.copy()) for s in states]
            self._states_reset = False
        if not self.return_sequences:
            out = states[0]
        else:
            zero = m is not None and self.zero_output_for_mask
            if isinstance(seq, list):
                if zero:
                    seq = [s * Tensor._wrap(m[t][:, None]) for t, s in enumerate(seq)]
                out = stack(seq, axis=1)
            else:
                if zero:
                    seq = seq * Tensor._wrap(m[:, :, None])
                out = seq.transpose(1, 0, 2)
        if self.return_state:
            return [out] + list(states)
        return out

    def _dropout_mask(self, rate, shape, like):
        """A kept-and-scaled mask (0 or 1/(1 - rate)) of ``shape`` in like's dtype, drawn
        as F.dropout draws: one key from gpudl.random.mask_key, counters from the training
        step's sample offset (rows = samples: a data-parallel rank draws its rows of the
        global batch's mask)."""
        xp = _xp_of(like)
        base = grandom.sample_offset() * math.prod(shape[1:])
        keep = keep_mask(shape, grandom.mask_key(), rate, base, xp).astype(like.dtype)
        keep *= dropout_scale(rate, like.dtype)
        return keep

    def compute_mask(self, x, mask=None):
        """The mask of the sequence output when ``return_sequences`` (else None); with
        ``return_state`` a list, the states' masks None (Keras)."""
        mask = _sequence_mask(mask)
        out = mask if self.return_sequences else None
        if self.return_state:
            return [out] + [None] * self.n_states
        return out

    # ---- kept states (stateful) -------------------------------------------------------
    @property
    def states(self):
        """The kept states of a stateful layer (a list of Tensors), None before its first call."""
        return None if self._states is None else list(self._states)

    def reset_state(self):
        """Zero the kept states. The next call starts from zeros, and may bring a new batch
        size (from then on the layer keeps that one)."""
        if self._states is not None:
            self._states = [Tensor._wrap(_xp_of(s).zeros_like(s.data)) for s in self._states]
        self._states_reset = True

    reset_states = reset_state  # Keras 2's name

    def to(self, name):
        super().to(name)
        if self._states is not None:
            self._states = [Tensor._wrap(backend.to_backend(s.data, name)) for s in self._states]
        return self

    def _input_bias(self):
        return self.b if self.use_bias else None

    def _scan(self, xw, states, mask=None, rec_mask=None):
        """Run the steps of ``xw`` (T, N, k*units): -> (outputs, final states), outputs a
        list of T (N, units) Tensors or one time-major (T, N, units) Tensor. ``mask``
        (T, N) and ``rec_mask`` (N, units) are arrays or None (F.lstm_sequence's). This
        default walks the subclass's one-step ``_step(xw_t, states, mask_t, rec_mask)``."""
        outputs = []
        for t, xw_t in enumerate(unstack(xw)):
            states = self._step(xw_t, states, None if mask is None else mask[t], rec_mask)
            outputs.append(states[0])
        return outputs, states

    def _initial_states(self, x, given):
        n = x.shape[0]
        want = (n, self.units)
        kept = self._states if self.stateful and given is None else None
        if kept is not None and kept[0].shape[0] != n:
            if not self._states_reset:
                raise ValueError(f"{self.describe()} is stateful and expected a batch of {kept[0].shape[0]} "
                                 f"(the batch size of its kept states), got batch size {n}; a stateful "
                                 "layer keeps one batch size until reset_state()")
            kept = None                                   # zeros, of the new batch size
        if kept is not None:
            return [s if s.dtype == x.dtype else Tensor._wrap(s.data.astype(x.dtype)) for s in kept]
        if given is None:
            xp = _xp_of(x)
            zero = Tensor._wrap(xp.zeros(want, dtype=x.dtype))
            return [zero] * self.n_states
        if isinstance(given, (Tensor, np.ndarray)) or hasattr(given, "__cuda_array_interface__"):
            given = [given]
        given = list(given)
        if len(given) != self.n_states:
            what = "[h, c]" if self.n_states == 2 else "[h]"
            raise ValueError(f"{self.describe()} expected initial_state as a list of {self.n_states} "
                             f"tensor(s) {what}, got {len(given)}")
        out = []
        for i, s in enumerate(given):
            s = s if isinstance(s, Tensor) else Tensor._wrap(_xp_of(x).asarray(s, dtype=x.dtype))
            if s.shape != want:
                raise ValueError(f"{self.describe()} expected initial_state[{i}] of shape {want} "
                                 f"(batch, units), got shape {s.shape}")
            if s.dtype != x.dtype:
                s = s.astype(x.dtype)
            out.append(s)
        return out

    # ---- config -------------------------------------------------------------------
    def get_config(self):
        return {"name": self.name, "units": self.units, "return_sequences": self.return_sequences,
                "return_state": self.return_state, "go_backwards": self.go_backwards,
                "use_bias": self.use_bias,
                "kernel_initializer": _init_name(self, self.kernel_initializer),
                "recurrent_initializer": _init_name(self, self.recurrent_initializer),
                "bias_initializer": _init_name(self, self.bias_initializer),
                "kernel_regularizer": _reg_config(self.kernel_regularizer),
                "recurrent_regularizer": _reg_config(self.recurrent_regularizer),
                "bias_regularizer": _reg_config(self.bias_regularizer),
                "dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout,
                "stateful": self.stateful, "zero_output_for_mask": self.zero_output_for_mask}


def _xp_of(x):
    return backend.get_array_module(x.data)


class SimpleRNN(_Recurrent):
    """Elman network: ``h_t = activation(x_t @ W + h_{t-1} @ U + b)``."""

    gates = 1
    n_states = 1

    def __init__(self, units, activation="tanh", **kwargs):
        super().__init__(units, **kwargs)
        self.activation = activation
        self._act = activations.get(activation)
        name = activations.name_of(activation)
        self._fused = name if name in RNN_ACTIVATIONS else None

    def _step(self, xw_t, states, mask=None, rec_mask=None):
        h = states[0]
        if self._fused is not None:
            return [simple_rnn_cell(xw_t, h, self.U, self._fused, mask=mask, recurrent_mask=rec_mask)]
        # any other activation: composed ops
        hr = h if rec_mask is None else h * Tensor._wrap(rec_mask)
        h_new = self._act(xw_t + hr @ self.U)
        if mask is not None:
            keep = mask[:, None]
            h_new = h_new * Tensor._wrap(keep) + h * Tensor._wrap(1 - keep)
        return [h_new]

    def get_config(self):
        cfg = super().get_config()
        cfg["activation"] = _act_name(self, self.activation)
        return cfg


class LSTM(_Recurrent):
    """Long short-term memory; gates i, f, c, o. ``unit_forget_bias`` starts the forget
    gate's bias at 1 (Keras' default), so early training keeps the memory."""

    gates = 4
    n_states = 2

    def __init__(self, units, unit_forget_bias=True, **kwargs):
        super().__init__(units, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)

    def _bias_init(self):
        from .. import initializers
        base = initializers.get(self.bias_initializer)
        if not self.unit_forget_bias:
            return base
        n = self.units

        def init(shape, dtype=np.float32):
            b = np.array(base(shape, dtype=dtype), dtype=dtype)
            b[n:2 * n] = 1
            return b
        return init

    def _scan(self, xw, states, mask=None, rec_mask=None):
        # the whole sequence in one fused op (one node, batched dL/dU)
        hs, c = lstm_sequence(xw, states[0], states[1], self.U, mask=mask, recurrent_mask=rec_mask)
        return hs, [hs[-1], c]

    def get_config(self):
        cfg = super().get_config()
        cfg["unit_forget_bias"] = self.unit_forget_bias
        return cfg


class GRU(_Recurrent):
    """Gated recurrent unit; gates z, r, h; ``h_t = z * h_{t-1} + (1 - z) * candidate``.

    ``reset_after=True`` (Keras' default, PyTorch's form) applies the reset gate after the
    recurrent matmul and has two bias rows (input, recurrent): b (2, 3*units).
    """

    gates = 3
    n_states = 1

    def __init__(self, units, reset_after=True, **kwargs):
        super().__init__(units, **kwargs)
        self.reset_after = bool(reset_after)

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _input_bias(self):
        if not self.use_bias:
            return None
        return self.b[0] if self.reset_after else self.b

    def _scan(self, xw, states, mask=None, rec_mask=None):
        if not self.reset_after:
            return super()._scan(xw, states, mask, rec_mask)
        # reset_after: the whole sequence in one fused op (one node, batched dL/dU)
        hs = gru_sequence(xw, states[0], self.U, self.b[1] if self.use_bias else None,
                          mask=mask, recurrent_mask=rec_mask)
        return hs, [hs[-1]]

    def _step(self, xw_t, states, mask=None, rec_mask=None):
        return [gru_cell(xw_t, states[0], self.U, reset_after=False, mask=mask, recurrent_mask=rec_mask)]

    def get_config(self):
        cfg = super().get_config()
        cfg["reset_after"] = self.reset_after
        return cfg


# ---- wrappers -------------------------------------------------------------------------

def _layer_config(layer):
    return {"class": type(layer).__name__, "config": layer.get_config()}


def _layer_from_config(spec):
    if not isinstance(spec, dict) or "class" not in spec:
        raise ValueError(f"expected a layer spec {{'class': ..., 'config': ...}}, got {spec!r}")
    return get_layer_class(spec["class"]).from_config(dict(spec.get("config", {})))


_MERGE_MODES = ("concat", "sum", "mul", "ave", None)


class Bidirectional(Layer):
    """Runs a recurrent layer forwards and a copy of it backwards over the sequence.

    The backward copy reads the steps in reverse; with ``return_sequences`` its outputs
    are re-reversed, so step t of both halves belongs to input step t. ``merge_mode``:
    "concat" (default, (..., 2*units)), "sum", "mul", "ave" or None (a list of both).
    Parameters: the forward layer's, then the backward layer's.

    ``mask=`` goes to both layers (the backward one reverses it with the sequence); the
    copy takes the layer's dropout rates (each direction draws its own masks) and its
    ``stateful``; ``reset_state()`` resets both.
    """

    input_ndim = 3
    supports_masking = True

    def __init__(self, layer, merge_mode="concat", backward_layer=None, name=None):
        if not isinstance(layer, _Recurrent):
            raise ValueError(f"Bidirectional expected a recurrent layer (SimpleRNN, LSTM, GRU), "
                             f"got {type(layer).__name__}")
        if merge_mode not in _MERGE_MODES:
            raise ValueError(f"Bidirectional expected merge_mode in {_MERGE_MODES}, got {merge_mode!r}")
        super().__init__(name)
        self.forward_layer = layer
        if backward_layer is None:
            cfg = layer.get_config()
            cfg["name"] = f"backward_{layer.name}"
            cfg["go_backwards"] = not layer.go_backwards
            backward_layer = type(layer).from_config(cfg)
        elif not isinstance(backward_layer, _Recurrent):
            raise ValueError(f"Bidirectional expected a recurrent backward_layer, got {type(backward_layer).__name__}")
        elif backward_layer.go_backwards == layer.go_backwards:
            raise ValueError("Bidirectional expected backward_layer with go_backwards opposite to the forward "
                             f"layer's ({layer.go_backwards})")
        if (backward_layer.return_sequences != layer.return_sequences
                or backward_layer.return_state != layer.return_state):
            raise ValueError("Bidirectional expected forward and backward layers with the same "
                             "return_sequences and return_state")
        if backward_layer.stateful != layer.stateful:
            raise ValueError(f"Bidirectional expected forward and backward layers with the same stateful, "
                             f"got {layer.stateful} and {backward_layer.stateful}")
        self.backward_layer = backward_layer
        self.merge_mode = merge_mode
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        self._pending_state = None

    def sublayers(self):
        return [self.forward_layer, self.backward_layer]

    def __call__(self, x, initial_state=None, mask=None):
        """``initial_state``: the forward layer's states, then the backward layer's;
        ``mask`` (batch, timesteps): both layers'."""
        x = _as_tensor_input(x)
        if x.ndim != 3:
            raise ValueError(f"{self.describe()} expected input of {_SEQ_RANK}, got shape {x.shape}")
        self._pending_state = initial_state
        self._pending_mask = _check_mask(self, x, mask)
        try:
            return super().__call__(x)
        finally:
            self._pending_state = self._pending_mask = None

    _pending_mask = None

    @property
    def stateful(self):
        return self.forward_layer.stateful

    def reset_state(self):
        """Zero the kept states of both directions."""
        self.forward_layer.reset_state()
        self.backward_layer.reset_state()

    reset_states = reset_state

    def compute_mask(self, x, mask=None):
        """Keras' Bidirectional.compute_mask: the mask per sequence output (both with
        merge_mode None), None for last-step outputs and for states."""
        mask = _sequence_mask(mask)
        if self.return_sequences:
            out = [mask, mask] if self.merge_mode is None else mask
        else:
            out = [None, None] if self.merge_mode is None else None
        if self.return_state:
            states = [None] * (2 * self.forward_layer.n_states)
            return (out if isinstance(out, list) else [out]) + states
        return out

    def forward(self, x, initial_state=None, mask=None):
        if initial_state is None:
            initial_state = self._pending_state
        mask = self._pending_mask if mask is None else _check_mask(self, x, mask)
        fw_state = bw_state = None
        if initial_state is not None:
            initial_state = list(initial_state)
            k = self.forward_layer.n_states
            if len(initial_state) != 2 * k:
                raise ValueError(f"{self.describe()} expected initial_state as a list of {2 * k} tensors "
                                 f"(forward then backward states), got {len(initial_state)}")
            fw_state, bw_state = initial_state[:k], initial_state[k:]
        y_f = self.forward_layer(x, initial_state=fw_state, mask=mask)
        y_b = self.backward_layer(x, initial_state=bw_state, mask=mask)
        states = []
        if self.return_state:
            y_f, states_f = y_f[0], y_f[1:]
            y_b, states_b = y_b[0], y_b[1:]
            states = list(states_f) + list(states_b)
        if self.return_sequences:  # the layer that read backwards gave its outputs reversed
            if self.forward_layer.go_backwards:
                y_f = y_f[:, ::-1]
            if self.backward_layer.go_backwards:
                y_b = y_b[:, ::-1]
        if self.merge_mode == "concat":
            out = concatenate([y_f, y_b], axis=-1)
        elif self.merge_mode == "sum":
            out = y_f + y_b
        elif self.merge_mode == "mul":
            out = y_f * y_b
        elif self.merge_mode == "ave":
            out = (y_f + y_b) * 0.5
        else:
            out = [y_f, y_b]
        if self.return_state:
            return (out if isinstance(out, list) else [out]) + states
        return out

    def get_config(self):
        return {"name": self.name, "layer": _layer_config(self.forward_layer), "merge_mode": self.merge_mode,
                "backward_layer": _layer_config(self.backward_layer)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        layer = _layer_from_config(config.pop("layer"))
        backward = config.pop("backward_layer", None)
        backward = _layer_from_config(backward) if backward is not None else None
        return cls(layer, backward_layer=backward, **config)


def _takes_mask(layer):
    """Whether ``layer(x, mask=...)`` is part of the layer's call (its __call__ or forward)."""
    for fn in (type(layer).__call__, type(layer).forward):
        try:
            if "mask" in inspect.signature(fn).parameters:
                return True
        except (TypeError, ValueError):
            continue
    return False


class TimeDistributed(Layer):
    """Applies ``layer`` to every timestep: (N, T, ...) -> (N*T, ...) -> layer -> (N, T, ...).

    Passes a mask on (``supports_masking``); ``mask=`` (N, T) reaches an inner layer that
    takes one as (N*T,), one entry per row it sees."""

    input_min_ndim = 3
    supports_masking = True

    def __init__(self, layer, name=None):
        if not isinstance(layer, Layer):
            raise ValueError(f"TimeDistributed expected a Layer, got {type(layer).__name__}")
        super().__init__(name)
        self.layer = layer

    def sublayers(self):
        return [self.layer]

    def build(self, x):
        self.input_spec = InputSpec(ndim=x.ndim, axes={i: n for i, n in enumerate(x.shape) if i > 1})

    def _check_rank(self, shape):
        if len(shape) < 3:
            raise ValueError(f"{self.describe()} expected input of rank >= 3 (batch, timesteps, ...), "
                             f"got shape {shape}")

    def forward(self, x, mask=None, **kwargs):
        n, t = x.shape[0], x.shape[1]
        if mask is not None and _takes_mask(self.layer):
            a = mask.data if isinstance(mask, Tensor) else mask
            if not (hasattr(a, "shape") and hasattr(a, "dtype")):
                a = _xp_of(x).asarray(a)
            if len(a.shape) < 2 or tuple(a.shape[:2]) != (n, t):
                raise ValueError(f"{self.describe()} expected a mask of shape ({n}, {t}, ...) (batch, "
                                 f"timesteps, ...), got shape {tuple(a.shape)}")
            backend.check_same_backend([x.data, a], self.describe())
            kwargs["mask"] = a.reshape((n * t,) + tuple(a.shape[2:]))
        y = self.layer(x.reshape((n * t,) + x.shape[2:]), **kwargs)
        return y.reshape((n, t) + y.shape[1:])

    def get_config(self):
        return {"name": self.name, "layer": _layer_config(self.layer)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(_layer_from_config(config.pop("layer")), **config)
