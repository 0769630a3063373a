"""Define-by-run automatic differentiation.

A :class:`Function` computes ``forward`` and ``backward`` on raw backend arrays (numpy or
cupy); calling it on :class:`Tensor` objects records the graph while gradients are
enabled. ``Tensor.backward`` walks the graph once in reverse topological order and
accumulates gradients into the leaves' ``.grad``.
"""
from __future__ import annotations

import contextlib
import numbers

import numpy as np

from . import backend

__all__ = ["Tensor", "Parameter", "Function", "no_grad", "enable_grad", "is_grad_enabled", "as_tensor"]

_grad_enabled = True


def is_grad_enabled() -> bool:
    return _grad_enabled


@contextlib.contextmanager
def no_grad():
    """Within this block operations record no graph (inference, optimizer updates)."""
    global _grad_enabled
    old, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = old


@contextlib.contextmanager
def enable_grad():
    global _grad_enabled
    old, _grad_enabled = _grad_enabled, True
    try:
        yield
    finally:
        _grad_enabled = old


def _to_array(data, dtype=None):
    """A backend array from data; lists and scalars land on the active backend, and so
    do arrays of the other backend (an explicit move at construction)."""
    xp = backend.get_xp()
    if isinstance(data, Tensor):
        data = data.data
    if backend.is_cupy_array(data) or isinstance(data, np.ndarray):
        if backend.get_backend() == "numpy" and backend.is_cupy_array(data):
            data = data.get()
        elif backend.get_backend() == "cupy" and isinstance(data, np.ndarray):
            data = xp.asarray(data)
        if dtype is not None and data.dtype != dtype:
            data = data.astype(dtype)
        return data
    arr = np.asarray(data)
    if arr.dtype.kind in "OUSV":
        raise TypeError(f"Tensor expected numeric data, got dtype {arr.dtype} ({type(data).__name__})")
    if dtype is not None:
        arr = arr.astype(dtype)
    elif arr.dtype == np.float64 and not isinstance(data, np.generic):
        arr = arr.astype(backend.default_dtype)  # Python floats and lists: float32 default
    return xp.asarray(arr) if xp is not np else arr


class Tensor:
    """An n-d array on the active backend, with an optional gradient."""

    __array_priority__ = 1000  # numpy_array * tensor -> Tensor.__rmul__

    def __init__(self, data, requires_grad: bool = False, dtype=None, name: str | None = None):
        self.data = _to_array(data, dtype)
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(f"only floating tensors can require gradients, got dtype {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self.creator: Function | None = None
        self.name = name
        self._index = 0

    @classmethod
    def _wrap(cls, array, creator=None):
        """A Tensor around an existing backend array, no copy, no move."""
        t = cls.__new__(cls)
        t.data = array
        t.grad = None
        t.creator = creator
        t.requires_grad = creator is not None
        t.name = None
        t._index = 0
        return t

    # ---- array facts ------------------------------------------------------------------
    @property
    def shape(self):
        return tuple(self.data.shape)

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return int(self.data.size)

    @property
    def backend(self) -> str:
        return backend.backend_of(self.data)

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({backend.to_numpy(self.data)!r}{grad})"

    def numpy(self) -> np.ndarray:
        return backend.to_numpy(self.data)

    def item(self):
        return backend.to_numpy(self.data).item()

    def detach(self) -> "Tensor":
        return Tensor._wrap(self.data)

    def to(self, name: str) -> "Tensor":
        """A copy on backend ``name`` ("numpy" or "cupy"), detached from the graph."""
        t = Tensor._wrap(backend.to_backend(self.data, name))
        t.requires_grad = self.requires_grad
        return t

    def astype(self, dtype) -> "Tensor":
        return Cast(dtype)(self)

    # ---- DLPack -----------------------------------------------------------------------
    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        """This tensor's buffer as a DLPack capsule, for ``numpy.from_dlpack``,
        ``torch.from_dlpack``, ``cupy.from_dlpack``, ``jax.dlpack.from_dlpack``. Shares memory;
        like PyTorch, a tensor that requires grad must be ``detach()``-ed first (gradients do
        not cross the boundary)."""
        if self.requires_grad:
            raise RuntimeError("Tensor.__dlpack__: cannot export a tensor that requires grad "
                               "(gradients do not cross DLPack): use tensor.detach()")
        kwargs = {k: v for k, v in (("stream", stream), ("max_version", max_version),
                                    ("dl_device", dl_device), ("copy", copy)) if v is not None}
        try:
            return self.data.__dlpack__(**kwargs)
        except TypeError:
            if "max_version" not in kwargs:
                raise
            # an array library of before DLPack 1.0 only makes the unversioned capsule,
            # which the DLPack protocol lets a producer return
            kwargs.pop("max_version")
            return self.data.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        """(device type, device id) of the buffer, DLPack's codes: (1, 0) host, (2, n) CUDA."""
        return self.data.__dlpack_device__()

    def zero_grad(self):
        self.grad = None

    # ---- backward ---------------------------------------------------------------------
    def backward(self, grad=None, retain_graph: bool = False):
        """Accumulate d(self)/d(leaf) into every leaf that requires a gradient.

        ``grad`` defaults to ones for a scalar; a non-scalar needs it given.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad "
                               "(no input of the computation had requires_grad=True)")
        xp = backend.get_array_module(self.data)
        if grad is None:
            if self.data.size != 1:
                raise ValueError(f"backward() without a gradient needs a scalar output, got shape {self.shape}")
            grad = xp.ones_like(self.data)
        else:
            grad = grad.data if isinstance(grad, Tensor) else xp.asarray(grad, dtype=self.dtype)
            if grad.shape != self.data.shape:
                raise ValueError(f"backward() gradient shape {grad.shape} does not match output shape {self.shape}")
        if self.creator is None:
            self._accumulate(grad)
            return
        order = _topological_order(self.creator)
        # gradients are keyed by (producing function, output slot): intermediate tensors
        # may be gone by the time their producer's turn comes
        grads = {(id(self.creator), self._index): grad}
        for fn in order:
            gys = [grads.pop((id(fn), i), None) for i in range(len(fn.output_shapes))]
            if all(g is None for g in gys):
                continue
            gys = [xp.zeros(s, dtype=d) if g is None else g for g, s, d in zip(gys, fn.output_shapes, fn.output_dtypes)]
            gxs = fn.backward(*gys)
            if not isinstance(gxs, tuple):
                gxs = (gxs,)
            if len(gxs) != len(fn.inputs):
                raise RuntimeError(f"{type(fn).__name__}.backward returned {len(gxs)} gradients "
                                   f"for {len(fn.inputs)} inputs")
            for x, gx in zip(fn.inputs, gxs):
                if gx is None or not x.requires_grad:
                    continue
                if gx.shape != x.data.shape:
                    raise RuntimeError(f"{type(fn).__name__}.backward gave a gradient of shape {gx.shape} "
                                       f"for an input of shape {x.data.shape}")
                if x.creator is None:
                    x._accumulate(gx)
                else:
                    key = (id(x.creator), x._index)
                    grads[key] = gx if key not in grads else grads[key] + gx
            if not retain_graph:
                fn.release()

    def _accumulate(self, g):
        if g.dtype != self.data.dtype:
            g = g.astype(self.data.dtype)
        if self.grad is None:
            # own the buffer: the backward of an op may hand out a view of another gradient
            self.grad = g.copy() if g.base is not None or not g.flags.owndata else g
        else:
            self.grad = self.grad + g

    # ---- operators --------------------------------------------------------------------
    def __add__(self, o): return Add()(self, o)
    def __radd__(self, o): return Add()(o, self)
    def __sub__(self, o): return Sub()(self, o)
    def __rsub__(self, o): return Sub()(o, self)
    def __mul__(self, o): return Mul()(self, o)
    def __rmul__(self, o): return Mul()(o, self)
    def __truediv__(self, o): return Div()(self, o)
    def __rtruediv__(self, o): return Div()(o, self)
    def __neg__(self): return Neg()(self)
    def __pow__(self, p): return Pow()(self, p)
    def __rpow__(self, b): return Pow()(b, self)
    def __matmul__(self, o): return MatMul()(self, o)
    def __rmatmul__(self, o): return MatMul()(o, self)
    def __getitem__(self, index): return GetItem(index)(self)

    # comparisons give plain (non-differentiable) boolean arrays wrapped in tensors
    def __gt__(self, o): return Tensor._wrap(self.data > _raw(o))
    def __lt__(self, o): return Tensor._wrap(self.data < _raw(o))
    def __ge__(self, o): return Tensor._wrap(self.data >= _raw(o))
    def __le__(self, o): return Tensor._wrap(self.data <= _raw(o))
    __hash__ = object.__hash__

    def sum(self, axis=None, keepdims=False): return Sum(axis, keepdims)(self)
    def mean(self, axis=None, keepdims=False): return Mean(axis, keepdims)(self)
    def max(self, axis=None, keepdims=False): return Max(axis, keepdims)(self)
    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return Reshape(shape)(self)
    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return Transpose(axes or None)(self)
    @property
    def T(self): return Transpose(None)(self)
    def exp(self): return Exp()(self)
    def log(self): return Log()(self)
    def abs(self): return Abs()(self)
    def sqrt(self): return Pow()(self, 0.5)


class Parameter(Tensor):
    """A trainable tensor: always requires a gradient; what layers and optimizers hold."""

    def __init__(self, data, name: str | None = None, dtype=None, regularizer=None):
        super().__init__(data, requires_grad=True, dtype=dtype, name=name)
        self.regularizer = regularizer

    @classmethod
    def _wrap_param(cls, array, name=None, regularizer=None) -> "Parameter":
        """A Parameter around an existing backend array (no copy, no move)."""
        p = cls.__new__(cls)
        p.data, p.grad, p.creator, p.requires_grad = array, None, None, True
        p.name, p._index, p.regularizer = name, 0, regularizer
        return p

    def __repr__(self):
        return f"Parameter(name={self.name!r}, shape={self.shape}, dtype={self.dtype})"


def _raw(x):
    return x.data if isinstance(x, Tensor) else x


def as_tensor(x, like: Tensor | None = None) -> Tensor:
    """A Tensor from x; Python scalars take ``like``'s dtype and backend (no float64 upcast)."""
    if isinstance(x, Tensor):
        return x
    if like is not None and isinstance(x, numbers.Number) and not isinstance(x, bool):
        xp = backend.get_array_module(like.data)
        dt = like.dtype if like.dtype.kind == "f" or isinstance(x, numbers.Integral) else backend.default_dtype
        return Tensor._wrap(xp.asarray(x, dtype=dt))
    if like is not None and (isinstance(x, np.ndarray) or backend.is_cupy_array(x)):
        return Tensor._wrap(x)  # keep its backend: a mix is reported by check_same_backend
    return Tensor(x)


def _topological_order(root: "Function"):
    """Functions from the output back to the inputs, each after every consumer of its outputs."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        fn, done = stack.pop()
        if done:
            order.append(fn)
            continue
        if id(fn) in visited:
            continue
        visited.add(id(fn))
        stack.append((fn, True))
        for x in fn.inputs or ():
            if x.creator is not None and id(x.creator) not in visited:
                stack.append((x.creator, False))
    order.reverse()  # post-order reversed = consumers before producers
    return order


class Function:
    """An op: ``forward(*arrays) -> array(s)`` and ``backward(*grad_outputs) -> grad_inputs``.

    Subclasses keep in ``self`` whatever forward computed that backward needs. Calling a
    Function on Tensors (or scalars/arrays) returns Tensor(s) linked into the graph.
    """

    inputs = None

    def __call__(self, *inputs):
        like = next((x for x in inputs if isinstance(x, Tensor)), None)
        tensors = [as_tensor(x, like) for x in inputs]
        arrays = [t.data for t in tensors]
        backend.check_same_backend(arrays, type(self).__name__)
        outs = self.forward(*arrays)
        single = not isinstance(outs, tuple)
        if single:
            outs = (outs,)
        needs_grad = _grad_enabled and any(t.requires_grad for t in tensors)
        results = [Tensor._wrap(y, self if needs_grad else None) for y in outs]
        if needs_grad:
            for i, r in enumerate(results):
                r._index = i
            self.inputs = tensors
            self.output_shapes = [y.shape for y in outs]
            self.output_dtypes = [y.dtype for y in outs]
        return results[0] if single else tuple(results)

    def forward(self, *xs):
        raise NotImplementedError(f"{type(self).__name__} must define forward")

    def backward(self, *gys):
        raise NotImplementedError(f"{type(self).__name__} has no gradient")

    def needs_grad(self, i: int) -> bool:
        """Whether input ``i`` wants a gradient (backward may skip computing it)."""
        return self.inputs is not None and self.inputs[i].requires_grad

    def release(self):
        """Drop references to inputs and saved arrays once backward has run."""
        self.inputs = None
        for k in list(vars(self)):
            if k.startswith("_saved"):
                delattr(self, k)


# ---- elementwise arithmetic with broadcasting ----------------------------------------

def unbroadcast(g, shape):
    """Sum a broadcast gradient back down to ``shape``."""
    if g.shape == tuple(shape):
        return g
    ndiff = g.ndim - len(shape)
    if ndiff > 0:
        g = g.sum(axis=tuple(range(ndiff)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


class _Binary(Function):
    def forward(self, a, b):
        self.a_shape, self.b_shape = a.shape, b.shape
        return self._fwd(a, b)


class Add(_Binary):
    def _fwd(self, a, b):
        return a + b

    def backward(self, g):
        return unbroadcast(g, self.a_shape), unbroadcast(g, self.b_shape)


class Sub(_Binary):
    def _fwd(self, a, b):
        return a - b

    def backward(self, g):
        return unbroadcast(g, self.a_shape), unbroadcast(-g, self.b_shape)


class Mul(_Binary):
    def _fwd(self, a, b):
        self._saved = (a, b)
        return a * b

    def backward(self, g):
        a, b = self._saved
        return unbroadcast(g * b, self.a_shape), unbroadcast(g * a, self.b_shape)


class Div(_Binary):
    def _fwd(self, a, b):
        self._saved = (a, b)
        return a / b

    def backward(self, g):
        a, b = self._saved
        ga = g / b
        return unbroadcast(ga, self.a_shape), unbroadcast(-ga * a / b, self.b_shape)


class Pow(_Binary):
    def _fwd(self, a, b):
        y = a ** b
        self._saved = (a, b, y)
        return y

    def backward(self, g):
        a, b, y = self._saved
        xp = backend.get_array_module(a)
        ga = g * b * a ** (b - 1)
        gb = None
        if self.inputs[1].requires_grad:
            gb = unbroadcast(g * y * xp.log(xp.where(a > 0, a, 1)), self.b_shape)
        return unbroadcast(ga, self.a_shape), gb


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, g):
        return -g


class Exp(Function):
    def forward(self, a):
        xp = backend.get_array_module(a)
        self._saved = xp.exp(a)
        return self._saved

    def backward(self, g):
        return g * self._saved


class Log(Function):
    def forward(self, a):
        xp = backend.get_array_module(a)
        self._saved = a
        return xp.log(a)

    def backward(self, g):
        return g / self._saved


class Abs(Function):
    def forward(self, a):
        xp = backend.get_array_module(a)
        self._saved = xp.sign(a)
        return xp.abs(a)

    def backward(self, g):
        return g * self._saved


class Cast(Function):
    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)

    def forward(self, a):
        self.src = a.dtype
        return a.astype(self.dtype)

    def backward(self, g):
        return g.astype(self.src)


class MatMul(Function):
    def forward(self, a, b):
        if a.ndim < 1 or b.ndim < 1:
            raise ValueError(f"matmul needs arrays of at least 1 dimension, got shapes {a.shape} and {b.shape}")
        if a.shape[-1] != b.shape[0 if b.ndim == 1 else -2]:
            raise ValueError(f"matmul shapes do not align: {a.shape} @ {b.shape} "
                             f"(expected a.shape[-1] == b.shape[-2])")
        self._saved = (a, b)
        return a @ b

    def backward(self, g):
        a, b = self._saved
        xp = backend.get_array_module(a)
        if a.ndim == 1 or b.ndim == 1:
            a2 = a[None, :] if a.ndim == 1 else a
            b2 = b[:, None] if b.ndim == 1 else b
            g2 = g
            if a.ndim == 1:
                g2 = xp.expand_dims(g2, -2)
            if b.ndim == 1:
                g2 = xp.expand_dims(g2, -1)
            ga = g2 @ xp.swapaxes(b2, -1, -2)
            gb = xp.swapaxes(a2, -1, -2) @ g2
            ga = ga.reshape(a.shape) if a.ndim == 1 else unbroadcast(ga, a.shape)
            gb = gb.reshape(b.shape) if b.ndim == 1 else unbroadcast(gb, b.shape)
            return ga, gb
        if a.ndim == 2 and b.ndim == 2:
            return g @ b.T, a.T @ g
        ga = unbroadcast(g @ xp.swapaxes(b, -1, -2), a.shape)
        gb = unbroadcast(xp.swapaxes(a, -1, -2) @ g, b.shape)
        return ga, gb


# ---- reductions and shape ops ---------------------------------------------------------

def _norm_axis(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    out = []
    for a in axis:
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of range for an array of {ndim} dimensions")
        out.append(a % ndim)
    return tuple(sorted(out))


class Sum(Function):
    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, a):
        self.shape = a.shape
        self.axes = _norm_axis(self.axis, a.ndim)
        return a.sum(axis=self.axes, keepdims=self.keepdims)

    def backward(self, g):
        xp = backend.get_array_module(g)
        if not self.keepdims:
            g = g.reshape([1 if i in self.axes else n for i, n in enumerate(self.shape)])
        return xp.broadcast_to(g, self.shape)


class Mean(Sum):
    def forward(self, a):
        y = super().forward(a)
        self.count = int(np.prod([a.shape[i] for i in self.axes])) if self.axes else 1
        return y / a.dtype.type(self.count) if a.dtype.kind == "f" else y / self.count

    def backward(self, g):
        return super().backward(g / g.dtype.type(self.count))


class Max(Function):
    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, a):
        self.axes = _norm_axis(self.axis, a.ndim)
        y = a.max(axis=self.axes, keepdims=True)
        self._saved = (a == y)
        return y if self.keepdims else y.reshape([n for i, n in enumerate(y.shape) if i not in self.axes])

    def backward(self, g):
        mask = self._saved
        shape = [1 if i in self.axes else n for i, n in enumerate(mask.shape)]
        g = g.reshape(shape)
        # ties share the gradient equally
        return g * mask / mask.sum(axis=self.axes, keepdims=True)


class Reshape(Function):
    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, a):
        self.in_shape = a.shape
        try:
            return a.reshape(self.shape)
        except ValueError:
            raise ValueError(f"cannot reshape an array of shape {a.shape} ({a.size} elements) "
                             f"into shape {self.shape}") from None

    def backward(self, g):
        return g.reshape(self.in_shape)


class Transpose(Function):
    def __init__(self, axes=None):
        self.axes = axes

    def forward(self, a):
        if self.axes is not None and sorted(a_ % a.ndim for a_ in self.axes) != list(range(a.ndim)):
            raise ValueError(f"transpose axes {self.axes} do not permute {a.ndim} dimensions")
        return a.transpose(self.axes)

    def backward(self, g):
        if self.axes is None:
            return g.transpose()
        inv = np.argsort([a % g.ndim for a in self.axes])
        return g.transpose(tuple(inv))


def _raw_index(index):
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index


def _is_basic(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or isinstance(i, (int, np.integer, slice)) for i in items)


class GetItem(Function):
    def __init__(self, index):
        self.index = _raw_index(index)

    def forward(self, a):
        self.shape, self.dtype = a.shape, a.dtype
        return a[self.index]

    def backward(self, g):
        xp = backend.get_array_module(g)
        out = xp.zeros(self.shape, dtype=g.dtype)
        if _is_basic(self.index):
            out[self.index] = g
        else:  # fancy indices may repeat: accumulate
            backend.scatter_add(out, self.index, g)
        return out


class Concatenate(Function):
    def __init__(self, axis=0):
        self.axis = axis

    def forward(self, *xs):
        xp = backend.get_array_module(*xs)
        self.sizes = [x.shape[self.axis] for x in xs]
        return xp.concatenate(xs, axis=self.axis)

    def backward(self, g):
        xp = backend.get_array_module(g)
        splits = np.cumsum(self.sizes)[:-1].tolist()
        return tuple(xp.split(g, splits, axis=self.axis))


class Stack(Function):
    def __init__(self, axis=0):
        self.axis = axis

    def forward(self, *xs):
        xp = backend.get_array_module(*xs)
        return xp.stack(xs, axis=self.axis)

    def backward(self, g):
        xp = backend.get_array_module(g)
        n = g.shape[self.axis]
        return tuple(xp.take(g, i, axis=self.axis) for i in range(n))


def from_dlpack(x, *, copy=None) -> Tensor:
    """A leaf Tensor over ``x``'s buffer (NumPy, CuPy, PyTorch, JAX, or any DLPack producer),
    without a copy: a write on either side is seen by the other. A host buffer gives a NumPy
    tensor and a CUDA buffer a CuPy one; moving between them takes an explicit ``.to()``.
    Like ``torch.from_dlpack``, no gradient crosses: the result requires none."""
    if isinstance(x, Tensor):
        x = x.detach()
    return Tensor._wrap(backend.from_dlpack(x, copy=copy))


def concatenate(tensors, axis=0) -> Tensor:
    return Concatenate(axis)(*tensors)


def stack(tensors, axis=0) -> Tensor:
    return Stack(axis)(*tensors)
