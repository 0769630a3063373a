"""Fused softmax cross-entropy kernel against a NumPy float64 reference."""
import numpy as np
import pytest

from gpudl.backend import to_numpy
from gpudl.kernels import softmax_ce as S


def _reference(logits, targets):
    """(loss, grad) in float64: mean over rows of -sum(t * log_softmax), (softmax - t) / N."""
    x = logits.astype(np.float64)
    t = targets.astype(np.float64)
    shifted = x - x.max(axis=1, keepdims=True)
    log_sm = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -(t * log_sm).sum(axis=1).mean()
    return loss, (np.exp(log_sm) - t) / x.shape[0]


def _one_hot(labels, classes):
    return np.eye(classes)[labels]


# (rows, classes): a single column, batch 1, odd sizes, and rows long enough for the four-wide
# loop (>= 4 * threads per row)
SHAPES = [(1, 1), (1, 5), (3, 7), (4, 300), (2, 1000)]


def _check(xp, dtype, logits, labels, targets, poison, tol):
    poison(logits.nbytes, logits.nbytes)
    loss, grad, flag = S.softmax_cross_entropy(xp.asarray(logits), xp.asarray(labels))
    ref_loss, ref_grad = _reference(logits, targets)
    assert loss.shape == () and loss.dtype == dtype
    assert grad.shape == logits.shape and grad.dtype == dtype
    assert flag.shape == (1,) and flag.dtype == np.int32
    assert int(to_numpy(flag)[0]) == 0
    np.testing.assert_allclose(float(to_numpy(loss)), ref_loss, **tol)
    np.testing.assert_allclose(to_numpy(grad), ref_grad, **tol)


@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("shape", SHAPES)
def test_class_ids(xp, dtype, rng, poison, tol, shape, label_dtype):
    rows, classes = shape
    logits = (3 * rng.standard_normal(shape)).astype(dtype)
    labels = rng.integers(0, classes, rows).astype(label_dtype)
    _check(xp, dtype, logits, labels, _one_hot(labels, classes), poison, tol)


@pytest.mark.parametrize("shape", SHAPES)
def test_dense_targets(xp, dtype, rng, poison, tol, shape):
    rows, classes = shape
    logits = (3 * rng.standard_normal(shape)).astype(dtype)
    one_hot = _one_hot(rng.integers(0, classes, rows), classes).astype(dtype)
    _check(xp, dtype, logits, one_hot, one_hot, poison, tol)
    probs = rng.random(shape)
    probs = (probs / probs.sum(axis=1, keepdims=True)).astype(dtype)
    _check(xp, dtype, logits, probs, probs, poison, tol)


def test_large_logits_stay_finite(xp, dtype, rng, poison):
    logits = np.array([[1e4, -1e4, 5e3, 3.0],
                       [-1e4, -1e4, -1e4, -1e4 + 1],
                       [1e4, 1e4, 1e4, 1e4]], dtype=dtype)
    labels = np.array([1, 3, 0])
    ref_loss, ref_grad = _reference(logits, _one_hot(labels, 4))
    for lab in (labels, _one_hot(labels, 4).astype(dtype)):
        poison(logits.nbytes, logits.nbytes)
        loss, grad, flag = S.softmax_cross_entropy(xp.asarray(logits), xp.asarray(lab))
        loss = float(to_numpy(loss))
        assert np.isfinite(loss) and np.all(np.isfinite(to_numpy(grad)))
        assert int(to_numpy(flag)[0]) == 0
        # the loss is about 2e4 / 3: float32 keeps it to a few ulps of that
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
        np.testing.assert_allclose(to_numpy(grad), ref_grad, rtol=1e-5, atol=1e-7)


# the simulator does the kernel's arithmetic with NumPy scalars, which warn on inf - inf
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_logits_raise_the_flag(xp, dtype, rng, bad):
    logits = rng.standard_normal((3, 40)).astype(dtype)
    logits[1, 17] = bad
    for labels in (np.array([0, 1, 2]), _one_hot([0, 1, 2], 40).astype(dtype)):
        _, _, flag = S.softmax_cross_entropy(xp.asarray(logits), xp.asarray(labels))
        assert int(to_numpy(flag)[0]) == S.FLAG_NONFINITE


def test_bad_labels_are_flagged_not_used(xp, dtype, rng, tol):
    logits = rng.standard_normal((3, 6)).astype(dtype)
    labels = np.array([2, 6, -1], dtype=np.int32)
    loss, grad, flag = S.softmax_cross_entropy(xp.asarray(logits), xp.asarray(labels))
    assert int(to_numpy(flag)[0]) == S.FLAG_BAD_LABEL
    assert np.isnan(float(to_numpy(loss)))
    # a row with a bad label gets the plain softmax / N; the good row is untouched
    targets = np.zeros((3, 6))
    targets[0, 2] = 1.0
    _, ref_grad = _reference(logits, targets)
    np.testing.assert_allclose(to_numpy(grad), ref_grad, **tol)


def test_rejects_bad_input():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"logits must be \(N, C\)"):
        S.softmax_cross_entropy(np.zeros(3, np.float32), np.zeros(3, np.int32))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        S.softmax_cross_entropy(x, np.zeros(3, np.int32))
    with pytest.raises(TypeError, match="labels must have dtype int32 or int64, got int16"):
        S.softmax_cross_entropy(x, np.zeros(2, np.int16))
    with pytest.raises(TypeError, match="labels must have the dtype of logits"):
        S.softmax_cross_entropy(x, np.zeros((2, 3), np.float64))
    with pytest.raises(ValueError, match=r"labels must have shape \(2, 3\)"):
        S.softmax_cross_entropy(x, np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        S.softmax_cross_entropy(np.zeros((3, 2), np.float32).T, np.zeros(2, np.int32))
