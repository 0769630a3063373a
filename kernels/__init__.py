"""Numba CUDA kernels for gpudl's CuPy backend, one family per module, each with its launcher.

Installed as ``gpudl.kernels``. Imported lazily by the CuPy path only: importing gpudl
never imports numba.
"""
