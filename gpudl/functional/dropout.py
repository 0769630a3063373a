"""Dropout (Lecture I): each unit dropped with probability ``rate`` while training.

The tutorial multiplies the weights by (1 - p) at test time; gpudl uses the equivalent
inverted form (kept activations scaled by 1/(1 - rate) while training), so testing is
the identity and needs no rescaling.

Masks are counter-based: whether an element is kept is a pure function of two integers,

- ``key``: 64 bits drawn once per dropout call from gpudl's shared host generator
  (:func:`gpudl.random.mask_key`), so ``gpudl.set_seed(n)`` fixes every mask on either
  backend and a checkpoint's generator state is all that resume needs;
- the element's counter: its flat (C-order) index plus ``sample_offset * units_per_sample``
  (``units_per_sample`` is the size of one sample, axis 0 being the samples). A data-parallel
  rank holding samples [k, k + m) of a global batch passes ``sample_offset=k`` and draws the
  rows k..k+m-1 of the mask of the whole batch.

The function is SplitMix64 (Steele, Lea & Flood, "Fast splittable pseudorandom number
generators", OOPSLA 2014; the finalizer is Stafford's "Mix13", as in Java's SplittableRandom
and Vigna's splitmix64.c): the element with counter c gets output number c of SplitMix64
seeded with ``key``, ``mix64(key + (c + 1) * GAMMA)``. It is counter-based by construction
(no state to carry between elements or calls), passes BigCrush, and needs only 64-bit
multiplies, adds, shifts and xors, which wrap the same way in NumPy, Numba and CUDA: no
division, no floating point. An element is kept when the top 32 bits of its output are at
least ``round(rate * 2**32)`` (capped at 2**32 - 1), an integer comparison, so each element
is dropped with probability ``rate`` to within 2**-33 and every backend agrees bit for bit.
Two calls draw overlapping streams only if their keys lie within n steps of GAMMA of each
other (n elements a call): odds of about n / 2**63 for a pair of calls.

Three implementations of that one definition, tested equal:

- CuPy, float32/float64: ``gpudl.kernels.dropout``, one pass that hashes and multiplies;
- NumPy with numba (unless ``GPUDL_CPU_JIT=0``): the compiled loop ``_apply_loop`` below,
  also one pass;
- otherwise (no numba, float16, ...): :func:`keep_mask`, vectorised NumPy/CuPy.

Keras' ``noise_shape`` (a mask of that shape broadcast over x, e.g. one per sample and
feature shared by every time step) draws the small mask with :func:`keep_mask`, its counters
those of a mask of the noise shape, and saves it for backward; a noise shape equal to x's is
the plain mask. ``key=`` replaces the shared generator's draw (a layer with its own seed passes
the keys of its own stream).

The two fused paths recompute the mask in backward from (key, counter) instead of saving it:
backward reads the gradient and writes its result, as forward did, and nothing the size of x
stays alive between the passes. The vectorised path saves its boolean mask (1 byte an
element), since recomputing it there costs more than the multiply.
"""
from __future__ import annotations

import math
import os

import numpy as np

from .. import backend
from .. import random as grandom
from ..autograd import Function, as_tensor
from ._util import contiguous, on_gpu, require_float

__all__ = ["dropout", "keep_mask", "splitmix64"]

_M64 = (1 << 64) - 1
#: SplitMix64's Weyl increment (2**64 / golden ratio, odd) and its finalizer's multipliers
GAMMA = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
#: the finalizer's right shifts, in order
SHIFTS = (30, 27, 31)

_G = np.uint64(GAMMA)
_C1 = np.uint64(MIX1)
_C2 = np.uint64(MIX2)
_S1, _S2, _S3 = (np.uint64(s) for s in SHIFTS)

_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def mask_params(key: int, rate: float, counter_base: int = 0) -> tuple[int, int]:
    """``(start, threshold)`` for the loops and kernels.

    ``start`` is the SplitMix64 state that hashes to the element with counter
    ``counter_base`` (the next elements add GAMMA each); an element is kept when its 64-bit
    output is ``>= threshold``, that is when its top 32 bits are ``>= round(rate * 2**32)``.
    """
    start = (int(key) + (int(counter_base) + 1) * GAMMA) & _M64
    threshold = min(round(rate * 2.0**32), 2**32 - 1) << 32
    return start, threshold


def dropout_scale(rate: float, dtype):
    """1 / (1 - rate) in ``dtype``: what a kept element is multiplied by."""
    return np.dtype(dtype).type(1.0 / (1.0 - rate))


def splitmix64(key: int, counter_base: int, n: int, xp=np):
    """Outputs number ``counter_base`` .. ``counter_base + n - 1`` of SplitMix64 seeded with
    ``key``, as a uint64 array of ``xp`` (NumPy or CuPy), vectorised."""
    start = mask_params(key, 0.0, counter_base)[0]
    z = xp.arange(n, dtype=xp.uint64)
    z *= _G                      # uint64 arrays wrap modulo 2**64, as the kernels do
    z += np.uint64(start)
    t = z >> _S1
    z ^= t
    z *= _C1
    xp.right_shift(z, _S2, out=t)
    z ^= t
    z *= _C2
    xp.right_shift(z, _S3, out=t)
    z ^= t
    return z


def keep_mask(shape, key: int, rate: float, counter_base: int = 0, xp=np):
    """The boolean keep mask of ``shape`` (True = kept), vectorised on ``xp`` (NumPy or CuPy).

    The reference that the compiled loop and the CUDA kernel reproduce bit for bit; element
    ``i`` (flat, C order) has counter ``counter_base + i``.
    """
    threshold = mask_params(key, rate, counter_base)[1]
    z = splitmix64(key, counter_base, math.prod(shape), xp)
    return (z >= np.uint64(threshold)).reshape(shape)


def _apply_loop(x, start, threshold, scale, y):
    """y = x * (scale if kept else 0) over flat contiguous arrays: the hash and the multiply
    in one pass (compiled by numba; the same arithmetic as keep_mask and the CUDA kernel)."""
    zero = scale - scale  # 0 in scale's type: a bare 0.0 would turn float32 math into float64
    for i in range(x.size):
        z = start + np.uint64(i) * _G
        z ^= z >> _S1
        z *= _C1
        z ^= z >> _S2
        z *= _C2
        z ^= z >> _S3
        y[i] = x[i] * (scale if z >= threshold else zero)


_cpu_loop = None  # the compiled _apply_loop; False when unavailable (decided on first use)


def _compiled_loop():
    """The compiled CPU loop, or None without numba or with ``GPUDL_CPU_JIT=0``."""
    global _cpu_loop
    if _cpu_loop is None:
        _cpu_loop = False
        if os.environ.get("GPUDL_CPU_JIT", "1").strip().lower() not in ("0", "false", "no", "off"):
            try:
                import numba
            except ImportError:
                pass
            else:
                try:
                    # explicit signatures compile here (or load numba's disk cache), so a
                    # numba that cannot compile on this machine fails now, not mid-training
                    sigs = [f"void({f}[::1], uint64, uint64, {f}, {f}[::1])"
                            for f in ("float32", "float64")]
                    _cpu_loop = numba.njit(sigs, cache=True)(_apply_loop)
                except Exception as exc:  # numba present but unusable here: say so, go on
                    import warnings
                    warnings.warn(f"gpudl: the compiled dropout loop is unavailable ({exc}); "
                                  "using the vectorised NumPy mask", RuntimeWarning, stacklevel=3)
    return _cpu_loop or None


class Dropout(Function):
    def __init__(self, rate, sample_offset=0, key=None):
        self.rate = rate
        self.sample_offset = sample_offset
        self.key = key

    def forward(self, x):
        # one host draw per call (none with a given key); the counter of x's first element
        # places x in the batch
        self._key = grandom.mask_key() if self.key is None else self.key
        self._counter_base = self.sample_offset * math.prod(x.shape[1:])
        self._start, self._threshold = mask_params(self._key, self.rate, self._counter_base)
        self._scale = dropout_scale(self.rate, x.dtype)
        if x.dtype in _KERNEL_DTYPES:
            if on_gpu(x):
                return self._fused_gpu(x)
            if _compiled_loop() is not None:
                return self._fused_cpu(x)
        xp = backend.get_array_module(x)
        self._saved_keep = keep_mask(x.shape, self._key, self.rate, self._counter_base, xp)
        return x * self._mask(x)

    def backward(self, g):
        if self._saved_keep is None:  # a fused forward: the mask again from (key, counter)
            return self._fused_gpu(g) if on_gpu(g) else self._fused_cpu(g)
        return g * self._mask(g)

    _saved_keep = None  # the vectorised path's boolean mask

    def _fused_gpu(self, a):
        from ..kernels import dropout as K
        return K.dropout_apply(contiguous(a), self._start, self._threshold, self._scale)

    def _fused_cpu(self, a):
        a = np.ascontiguousarray(a)
        out = np.empty_like(a)
        _compiled_loop()(a.reshape(-1), np.uint64(self._start), np.uint64(self._threshold),
                         self._scale, out.reshape(-1))
        return out

    def _mask(self, like):
        m = self._saved_keep.astype(like.dtype)
        m *= self._scale  # exactly 0 or scale: what the fused paths multiply by
        return m


class NoiseShapeDropout(Function):
    """Dropout with one keep mask of ``noise_shape`` (the input's rank, each axis the input's
    size or 1) broadcast over the input: the mask is small, so it is drawn vectorised on x's
    backend (:func:`keep_mask`, the same counters as the fused paths) and saved for backward."""

    def __init__(self, rate, noise_shape, counter_base, key=None):
        self.rate, self.noise_shape = rate, tuple(noise_shape)
        self.counter_base, self.key = counter_base, key

    def forward(self, x):
        xp = backend.get_array_module(x)
        key = grandom.mask_key() if self.key is None else self.key
        keep = keep_mask(self.noise_shape, key, self.rate, self.counter_base, xp)
        m = keep.astype(x.dtype)
        m *= dropout_scale(self.rate, x.dtype)
        self._saved_mask = m
        return x * m

    def backward(self, g):
        return g * self._saved_mask


def _check_sample_offset(sample_offset):
    if (isinstance(sample_offset, bool) or not isinstance(sample_offset, (int, np.integer))
            or sample_offset < 0):
        raise ValueError(f"dropout expected a non-negative integer sample_offset, got {sample_offset!r}")
    return int(sample_offset)


def _check_key(key):
    if key is None:
        return None
    if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or not 0 <= key < 2**64:
        raise ValueError(f"dropout expected key=None or an integer in [0, 2**64), got {key!r}")
    return int(key)


def _resolve_noise_shape(noise_shape, shape):
    """noise_shape with None entries taken from ``shape``; each entry the input's size or 1."""
    try:
        items = tuple(noise_shape)
    except TypeError:
        items = None
    ok = items is not None and len(items) == len(shape) and all(
        n is None or (isinstance(n, (int, np.integer)) and not isinstance(n, bool) and (n == 1 or n == s))
        for n, s in zip(items, shape))
    if not ok:
        raise ValueError(f"dropout expected noise_shape with one entry per input axis ({len(shape)}), each "
                         f"None, 1 or the input's size, got noise_shape {noise_shape!r} for input shape "
                         f"{tuple(shape)}")
    return tuple(int(s) if n is None else int(n) for n, s in zip(items, shape))


class _StepOffset:
    """The default of ``dropout(sample_offset=)``: the training step's offset."""

    def __repr__(self):
        return "<the training step's sample offset>"


STEP_OFFSET = _StepOffset()


def dropout(x, rate, training=True, sample_offset=STEP_OFFSET, noise_shape=None, key=None):
    """Drop a fraction ``rate`` of the activations while training; identity otherwise.

    ``sample_offset``: the index, in a larger (global) batch, of ``x``'s first sample (axis 0):
    the mask is then that batch's mask for these samples, as a data-parallel rank needs. By
    default the training step's offset (``gpudl.random.sample_offset()``: the rank's first
    global sample inside ``fit``, else 0).

    ``noise_shape`` (Keras): the keep mask's shape, one entry per axis of x including the
    batch axis, each None (x's size), x's size, or 1 (one mask entry shared along that axis),
    e.g. ``(None, 1, 28)`` keeps or drops each of 28 features for every step of a sample at
    once. The mask's elements take the counters of a mask of that shape (``sample_offset``
    counts in its rows, unless axis 0 is given as 1: then every sample of every share uses
    one row). A noise shape equal to x's shape is the plain mask.

    ``key``: the 64-bit mask key to use instead of drawing one from gpudl's shared generator
    (a layer with its own seed passes the keys of its own stream).
    """
    require_float(x, "dropout")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout expected a rate in [0, 1), got {rate!r}")
    if sample_offset is STEP_OFFSET:
        sample_offset = grandom.sample_offset()
    sample_offset = _check_sample_offset(sample_offset)
    key = _check_key(key)
    x = as_tensor(x)
    if noise_shape is not None:
        resolved = _resolve_noise_shape(noise_shape, x.shape)
    if not training or rate == 0.0:
        return x
    if noise_shape is None:
        return Dropout(float(rate), sample_offset, key)(x)
    # explicit size 1 on the batch axis: one row shared by the samples of every share
    shared = len(resolved) > 0 and tuple(noise_shape)[0] == 1
    offset = 0 if shared else sample_offset
    if resolved == tuple(x.shape):
        return Dropout(float(rate), offset, key)(x)
    base = offset * math.prod(resolved[1:])
    return NoiseShapeDropout(float(rate), resolved, base, key)(x)
