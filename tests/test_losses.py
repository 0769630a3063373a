"""gpudl.losses against Keras 3's formulas, written here again in NumPy float64.

Every reference below is independent of gpudl's code: per-sample values as Keras' loss
functions define them, then Keras' ``reduce_weighted_values`` (with gpudl's one extension:
weights of a leading part of the per-sample shape, (N,) for (N, T) losses, weigh every step).
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import gpudl
from gpudl import Tensor, backend, losses
from gpudl import functional as F
from harness import check_grad, check_op

_spec = importlib.util.find_spec("cupy")
TEST_DEVICE = _spec is not None and _spec.origin is not None and "fakecupy" in _spec.origin

EPS = 1e-7
REDUCTIONS = ["sum_over_batch_size", "sum", "none", "mean_with_sample_weight"]


# ---- NumPy references ---------------------------------------------------------------------------

def _align(t, p):
    """Keras' squeeze_or_expand_to_same_rank(y_true, y_pred)."""
    if t.ndim == p.ndim + 1 and t.shape[-1] == 1:
        if p.ndim == 1:
            p = p[:, None]
        else:
            t = t[..., 0]
    if p.ndim == t.ndim + 1 and p.shape[-1] == 1:
        if t.ndim == 1:
            t = t[:, None]
        else:
            p = p[..., 0]
    return t, p


def ref_reduce(values, sample_weight=None, reduction="sum_over_batch_size", mask=None):
    v = np.asarray(values, dtype=np.float64)
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if mask is not None:
        m = mask.astype(np.float64)
        if reduction == "sum_over_batch_size":
            m = m * (m.size / m.sum() if m.sum() else 0.0)
        if w is not None and 0 < w.ndim < m.ndim:
            w = w.reshape(w.shape + (1,) * (m.ndim - w.ndim))
        w = m if w is None else w * m
    if w is not None:
        if 0 < w.ndim < v.ndim:
            w = w.reshape(w.shape + (1,) * (v.ndim - w.ndim))
        v = v * w
    if reduction == "none" or v.shape in ((), (0,)):
        return v
    total = v.sum()
    if reduction == "sum":
        return total
    if reduction == "mean_with_sample_weight" and w is not None:
        d = np.broadcast_to(w, v.shape).sum()
        return total / d if d else 0.0
    return total / v.size


def log_softmax(z):
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


def ref_mse(t, p):
    t, p = _align(t, p)
    return ((t - p) ** 2).mean(axis=-1)


def ref_mae(t, p):
    t, p = _align(t, p)
    return np.abs(t - p).mean(axis=-1)


def ref_huber(t, p, delta=1.0):
    t, p = _align(t, p)
    e = np.abs(p - t)
    return np.where(e <= delta, 0.5 * e ** 2, delta * e - 0.5 * delta ** 2).mean(axis=-1)


def ref_hinge(t, p):
    t, p = _align(t, p)
    if np.all((t == 0) | (t == 1)):
        t = 2 * t - 1
    return np.maximum(1 - t * p, 0).mean(axis=-1)


def ref_kld(t, p):
    t, p = _align(t, p)
    t, p = np.clip(t, EPS, 1), np.clip(p, EPS, 1)
    return (t * np.log(t / p)).sum(axis=-1)


def ref_bce(t, p, from_logits=False, label_smoothing=0.0):
    t, p = _align(t, p)
    t = t * (1 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:  # the exact form (TensorFlow's sigmoid_cross_entropy_with_logits)
        terms = np.logaddexp(0, p) - t * p
    else:
        pc = np.clip(p, EPS, 1 - EPS)
        terms = -(t * np.log(pc) + (1 - t) * np.log(1 - pc))
    return terms.mean(axis=-1)


def ref_cce(t, p, from_logits=False, label_smoothing=0.0):
    if t.shape != p.shape:  # class ids (gpudl takes them for categorical_crossentropy too)
        t = np.eye(p.shape[-1])[t.astype(int)]
    c = p.shape[-1]
    t = t * (1 - label_smoothing) + label_smoothing / c
    if from_logits:
        logp = log_softmax(p)
    else:
        q = np.clip(p / p.sum(axis=-1, keepdims=True), EPS, 1 - EPS)
        logp = np.log(q)
    return -(t * logp).sum(axis=-1)


def ref_scce(t, p, from_logits=False):
    if t.ndim == p.ndim and t.shape[-1] == 1:
        t = t[..., 0]
    return ref_cce(np.eye(p.shape[-1])[t.astype(int)], p, from_logits)


def softmax(z):
    return np.exp(log_softmax(z))


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


# ---- data ---------------------------------------------------------------------------------------

def _rng(*key):
    return np.random.default_rng(abs(hash(key)) % (2 ** 32))


def regression_data(shape, key=0):
    rng = _rng("reg", shape, key)
    t = rng.uniform(-2, 2, size=shape)
    d = rng.uniform(0.1, 1.5, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    d = np.where(np.abs(np.abs(d) - 1.0) < 0.06, d * 1.15, d)  # off Huber's kink at delta = 1
    return t, t + d


def hinge_data(shape, key=0):
    rng = _rng("hinge", shape, key)
    t = rng.integers(0, 2, size=shape).astype(np.float64)
    p = rng.uniform(-2, 2, size=shape)
    s = 2 * t - 1
    p = np.where(np.abs(1 - s * p) < 0.06, p + 0.2 * s, p)  # off the hinge
    return t, p


def prob_data(shape, key=0):
    rng = _rng("prob", shape, key)
    return rng.uniform(0, 1, size=shape), rng.uniform(0.05, 0.95, size=shape)


def class_data(shape, sparse, key=0):
    rng = _rng("class", shape, sparse, key)
    ids = rng.integers(0, shape[-1], size=shape[:-1])
    logits = rng.uniform(-3, 3, size=shape)
    return (ids if sparse else np.eye(shape[-1])[ids]), logits


def weights_for(kind, per_sample_shape, key=0):
    rng = _rng("w", per_sample_shape, kind, key)
    if kind is None:
        return None
    if kind == "scalar":
        return 0.7
    if kind == "full":
        return rng.uniform(0, 2, size=per_sample_shape)
    if kind == "leading":  # (N,) for any per-sample shape
        return rng.uniform(0, 2, size=per_sample_shape[:1])
    raise AssertionError(kind)


# ---- the pointwise losses --------------------------------------------------------------------------

POINTWISE = {
    "mse": (losses.MeanSquaredError, {}, ref_mse, regression_data),
    "mae": (losses.MeanAbsoluteError, {}, ref_mae, regression_data),
    "huber": (losses.Huber, {}, ref_huber, regression_data),
    "huber_delta": (losses.Huber, {"delta": 0.5}, lambda t, p: ref_huber(t, p, 0.5), regression_data),
    "hinge": (losses.Hinge, {}, ref_hinge, hinge_data),
    "kld": (losses.KLDivergence, {}, ref_kld, prob_data),
    "bce": (losses.BinaryCrossentropy, {}, ref_bce, prob_data),
    "bce_smooth": (losses.BinaryCrossentropy, {"label_smoothing": 0.2},
                   lambda t, p: ref_bce(t, p, label_smoothing=0.2), prob_data),
    "bce_logits": (losses.BinaryCrossentropy, {"from_logits": True},
                   lambda t, p: ref_bce(t, p, from_logits=True), regression_data),
    "bce_logits_smooth": (losses.BinaryCrossentropy, {"from_logits": True, "label_smoothing": 0.1},
                          lambda t, p: ref_bce(t, p, True, 0.1), regression_data),
}


def _per_sample_shape(shape):
    return shape[:-1] if len(shape) > 1 else ()


@pytest.mark.parametrize("weights", [None, "full", "leading", "scalar"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(6,), (5, 3), (4, 3, 2)])
@pytest.mark.parametrize("case", sorted(POINTWISE))
def test_pointwise_losses_match_keras(case, shape, reduction, weights):
    cls, kwargs, ref, data = POINTWISE[case]
    t, p = data(shape)
    if case == "bce_logits" or case == "bce_logits_smooth":
        t = (t > 0).astype(np.float64)
    per_sample = _per_sample_shape(shape)
    if weights in ("full", "leading") and per_sample == ():
        weights = None  # one per-sample value: Keras' weights are then a scalar or (N,) over it
    w = weights_for(weights, per_sample)
    loss = cls(reduction=reduction, **kwargs)
    want = ref_reduce(ref(t, p), w, reduction)
    got = loss(t, Tensor(p, dtype=np.float64), sample_weight=w)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-12)
    # float32 in, float32 out
    got32 = loss(t, Tensor(p, dtype=np.float32), sample_weight=w)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32.numpy(), want, rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "none"])
@pytest.mark.parametrize("case", sorted(POINTWISE))
def test_pointwise_loss_gradients(case, reduction):
    cls, kwargs, _, data = POINTWISE[case]
    t, p = data((4, 3), key=1)
    if "logits" in case:
        t = (t > 0).astype(np.float64)
    w = weights_for("full", (4,), key=1)
    loss = cls(reduction=reduction, **kwargs)
    check_grad(lambda y: loss(t, y), [p])
    check_grad(lambda y: loss(t, y, sample_weight=w), [p])


def test_one_unit_outputs_take_flat_labels():
    # y_true (N,) against y_pred (N, 1): Keras expands the labels (squeeze_or_expand_to_same_rank)
    t = np.array([0.0, 1.0, 1.0, 0.0])
    p = np.array([[0.2], [0.7], [0.4], [0.1]])
    np.testing.assert_allclose(losses.BinaryCrossentropy()(t, Tensor(p)).item(), ref_bce(t[:, None], p).mean())
    np.testing.assert_allclose(losses.MeanSquaredError()(p[:, 0][:, None], Tensor(p[:, 0])).item(), 0.0)
    per = losses.BinaryCrossentropy(reduction="none")(t, Tensor(p))
    assert per.shape == (4,)


# ---- cross entropies over classes --------------------------------------------------------------------

CLASS = {
    "cce": (losses.CategoricalCrossentropy, {}, lambda t, p: ref_cce(t, softmax(p)), False, True),
    "cce_logits": (losses.CategoricalCrossentropy, {"from_logits": True},
                   lambda t, p: ref_cce(t, p, True), False, False),
    "cce_smooth": (losses.CategoricalCrossentropy, {"label_smoothing": 0.1},
                   lambda t, p: ref_cce(t, softmax(p), label_smoothing=0.1), False, True),
    "cce_logits_smooth": (losses.CategoricalCrossentropy, {"from_logits": True, "label_smoothing": 0.2},
                          lambda t, p: ref_cce(t, p, True, 0.2), False, False),
    "cce_ids": (losses.CategoricalCrossentropy, {}, lambda t, p: ref_cce(t, softmax(p)), True, True),
    "cce_ids_logits_smooth": (losses.CategoricalCrossentropy, {"from_logits": True, "label_smoothing": 0.1},
                              lambda t, p: ref_cce(t, p, True, 0.1), True, False),
    "scce": (losses.SparseCategoricalCrossentropy, {}, lambda t, p: ref_scce(t, softmax(p)), True, True),
    "scce_logits": (losses.SparseCategoricalCrossentropy, {"from_logits": True},
                    lambda t, p: ref_scce(t, p, True), True, False),
}


@pytest.mark.parametrize("weights", [None, "full", "leading"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(5, 4), (3, 2, 4)])  # (N, C) and many-to-many (N, T, C)
@pytest.mark.parametrize("case", sorted(CLASS))
def test_class_crossentropies_match_keras(case, shape, reduction, weights):
    cls, kwargs, ref, sparse, probs = CLASS[case]
    t, z = class_data(shape, sparse)
    y = softmax(z) if probs else z
    w = weights_for(weights, shape[:-1])
    loss = cls(reduction=reduction, **kwargs)
    want = ref_reduce(ref(t, z), w, reduction)
    got = loss(t, Tensor(y, dtype=np.float64), sample_weight=w)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-12)
    got32 = loss(t, Tensor(y, dtype=np.float32), sample_weight=w)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32.numpy(), want, rtol=2e-4, atol=1e-5)
    if reduction == "none":
        assert got.shape == shape[:-1]


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "none"])
@pytest.mark.parametrize("case", sorted(CLASS))
def test_class_crossentropy_gradients(case, reduction):
    cls, kwargs, _, sparse, probs = CLASS[case]
    for shape in [(4, 3), (2, 3, 3)]:
        t, z = class_data(shape, sparse, key=2)
        y = np.random.default_rng(3).uniform(0.05, 1.0, size=shape) if probs else z  # unnormalised rows
        w = weights_for("leading", shape[:-1], key=2)
        loss = cls(reduction=reduction, **kwargs)
        check_grad(lambda x: loss(t, x), [y])
        check_grad(lambda x: loss(t, x, sample_weight=w), [y])


def test_sparse_labels_with_a_trailing_one():
    t, z = class_data((5, 3), True)
    want = losses.SparseCategoricalCrossentropy(from_logits=True)(t, Tensor(z)).item()
    got = losses.SparseCategoricalCrossentropy(from_logits=True)(t[:, None], Tensor(z)).item()
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # float labels are cast to class ids, as Keras casts them
    got = losses.SparseCategoricalCrossentropy(from_logits=True)(t.astype(np.float32), Tensor(z)).item()
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_integer_labels_for_categorical_crossentropy_are_sparse():
    t, z = class_data((6, 4), True)
    p = softmax(z)
    for reduction in ("sum_over_batch_size", "none"):
        a = losses.CategoricalCrossentropy(reduction=reduction)(t, Tensor(p)).numpy()
        b = losses.SparseCategoricalCrossentropy(reduction=reduction)(t, Tensor(p)).numpy()
        np.testing.assert_allclose(a, b, rtol=1e-12)
    a = losses.get("categorical_crossentropy")(t[:, None], Tensor(p)).item()  # (N, 1) ids too
    np.testing.assert_allclose(a, b.mean(), rtol=1e-12)


@pytest.mark.parametrize("ignore", [-1, 4, 0])
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "none", "mean_with_sample_weight"])
@pytest.mark.parametrize("weights", [None, "leading"])
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 4)])
def test_ignore_class(ignore, reduction, weights, from_logits, shape):
    rng = np.random.default_rng(11)
    ids = rng.integers(0, shape[-1], size=shape[:-1])
    ids.flat[::3] = ignore  # every third position is ignored
    z = rng.uniform(-3, 3, size=shape)
    y = z if from_logits else softmax(z)
    valid = ids != ignore
    per = ref_scce(np.where(valid, ids, 0), z, True) * valid
    w = weights_for(weights, shape[:-1])
    loss = losses.SparseCategoricalCrossentropy(from_logits=from_logits, ignore_class=ignore,
                                                reduction=reduction)
    want = ref_reduce(per, w, reduction, mask=valid)
    np.testing.assert_allclose(loss(ids, Tensor(y), sample_weight=w).numpy(), want, rtol=1e-9, atol=1e-12)
    if reduction == "sum_over_batch_size" and weights is None:
        np.testing.assert_allclose(want, per.sum() / valid.sum(), rtol=1e-12)  # the mean over valid ones
    check_grad(lambda x: loss(ids, x, sample_weight=w), [y])


def test_ignore_class_everywhere_gives_zero():
    ids = np.full(4, 7)
    loss = losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=7)
    x = Tensor(np.random.default_rng(0).standard_normal((4, 3)), requires_grad=True)
    value = loss(ids, x)
    value.backward()
    assert value.item() == 0.0 and np.all(x.grad == 0)


# ---- Keras' own documented values ----------------------------------------------------------------------

def test_keras_documented_values():
    yt, yp = np.array([[0, 1, 0], [0, 0, 1]]), np.array([[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
    cce = losses.CategoricalCrossentropy()
    assert cce(yt, yp).item() == pytest.approx(1.177, abs=1e-3)
    assert cce(yt, yp, sample_weight=np.array([0.3, 0.7])).item() == pytest.approx(0.814, abs=1e-3)
    assert losses.CategoricalCrossentropy(reduction="sum")(yt, yp).item() == pytest.approx(2.354, abs=1e-3)
    np.testing.assert_allclose(losses.CategoricalCrossentropy(reduction=None)(yt, yp).numpy(),
                               [0.0513, 2.303], atol=1e-3)
    scce = losses.SparseCategoricalCrossentropy()
    assert scce(np.array([1, 2]), yp).item() == pytest.approx(1.177, abs=1e-3)
    yt, yp = np.array([[0, 1], [0, 0]]), np.array([[-18.6, 0.51], [2.94, -12.8]])
    bce = losses.BinaryCrossentropy(from_logits=True)
    assert bce(yt, yp).item() == pytest.approx(0.8654, abs=1e-4)
    assert bce(yt, yp, sample_weight=[0.8, 0.2]).item() == pytest.approx(0.243, abs=1e-3)
    assert losses.BinaryCrossentropy(from_logits=True, reduction="sum")(yt, yp).item() == \
        pytest.approx(1.730, abs=1e-3)
    np.testing.assert_allclose(losses.BinaryCrossentropy(from_logits=True, reduction=None)(yt, yp).numpy(),
                               [0.235, 1.496], atol=1e-3)
    assert bce(np.array([0, 1, 0, 0]), np.array([-18.6, 0.51, 2.94, -12.8])).item() == \
        pytest.approx(0.8654, abs=1e-4)
    np.testing.assert_allclose(losses.binary_crossentropy([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]]).numpy(),
                               [0.916, 0.714], atol=1e-3)
    assert losses.huber([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]]).numpy().mean() == pytest.approx(0.155, abs=1e-3)
    assert losses.MeanSquaredError()([1.0, 0.0, 1.0], [0.9, 0.1, 0.8]).item() == pytest.approx(0.02, abs=1e-6)
    assert losses.MeanAbsoluteError()([1.0, 0.3, 1.0], [1.9, 0.3, 1.8]).item() == pytest.approx(0.5666667, abs=1e-6)


# ---- the fused path -----------------------------------------------------------------------------------

@pytest.mark.parametrize("weights", [None, "leading"])
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "none"])
@pytest.mark.parametrize("make,activation,sparse,shape", [
    (lambda r: losses.CategoricalCrossentropy(reduction=r, label_smoothing=0.1), "softmax", False, (5, 4)),
    (lambda r: losses.CategoricalCrossentropy(reduction=r), "softmax", True, (3, 2, 4)),
    (lambda r: losses.SparseCategoricalCrossentropy(reduction=r, ignore_class=0), "softmax", True, (6, 3)),
    (lambda r: losses.BinaryCrossentropy(reduction=r, label_smoothing=0.2), "sigmoid", None, (5, 2)),
    (lambda r: losses.get("binary_crossentropy") if r == "sum_over_batch_size" else
     losses.BinaryCrossentropy(reduction=r), "sigmoid", None, (6, 1)),
])
def test_logits_variant_equals_the_loss_on_probabilities(make, activation, sparse, shape, reduction, weights):
    loss = make(reduction)
    variant = loss.logits_variant()
    assert loss.logits_activation == activation and variant.from_logits and variant.logits_variant() is None
    assert variant.name == loss.name and variant.reduction == loss.reduction
    assert variant.get_config() == {**loss.get_config(), "from_logits": True}
    rng = np.random.default_rng(4)
    z = rng.uniform(-3, 3, size=shape)
    if sparse is None:
        t, probs = rng.integers(0, 2, size=shape).astype(np.float64), sigmoid(z)
    else:
        t, _ = class_data(shape, sparse)
        probs = softmax(z)
    w = weights_for(weights, shape[:-1])
    np.testing.assert_allclose(variant(t, Tensor(z), sample_weight=w).numpy(),
                               loss(t, Tensor(probs), sample_weight=w).numpy(), rtol=1e-9, atol=1e-12)


def test_losses_without_a_logits_form():
    for loss in (losses.MeanSquaredError(), losses.Huber(), losses.KLDivergence(), losses.Hinge(),
                 losses.CategoricalCrossentropy(from_logits=True), losses.get(lambda t, p: (p - t) ** 2),
                 losses.get("softmax_cross_entropy")):
        assert loss.logits_variant() is None
    assert losses.MeanSquaredError().logits_activation is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_sigmoid_bce_finite_for_logits_of_1e4(dtype):
    z = Tensor(np.array([[1e4], [-1e4], [1e4], [-1e4]], dtype=dtype), requires_grad=True)
    t = np.array([0, 1, 1, 0])
    loss = losses.BinaryCrossentropy(from_logits=True)(t, z)
    loss.backward()
    assert np.isfinite(loss.item()) and np.isfinite(z.grad).all()
    np.testing.assert_allclose(loss.item(), (1e4 + 1e4) / 4, rtol=1e-6)
    np.testing.assert_allclose(z.grad[:, 0], [0.25, -0.25, 0, 0], atol=1e-7)
    assert loss.dtype == dtype
    # the same outputs as probabilities saturate at the clip, finitely
    p = losses.BinaryCrossentropy()(t, Tensor(np.array([[1.0], [0.0], [1.0], [0.0]], dtype=dtype)))
    assert np.isfinite(p.item())


def test_softmax_cross_entropy_string_is_the_fused_op():
    t, z = class_data((6, 5), True)
    loss = losses.get("softmax_cross_entropy")
    np.testing.assert_allclose(loss(t, Tensor(z)).item(), F.softmax_cross_entropy(Tensor(z), t).item(), rtol=1e-12)
    onehot = np.eye(5)[t]
    np.testing.assert_allclose(loss(onehot, Tensor(z)).item(), F.softmax_cross_entropy(Tensor(z), t).item(),
                               rtol=1e-12)


# ---- get, config, serialization --------------------------------------------------------------------------

STRINGS = {
    "mse": losses.MeanSquaredError, "mean_squared_error": losses.MeanSquaredError,
    "mae": losses.MeanAbsoluteError, "mean_absolute_error": losses.MeanAbsoluteError,
    "huber": losses.Huber, "binary_crossentropy": losses.BinaryCrossentropy,
    "categorical_crossentropy": losses.CategoricalCrossentropy,
    "sparse_categorical_crossentropy": losses.SparseCategoricalCrossentropy,
    "kld": losses.KLDivergence, "kl_divergence": losses.KLDivergence, "hinge": losses.Hinge,
    "softmax_cross_entropy": losses.CategoricalCrossentropy, "MSE": losses.MeanSquaredError,
    "BinaryCrossentropy": losses.BinaryCrossentropy,
}


@pytest.mark.parametrize("name", sorted(STRINGS))
def test_get_strings_and_round_trip(name):
    loss = losses.get(name)
    assert type(loss) is STRINGS[name]
    assert losses.serialize(loss) == name
    again = losses.get(losses.serialize(loss))
    assert type(again) is type(loss) and again.get_config() == loss.get_config()


def test_softmax_cross_entropy_string_means_logits():
    loss = losses.get("softmax_cross_entropy")
    assert loss.from_logits and loss.name == "softmax_cross_entropy"


@pytest.mark.parametrize("loss", [
    losses.MeanSquaredError(reduction="sum", name="m"), losses.MeanAbsoluteError(reduction="none"),
    losses.Huber(delta=2.5), losses.Hinge(), losses.KLDivergence(reduction="sum"),
    losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1, name="b"),
    losses.CategoricalCrossentropy(label_smoothing=0.05, reduction="sum"),
    losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1),
], ids=lambda l: type(l).__name__)
def test_config_round_trip(loss):
    cfg = loss.get_config()
    again = type(loss).from_config(cfg)
    assert again.get_config() == cfg
    s = losses.serialize(loss)
    assert s == {"class_name": type(loss).__name__, "config": cfg}
    rebuilt = losses.get(s)
    assert type(rebuilt) is type(loss) and rebuilt.get_config() == cfg
    import json
    assert losses.deserialize(json.loads(json.dumps(s))).get_config() == cfg  # JSON-safe


def test_get_objects_classes_functions_and_callables():
    obj = losses.Huber()
    assert losses.get(obj) is obj
    assert type(losses.get(losses.KLDivergence)) is losses.KLDivergence
    assert losses.get(None) is None
    assert type(losses.get(losses.binary_crossentropy)) is losses.BinaryCrossentropy  # keeps the fused path
    t, p = regression_data((4, 3))

    def my_loss(y_true, y_pred):
        return ((y_pred - y_true) ** 2).mean(axis=-1)

    wrapped = losses.get(my_loss)
    assert isinstance(wrapped, losses.LossFunctionWrapper) and wrapped.name == "my_loss"
    x = Tensor(p, requires_grad=True)
    wrapped(t, x).backward()
    np.testing.assert_allclose(x.grad, 2 * (p - t) / p.size, rtol=1e-12)
    np.testing.assert_allclose(wrapped(t, Tensor(p), sample_weight=np.arange(4.0)).item(),
                               ref_reduce(ref_mse(t, p), np.arange(4.0)), rtol=1e-12)
    # a callable returning a plain array: usable for evaluation
    as_array = losses.get(lambda y_true, y_pred: np.abs(y_pred.data - y_true.data).mean(axis=-1))
    np.testing.assert_allclose(as_array(t, p).item(), ref_mae(t, p).mean(), rtol=1e-12)
    cfg = losses.serialize(wrapped)
    assert cfg["config"]["fn"] == "my_loss"
    assert losses.deserialize(cfg, custom_objects={"my_loss": my_loss}).fn is my_loss
    with pytest.raises(ValueError, match="custom_objects"):
        losses.deserialize(cfg)


def test_unknown_loss_lists_the_known_ones():
    with pytest.raises(ValueError) as err:
        losses.get("cross_entropyy")
    msg = str(err.value)
    for name in ("'mse'", "'mae'", "'huber'", "'binary_crossentropy'", "'categorical_crossentropy'",
                 "'sparse_categorical_crossentropy'", "'kld'", "'hinge'", "'softmax_cross_entropy'"):
        assert name in msg
    with pytest.raises(ValueError, match="could not interpret"):
        losses.get(3)
    with pytest.raises(ValueError, match="unknown loss class"):
        losses.deserialize({"class_name": "Nope", "config": {}})


def test_function_forms_give_per_sample_values():
    t, p = regression_data((5, 3))
    np.testing.assert_allclose(losses.mse(t, p).numpy(), ref_mse(t, p), rtol=1e-12)
    np.testing.assert_allclose(losses.mae(t, p).numpy(), ref_mae(t, p), rtol=1e-12)
    np.testing.assert_allclose(losses.huber(t, p, 0.5).numpy(), ref_huber(t, p, 0.5), rtol=1e-12)
    ids, z = class_data((5, 3), True)
    np.testing.assert_allclose(losses.sparse_categorical_crossentropy(ids, z, from_logits=True).numpy(),
                               ref_scce(ids, z, True), rtol=1e-12)


# ---- bad inputs ------------------------------------------------------------------------------------------

def test_bad_inputs_name_expected_and_received():
    p = Tensor(np.full((4, 3), 0.3))
    with pytest.raises(ValueError, match=r"MeanSquaredError 'mean_squared_error' expected y_true of shape "
                                         r"\(4, 3\) \(the shape of y_pred\), got \(4, 2\)"):
        losses.MeanSquaredError()(np.zeros((4, 2)), p)
    with pytest.raises(ValueError, match=r"expected y_true of shape \(4, 3\) \(one-hot\) or \(4,\) "
                                         r"\(integer class ids\), got \(5,\)"):
        losses.CategoricalCrossentropy()(np.zeros(5, dtype=np.int64), p)
    with pytest.raises(TypeError, match=r"integer class ids for labels of shape \(4,\).*got dtype float64"):
        losses.CategoricalCrossentropy()(np.zeros(4), p)
    with pytest.raises(ValueError, match=r"class ids of shape \(4,\) .* got \(4, 2\)"):
        losses.SparseCategoricalCrossentropy()(np.zeros((4, 2), dtype=np.int64), p)
    with pytest.raises(ValueError, match=r"class ids in \[0, 2\], got values in \[0, 3\]"):
        losses.SparseCategoricalCrossentropy()(np.array([0, 1, 2, 3]), p)
    with pytest.raises(TypeError, match="floating-point y_pred .* got dtype int64"):
        losses.MeanSquaredError()(np.zeros((4, 3)), np.zeros((4, 3), dtype=np.int64))
    with pytest.raises(TypeError, match="numeric y_true, got dtype <U1"):
        losses.MeanSquaredError()(np.array([["a"] * 3] * 4), p)
    with pytest.raises(ValueError, match=r"sample_weight of shape \(3,\) does not match the per-sample "
                                         r"losses of shape \(4,\)"):
        losses.MeanSquaredError()(np.zeros((4, 3)), p, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="unknown reduction 'avg'"):
        losses.MeanSquaredError(reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing in \\[0, 1\\]"):
        losses.BinaryCrossentropy(label_smoothing=1.5)
    with pytest.raises(ValueError, match="delta > 0"):
        losses.Huber(delta=-1)
    with pytest.raises(ValueError, match=r"y_pred of shape \(N, C\).*got \(4,\)"):
        losses.CategoricalCrossentropy()(np.zeros(4, dtype=np.int64), Tensor(np.full(4, 0.5)))


# ---- both backends ---------------------------------------------------------------------------------------

DEVICE_CASES = [
    ("mse", lambda: losses.MeanSquaredError(), "regression", (4, 3)),
    ("huber", lambda: losses.Huber(), "regression", (3, 2, 2)),
    ("hinge", lambda: losses.Hinge(), "hinge", (4, 3)),
    ("kld", lambda: losses.KLDivergence(), "prob", (4, 3)),
    ("bce", lambda: losses.BinaryCrossentropy(label_smoothing=0.1), "prob", (4, 2)),
    ("bce_logits", lambda: losses.BinaryCrossentropy(from_logits=True), "binary_logits", (4, 1)),
    ("cce", lambda: losses.CategoricalCrossentropy(), "dense_probs", (4, 3)),
    ("cce_logits", lambda: losses.CategoricalCrossentropy(from_logits=True), "dense_logits", (2, 2, 3)),
    ("scce_ignore", lambda: losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=1),
     "ids_logits", (5, 3)),
]


def _device_data(kind, shape):
    if kind == "regression":
        return regression_data(shape, key=5)
    if kind == "hinge":
        return hinge_data(shape, key=5)
    if kind == "prob":
        return prob_data(shape, key=5)
    if kind == "binary_logits":
        t, z = regression_data(shape, key=5)
        return (t > 0).astype(np.float64), z
    t, z = class_data(shape, kind.startswith("ids"), key=5)
    return t, (softmax(z) if kind.endswith("probs") else z)


@pytest.mark.parametrize("case", DEVICE_CASES, ids=[c[0] for c in DEVICE_CASES])
def test_losses_on_each_backend(backend_name, case):
    _, make, kind, shape = case
    t, y = _device_data(kind, shape)
    loss = make()
    w = weights_for("leading", shape[:-1], key=5)
    # the reference: the same loss on host arrays (NumPy ops whatever the active backend)
    host = [loss(t, Tensor._wrap(y), sample_weight=v).item() for v in (None, w)]
    tb, wb = backend.to_backend(t), backend.to_backend(w)
    check_op(lambda x: loss(tb, x), lambda x: host[0], [y])
    check_op(lambda x: loss(tb, x, sample_weight=wb), lambda x: host[1], [y])


@pytest.mark.gpu
@pytest.mark.skipif(not TEST_DEVICE, reason="needs gpudl's CuPy stand-in (PYTHONPATH=tests/fakecupy)")
def test_losses_refuse_mixed_backends_and_copy_nothing():
    import cupy
    gpudl.set_backend("cupy")
    t, z = class_data((4, 3), True)
    zt = Tensor(cupy.asarray(z))
    with pytest.raises(TypeError, match="two backends"):
        losses.SparseCategoricalCrossentropy(from_logits=True)(t, zt)  # host labels, device logits
    tb = cupy.asarray(t)
    wb = cupy.asarray(np.ones(4))
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    weighted = losses.CategoricalCrossentropy(label_smoothing=0.1)
    cupy.reset_transfers()
    loss(tb, zt)
    loss(tb, zt, sample_weight=wb)
    weighted(tb, zt, sample_weight=0.5)
    assert cupy.transfers["d2h"] == 0 and cupy.transfers["h2d"] == 0, dict(cupy.transfers)
