"""cupy.random on the test device: NumPy's generators, results on the device, creations counted."""
from __future__ import annotations

import numpy as _np

#: Generators made so far (real CuPy runs curand_init for each: tests check it stays low)
generators_created = 0


class Generator:
    def __init__(self, seed=None):
        global generators_created
        generators_created += 1
        self._g = _np.random.default_rng(seed)

    def __getattr__(self, name):
        from . import _unwrap, _wrap
        attr = getattr(self._g, name)

        def draw(*args, **kwargs):
            return _wrap(_np.asarray(attr(*_unwrap(args), **_unwrap(kwargs))))
        return draw


def default_rng(seed=None):
    return Generator(seed)


_global = None


def _g():
    global _global
    if _global is None:
        _global = Generator()
    return _global


def seed(s=None):
    global _global
    _global = Generator(s)


def __getattr__(name):
    return getattr(_g(), name)
