"""What does the CNN learn? (Lecture II)

* :func:`input_gradient`: d(score of a class) / d(input image), the saliency map: which
  pixels, changed a little, move the class score most.
* :func:`filter_activation_gradient`: d(degree of activation of filter k) / d(input),
  the degree being the mean of the k-th feature map; :func:`maximize_filter_activation`
  follows it uphill from an image (gradient ascent, x* = argmax_x a^k) to show the pattern
  the filter detects.
* :func:`plot_filters`: the first layer's filters as small images.

``model_or_fn`` is any callable mapping a Tensor batch to a Tensor: a Sequential (or its
``__call__``), a layer, or a function stacking layers. A model or layer given directly (or
through its bound method) is put in inference mode (dropout off) for the computation and
restored afterwards; the weights' ``.grad`` are left as they were in every case.
"""
from __future__ import annotations

import numpy as np

from . import backend
from .autograd import Tensor

__all__ = ["input_gradient", "filter_activation_gradient", "maximize_filter_activation", "plot_filters"]


def _owner(model_or_fn):
    """The object with params()/train() behind a model, a layer, or one's bound method."""
    obj = getattr(model_or_fn, "__self__", model_or_fn)
    return obj if hasattr(obj, "params") else None


class _Inference:
    """Inference mode (dropout off) for a model or layer, restored afterwards."""

    def __init__(self, model_or_fn):
        self.owner = _owner(model_or_fn)
        self.training = getattr(self.owner, "training", None)

    def __enter__(self):
        if self.training is not None and hasattr(self.owner, "train"):
            self.owner.train(False)
        return self

    def __exit__(self, *exc):
        if self.training is not None and hasattr(self.owner, "train"):
            self.owner.train(self.training)
        return False


def _backward_to_input(out, seed, xt):
    """out.backward(seed), leaving every other leaf's ``.grad`` (the weights') as it was."""
    leaves, seen, stack = [], set(), [out.creator] if out.creator is not None else []
    while stack:
        fn = stack.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        for t in fn.inputs or ():
            if t.creator is not None:
                stack.append(t.creator)
            elif t.requires_grad and t is not xt:
                leaves.append(t)
    saved = [(t, t.grad) for t in leaves]
    try:
        out.backward(seed)
    finally:
        for t, g in saved:
            t.grad = g


def _input_tensor(x):
    data = x.data if isinstance(x, Tensor) else x
    arr = data if backend.is_cupy_array(data) else np.asarray(data)
    if arr.dtype.kind != "f":
        arr = arr.astype(backend.default_dtype)
    return Tensor(arr, requires_grad=True)


def _call(model_or_fn, x):
    if not callable(model_or_fn):
        raise TypeError(f"expected a model, layer or function mapping a Tensor to a Tensor, "
                        f"got {type(model_or_fn).__name__}")
    out = model_or_fn(x)
    if not isinstance(out, Tensor):
        raise TypeError(f"the model returned {type(out).__name__}, expected a Tensor")
    return out


def input_gradient(model_or_fn, x, class_index):
    """d score[n, class_index] / d x[n] for every image n of the batch ``x``.

    x: a batch (N, ...) as the model takes it (numpy/cupy array or Tensor). class_index:
    one int for all images, or one per image (N ints). The score is the model's output
    (use the logits, or the softmax output: the map then shows the probability's slope).
    Returns an array of x's shape on x's backend.
    """
    xt = _input_tensor(x)
    with _Inference(model_or_fn):
        scores = _call(model_or_fn, xt)
        if scores.ndim != 2 or scores.shape[0] != xt.shape[0]:
            raise ValueError(f"input_gradient expected scores of shape ({xt.shape[0]}, classes), "
                             f"got {scores.shape}")
        n, classes = scores.shape
        idx = np.asarray(class_index.get() if backend.is_cupy_array(class_index) else class_index)
        if idx.dtype.kind not in "iu" or idx.ndim > 1 or (idx.ndim == 1 and idx.shape[0] != n):
            raise ValueError(f"input_gradient expected class_index an int or {n} ints, got {class_index!r}")
        if idx.size and (idx.min() < 0 or idx.max() >= classes):
            raise ValueError(f"input_gradient expected class_index in [0, {classes - 1}], got {class_index!r}")
        xp = backend.get_array_module(scores.data)
        pick = xp.zeros(scores.shape, dtype=scores.dtype)
        pick[xp.arange(n), xp.asarray(np.broadcast_to(idx, (n,)))] = 1
        _backward_to_input(scores, pick, xt)
    return xt.grad


def filter_activation_gradient(model_or_fn, x, filter_index):
    """d a^k / d x with a^k the degree of activation of filter k: the mean of feature map k.

    ``model_or_fn`` maps images to feature maps (N, K, H', W') (e.g. the layers up to a
    Conv2D); the gradient of each image's own a^k is returned, shape of x.
    """
    xt = _input_tensor(x)
    with _Inference(model_or_fn):
        maps = _call(model_or_fn, xt)
        if maps.ndim < 2:
            raise ValueError(f"filter_activation_gradient expected feature maps (N, K, ...), got shape {maps.shape}")
        k = maps.shape[1]
        if isinstance(filter_index, bool) or not isinstance(filter_index, (int, np.integer)) \
                or not 0 <= filter_index < k:
            raise ValueError(f"filter_activation_gradient expected filter_index in [0, {k - 1}], got {filter_index!r}")
        xp = backend.get_array_module(maps.data)
        per_map = int(np.prod(maps.shape[2:], dtype=np.int64)) or 1
        seed = xp.zeros(maps.shape, dtype=maps.dtype)
        seed[:, filter_index] = 1.0 / per_map
        _backward_to_input(maps, seed, xt)
    return xt.grad


def maximize_filter_activation(model_or_fn, x0, filter_index, steps=50, step_size=0.1, clip=(0.0, 1.0)):
    """Gradient ascent on a^k from the images ``x0``: x <- clip(x + step * g / rms(g)).

    Returns the images (x0's shape, a numpy array) that excite filter k most.
    """
    src = np.asarray(backend.to_numpy(x0.data if isinstance(x0, Tensor) else x0))
    dtype = src.dtype if src.dtype.kind == "f" else np.dtype(backend.default_dtype)
    x = src.astype(np.float64)
    for _ in range(int(steps)):
        xin = x.astype(dtype)
        g = backend.to_numpy(filter_activation_gradient(model_or_fn, xin, filter_index))
        g = g.astype(np.float64)
        rms = np.sqrt((g * g).mean(axis=tuple(range(1, g.ndim)), keepdims=True)) + 1e-12
        x = x + step_size * g / rms
        if clip is not None:
            x = np.clip(x, clip[0], clip[1])
    return x.astype(dtype)


def plot_filters(conv_layer, path, cols=8, title=None):
    """Draw a Conv2D's filters (W of shape (filters, in_ch, kh, kw)) as a grid of images.

    One input channel: grayscale; three: RGB; otherwise each filter's first channel. Each
    filter is scaled to its own [min, max]. ``conv_layer`` may also be W itself (array,
    Tensor). Saves to ``path`` (png, pdf, svg...) and returns it. Needs matplotlib
    (``pip install gpudl[plots]``).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plot_filters needs matplotlib, which is not installed: "
                          "pip install gpudl[plots]") from None
    W = getattr(conv_layer, "W", None) if hasattr(conv_layer, "params") else conv_layer
    if W is None:
        raise ValueError(f"plot_filters: {conv_layer!r} has no weights yet (call the layer on data first)")
    W = np.asarray(backend.to_numpy(W.data if isinstance(W, Tensor) else W), dtype=np.float64)
    if W.ndim != 4:
        raise ValueError(f"plot_filters expected conv weights of shape (filters, in_ch, kh, kw), got {W.shape}")
    n, c = W.shape[:2]
    cols = max(1, min(int(cols), n))
    rows = -(-n // cols)
    fig = Figure(figsize=(cols * 1.0, rows * 1.0 + (0.4 if title else 0)))
    FigureCanvasAgg(fig)
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        f = W[i, :3].transpose(1, 2, 0) if c == 3 else W[i, 0]
        lo, hi = f.min(), f.max()
        f = (f - lo) / (hi - lo) if hi > lo else np.zeros_like(f)
        ax.imshow(f, cmap=None if c == 3 else "gray", interpolation="nearest", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(str(i), fontsize=6)
    if title:
        fig.suptitle(title)
    fig.savefig(path)
    return path
