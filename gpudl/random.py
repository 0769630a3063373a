"""One seed for everything random in gpudl: initial weights, shuffles, dropout masks,
augmentation. All draws come from one NumPy Generator on the host, so the same seed
gives the same weights on either backend, and its state can be saved for exact resume.
"""
from __future__ import annotations

import numpy as np

_rng = np.random.default_rng()


def set_seed(seed: int) -> None:
    """Reset gpudl's generator: two runs after the same ``set_seed(n)`` draw the same numbers."""
    global _rng
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"set_seed expected a non-negative integer, got {seed!r}")
    _rng = np.random.default_rng(int(seed))


def get_rng() -> np.random.Generator:
    """The shared host generator."""
    return _rng


def get_state() -> dict:
    """The generator's state as a JSON-serialisable dict (saved in checkpoints)."""
    return _rng.bit_generator.state


def set_state(state: dict) -> None:
    """Restore a state from :func:`get_state`."""
    if not isinstance(state, dict) or "bit_generator" not in state:
        raise ValueError(f"expected a generator state dict with 'bit_generator', got {type(state).__name__}")
    name = state["bit_generator"]
    bitgen_cls = getattr(np.random, name, None)
    if bitgen_cls is None or not isinstance(bitgen_cls, type) or not issubclass(bitgen_cls, np.random.BitGenerator):
        raise ValueError(f"unknown bit generator {name!r} in saved random state")
    global _rng
    bitgen = bitgen_cls()
    bitgen.state = state
    _rng = np.random.Generator(bitgen)


def uniform(low, high, shape, dtype=np.float32) -> np.ndarray:
    return _rng.uniform(low, high, size=shape).astype(dtype, copy=False)


def normal(mean, std, shape, dtype=np.float32) -> np.ndarray:
    return _rng.normal(mean, std, size=shape).astype(dtype, copy=False)


def mask_key() -> int:
    """A 64-bit key for a counter-based mask (dropout's), drawn from the shared generator.

    One small host draw per call and no device state: the mask is a pure function of this
    key and each element's index, so a checkpoint's generator state is all that resume needs.
    Inside :class:`training_step` no draw: the step's key hashed with the mask's number.
    """
    if _step is not None:  # inside a training step: the step's key and the mask's place in it
        _step.draws += 1
        return counter_key(_step.key, _step.draws - 1)
    return int(_rng.integers(0, 2**64, dtype=np.uint64))


# ---- counter-based keys within a training step ---------------------------------------------
# fit() runs each step inside training_step(): the step draws one key from the shared
# generator (one draw whatever the batch holds, so data-parallel ranks, even one whose share
# of the batch is empty, stay in step), and every mask key of the step is a hash of that key
# and the mask's place in the step. ``sample_offset`` is where this process's rows start in
# the global batch: masks and augmentation are drawn per global sample, so a sample gets the
# same mask whichever rank holds it.

_M64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15


def counter_key(key: int, counter: int) -> int:
    """Output number ``counter`` of SplitMix64 seeded with ``key`` (the masks' own generator,
    as ``gpudl.functional.dropout.splitmix64`` computes it vectorised)."""
    z = (int(key) + (int(counter) + 1) * _GAMMA) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


class _Step:
    def __init__(self, key, index, sample_offset):
        self.key, self.index, self.sample_offset = key, index, sample_offset
        self.draws = 0
        self.seeded = {}


_step = None


class training_step:
    """Context of one training step: ``mask_key()`` derives keys from ``key`` (drawn once from
    the shared generator when None), seeded layers key on (seed, ``index``, their call within
    the step), and ``sample_offset()`` is ``sample_offset``."""

    def __init__(self, index: int, sample_offset: int = 0, key: int | None = None):
        self.state = _Step(int(_rng.integers(0, 2**64, dtype=np.uint64)) if key is None else int(key),
                           int(index), int(sample_offset))

    def __enter__(self):
        global _step
        self._outer, _step = _step, self.state
        return self.state

    def __exit__(self, *exc):
        global _step
        _step = self._outer
        return False


def sample_offset() -> int:
    """The index in the global batch of this process's first sample (0 outside a step)."""
    return 0 if _step is None else _step.sample_offset


def seeded_key(layer, seed: int):
    """A seeded layer's mask key inside a training step, from (seed, step index, the layer's
    call within the step); None outside a step (the layer then walks its own stream)."""
    if _step is None:
        return None
    n = _step.seeded.get(id(layer), 0)
    _step.seeded[id(layer)] = n + 1
    return counter_key(counter_key(seed, _step.index), n)
