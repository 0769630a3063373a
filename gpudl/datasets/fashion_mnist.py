"""Fashion-MNIST (Zalando): MNIST's format and sizes, ten classes of clothing.

Labels: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker,
8 Bag, 9 Ankle boot. Looked for in ``path``, ``$GPUDL_DATA_DIR/fashion_mnist``,
``~/.cache/gpudl/fashion_mnist`` and Debian's ``/usr/share/datasets/fashion-mnist``
(package fashion-mnist), then downloaded from :data:`MIRRORS`.
"""
from __future__ import annotations

from typing import Sequence

from ._cache import RemoteFile
from .mnist import load_splits

__all__ = ["load_data", "load_test", "MIRRORS", "FILES", "SYSTEM_DIRS", "CLASS_NAMES"]

NAME = "fashion_mnist"

#: base URLs tried in order; replace (or pass ``mirrors=``) to use a local copy
MIRRORS = [
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",  # Keras' copy
]

#: read-only folders searched after the cache (Debian ships the .gz files recompressed)
SYSTEM_DIRS = ["/usr/share/datasets/fashion-mnist"]

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

FILES = {
    "train_images": RemoteFile(
        "train-images-idx3-ubyte.gz",
        sha256="c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        gz_sha256="3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    ),
    "train_labels": RemoteFile(
        "train-labels-idx1-ubyte.gz",
        sha256="bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        gz_sha256="a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    ),
    "test_images": RemoteFile(
        "t10k-images-idx3-ubyte.gz",
        sha256="5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        gz_sha256="346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    ),
    "test_labels": RemoteFile(
        "t10k-labels-idx1-ubyte.gz",
        sha256="0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        gz_sha256="67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    ),
}


def load_data(path=None, download: bool = True, mirrors: Sequence[str] | None = None):
    """Fashion-MNIST as ``(x_train, y_train), (x_test, y_test)``: uint8 (N, 28, 28), uint8 labels.

    Arguments as :func:`gpudl.datasets.mnist.load_data`.
    """
    return load_splits(NAME, FILES, ("train", "test"), path=path, download=download, mirrors=mirrors,
                       default_mirrors=MIRRORS, system_dirs=SYSTEM_DIRS)


def load_test(path=None, download: bool = True, mirrors: Sequence[str] | None = None):
    """Only the 10,000 test images: ``(x_test, y_test)``."""
    return load_splits(NAME, FILES, ("test",), path=path, download=download, mirrors=mirrors,
                       default_mirrors=MIRRORS, system_dirs=SYSTEM_DIRS)[0]
