"""Skip-gram negative sampling (word2vec's SGNS) as one fused op.

For pair ``b`` with input vector ``u_b`` (a word's row of the input table, or CBOW's mean of
its context rows), output table ``W`` (V, D), the true context ``c_b`` and ``K`` sampled words
``n_b1 .. n_bK``::

    loss_b = -log sigmoid(u_b . W[c_b]) - sum_k log sigmoid(-u_b . W[n_bk])

The gradient of ``loss_b`` with respect to each score is a single number (``sigmoid(s) - 1``
for the context, ``sigmoid(s)`` for a sampled word); forward keeps these ``coef`` (B, 1 + K),
so backward is two gathers and a scatter: ``du_b = sum_j coef_bj W[id_bj]`` and
``dW[id_bj] += coef_bj u_b``. The dense (V, D) gradient of ``W`` is made only when autograd
asks for it (a training loop that wants the sparse rows calls :func:`negative_sampling_grads`).

CPU arrays run NumPy; CuPy arrays run ``gpudl.kernels.word2vec``.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Function
from ._util import contiguous, on_gpu, raw, scalar

__all__ = ["negative_sampling_loss", "negative_sampling_grads", "NegativeSamplingLoss"]

REDUCTIONS = ("sum", "mean", "none")
OP = "negative_sampling_loss"


def _reference_coef(u, w, contexts, negatives):
    """(per-pair loss (B,), coef (B, 1 + K)) in NumPy/CuPy array math."""
    xp = backend.get_array_module(u)
    ids = xp.concatenate([contexts[:, None], negatives], axis=1)        # (B, 1 + K)
    scores = xp.einsum("bd,bjd->bj", u, w[ids])
    sign = xp.ones(ids.shape[1], dtype=u.dtype)
    sign[0] = -1                                                        # context: -s, samples: +s
    z = scores * sign
    # -log sigmoid(-z) = log(1 + e^z), stable for large |z|
    losses = xp.logaddexp(scalar(0, u.dtype), z).sum(axis=1)
    coef = (1 + xp.tanh(scores / 2)) / 2     # sigmoid without overflow
    coef[:, 0] -= 1
    return losses, coef, ids


def _check(u, w, contexts, negatives):
    if u.ndim != 2:
        raise ValueError(f"{OP} expected inputs of shape (B, D), got {tuple(u.shape)}")
    if w.ndim != 2 or w.shape[1] != u.shape[1]:
        raise ValueError(f"{OP} expected output_weights of shape (V, {u.shape[1]}) (D from the "
                         f"inputs), got {tuple(w.shape)}")
    if u.dtype.kind != "f" or w.dtype != u.dtype:
        raise TypeError(f"{OP} expected float inputs and output_weights of one dtype, got "
                        f"{u.dtype} and {w.dtype}")
    for name, a in (("contexts", contexts), ("negatives", negatives)):
        if a.dtype.kind not in "iu":
            raise TypeError(f"{OP} expected integer word ids for {name}, got dtype {a.dtype}")
    b = u.shape[0]
    if contexts.shape != (b,):
        raise ValueError(f"{OP} expected contexts of shape ({b},) (one per input row), "
                         f"got {tuple(contexts.shape)}")
    if negatives.ndim != 2 or negatives.shape[0] != b:
        raise ValueError(f"{OP} expected negatives of shape ({b}, K), got {tuple(negatives.shape)}")
    # ids are read back only on the host: on the device that would cost a sync per step
    if not backend.is_cupy_array(contexts) and b:
        v = w.shape[0]
        for name, a in (("contexts", contexts), ("negatives", negatives)):
            if a.size and (int(a.min()) < 0 or int(a.max()) >= v):
                raise ValueError(f"{OP} expected {name} ids in [0, {v}) (rows of output_weights), "
                                 f"got values in [{int(a.min())}, {int(a.max())}]")


class NegativeSamplingLoss(Function):
    """``(inputs (B, D), output_weights (V, D), contexts (B,), negatives (B, K))`` -> the SGNS
    loss, summed over pairs (``reduction="sum"``, word2vec's objective), averaged, or per pair."""

    def __init__(self, reduction="sum"):
        if reduction not in REDUCTIONS:
            raise ValueError(f"{OP} expected reduction in {REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def forward(self, u, w, contexts, negatives):
        _check(u, w, contexts, negatives)
        if on_gpu(u):
            from ..kernels import word2vec as K
            losses, coef = K.negative_sampling_forward(contiguous(u), contiguous(w),
                                                       contiguous(contexts.astype(np.int32, copy=False)),
                                                       contiguous(negatives.astype(np.int32, copy=False)))
        else:
            losses, coef, _ = _reference_coef(u, w, contexts, negatives)
        self._saved = (u, w, contexts, negatives, coef)
        if self.reduction == "none":
            return losses
        total = losses.sum()
        if self.reduction == "mean":
            total = total / scalar(max(u.shape[0], 1), u.dtype)
        return np.asarray(total) if isinstance(total, np.generic) else total

    def _row_scale(self, g, b, dtype):
        """The upstream gradient per pair, shaped (B, 1)."""
        xp = backend.get_array_module(g)
        if self.reduction == "none":
            return g.reshape(b, 1)
        s = g / scalar(max(b, 1), dtype) if self.reduction == "mean" else g
        return xp.broadcast_to(s.reshape(1, 1), (b, 1))

    def backward(self, g):
        u, w, contexts, negatives, coef = self._saved
        xp = backend.get_array_module(u)
        scaled = coef * self._row_scale(g, u.shape[0], u.dtype)
        gu = gw = None
        if on_gpu(u):
            from ..kernels import word2vec as K
            ctx32 = contiguous(contexts.astype(np.int32, copy=False))
            neg32 = contiguous(negatives.astype(np.int32, copy=False))
            scaled = contiguous(scaled)
            if self.needs_grad(0):
                gu = K.negative_sampling_grad_inputs(scaled, contiguous(w), ctx32, neg32)
            if self.needs_grad(1):
                gw = xp.zeros_like(w)
                K.negative_sampling_scatter_weights(scaled, contiguous(u), ctx32, neg32, 1.0, gw)
            return gu, gw, None, None
        ids = np.concatenate([contexts[:, None], negatives], axis=1)
        if self.needs_grad(0):
            gu = np.einsum("bj,bjd->bd", scaled, w[ids])
        if self.needs_grad(1):
            gw = np.zeros_like(w)
            np.add.at(gw, ids.reshape(-1), (scaled[:, :, None] * u[:, None, :]).reshape(-1, u.shape[1]))
        return gu, gw, None, None


def _ids(a, name):
    a = raw(a)
    if not (isinstance(a, np.ndarray) or backend.is_cupy_array(a)):
        a = np.asarray(a)
        if a.dtype.kind not in "iu":
            raise TypeError(f"{OP} expected integer word ids for {name}, got {a.dtype}")
    return a


def negative_sampling_loss(inputs, output_weights, contexts, negatives, reduction="sum"):
    """Fused skip-gram negative-sampling loss (see the module doc); ``inputs`` (B, D) and
    ``output_weights`` (V, D) Tensors, ``contexts`` (B,) and ``negatives`` (B, K) integer ids.
    Gradients flow to both tensors; the ids get none."""
    return NegativeSamplingLoss(reduction)(inputs, output_weights, _ids(contexts, "contexts"),
                                           _ids(negatives, "negatives"))


def negative_sampling_grads(inputs, output_weights, contexts, negatives):
    """The op's loss and gradients on raw arrays, the output table's as sparse rows:
    ``(losses (B,), grad_inputs (B, D), ids (B, 1 + K), row_grads (B, 1 + K, D))``, where
    the gradient of ``sum(losses)`` with respect to ``output_weights[ids[b, j]]`` gets
    ``row_grads[b, j]`` (ids repeat: add them, as ``np.add.at`` does)."""
    u, w = raw(inputs), raw(output_weights)
    contexts, negatives = _ids(contexts, "contexts"), _ids(negatives, "negatives")
    _check(u, w, contexts, negatives)
    losses, coef, ids = _reference_coef(u, w, contexts, negatives)
    xp = backend.get_array_module(u)
    gu = xp.einsum("bj,bjd->bd", coef, w[ids])
    return losses, gu, ids, coef[:, :, None] * u[:, None, :]


