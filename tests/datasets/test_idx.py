import gzip
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from gpudl.datasets import read_idx
from gpudl.datasets.idx import parse_idx
from gpudl.errors import DatasetError

MNIST_DIR = (Path(__file__).parents[2] / "../shared/datasets/mnist").resolve()

CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    code = CODES[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def raises_naming(path, message):
    """pytest.raises for a DatasetError whose message names ``path`` and matches ``message``."""
    return pytest.raises(DatasetError, match=re.escape(str(path)) + ".*" + message)


@pytest.mark.parametrize("dtype", list(CODES))
@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_every_type(tmp_path, dtype, compress):
    low = 0 if dtype is np.uint8 else -7
    values = np.arange(low, low + 24).reshape(2, 3, 4).astype(dtype)
    data = idx_bytes(values)
    path = write(tmp_path / "values.idx", gzip.compress(data) if compress else data)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert out.flags.writeable
    np.testing.assert_array_equal(out, values)


def test_gzip_is_detected_by_magic_bytes_not_extension(tmp_path):
    values = np.arange(6, dtype=np.int32).reshape(3, 2)
    gz_named_raw = write(tmp_path / "raw.gz", idx_bytes(values))
    raw_named_gz = write(tmp_path / "packed-ubyte", gzip.compress(idx_bytes(values)))
    np.testing.assert_array_equal(read_idx(gz_named_raw), values)
    np.testing.assert_array_equal(read_idx(str(raw_named_gz)), values)


def test_empty_dimension_is_allowed(tmp_path):
    path = write(tmp_path / "empty.idx", bytes([0, 0, 8, 2]) + struct.pack(">2I", 0, 28))
    assert read_idx(path).shape == (0, 28)


def test_bad_magic(tmp_path):
    path = write(tmp_path / "bad-magic.idx", bytes([1, 2, 8, 1]) + struct.pack(">I", 1) + b"\x00")
    with raises_naming(path, r"bad magic number: expected it to start with bytes 00 00, found 01 02 08 01"):
        read_idx(path)


def test_bad_type_code(tmp_path):
    path = write(tmp_path / "bad-type.idx", bytes([0, 0, 0x0A, 1]) + struct.pack(">I", 1) + b"\x00")
    with raises_naming(path, r"unknown data type code 0x0A.*expected one of 0x08 \(uint8\).*0x0E \(float64\)"):
        read_idx(path)


def test_zero_dimensions(tmp_path):
    path = write(tmp_path / "no-dims.idx", bytes([0, 0, 8, 0]))
    with raises_naming(path, r"expected at least 1 dimension in the magic number, found 0"):
        read_idx(path)


def test_too_short_for_magic(tmp_path):
    path = write(tmp_path / "tiny.idx", b"\x00\x00")
    with raises_naming(path, r"expected a 4-byte magic number, found a file of 2 bytes"):
        read_idx(path)


def test_truncated_header(tmp_path):
    # ndim 3 needs 12 bytes of sizes; only two sizes are present
    path = write(tmp_path / "short-header.idx", bytes([0, 0, 8, 3]) + struct.pack(">2I", 10, 28))
    with raises_naming(path, r"truncated header: expected 16 bytes .* 3 dimension sizes, found 12 bytes"):
        read_idx(path)


def test_wrong_dims_more_data_than_declared(tmp_path):
    data = bytes([0, 0, 8, 2]) + struct.pack(">2I", 3, 4) + bytes(13)
    path = write(tmp_path / "wrong-dims.idx", data)
    with raises_naming(path, r"unexpected bytes after the data: dimensions \(3, 4\) of uint8 need 12 data bytes "
                             r"after the 12-byte header, found 13"):
        read_idx(path)


def test_truncated_data(tmp_path):
    data = idx_bytes(np.zeros((10, 4), dtype=np.float32))[:-1]
    path = write(tmp_path / "truncated.idx", data)
    with raises_naming(path, r"truncated data: dimensions \(10, 4\) of float32 need 160 data bytes "
                             r"after the 12-byte header, found 159"):
        read_idx(path)


def test_truncated_data_inside_gzip(tmp_path):
    data = idx_bytes(np.zeros((10, 4), dtype=np.uint8))[:-5]
    path = write(tmp_path / "truncated.idx.gz", gzip.compress(data))
    with raises_naming(path, r"truncated data: .*need 40 data bytes .* found 35"):
        read_idx(path)


def test_truncated_gzip_stream(tmp_path):
    packed = gzip.compress(idx_bytes(np.arange(1000, dtype=np.int16)))
    path = write(tmp_path / "cut.gz", packed[: len(packed) // 2])
    with raises_naming(path, r"truncated gzip stream: expected a complete gzip member .* found the stream cut off "
                             rf"after {len(packed) // 2} compressed bytes"):
        read_idx(path)


def test_gzip_bad_crc(tmp_path):
    packed = bytearray(gzip.compress(idx_bytes(np.arange(100, dtype=np.uint8))))
    packed[-8] ^= 0xFF  # the CRC-32 of the trailer
    path = write(tmp_path / "bad-crc.gz", bytes(packed))
    with raises_naming(path, r"corrupt gzip stream: expected valid deflate data whose CRC-32 .* found: CRC check failed"):
        read_idx(path)


def test_gzip_corrupt_deflate_data(tmp_path):
    packed = bytearray(gzip.compress(np.random.default_rng(0).bytes(5000)))
    packed[20:40] = bytes(20 * [0xFF])
    path = write(tmp_path / "garbled.gz", bytes(packed))
    with raises_naming(path, r"corrupt gzip stream"):
        read_idx(path)


def test_missing_file_and_directory(tmp_path):
    with raises_naming(tmp_path / "nope.idx", "not found"):
        read_idx(tmp_path / "nope.idx")
    with raises_naming(tmp_path, "expected a file, found a directory"):
        read_idx(tmp_path)


def test_dataset_error_is_a_value_error(tmp_path):
    with pytest.raises(ValueError):
        parse_idx(b"\x01\x00\x08\x01")


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"shared MNIST test set not found at {MNIST_DIR}")
def test_reads_real_mnist_test_files():
    images = read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert images.max() == 255 and images.min() == 0
