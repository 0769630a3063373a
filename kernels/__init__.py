"""Numba CUDA kernels for gpudl's CuPy backend, one family per module, each with its launcher.

Installed as ``gpudl.kernels``. Imported lazily by the CuPy path only: importing gpudl
never imports numba.
"""
import numpy as _np

# numba-cuda 0.30.4 (the newest release; the project is in maintenance mode and declined the
# fix, NVIDIA/numba-cuda#907 and #916) registers an overload of ``np.row_stack`` with no
# version guard, and NumPy 2.5 removed that alias of ``np.vstack``: without it every kernel
# compile fails with "module 'numpy' has no attribute 'row_stack'". numba 0.67+ guards its own
# copy. Restore the alias before numba-cuda's CUDA target loads (every kernel module imports
# _launch, which imports numba.cuda, through this package). Drop this once the numba-cuda
# requirement is a release whose arrayobj.py bounds the overload to numpy < 2.5.
if not hasattr(_np, "row_stack"):
    _np.row_stack = _np.vstack
