"""gpudl.metrics against independent NumPy computations of Keras 3's definitions, state
accumulation and reset, "accuracy" resolution, and no host transfer in update_state on the
CuPy stand-in."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

import gpudl
from gpudl import Tensor, losses, metrics

_spec = importlib.util.find_spec("cupy")
TEST_DEVICE = _spec is not None and _spec.origin is not None and "fakecupy" in _spec.origin
EPS = 1e-7


def weighted_mean(per_sample, w=None):
    per_sample = np.asarray(per_sample, dtype=np.float64)
    if per_sample.ndim > 1:
        per_sample = per_sample.reshape(len(per_sample), -1).mean(axis=1)
    if w is None:
        return per_sample.mean()
    return (per_sample * w).sum() / np.sum(w)


def batches(*arrays, sizes=(3, 5, 4)):
    """Split arrays along axis 0 into consecutive batches."""
    out, start = [], 0
    for n in sizes:
        out.append(tuple(None if a is None else a[start:start + n] for a in arrays))
        start += n
    return out


def accumulate(metric, y_true, y_pred, w=None, sizes=(3, 5, 4)):
    metric.reset_state()
    for yt, yp, ww in batches(y_true, y_pred, w, sizes=sizes):
        metric.update_state(yt, yp, sample_weight=ww)
    return metric.result()


# ---- accuracy metrics --------------------------------------------------------------------------

N = 12


def _data(seed=0, c=4):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, c, size=N)
    scores = rng.uniform(0, 1, size=(N, c))
    return ids, scores, rng.uniform(0, 2, size=N)


@pytest.mark.parametrize("weighted", [False, True])
def test_binary_accuracy(weighted):
    rng = np.random.default_rng(1)
    w = rng.uniform(0, 2, size=N) if weighted else None
    for shape in [(N,), (N, 1), (N, 3)]:
        t = rng.integers(0, 2, size=shape).astype(np.float64)
        p = rng.uniform(0, 1, size=shape)
        for thr in (0.5, 0.3):
            want = weighted_mean((p > thr) == t, w)
            got = accumulate(metrics.BinaryAccuracy(threshold=thr), t, p, w)
            assert got == pytest.approx(want, abs=1e-12)
    # labels (N,) against one-unit outputs (N, 1)
    t = rng.integers(0, 2, size=N)
    p = rng.uniform(0, 1, size=(N, 1))
    assert accumulate(metrics.BinaryAccuracy(), t, p, w) == pytest.approx(weighted_mean((p[:, 0] > 0.5) == t, w))


@pytest.mark.parametrize("weighted", [False, True])
def test_categorical_and_sparse_accuracy(weighted):
    ids, scores, w = _data(2)
    w = w if weighted else None
    want = weighted_mean(scores.argmax(1) == ids, w)
    onehot = np.eye(4)[ids]
    assert accumulate(metrics.CategoricalAccuracy(), onehot, scores, w) == pytest.approx(want)
    assert accumulate(metrics.CategoricalAccuracy(), ids, scores, w) == pytest.approx(want)  # ids: sparse
    assert accumulate(metrics.SparseCategoricalAccuracy(), ids, scores, w) == pytest.approx(want)
    assert accumulate(metrics.SparseCategoricalAccuracy(), ids[:, None], scores, w) == pytest.approx(want)
    assert accumulate(metrics.SparseCategoricalAccuracy(), ids.astype(np.float32), scores, w) == \
        pytest.approx(want)


def test_sequence_accuracy():
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 5, size=(N, 7))
    scores = rng.uniform(size=(N, 7, 5))
    w = rng.uniform(0, 2, size=N)
    match = scores.argmax(-1) == ids
    assert accumulate(metrics.SparseCategoricalAccuracy(), ids, scores) == pytest.approx(match.mean())
    assert accumulate(metrics.SparseCategoricalAccuracy(), ids, scores, w) == \
        pytest.approx((match.mean(1) * w).sum() / w.sum())
    assert accumulate(metrics.CategoricalAccuracy(), np.eye(5)[ids], scores) == pytest.approx(match.mean())


def _np_in_top_k(ids, scores, k):
    """ids[i] is in the top k when fewer than k scores are strictly larger (ties count in)."""
    return np.array([(row > row[i]).sum() < k for i, row in zip(ids, scores)])


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_top_k_accuracy(k):
    ids, scores, w = _data(4, c=5)
    scores = np.round(scores, 1)  # ties across the top-k boundary
    want = _np_in_top_k(ids, scores, k)
    assert accumulate(metrics.TopKCategoricalAccuracy(k=k), np.eye(5)[ids], scores) == pytest.approx(want.mean())
    assert accumulate(metrics.SparseTopKCategoricalAccuracy(k=k), ids, scores, w) == \
        pytest.approx(weighted_mean(want, w))
    seq_ids, seq = ids.reshape(4, 3), scores.reshape(4, 3, 5)
    m = metrics.SparseTopKCategoricalAccuracy(k=k)
    m.update_state(seq_ids, seq)
    assert m.result() == pytest.approx(want.mean())


def test_keras_documented_accuracy_values():
    m = metrics.BinaryAccuracy()
    m.update_state([[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]])
    assert m.result() == pytest.approx(0.75)
    m.reset_state()
    m.update_state([[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]], sample_weight=[1, 0, 0, 1])
    assert m.result() == pytest.approx(0.5)
    yt, yp = [[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]]
    for m in (metrics.CategoricalAccuracy(), metrics.TopKCategoricalAccuracy(k=1)):
        m.update_state(yt, yp)
        assert m.result() == pytest.approx(0.5)
        m.reset_state()
        m.update_state(yt, yp, sample_weight=[0.7, 0.3])
        assert m.result() == pytest.approx(0.3)
    m = metrics.SparseCategoricalAccuracy()
    m.update_state([[2], [1]], [[0.1, 0.6, 0.3], [0.05, 0.95, 0]])
    assert m.result() == pytest.approx(0.5)
    m = metrics.SparseTopKCategoricalAccuracy(k=1)
    m.update_state([2, 1], yp, sample_weight=[0.7, 0.3])
    assert m.result() == pytest.approx(0.3)
    m = metrics.Mean()
    m.update_state([1, 3, 5, 7])
    assert m.result() == pytest.approx(4.0)
    m.reset_state()
    m.update_state([1, 3, 5, 7], sample_weight=[1, 1, 0, 0])
    assert m.result() == pytest.approx(2.0)


def test_regression_metrics_and_mean():
    rng = np.random.default_rng(5)
    t, p, w = rng.normal(size=(N, 3)), rng.normal(size=(N, 3)), rng.uniform(0, 2, size=N)
    assert accumulate(metrics.MeanSquaredError(), t, p, w) == pytest.approx(weighted_mean(((t - p) ** 2).mean(1), w))
    assert accumulate(metrics.MeanAbsoluteError(), t, p) == pytest.approx(np.abs(t - p).mean())
    v = rng.normal(size=(N, 2))
    m = metrics.Mean()
    for (vb, wb) in [(v[:5], w[:5]), (v[5:], w[5:])]:
        m.update_state(vb, sample_weight=wb)
    assert m.result() == pytest.approx(weighted_mean(v, w))
    m.reset_state()
    m.update_state(2.0)
    m.update_state(Tensor(np.array([4.0, 6.0])))
    assert m.result() == pytest.approx(4.0)


def test_crossentropy_metrics_match_the_losses():
    ids, scores, w = _data(6)
    probs = scores / scores.sum(1, keepdims=True)
    per = losses.sparse_categorical_crossentropy(ids, probs).numpy()
    assert accumulate(metrics.SparseCategoricalCrossentropy(), ids, probs, w) == pytest.approx(weighted_mean(per, w))
    assert accumulate(metrics.CategoricalCrossentropy(), np.eye(4)[ids], probs) == pytest.approx(per.mean())
    t = (scores > 0.5).astype(float)
    per = losses.binary_crossentropy(t, probs).numpy()
    assert accumulate(metrics.get("binary_crossentropy"), t, probs) == pytest.approx(per.mean())
    m = metrics.SparseCategoricalCrossentropy(ignore_class=0, from_logits=True)
    m.update_state(ids, scores)
    valid = ids != 0
    want = losses.sparse_categorical_crossentropy(np.where(valid, ids, 1), scores, from_logits=True).numpy()
    assert m.result() == pytest.approx(want[valid].mean())


def test_state_accumulates_and_resets():
    ids, scores, w = _data(7)
    m = metrics.SparseCategoricalAccuracy()
    assert m.result() == 0.0  # before any update
    m.update_state(ids[:6], scores[:6])
    first = m.result()
    assert first == pytest.approx((scores[:6].argmax(1) == ids[:6]).mean())
    m.update_state(ids[6:], scores[6:])
    assert m.result() == pytest.approx((scores.argmax(1) == ids).mean())
    m.reset_state()
    assert m.result() == 0.0
    m.update_state(ids[:6], scores[:6])
    assert m.result() == pytest.approx(first)
    assert m(ids[6:], scores[6:]) == pytest.approx((scores.argmax(1) == ids).mean())  # __call__ accumulates


# ---- precision, recall ------------------------------------------------------------------------------

def np_confusion(t, p, thresholds, w=None):
    t, p = np.asarray(t, dtype=float).ravel() != 0, np.asarray(p, dtype=float).ravel()
    w = np.ones_like(p) if w is None else np.asarray(w, dtype=float).ravel()  # one per element of p
    out = []
    for thr in thresholds:
        pos = p > thr
        out.append(((w * (pos & t)).sum(), (w * (pos & ~t)).sum(), (w * (~pos & ~t)).sum(),
                    (w * (~pos & t)).sum()))
    return np.array(out)  # (T, 4): tp fp tn fn


def _ratio(a, b):
    return a / (a + b) if a + b else 0.0


@pytest.mark.parametrize("thresholds", [None, 0.3, [0.7, 0.2, 0.5]])
@pytest.mark.parametrize("weighted", [False, True])
def test_precision_and_recall(thresholds, weighted):
    rng = np.random.default_rng(8)
    t = rng.integers(0, 2, size=(N, 3))
    p = rng.uniform(size=(N, 3))
    w = rng.uniform(0, 2, size=N) if weighted else None
    thr = [0.5] if thresholds is None else np.atleast_1d(thresholds).tolist()
    cm = np_confusion(t, p, thr, None if w is None else np.repeat(w, 3))
    want_p = [_ratio(tp, fp) for tp, fp, _, _ in cm]
    want_r = [_ratio(tp, fn) for tp, _, _, fn in cm]
    got_p = accumulate(metrics.Precision(thresholds=thresholds), t, p, w)
    got_r = accumulate(metrics.Recall(thresholds=thresholds), t, p, w)
    if len(thr) == 1:
        assert isinstance(got_p, float) and isinstance(got_r, float)
        got_p, got_r = [got_p], [got_r]
    np.testing.assert_allclose(got_p, want_p, rtol=1e-12)
    np.testing.assert_allclose(got_r, want_r, rtol=1e-12)


def test_precision_recall_class_id_and_top_k():
    rng = np.random.default_rng(9)
    t = rng.integers(0, 2, size=(N, 4))
    p = rng.uniform(size=(N, 4))
    cm = np_confusion(t[:, 2], p[:, 2], [0.5])[0]
    assert accumulate(metrics.Precision(class_id=2), t, p) == pytest.approx(_ratio(cm[0], cm[1]))
    assert accumulate(metrics.Recall(class_id=2), t, p) == pytest.approx(_ratio(cm[0], cm[3]))
    # top_k: only each row's k largest scores can be positive (threshold -inf by default)
    top = np.argsort(-p, axis=1, kind="stable")[:, :2]
    kept = np.zeros_like(p, dtype=bool)
    np.put_along_axis(kept, top, True, axis=1)
    tp, fp, fn = (kept & (t == 1)).sum(), (kept & (t == 0)).sum(), (~kept & (t == 1)).sum()
    assert accumulate(metrics.Precision(top_k=2), t, p) == pytest.approx(tp / (tp + fp))
    assert accumulate(metrics.Recall(top_k=2), t, p) == pytest.approx(tp / (tp + fn))
    # Keras' documented values
    m = metrics.Precision()
    m.update_state([0, 1, 1, 1], [1, 0, 1, 1])
    assert m.result() == pytest.approx(2 / 3)
    m.reset_state()
    m.update_state([0, 1, 1, 1], [1, 0, 1, 1], sample_weight=[0, 0, 1, 0])
    assert m.result() == pytest.approx(1.0)
    m = metrics.Precision(top_k=2)
    m.update_state([0, 0, 1, 1], [1, 1, 1, 1])
    assert m.result() == pytest.approx(0.0)
    m = metrics.Precision(top_k=4)
    m.update_state([0, 0, 1, 1], [1, 1, 1, 1])
    assert m.result() == pytest.approx(0.5)
    m = metrics.Recall()
    m.update_state([0, 1, 1, 1], [1, 0, 1, 1])
    assert m.result() == pytest.approx(2 / 3)


# ---- AUC -------------------------------------------------------------------------------------------

def np_auc(t, p, w=None, num_thresholds=200, curve="ROC", summation="interpolation", thresholds=None):
    """Keras' AUC from confusion counts computed by brute force at every threshold."""
    if thresholds is None:
        inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
    else:
        inner = sorted(thresholds)
    thr = [-EPS] + inner + [1 + EPS]
    cm = np_confusion(t, np.clip(p, 0, 1), thr, w)
    tp, fp, tn, fn = cm.T
    if curve == "PR" and summation == "interpolation":
        total = 0.0
        for i in range(len(thr) - 1):
            dtp = tp[i] - tp[i + 1]
            pa, pb = tp[i] + fp[i], tp[i + 1] + fp[i + 1]
            dp = pa - pb
            slope = dtp / dp if dp > 0 else 0.0
            intercept = tp[i + 1] - slope * pb
            ratio = pa / pb if pa > 0 and pb > 0 else 1.0
            denom = tp[i + 1] + fn[i + 1]
            total += slope * (dtp + intercept * np.log(ratio)) / denom if denom > 0 else 0.0
        return total
    div = np.vectorize(lambda a, b: a / b if b else 0.0)
    recall = div(tp, tp + fn)
    x, y = (div(fp, fp + tn), recall) if curve == "ROC" else (recall, div(tp, tp + fp))
    if summation == "interpolation":
        h = (y[:-1] + y[1:]) / 2
    elif summation == "minoring":
        h = np.minimum(y[:-1], y[1:])
    else:
        h = np.maximum(y[:-1], y[1:])
    return float(((x[:-1] - x[1:]) * h).sum())


def test_auc_hand_computed_trapezoid():
    # thresholds -eps, 0.5, 1+eps. At 0.5 only 0.9 is above (0.5 is not: strictly greater):
    # TPR = [1, 0.5, 0], FPR = [1, 0, 0]: area (1 - 0) * (1 + 0.5) / 2 + 0 = 0.75 (Keras' docs)
    m = metrics.AUC(num_thresholds=3)
    m.update_state([0, 0, 1, 1], [0, 0.5, 0.3, 0.9])
    assert m.result() == pytest.approx(0.75)
    m.reset_state()
    m.update_state([0, 0, 1, 1], [0, 0.5, 0.3, 0.9], sample_weight=[1, 0, 0, 1])
    # thresholds: -eps -> TP 1 FP 1 (TPR 1, FPR 1); 0.5 -> TP 1 FP 0 (1, 0); 1+eps -> (0, 0)
    assert m.result() == pytest.approx((1 - 0) * (1 + 1) / 2 + (0 - 0) * (1 + 0) / 2)


@pytest.mark.parametrize("curve,summation", [("ROC", "interpolation"), ("ROC", "minoring"),
                                             ("ROC", "majoring"), ("PR", "interpolation"),
                                             ("PR", "minoring"), ("PR", "majoring")])
@pytest.mark.parametrize("num_thresholds", [3, 10, 200])
def test_auc_against_brute_force(curve, summation, num_thresholds):
    rng = np.random.default_rng(num_thresholds)
    t = rng.integers(0, 2, size=(40, 2))
    p = np.clip(rng.uniform(size=(40, 2)) * 0.7 + t * 0.3, 0, 1)
    w = rng.uniform(0, 2, size=40)
    want = np_auc(t, p, np.repeat(w, 2), num_thresholds, curve, summation)
    got = accumulate(metrics.AUC(num_thresholds=num_thresholds, curve=curve, summation_method=summation),
                     t, p, w, sizes=(7, 20, 13))
    assert got == pytest.approx(want, rel=1e-10, abs=1e-12)


def test_auc_explicit_thresholds_logits_and_exactness():
    rng = np.random.default_rng(12)
    t = rng.integers(0, 2, size=60)
    z = rng.normal(size=60) + t
    p = 1 / (1 + np.exp(-z))
    thr = [0.9, 0.1, 0.5, 0.25]
    m = metrics.AUC(thresholds=thr)
    assert m.num_thresholds == 6
    assert accumulate(m, t, p, sizes=(30, 30)) == pytest.approx(np_auc(t, p, thresholds=thr))
    assert accumulate(metrics.AUC(from_logits=True), t, z, sizes=(30, 30)) == \
        pytest.approx(np_auc(t, p), rel=1e-9)
    # with many thresholds the trapezoid approaches the exact ROC AUC (Mann-Whitney)
    exact = np.mean([(a > b) + 0.5 * (a == b) for a in p[t == 1] for b in p[t == 0]])
    assert accumulate(metrics.AUC(num_thresholds=2000), t, p, sizes=(60,)) == pytest.approx(exact, abs=2e-3)


def test_auc_multi_label():
    rng = np.random.default_rng(13)
    t = rng.integers(0, 2, size=(30, 3))
    p = np.clip(rng.uniform(size=(30, 3)) * 0.6 + t * 0.3, 0, 1)
    per = [np_auc(t[:, j], p[:, j], num_thresholds=50) for j in range(3)]
    assert accumulate(metrics.AUC(num_thresholds=50, multi_label=True), t, p, sizes=(10, 20)) == \
        pytest.approx(np.mean(per))
    lw = [1.0, 0.0, 3.0]
    assert accumulate(metrics.AUC(num_thresholds=50, multi_label=True, label_weights=lw), t, p, sizes=(30,)) == \
        pytest.approx(np.dot(per, lw) / sum(lw))


# ---- F1 -------------------------------------------------------------------------------------------

def np_f1(t, p, average, threshold, w=None, beta=1.0):
    pred = (p > threshold) if threshold is not None else ((p >= p.max(1, keepdims=True)) & (np.abs(p) > 1e-9))
    pred, t = pred.astype(float), t.astype(float)
    ww = np.ones((len(t), 1)) if w is None else np.asarray(w, float)[:, None]
    axis = None if average == "micro" else 0
    tp = (pred * t * ww).sum(axis)
    fp = (pred * (1 - t) * ww).sum(axis)
    fn = ((1 - pred) * t * ww).sum(axis)
    support = (t * ww).sum(axis)
    prec, rec = tp / (tp + fp + EPS), tp / (tp + fn + EPS)
    f = (1 + beta ** 2) * prec * rec / (beta ** 2 * prec + rec + EPS)
    if average == "weighted":
        return (f * support / (support.sum() + EPS)).sum()
    if average is not None:
        return f.mean()
    return f


@pytest.mark.parametrize("average", [None, "micro", "macro", "weighted"])
@pytest.mark.parametrize("threshold", [None, 0.5])
@pytest.mark.parametrize("weighted", [False, True])
def test_f1_score(average, threshold, weighted):
    rng = np.random.default_rng(14)
    t = rng.integers(0, 2, size=(N, 4))
    p = rng.uniform(size=(N, 4))
    p[0] = 0.0  # a row of zeros predicts nothing when threshold is None
    w = rng.uniform(0, 2, size=N) if weighted else None
    got = accumulate(metrics.F1Score(average=average, threshold=threshold), t, p, w)
    np.testing.assert_allclose(got, np_f1(t, p, average, threshold, w), rtol=1e-12)
    got = accumulate(metrics.FBetaScore(average=average, beta=2.0, threshold=threshold), t, p, w)
    np.testing.assert_allclose(got, np_f1(t, p, average, threshold, w, beta=2.0), rtol=1e-12)


def test_f1_keras_documented_value():
    m = metrics.F1Score(threshold=0.5)
    m.update_state(np.array([[1, 1, 1], [1, 0, 0], [1, 1, 0]], np.int32),
                   np.array([[0.2, 0.6, 0.7], [0.2, 0.6, 0.6], [0.6, 0.8, 0.0]], np.float32))
    np.testing.assert_allclose(m.result(), [0.5, 0.8, 0.6666667], rtol=1e-5)
    with pytest.raises(ValueError, match=r"2-D inputs .* y_pred.shape=\(3,\)"):
        m.update_state(np.array([1, 0, 1]), np.array([0.2, 0.6, 0.7]))


# ---- "accuracy" resolution --------------------------------------------------------------------------

def test_one_sigmoid_unit_gives_binary_accuracy_not_argmax():
    t = np.array([0, 1, 1, 0, 1, 0])
    p = np.array([[0.2], [0.8], [0.4], [0.6], [0.9], [0.1]])
    m = metrics.get("accuracy")
    m.update_state(t, p)
    assert isinstance(m.resolved, metrics.BinaryAccuracy)
    assert m.result() == pytest.approx(4 / 6)
    argmax = metrics.SparseCategoricalAccuracy()  # what a sparse reading would say: always column 0
    argmax.update_state(np.zeros(6, int), p)
    assert argmax.result() == 1.0 and m.result() != 1.0
    assert isinstance(metrics.resolve_accuracy(t, p), metrics.BinaryAccuracy)
    assert isinstance(metrics.resolve_accuracy(t[:, None].astype(float), p), metrics.BinaryAccuracy)
    assert isinstance(metrics.resolve_accuracy(t.astype(float), p[:, 0]), metrics.BinaryAccuracy)


@pytest.mark.parametrize("y_true_shape,y_pred_shape,loss,kind", [
    ((8,), (8, 5), None, metrics.SparseCategoricalAccuracy),
    ((8, 1), (8, 5), None, metrics.SparseCategoricalAccuracy),
    ((8, 5), (8, 5), None, metrics.CategoricalAccuracy),
    ((8, 7), (8, 7, 5), None, metrics.SparseCategoricalAccuracy),   # many-to-many ids
    ((8, 7, 5), (8, 7, 5), None, metrics.CategoricalAccuracy),
    ((8, 1), (8, 1), None, metrics.BinaryAccuracy),
    ((8, 5), (8, 5), "binary_crossentropy", metrics.BinaryAccuracy),  # multi-label
    ((8, 5), (8, 5), losses.BinaryCrossentropy(from_logits=True), metrics.BinaryAccuracy),
    ((8, 5), (8, 5), losses.binary_crossentropy, metrics.BinaryAccuracy),
    ((8, 5), (8, 5), "categorical_crossentropy", metrics.CategoricalAccuracy),
    ((8,), (8, 5), "sparse_categorical_crossentropy", metrics.SparseCategoricalAccuracy),
])
def test_accuracy_resolution(y_true_shape, y_pred_shape, loss, kind):
    assert type(metrics.resolve_accuracy(y_true_shape, y_pred_shape, loss)) is kind
    eager = metrics.get("accuracy", loss=loss, y_true=y_true_shape, y_pred=y_pred_shape)
    assert type(eager) is kind and eager.name == "accuracy"
    rng = np.random.default_rng(0)
    yp = rng.uniform(size=y_pred_shape)
    yt = (rng.integers(0, y_pred_shape[-1], size=y_true_shape) if len(y_true_shape) < len(y_pred_shape)
          or y_true_shape[-1] == 1 and y_pred_shape[-1] > 1 else rng.integers(0, 2, size=y_true_shape))
    lazy = metrics.get("accuracy", loss=loss)
    assert isinstance(lazy, metrics.AutoAccuracy) and lazy.resolved is None and lazy.result() == 0.0
    lazy.update_state(yt, yp)
    assert type(lazy.resolved) is kind
    direct = kind()
    direct.update_state(yt, yp)
    assert lazy.result() == pytest.approx(direct.result())
    lazy.reset_state()
    assert type(lazy.resolved) is kind and lazy.result() == 0.0


def test_accuracy_names_follow_the_string():
    assert metrics.get("accuracy").name == "accuracy"
    assert metrics.get("acc").name == "acc"  # Keras logs the string it was given
    assert metrics.get("ACCURACY", y_true=(4,), y_pred=(4, 3)).name == "ACCURACY"
    assert metrics.serialize(metrics.get("acc")) == "acc"


# ---- get, config ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,cls", [
    ("binary_accuracy", metrics.BinaryAccuracy), ("categorical_accuracy", metrics.CategoricalAccuracy),
    ("sparse_categorical_accuracy", metrics.SparseCategoricalAccuracy),
    ("top_k_categorical_accuracy", metrics.TopKCategoricalAccuracy),
    ("sparse_top_k_categorical_accuracy", metrics.SparseTopKCategoricalAccuracy),
    ("precision", metrics.Precision), ("recall", metrics.Recall), ("auc", metrics.AUC),
    ("AUC", metrics.AUC), ("f1_score", metrics.F1Score), ("mse", metrics.MeanSquaredError),
    ("mean_squared_error", metrics.MeanSquaredError), ("mae", metrics.MeanAbsoluteError),
    ("mean_absolute_error", metrics.MeanAbsoluteError), ("mean", metrics.Mean),
    ("BinaryAccuracy", metrics.BinaryAccuracy), ("binary_crossentropy", metrics.BinaryCrossentropy),
])
def test_get_strings(name, cls):
    m = metrics.get(name)
    assert type(m) is cls and m.name == name
    assert metrics.serialize(m) == name and type(metrics.get(metrics.serialize(m))) is cls


def test_get_objects_callables_and_errors():
    m = metrics.Precision(thresholds=[0.2, 0.8])
    assert metrics.get(m) is m
    assert type(metrics.get(metrics.Recall)) is metrics.Recall
    assert metrics.get(None) is None

    def within_point_one(y_true, y_pred):
        return (np.abs(y_true - y_pred) < 0.1).astype(float).mean(axis=-1)

    wrapped = metrics.get(within_point_one)
    assert isinstance(wrapped, metrics.MeanMetricWrapper) and wrapped.name == "within_point_one"
    wrapped.update_state(np.zeros((4, 2)), np.array([[0.05, 0.2], [0, 0], [0.5, 0.5], [0.01, 0.09]]))
    assert wrapped.result() == pytest.approx((0.5 + 1 + 0 + 1) / 4)
    with pytest.raises(ValueError) as err:
        metrics.get("accuracyy")
    for name in ("'accuracy'", "'acc'", "'mse'", "'mae'", "'precision'", "'recall'", "'auc'",
                 "'top_k_categorical_accuracy'", "'f1_score'"):
        assert name in str(err.value)
    with pytest.raises(ValueError, match="could not interpret"):
        metrics.get(3.5)


@pytest.mark.parametrize("metric", [
    metrics.BinaryAccuracy(threshold=0.3, name="b"), metrics.TopKCategoricalAccuracy(k=2),
    metrics.SparseTopKCategoricalAccuracy(k=3), metrics.Precision(thresholds=[0.3, 0.6], class_id=1),
    metrics.Recall(top_k=2), metrics.AUC(num_thresholds=50, curve="PR", summation_method="minoring"),
    metrics.AUC(thresholds=[0.2, 0.7], from_logits=True), metrics.F1Score(average="macro", threshold=0.4),
    metrics.FBetaScore(beta=2.0), metrics.MeanSquaredError(), metrics.Mean(name="m"),
    metrics.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0),
    metrics.AutoAccuracy(loss="binary_crossentropy"),
], ids=lambda m: type(m).__name__)
def test_config_round_trip(metric):
    cfg = metric.get_config()
    assert type(metric).from_config(cfg).get_config() == cfg
    s = json.loads(json.dumps(metrics.serialize(metric)))
    again = metrics.get(s)
    assert type(again) is type(metric) and again.get_config() == cfg


def test_bad_inputs_name_expected_and_received():
    with pytest.raises(ValueError, match=r"expected y_true of shape \(4, 3\) \(the shape of y_pred\), got \(4, 2\)"):
        metrics.BinaryAccuracy().update_state(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"class ids of shape \(4,\) .* got \(5,\)"):
        metrics.SparseCategoricalAccuracy().update_state(np.zeros(5, int), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"class ids in \[0, 2\], got values in \[0, 3\]"):
        metrics.SparseTopKCategoricalAccuracy(k=1).update_state(np.array([0, 1, 3, 2]), np.zeros((4, 3)))
    with pytest.raises(TypeError, match="numeric y_true, got dtype <U1"):
        metrics.CategoricalAccuracy().update_state(np.array(["a", "b"]), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"sample_weight of shape \(3,\) does not match y_pred of shape \(4,\)"):
        metrics.Precision().update_state(np.zeros(4), np.zeros(4), sample_weight=np.ones(3))
    with pytest.raises(ValueError, match=r"thresholds in \[0, 1\]"):
        metrics.Precision(thresholds=[0.5, 1.5])
    with pytest.raises(ValueError, match="average"):
        metrics.F1Score(average="samples")
    with pytest.raises(ValueError, match="num_thresholds"):
        metrics.AUC(num_thresholds=1)
    with pytest.raises(ValueError, match="k >= 1"):
        metrics.TopKCategoricalAccuracy(k=0)


# ---- the CuPy stand-in: update_state reads nothing back -------------------------------------------------

def _device_metrics():
    return [
        metrics.BinaryAccuracy(), metrics.CategoricalAccuracy(), metrics.SparseCategoricalAccuracy(),
        metrics.TopKCategoricalAccuracy(k=2), metrics.SparseTopKCategoricalAccuracy(k=2),
        metrics.Precision(), metrics.Recall(thresholds=[0.3, 0.7]), metrics.Precision(top_k=1),
        metrics.AUC(), metrics.AUC(curve="PR", thresholds=[0.2, 0.5]), metrics.F1Score(average="weighted"),
        metrics.MeanSquaredError(), metrics.MeanAbsoluteError(), metrics.get("accuracy"),
        metrics.SparseCategoricalCrossentropy(ignore_class=0), metrics.get("accuracy", loss="binary_crossentropy"),
    ]


def _inputs_for(m, ids, onehot, probs, binary):
    if isinstance(m, (metrics.SparseCategoricalAccuracy, metrics.SparseTopKCategoricalAccuracy,
                      metrics.SparseCategoricalCrossentropy)):
        return ids, probs
    if isinstance(m, metrics.AutoAccuracy):
        return (ids, probs) if m.loss is None else (binary, probs)
    if isinstance(m, (metrics.BinaryAccuracy, metrics.Precision, metrics.Recall, metrics.AUC,
                      metrics.MeanSquaredError, metrics.MeanAbsoluteError)):
        return binary, probs
    return onehot, probs


@pytest.mark.gpu
@pytest.mark.skipif(not TEST_DEVICE, reason="counts transfers on gpudl's CuPy stand-in "
                                            "(PYTHONPATH=tests/fakecupy)")
def test_update_state_makes_no_host_transfer_on_the_device():
    import cupy
    gpudl.set_backend("cupy")
    ids_h, probs_h, w_h = _data(15)
    probs_h = probs_h / probs_h.sum(1, keepdims=True)
    binary_h = (np.random.default_rng(1).uniform(size=probs_h.shape) > 0.5).astype(np.float32)
    ids, probs, w = cupy.asarray(ids_h), cupy.asarray(probs_h), cupy.asarray(w_h)
    onehot, binary = cupy.asarray(np.eye(4)[ids_h]), cupy.asarray(binary_h)
    probs_t = Tensor(probs)  # Tensors are looked through
    for m in _device_metrics():
        yt, yp = _inputs_for(m, ids, onehot, probs, binary)
        yth, yph = _inputs_for(m, ids_h, np.eye(4)[ids_h], probs_h, binary_h)
        cupy.reset_transfers()
        m.update_state(yt, yp)
        m.update_state(yt, probs_t if yp is probs else yp, sample_weight=w)
        m.reset_state()
        m.update_state(yt, yp, sample_weight=w)
        assert cupy.transfers == {"d2h": 0, "h2d": 0, "sync": 0}, (m, dict(cupy.transfers))
        value = m.result()
        assert cupy.transfers["d2h"] == 1 and cupy.transfers["h2d"] == 0, (m, dict(cupy.transfers))
        host = type(m).from_config(m.get_config()) if not isinstance(m, metrics.AutoAccuracy) else \
            metrics.get("accuracy", loss=m.loss)
        gpudl.set_backend("numpy")
        host.update_state(yth, yph, sample_weight=w_h)
        gpudl.set_backend("cupy")
        np.testing.assert_allclose(value, host.result(), rtol=1e-12, err_msg=str(m))


@pytest.mark.gpu
@pytest.mark.skipif(not TEST_DEVICE, reason="needs gpudl's CuPy stand-in (PYTHONPATH=tests/fakecupy)")
def test_metrics_refuse_mixed_backends():
    import cupy
    gpudl.set_backend("cupy")
    with pytest.raises(TypeError, match="two backends"):
        metrics.SparseCategoricalAccuracy().update_state(np.array([0, 1]), cupy.asarray(np.eye(2)))
