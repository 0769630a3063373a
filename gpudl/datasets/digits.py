"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, values 0..16): the offline
dataset, for examples and tests that must not download anything."""
from __future__ import annotations

import numpy as np

from ..errors import DatasetError

__all__ = ["load_data"]

NUM_CLASSES = 10


def load_data(test_split: float = 0.2, seed: int = 0):
    """The digits as ``(x_train, y_train), (x_test, y_test)``: uint8 (N, 8, 8) images with values
    0..16 and uint8 labels.

    The split is stratified: each class gives ``round(test_split * count)`` of its images to the
    test set, chosen by a generator seeded with ``seed``, so the same arguments always give the
    same split (independent of :func:`gpudl.set_seed`). Needs scikit-learn
    (``pip install gpudl[datasets]``).
    """
    if isinstance(test_split, bool) or not isinstance(test_split, (int, float, np.integer, np.floating)) \
            or not 0.0 <= float(test_split) < 1.0:
        raise ValueError(f"digits.load_data expected test_split in [0, 1), got {test_split!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"digits.load_data expected seed to be a non-negative integer, got {seed!r}")
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError(
            "gpudl.datasets.digits needs scikit-learn, which could not be imported "
            f"({err}); install it with: pip install gpudl[datasets]"
        ) from err

    bunch = load_digits()
    images, target = np.asarray(bunch.images), np.asarray(bunch.target)
    if images.ndim != 3 or images.shape[1:] != (8, 8) or target.shape != images.shape[:1]:
        raise DatasetError(
            f"scikit-learn digits: expected images (N, 8, 8) and N labels, "
            f"found images {images.shape} and labels {target.shape}"
        )
    if images.size and (images.min() < 0 or images.max() > 16 or not np.all(images == np.round(images))):
        raise DatasetError(
            f"scikit-learn digits: expected integer pixel values 0..16, "
            f"found values in [{images.min()}, {images.max()}]"
        )
    if target.size and (target.min() < 0 or target.max() >= NUM_CLASSES):
        raise DatasetError(
            f"scikit-learn digits: expected labels 0..{NUM_CLASSES - 1}, "
            f"found labels in [{target.min()}, {target.max()}]"
        )
    x = images.astype(np.uint8)
    y = target.astype(np.uint8)

    rng = np.random.default_rng(seed)
    train_parts, test_parts = [], []
    for label in range(NUM_CLASSES):
        members = np.flatnonzero(y == label)
        rng.shuffle(members)
        n_test = int(round(float(test_split) * members.size))
        test_parts.append(members[:n_test])
        train_parts.append(members[n_test:])
    train_idx = rng.permutation(np.concatenate(train_parts))
    test_idx = rng.permutation(np.concatenate(test_parts))
    return (x[train_idx], y[train_idx]), (x[test_idx], y[test_idx])
