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
"""
from __future__ import annotations

import numpy as np

from .. import activations, backend
from .. import functional as F
from .. import regularizers
from ..autograd import Tensor, concatenate, stack
from ..functional.recurrent import (RNN_ACTIVATIONS, gru_cell, gru_sequence, lstm_sequence,
                                    simple_rnn_cell, unstack)
from .base import InputSpec, Layer, get_layer_class
from .core import _act_name, _init_name, _positive_int, _reg_config

__all__ = ["SimpleRNN", "LSTM", "GRU", "Bidirectional", "TimeDistributed"]

_SEQ_RANK = "rank 3 (batch, timesteps, features)"


def _as_tensor_input(x):
    return x if isinstance(x, Tensor) else Tensor(x)


class _Recurrent(Layer):
    """What SimpleRNN, LSTM and GRU share: arguments, checks, the time loop."""

    input_ndim = 3
    #: gate blocks in W, U and b
    gates = 1
    #: states carried from step to step (LSTM: h and c)
    n_states = 1

    def __init__(self, units, return_sequences=False, return_state=False, go_backwards=False,
                 use_bias=True, kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, name=None):
        super().__init__(name)
        cls = type(self).__name__
        self.units = _positive_int(cls, "units", units)
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
    def __call__(self, x, initial_state=None):
        """``layer(x)`` or ``layer(x, initial_state=[h0] / [h0, c0])``, states (batch, units)."""
        x = _as_tensor_input(x)
        if x.ndim != 3:
            raise ValueError(f"{self.describe()} expected input of {_SEQ_RANK}, got shape {x.shape}")
        if x.shape[1] < 1:
            raise ValueError(f"{self.describe()} expected at least one timestep, got shape {x.shape}")
        self._pending_state = initial_state
        try:
            return super().__call__(x)
        finally:
            self._pending_state = None

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

    def forward(self, x, initial_state=None):
        if initial_state is None:
            initial_state = self._pending_state
        states = self._initial_states(x, initial_state)
        b_in = self._input_bias()
        # time-major, so each step's projection is one contiguous (batch, k*units) block
        xw = F.linear(x.transpose(1, 0, 2), self.W, b_in)
        if self.go_backwards:
            xw = xw[::-1]
        seq, states = self._scan(xw, states)
        if not self.return_sequences:
            out = states[0]
        elif isinstance(seq, list):
            out = stack(seq, axis=1)
        else:
            out = seq.transpose(1, 0, 2)
        if self.return_state:
            return [out] + list(states)
        return out

    def _input_bias(self):
        return self.b if self.use_bias else None

    def _scan(self, xw, states):
        """Run the steps of ``xw`` (T, N, k*units): -> (outputs, final states), outputs a
        list of T (N, units) Tensors or one time-major (T, N, units) Tensor. This default
        walks the subclass's one-step ``_step(xw_t, states) -> states``."""
        outputs = []
        for xw_t in unstack(xw):
            states = self._step(xw_t, states)
            outputs.append(states[0])
        return outputs, states

    def _initial_states(self, x, given):
        n = x.shape[0]
        want = (n, self.units)
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
                "bias_regularizer": _reg_config(self.bias_regularizer)}


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

    def _step(self, xw_t, states):
        h = states[0]
        if self._fused is not None:
            return [simple_rnn_cell(xw_t, h, self.U, self._fused)]
        return [self._act(xw_t + h @ self.U)]  # any other activation: composed ops

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

    def _scan(self, xw, states):
        # the whole sequence in one fused op (one node, batched dL/dU)
        hs, c = lstm_sequence(xw, states[0], states[1], self.U)
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

    def _scan(self, xw, states):
        if not self.reset_after:
            return super()._scan(xw, states)
        # reset_after: the whole sequence in one fused op (one node, batched dL/dU)
        hs = gru_sequence(xw, states[0], self.U, self.b[1] if self.use_bias else None)
        return hs, [hs[-1]]

    def _step(self, xw_t, states):
        return [gru_cell(xw_t, states[0], self.U, reset_after=False)]

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
    """

    input_ndim = 3

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
        self.backward_layer = backward_layer
        self.merge_mode = merge_mode
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        self._pending_state = None

    def sublayers(self):
        return [self.forward_layer, self.backward_layer]

    def __call__(self, x, initial_state=None):
        """``initial_state``: the forward layer's states, then the backward layer's."""
        x = _as_tensor_input(x)
        if x.ndim != 3:
            raise ValueError(f"{self.describe()} expected input of {_SEQ_RANK}, got shape {x.shape}")
        self._pending_state = initial_state
        try:
            return super().__call__(x)
        finally:
            self._pending_state = None

    def forward(self, x, initial_state=None):
        if initial_state is None:
            initial_state = self._pending_state
        fw_state = bw_state = None
        if initial_state is not None:
            initial_state = list(initial_state)
            k = self.forward_layer.n_states
            if len(initial_state) != 2 * k:
                raise ValueError(f"{self.describe()} expected initial_state as a list of {2 * k} tensors "
                                 f"(forward then backward states), got {len(initial_state)}")
            fw_state, bw_state = initial_state[:k], initial_state[k:]
        y_f = self.forward_layer(x, initial_state=fw_state)
        y_b = self.backward_layer(x, initial_state=bw_state)
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


class TimeDistributed(Layer):
    """Applies ``layer`` to every timestep: (N, T, ...) -> (N*T, ...) -> layer -> (N, T, ...)."""

    input_min_ndim = 3

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

    def forward(self, x, **kwargs):
        n, t = x.shape[0], x.shape[1]
        y = self.layer(x.reshape((n * t,) + x.shape[2:]), **kwargs)
        return y.reshape((n, t) + y.shape[1:])

    def get_config(self):
        return {"name": self.name, "layer": _layer_config(self.layer)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(_layer_from_config(config.pop("layer")), **config)
