"""A strict CuPy stand-in for gpudl's tests: the GPU code path, run on a machine without a GPU.

Never part of gpudl: it lives under tests/ and is importable only when a test run puts
``tests/fakecupy`` first on ``sys.path`` (``make test`` does, for the ``gpu``-marked tier).

What it keeps of real CuPy, so wiring faults show up on the CPU:
- a distinct ``cupy.ndarray`` type (its module name starts with "cupy", as gpudl's backend checks);
- no implicit conversion to NumPy (``np.asarray(a)`` raises TypeError) and no NumPy operands
  (``a + np_array`` raises TypeError), as in CuPy;
- reductions and scalar indexing return 0-d device arrays, never Python or NumPy scalars;
- every device-to-host read (``float()``, ``int()``, ``bool()``, ``.item()``, ``.get()``,
  ``.tolist()``, ``asnumpy``) and host-to-device copy (``asarray`` of host data, host index
  arrays, host values assigned into a device array) is counted in ``transfers``;
- ``__cuda_array_interface__`` over the host buffer, so gpudl's launchers hand the arrays to
  Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1), which runs gpudl's kernels on them.

It proves wiring (which code runs, what crosses between host and device), not speed.
"""
from __future__ import annotations

import operator
import traceback

import numpy as _np

__version__ = "14.2.0+gpudl.testdevice"
#: how tests tell this stand-in from real CuPy
__gpudl_test_device__ = True

#: counts of host<->device traffic since the last reset_transfers()
transfers = {"d2h": 0, "h2d": 0, "sync": 0}
#: with record_transfers(True), (kind, stack) for each counted event
transfer_log: list = []
_record = False


def reset_transfers() -> None:
    for k in transfers:
        transfers[k] = 0
    transfer_log.clear()


def record_transfers(on: bool = True) -> None:
    """Keep the Python stack of each counted transfer in ``transfer_log`` (for debugging)."""
    global _record
    _record = bool(on)


def _count(kind: str) -> None:
    transfers[kind] += 1
    if _record:
        transfer_log.append((kind, "".join(traceback.format_stack(limit=8)[:-2])))


_IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. "
             "Please use `.get()` to construct a NumPy array explicitly.")


def _unsupported(obj):
    return TypeError(f"Unsupported type {type(obj)}")


def _unwrap(obj):
    """Device arrays to their buffers; a NumPy array operand is refused, as CuPy refuses it."""
    if isinstance(obj, ndarray):
        return obj._a
    if isinstance(obj, _np.ndarray):
        raise _unsupported(obj)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unwrap(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _unwrap(v) for k, v in obj.items()}
    return obj


def _wrap(obj):
    if isinstance(obj, _np.ndarray):
        return ndarray(obj)
    if isinstance(obj, _np.generic):
        return ndarray(_np.asarray(obj))  # CuPy reductions give 0-d device arrays
    if isinstance(obj, tuple):
        return tuple(_wrap(o) for o in obj)
    if isinstance(obj, list):
        return [_wrap(o) for o in obj]
    return obj


def _has_host_array(obj) -> bool:
    if isinstance(obj, _np.ndarray):
        return True
    if isinstance(obj, (list, tuple)):
        return any(_has_host_array(o) for o in obj)
    return False


def _index(key):
    """An index: device arrays unwrapped; host index arrays are copied to the device (counted)."""
    if _has_host_array(key):
        _count("h2d")
        if isinstance(key, tuple):
            return tuple(o._a if isinstance(o, ndarray) else o for o in key)
        return key
    return _unwrap(key)


def _binary(op, a, b):
    return _wrap(op(_unwrap(a), _unwrap(b)))


def _inplace(op):
    def method(self, other):
        op(self._a, _unwrap(other))
        return self
    return method


def _forward(op):
    def method(self, other):
        return _binary(op, self, other)
    return method


def _reflected(op):
    def method(self, other):
        return _binary(op, other, self)
    return method


class ndarray:
    """A device array whose buffer is host memory; behaves like cupy.ndarray at the boundary."""

    __slots__ = ("_a", "__weakref__")
    __array_priority__ = 100.0  # NumPy defers binary operators to us (we then refuse them)
    __hash__ = None

    def __init__(self, a):
        if not isinstance(a, _np.ndarray):
            raise TypeError(f"ndarray wraps a buffer, got {type(a).__name__}")
        self._a = a

    # ---- what real CuPy forbids or counts -------------------------------------------
    def __array__(self, *args, **kwargs):
        raise TypeError(_IMPLICIT)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        inputs = _unwrap(inputs)
        if "out" in kwargs:
            kwargs["out"] = _unwrap(kwargs["out"])
        return _wrap(getattr(ufunc, method)(*inputs, **kwargs))

    def __array_function__(self, func, types, args, kwargs):
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    def get(self, stream=None, order="C", out=None):
        _count("d2h")
        return self._a.copy()

    def set(self, arr, stream=None):
        _count("h2d")
        self._a[...] = arr

    def item(self, *args):
        _count("d2h")
        return self._a.item(*args)

    def tolist(self):
        _count("d2h")
        return self._a.tolist()

    def __float__(self):
        _count("d2h")
        return float(self._a)

    def __int__(self):
        _count("d2h")
        return int(self._a)

    def __index__(self):
        _count("d2h")
        return operator.index(self._a)

    def __complex__(self):
        _count("d2h")
        return complex(self._a)

    def __bool__(self):
        _count("d2h")
        return bool(self._a)

    def __repr__(self):
        return f"array({self._a!r}) on the test device"

    __str__ = __repr__

    def __format__(self, spec):
        _count("d2h")
        return format(self._a.item() if self._a.ndim == 0 else self._a, spec)

    def __reduce__(self):
        raise TypeError("cupy.ndarray from the test device cannot be pickled: call .get() first")

    # ---- what CuPy passes to Numba ----------------------------------------------------
    @property
    def __cuda_array_interface__(self):
        iface = self._a.__array_interface__
        return {"version": 3, "shape": self._a.shape, "typestr": self._a.dtype.str,
                "data": (iface["data"][0], False),
                "strides": None if self._a.flags.c_contiguous else self._a.strides,
                "stream": None}

    # ---- DLPack: a CUDA buffer (device type 2) to every consumer ----------------------
    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        if dl_device is not None and tuple(dl_device) != (2, 0):
            raise BufferError(f"cupy.ndarray.__dlpack__: cannot export to device {tuple(dl_device)} "
                              "without a copy (the buffer is on CUDA device 0)")
        if copy:
            return _DeviceCapsule(self._a.copy())
        return _DeviceCapsule(self._a)

    # ---- attributes -----------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray(self._a.T))
    mT = property(lambda self: ndarray(_np.swapaxes(self._a, -1, -2)))
    real = property(lambda self: ndarray(self._a.real))
    base = property(lambda self: None if self._a.base is None else ndarray(self._a.base)
                    if isinstance(self._a.base, _np.ndarray) else None)
    data = property(lambda self: _MemoryPointer(self._a))
    device = property(lambda self: _device)

    def __getattr__(self, name):
        if name.startswith("__"):  # __array_interface__ and the like would let NumPy read the buffer
            raise AttributeError(f"'cupy.ndarray' object has no attribute {name!r}")
        attr = getattr(self._a, name)
        if callable(attr):
            def method(*args, **kwargs):
                return _wrap(attr(*_unwrap(args), **_unwrap(kwargs)))
            method.__name__ = name
            return method
        return _wrap(attr)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        for i in range(len(self._a)):
            yield _wrap(self._a[i])

    def __getitem__(self, key):
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key, value):
        if isinstance(value, _np.ndarray):
            _count("h2d")
            v = value
        else:
            v = _unwrap(value)
        self._a[_index(key)] = v

    def __contains__(self, value):
        _count("d2h")
        return value in self._a

    # ---- operators --------------------------------------------------------------------
    __add__, __radd__, __iadd__ = _forward(operator.add), _reflected(operator.add), _inplace(operator.iadd)
    __sub__, __rsub__, __isub__ = _forward(operator.sub), _reflected(operator.sub), _inplace(operator.isub)
    __mul__, __rmul__, __imul__ = _forward(operator.mul), _reflected(operator.mul), _inplace(operator.imul)
    __truediv__, __rtruediv__, __itruediv__ = (_forward(operator.truediv), _reflected(operator.truediv),
                                               _inplace(operator.itruediv))
    __floordiv__, __rfloordiv__, __ifloordiv__ = (_forward(operator.floordiv), _reflected(operator.floordiv),
                                                  _inplace(operator.ifloordiv))
    __mod__, __rmod__, __imod__ = _forward(operator.mod), _reflected(operator.mod), _inplace(operator.imod)
    __pow__, __rpow__, __ipow__ = _forward(operator.pow), _reflected(operator.pow), _inplace(operator.ipow)
    __matmul__, __rmatmul__ = _forward(operator.matmul), _reflected(operator.matmul)
    __and__, __rand__, __iand__ = _forward(operator.and_), _reflected(operator.and_), _inplace(operator.iand)
    __or__, __ror__, __ior__ = _forward(operator.or_), _reflected(operator.or_), _inplace(operator.ior)
    __xor__, __rxor__, __ixor__ = _forward(operator.xor), _reflected(operator.xor), _inplace(operator.ixor)
    __lshift__, __rshift__ = _forward(operator.lshift), _forward(operator.rshift)
    __eq__, __ne__ = _forward(operator.eq), _forward(operator.ne)
    __lt__, __le__ = _forward(operator.lt), _forward(operator.le)
    __gt__, __ge__ = _forward(operator.gt), _forward(operator.ge)

    def __neg__(self):
        return _wrap(-self._a)  # a 0-d buffer's result is a NumPy scalar: wrap it back

    def __pos__(self):
        return _wrap(+self._a)  # a 0-d buffer's result is a NumPy scalar: wrap it back

    def __abs__(self):
        return _wrap(abs(self._a))  # a 0-d buffer's result is a NumPy scalar: wrap it back

    def __invert__(self):
        return _wrap(~self._a)  # a 0-d buffer's result is a NumPy scalar: wrap it back


class _DeviceCapsule:
    """What the test device's __dlpack__ hands out: only this module's from_dlpack can read it,
    as only a CUDA-aware consumer can read a real CuPy capsule."""

    def __init__(self, a):
        self.a = a


def from_dlpack(x, *, device=None, copy=None):
    if not hasattr(x, "__dlpack_device__"):
        raise TypeError(f"from_dlpack: {type(x).__name__} has no __dlpack_device__")
    if tuple(x.__dlpack_device__())[0] != 2:
        raise RuntimeError(f"from_dlpack: cupy reads CUDA buffers only, got device {tuple(x.__dlpack_device__())}")
    capsule = x.__dlpack__(stream=None) if copy is None else x.__dlpack__(stream=None, copy=copy)
    if not isinstance(capsule, _DeviceCapsule):
        raise TypeError("from_dlpack: not a capsule of the test device")
    return ndarray(capsule.a)


class _MemoryPointer:
    def __init__(self, a):
        self.ptr = a.__array_interface__["data"][0]


# ---- array creation and the NumPy-like namespace ------------------------------------------

def asarray(a, dtype=None, order=None, **kwargs):
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == _np.dtype(dtype) else a.astype(dtype)
    _count("h2d")
    return ndarray(_np.array(a, dtype=dtype, order=order or "K", copy=True))


def array(a, dtype=None, copy=True, order="K", ndmin=0, **kwargs):
    if isinstance(a, ndarray):
        return ndarray(_np.array(a._a, dtype=dtype, copy=copy, order=order, ndmin=ndmin))
    _count("h2d")
    return ndarray(_np.array(a, dtype=dtype, copy=True, order=order, ndmin=ndmin))


def asnumpy(a, stream=None, order="C", out=None):
    if isinstance(a, ndarray):
        return a.get()
    return _np.asarray(a)


def get_array_module(*args):
    import sys
    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else _np


def get_default_memory_pool():
    return cuda.get_default_memory_pool()


def is_available() -> bool:
    return True


def _wrapped(fn):
    def call(*args, **kwargs):
        return _wrap(fn(*_unwrap(args), **_unwrap(kwargs)))
    call.__name__ = getattr(fn, "__name__", "function")
    call.__wrapped__ = fn
    return call


_cache: dict = {}


def __getattr__(name):
    """The rest of the namespace: NumPy's functions over device arrays, types as they are."""
    if name in _cache:
        return _cache[name]
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        attr = getattr(_np, name)
    except AttributeError:
        raise AttributeError(f"module 'cupy' (gpudl's test device) has no attribute {name!r}") from None
    if isinstance(attr, type) or not callable(attr):
        value = attr  # dtypes, scalar types, constants (pi, nan, newaxis)
    else:
        value = _wrapped(attr)
    _cache[name] = value
    return value


class _Namespace:
    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        attr = getattr(self._module, name)
        return _wrapped(attr) if callable(attr) and not isinstance(attr, type) else attr


linalg = _Namespace(_np.linalg)
fft = _Namespace(_np.fft)

import importlib as _importlib  # noqa: E402

# real submodules, imported as such: the module __getattr__ would answer numpy.random
cuda = _importlib.import_module(__name__ + ".cuda")
random = _importlib.import_module(__name__ + ".random")

_device = cuda.Device(0)
