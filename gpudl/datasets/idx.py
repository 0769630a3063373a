"""The IDX format of MNIST and Fashion-MNIST, gzip-compressed or raw.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the values, big-endian, row-major.
Every check below names the file, what it expected and what it found, because a bad
download usually shows up here first.
"""
from __future__ import annotations

import gzip
import math
import os
import struct
import zlib

import numpy as np

from ..errors import DatasetError

__all__ = ["read_idx", "parse_idx", "decompress"]

GZIP_MAGIC = b"\x1f\x8b"

#: type code -> (name, big-endian dtype of the values on disk)
IDX_TYPES = {
    0x08: ("uint8", np.dtype(np.uint8)),
    0x09: ("int8", np.dtype(np.int8)),
    0x0B: ("int16", np.dtype(">i2")),
    0x0C: ("int32", np.dtype(">i4")),
    0x0D: ("float32", np.dtype(">f4")),
    0x0E: ("float64", np.dtype(">f8")),
}

_KNOWN_CODES = ", ".join(f"0x{code:02X} ({name})" for code, (name, _) in IDX_TYPES.items())


def decompress(data: bytes, source: str) -> bytes:
    """Gunzip ``data`` when it starts with the gzip magic bytes (the file name is not trusted);
    return it unchanged otherwise. A damaged stream raises :class:`DatasetError`."""
    if data[:2] != GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except EOFError as err:
        raise DatasetError(
            f"{source}: truncated gzip stream: expected a complete gzip member ending in its "
            f"CRC-32 and length trailer, found the stream cut off after {len(data)} compressed bytes"
        ) from err
    except (OSError, zlib.error) as err:  # gzip.BadGzipFile is an OSError: bad header, CRC, length
        raise DatasetError(
            f"{source}: corrupt gzip stream: expected valid deflate data whose CRC-32 and length "
            f"match its trailer, found: {err}"
        ) from err


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode the (already decompressed) bytes of an IDX file into a native-endian array."""
    size = len(data)
    if size < 4:
        raise DatasetError(
            f"IDX file {source}: expected a 4-byte magic number, found a file of {size} bytes"
        )
    if data[0] != 0 or data[1] != 0:
        raise DatasetError(
            f"IDX file {source}: bad magic number: expected it to start with bytes 00 00, "
            f"found {data[:4].hex(' ')}"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_TYPES:
        raise DatasetError(
            f"IDX file {source}: unknown data type code 0x{code:02X} in the magic number: "
            f"expected one of {_KNOWN_CODES}"
        )
    if ndim == 0:
        raise DatasetError(
            f"IDX file {source}: expected at least 1 dimension in the magic number, found 0"
        )
    name, dtype = IDX_TYPES[code]
    header = 4 + 4 * ndim
    if size < header:
        raise DatasetError(
            f"IDX file {source}: truncated header: expected {header} bytes for the magic number and "
            f"{ndim} dimension sizes, found {size} bytes"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    count = math.prod(dims)
    expected = count * dtype.itemsize
    found = size - header
    if found != expected:
        problem = "truncated data" if found < expected else "unexpected bytes after the data"
        raise DatasetError(
            f"IDX file {source}: {problem}: dimensions {dims} of {name} need {expected} data bytes "
            f"after the {header}-byte header, found {found}"
        )
    values = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)
    # astype copies: the result is writable and native-endian
    return values.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip or raw, told apart by its first bytes) into a numpy array.

    A missing, corrupt or truncated file raises :class:`gpudl.errors.DatasetError` whose message
    names the file, what was expected and what was found.
    """
    source = os.fspath(path)
    try:
        with open(source, "rb") as handle:
            data = handle.read()
    except FileNotFoundError as err:
        raise DatasetError(f"IDX file {source}: not found") from err
    except IsADirectoryError as err:
        raise DatasetError(f"IDX file {source}: expected a file, found a directory") from err
    except OSError as err:
        raise DatasetError(f"IDX file {source}: cannot be read: {err}") from err
    return parse_idx(decompress(data, source), source)
