import gzip
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpudl.datasets import _cache, digits, fashion_mnist, mnist
from gpudl.errors import DatasetError

MNIST_DIR = (Path(__file__).parents[2] / "../shared/datasets/mnist").resolve()
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
# SHA-256 of the shared (recompressed) files, as published beside them
SHARED_GZ_SHA256 = {
    "t10k-images-idx3-ubyte.gz": "9fe7630f90c0e670227960a294637bc2e78a29d724810e24204eb342c9f033a1",
    "t10k-labels-idx1-ubyte.gz": "2c54c993d38068b3c3adb720a5cdee07065a066a7b36e7d1df720548d6359eba",
}

needs_mnist = pytest.mark.skipif(
    not all((MNIST_DIR / name).is_file() for name in TEST_FILES),
    reason=f"shared MNIST test files not found in {MNIST_DIR}",
)
needs_fashion = pytest.mark.skipif(
    not all((FASHION_DIR / spec.name).is_file() for spec in fashion_mnist.FILES.values()),
    reason=f"Fashion-MNIST files not found in {FASHION_DIR} (Debian package fashion-mnist)",
)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Empty home and no data dir; any download attempt fails loudly."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(_cache.ENV_VAR, raising=False)
    for module in (mnist, fashion_mnist):
        monkeypatch.setattr(module, "MIRRORS", ["http://127.0.0.1:9/no-downloads-in-this-test/"])
    return tmp_path


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _link_test_files(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in TEST_FILES:
        (folder / name).symlink_to(MNIST_DIR / name)
    return folder


@needs_mnist
def test_shared_files_match_published_and_canonical_checksums():
    for key, name in (("test_images", TEST_FILES[0]), ("test_labels", TEST_FILES[1])):
        packed = (MNIST_DIR / name).read_bytes()
        spec = mnist.FILES[key]
        assert _sha256(packed) == SHARED_GZ_SHA256[name]
        assert _sha256(packed) != spec.gz_sha256  # recompressed: only the content matches
        assert _sha256(gzip.decompress(packed)) == spec.sha256


@needs_mnist
def test_mnist_test_set_from_explicit_path(isolated):
    x, y = mnist.load_test(path=MNIST_DIR, download=False)
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10000,) and y.dtype == np.uint8
    assert np.bincount(y, minlength=10).tolist() == LABEL_COUNTS
    assert x.flags.writeable and y.flags.writeable


@needs_mnist
def test_load_data_names_the_missing_training_file(isolated):
    with pytest.raises(DatasetError, match=r"mnist: train-images-idx3-ubyte.gz not found: looked in "
                                           + str(MNIST_DIR)):
        mnist.load_data(path=MNIST_DIR, download=False)


@needs_mnist
def test_lookup_in_gpudl_data_dir(isolated, monkeypatch):
    _link_test_files(isolated / "data" / "mnist")
    monkeypatch.setenv(_cache.ENV_VAR, str(isolated / "data"))
    x, y = mnist.load_test(download=False)
    assert np.bincount(y).tolist() == LABEL_COUNTS


@needs_mnist
def test_lookup_in_home_cache(isolated):
    _link_test_files(isolated / "home" / ".cache" / "gpudl" / "mnist")
    x, y = mnist.load_test(download=False)
    assert x.shape == (10000, 28, 28)


@needs_mnist
def test_gpudl_data_dir_is_searched_before_home_cache(isolated, monkeypatch):
    _link_test_files(isolated / "home" / ".cache" / "gpudl" / "mnist")
    data = isolated / "data" / "mnist"
    data.mkdir(parents=True)
    raw = bytearray(gzip.decompress((MNIST_DIR / TEST_FILES[1]).read_bytes()))
    raw[-1] = (raw[-1] + 1) % 10
    (data / TEST_FILES[1]).write_bytes(gzip.compress(bytes(raw)))
    monkeypatch.setenv(_cache.ENV_VAR, str(isolated / "data"))
    with pytest.raises(DatasetError, match=str(data / TEST_FILES[1]) + r": checksum mismatch: expected SHA-256 "
                                           + mnist.FILES["test_labels"].sha256 + r".*delete the file"):
        mnist.load_test(download=False)


@needs_mnist
def test_gunzipped_copies_are_accepted(isolated):
    folder = isolated / "raw"
    folder.mkdir()
    for name in TEST_FILES:
        (folder / name[:-3]).write_bytes(gzip.decompress((MNIST_DIR / name).read_bytes()))
    x, y = mnist.load_test(path=folder, download=False)
    assert np.bincount(y).tolist() == LABEL_COUNTS


@needs_mnist
def test_corrupt_local_file_is_not_silently_replaced(isolated):
    folder = _link_test_files(isolated / "copy")
    (folder / TEST_FILES[0]).unlink()
    packed = (MNIST_DIR / TEST_FILES[0]).read_bytes()
    (folder / TEST_FILES[0]).write_bytes(packed[:-100])
    with pytest.raises(DatasetError, match=str(folder / TEST_FILES[0]) + r": truncated gzip stream"):
        mnist.load_test(path=folder)
    assert (folder / TEST_FILES[0]).stat().st_size == len(packed) - 100


@needs_fashion
def test_fashion_mnist_from_debian_folder(isolated):
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data(download=False)
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert x_test.shape == (10000, 28, 28) and x_test.dtype == np.uint8
    assert y_train.dtype == y_test.dtype == np.uint8
    assert np.bincount(y_train).tolist() == [6000] * 10
    assert np.bincount(y_test).tolist() == [1000] * 10
    assert len(fashion_mnist.CLASS_NAMES) == 10


@needs_fashion
def test_fashion_mnist_debian_files_are_recompressed_copies():
    for spec in fashion_mnist.FILES.values():
        packed = (FASHION_DIR / spec.name).read_bytes()
        assert _sha256(gzip.decompress(packed)) == spec.sha256


def test_fashion_mnist_missing_everywhere(isolated, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", [str(isolated / "nowhere")])
    with pytest.raises(DatasetError, match=r"fashion_mnist: t10k-images-idx3-ubyte.gz not found: looked in "
                                           r".*home/.cache/gpudl/fashion_mnist, .*nowhere"):
        fashion_mnist.load_test(download=False)


def test_import_touches_neither_disk_nor_network(tmp_path):
    code = (
        "import urllib.request\n"
        "def refuse(*a, **k): raise SystemExit('network used at import')\n"
        "urllib.request.urlopen = refuse\n"
        "import gpudl.datasets, gpudl.augment\n"
        "print('ok')\n"
    )
    env = dict(os.environ, HOME=str(tmp_path / "home"), GPUDL_DATA_DIR=str(tmp_path / "data"))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
    assert os.listdir(tmp_path) == []


# scikit-learn's 8x8 digits


def test_digits_shapes_and_types():
    (x_train, y_train), (x_test, y_test) = digits.load_data()
    assert x_train.dtype == x_test.dtype == y_train.dtype == y_test.dtype == np.uint8
    assert x_train.shape[1:] == x_test.shape[1:] == (8, 8)
    assert len(x_train) == len(y_train) and len(x_test) == len(y_test)
    assert len(x_train) + len(x_test) == 1797
    assert x_train.max() == 16 and x_train.min() == 0
    assert set(np.unique(y_train)) == set(range(10))


def test_digits_split_is_stratified_and_deterministic():
    (_, y_train), (x_test, y_test) = digits.load_data(test_split=0.25, seed=3)
    total = np.bincount(y_train, minlength=10) + np.bincount(y_test, minlength=10)
    expected_test = np.rint(total * 0.25)
    np.testing.assert_array_equal(np.bincount(y_test, minlength=10), expected_test)
    (_, y_train2), (x_test2, y_test2) = digits.load_data(test_split=0.25, seed=3)
    np.testing.assert_array_equal(x_test, x_test2)
    np.testing.assert_array_equal(y_train, y_train2)
    (_, _), (x_test3, _) = digits.load_data(test_split=0.25, seed=4)
    assert not np.array_equal(x_test, x_test3)
    assert not np.all(np.diff(y_test.astype(int)) >= 0)  # shuffled, not sorted by class


def test_digits_images_match_scikit_learn():
    from sklearn.datasets import load_digits
    bunch = load_digits()
    (x_train, y_train), (x_test, y_test) = digits.load_data(test_split=0.0)
    assert len(x_test) == len(y_test) == 0 and x_test.shape == (0, 8, 8)
    order = np.lexsort((x_train.reshape(len(x_train), -1).T[::-1]))
    reference = np.lexsort((bunch.images.reshape(1797, -1).T[::-1]))
    np.testing.assert_array_equal(x_train[order], bunch.images[reference].astype(np.uint8))


@pytest.mark.parametrize("test_split", [-0.1, 1.0, "0.2", True])
def test_digits_rejects_bad_test_split(test_split):
    with pytest.raises(ValueError, match=r"test_split in \[0, 1\), got"):
        digits.load_data(test_split=test_split)


def test_digits_rejects_bad_seed():
    with pytest.raises(ValueError, match="non-negative integer, got -1"):
        digits.load_data(seed=-1)


def test_digits_without_scikit_learn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"needs scikit-learn.*pip install gpudl\[datasets\]"):
        digits.load_data()
