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
    """
    return int(_rng.integers(0, 2**64, dtype=np.uint64))
