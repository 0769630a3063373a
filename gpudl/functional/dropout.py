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
    def __init__(self, rate, sample_offset=0):
        self.rate = rate
        self.sample_offset = sample_offset

    def forward(self, x):
        # one host draw per call; the counter of x's first element places x in the batch
        self._key = grandom.mask_key()
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


def _check_sample_offset(sample_offset):
    if (isinstance(sample_offset, bool) or not isinstance(sample_offset, (int, np.integer))
            or sample_offset < 0):
        raise ValueError(f"dropout expected a non-negative integer sample_offset, got {sample_offset!r}")
    return int(sample_offset)


def dropout(x, rate, training=True, sample_offset=0):
    """Drop a fraction ``rate`` of the activations while training; identity otherwise.

    ``sample_offset``: the index, in a larger (global) batch, of ``x``'s first sample (axis 0):
    the mask is then that batch's mask for these samples, as a data-parallel rank needs.
    """
    require_float(x, "dropout")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout expected a rate in [0, 1), got {rate!r}")
    sample_offset = _check_sample_offset(sample_offset)
    x = as_tensor(x)
    if not training or rate == 0.0:
        return x
    return Dropout(float(rate), sample_offset)(x)
