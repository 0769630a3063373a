"""MNIST handwritten digits: 60,000 training and 10,000 test images, 28x28 uint8, labels 0-9.

``load_data`` returns ``(x_train, y_train), (x_test, y_test)`` like Keras. Files are looked for
in ``path``, ``$GPUDL_DATA_DIR/mnist`` and ``~/.cache/gpudl/mnist`` (see ``_cache``), then
downloaded from :data:`MIRRORS`. Checksums are those of the decompressed IDX files, so
re-gzipped copies pass; the canonical ``.gz`` digests are kept beside them for reference.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..errors import DatasetError
from ._cache import RemoteFile, fetch
from .idx import parse_idx

__all__ = ["load_data", "load_test", "MIRRORS", "FILES", "SYSTEM_DIRS"]

NAME = "mnist"

#: base URLs tried in order; replace (or pass ``mirrors=``) to use a local copy
MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision's mirror
    "https://storage.googleapis.com/cvdf-datasets/mnist/",  # tensorflow-datasets' mirror
    "http://yann.lecun.com/exdb/mnist/",
]

#: extra read-only folders searched after the cache
SYSTEM_DIRS: list[str] = []

FILES = {
    "train_images": RemoteFile(
        "train-images-idx3-ubyte.gz",
        sha256="ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        gz_sha256="440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    ),
    "train_labels": RemoteFile(
        "train-labels-idx1-ubyte.gz",
        sha256="65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        gz_sha256="3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    ),
    "test_images": RemoteFile(
        "t10k-images-idx3-ubyte.gz",
        sha256="0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        gz_sha256="8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    ),
    "test_labels": RemoteFile(
        "t10k-labels-idx1-ubyte.gz",
        sha256="ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        gz_sha256="f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ),
}

IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10


def load_split(dataset: str, files: Mapping[str, RemoteFile], split: str, *, path, download: bool,
               mirrors: Sequence[str], system_dirs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of one split ("train" or "test") of an MNIST-format dataset."""
    kwargs = dict(path=path, download=download, mirrors=mirrors, system_dirs=system_dirs)
    image_spec, label_spec = files[f"{split}_images"], files[f"{split}_labels"]
    images = parse_idx(fetch(dataset, image_spec, **kwargs), f"{dataset} {image_spec.name}")
    labels = parse_idx(fetch(dataset, label_spec, **kwargs), f"{dataset} {label_spec.name}")
    # the checksums already pin the content; these guard against a wrong table entry
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise DatasetError(
            f"{dataset} {image_spec.name}: expected uint8 images of shape (N, 28, 28), "
            f"found {images.dtype} of shape {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.shape != images.shape[:1]:
        raise DatasetError(
            f"{dataset} {label_spec.name}: expected {images.shape[0]} uint8 labels (one per image), "
            f"found {labels.dtype} of shape {labels.shape}"
        )
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        raise DatasetError(
            f"{dataset} {label_spec.name}: expected labels 0..{NUM_CLASSES - 1}, found {int(labels.max())}"
        )
    return images, labels


def load_splits(dataset: str, files: Mapping[str, RemoteFile], splits: Sequence[str], *, path,
                download: bool, mirrors, default_mirrors: Sequence[str],
                system_dirs: Sequence[str]) -> tuple:
    """``load_split`` for each of ``splits``; ``mirrors`` None means ``default_mirrors``, a
    string means that one base URL. Callers pass their module-level lists at call time, so
    changes to ``MIRRORS`` / ``SYSTEM_DIRS`` take effect."""
    if mirrors is None:
        mirrors = list(default_mirrors)
    elif isinstance(mirrors, str):
        mirrors = [mirrors]
    kwargs = dict(path=path, download=download, mirrors=list(mirrors), system_dirs=system_dirs)
    return tuple(load_split(dataset, files, split, **kwargs) for split in splits)


def load_data(path=None, download: bool = True, mirrors: Sequence[str] | None = None):
    """MNIST as ``(x_train, y_train), (x_test, y_test)``: uint8 (N, 28, 28) images, uint8 labels.

    path: a folder holding the four standard IDX ``.gz`` files (the only place looked at, and
    where downloads go). download: fetch missing files from ``mirrors`` (default
    :data:`MIRRORS`, base URLs). Raises :class:`gpudl.errors.DatasetError` when a file is
    missing, corrupt or fails its checksum.
    """
    return load_splits(NAME, FILES, ("train", "test"), path=path, download=download, mirrors=mirrors,
                       default_mirrors=MIRRORS, system_dirs=SYSTEM_DIRS)


def load_test(path=None, download: bool = True, mirrors: Sequence[str] | None = None):
    """Only the 10,000 test images: ``(x_test, y_test)``. Same arguments as :func:`load_data`."""
    return load_splits(NAME, FILES, ("test",), path=path, download=download, mirrors=mirrors,
                       default_mirrors=MIRRORS, system_dirs=SYSTEM_DIRS)[0]
