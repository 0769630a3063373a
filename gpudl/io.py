"""The gpudl model file: a checksummed container of named arrays plus a JSON header.

Layout (all integers little-endian; docs/FILE_FORMAT.md is the full description)::

    0   8 bytes   magic b"GPUDL\\x00MF"
    8   u32       format version (1)
    12  u32       flags (0; reserved)
    16  u64       header length H, at most 64 MiB
    24  H bytes   UTF-8 JSON object {"meta", "tensors", "data_nbytes"}, padded with spaces
                  so that the data section starts on a 64-byte boundary
    24+H          data section: raw C-order little-endian tensor bytes, each tensor at a
                  64-byte aligned offset relative to the section start, gaps zero-filled
    end-32        SHA-256 of every byte before it (prefix, header and data)

Nothing here unpickles, evaluates or imports anything named by a file: dtypes come from a
fixed whitelist of strings, and every number in the header is checked against the real
file size before it is used to allocate or read.

Saves are atomic and durable: the bytes go to a temp file in the target's folder, which
is flushed, fsynced and then renamed over the target with ``os.replace``; the folder is
fsynced afterwards so the rename itself survives a power cut. A save killed at any moment
leaves either the previous file or the new one, and the next save sweeps up temp files
that a killed writer left behind.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import secrets
import struct

import numpy as np

from .errors import ModelFileError

__all__ = ["save_file", "load_file", "inspect_file", "write_atomically", "MAGIC", "FORMAT_VERSION", "DTYPES"]

MAGIC = b"GPUDL\x00MF"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 64 * 1024 * 1024
ALIGNMENT = 64
MAX_NDIM = 32
_MAX_INTP = int(np.iinfo(np.intp).max)

_PREFIX = struct.Struct("<8sIIQ")  # magic, version, flags, header length
_DIGEST_BYTES = hashlib.sha256().digest_size
_CHUNK = 1 << 20

# The only dtypes a file may name. Values are always stored little-endian.
DTYPES = {
    name: np.dtype(name).newbyteorder("<")
    for name in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                 "uint64", "float16", "float32", "float64")
}
_HEADER_KEYS = {"meta", "tensors", "data_nbytes"}
_TENSOR_KEYS = {"name", "dtype", "shape", "offset", "nbytes"}


# ----------------------------------------------------------------------------- saving

def save_file(path, arrays: dict, meta: dict) -> None:
    """Write ``arrays`` (name -> array) and the JSON-able ``meta`` dict to ``path`` atomically.

    Arrays may be NumPy arrays, anything ``np.asarray`` accepts, or device arrays with a
    ``.get()`` method (CuPy); they are stored C-order little-endian whatever their layout.
    ``meta`` goes through JSON: tuples come back as lists and non-str keys as strings.
    Raises TypeError / ValueError for inputs that cannot be stored; the file at ``path``
    is then left as it was.
    """
    path = os.fspath(path)
    if os.path.islink(path):
        # write through the link, as an in-place write would, instead of replacing it
        path = os.path.realpath(path)
    if not isinstance(meta, dict):
        raise TypeError(f"save_file: meta must be a dict, got {type(meta).__name__}")
    if not isinstance(arrays, dict):
        raise TypeError(f"save_file: arrays must be a dict of name -> array, "
                        f"got {type(arrays).__name__}")

    tensors, table, data_nbytes = _layout(arrays)
    header = {"meta": meta, "tensors": table, "data_nbytes": data_nbytes}
    try:
        text = json.dumps(header, allow_nan=False, ensure_ascii=True, separators=(",", ":"))
    except ValueError as exc:  # NaN or Infinity, a circular reference, an overlong int
        raise ValueError(f"save_file: meta cannot be stored as finite JSON (NaN and Infinity "
                         f"are refused): {exc}") from exc
    except (TypeError, RecursionError) as exc:
        raise TypeError(f"save_file: meta must hold only JSON types (dict with str keys, "
                        f"list, str, int, float, bool, None): {exc}") from exc
    header_bytes = text.encode("utf-8")
    header_bytes += b" " * (-(_PREFIX.size + len(header_bytes)) % ALIGNMENT)
    if len(header_bytes) > MAX_HEADER_BYTES:
        raise ValueError(f"save_file: header is {len(header_bytes)} bytes, over the "
                         f"{MAX_HEADER_BYTES}-byte cap; keep large data in arrays, not meta")

    def write(fd):
        with os.fdopen(fd, "wb", closefd=False) as f:
            digest = hashlib.sha256()

            def put(buf):
                digest.update(buf)
                f.write(buf)

            put(_PREFIX.pack(MAGIC, FORMAT_VERSION, 0, len(header_bytes)))
            put(header_bytes)
            pos = 0
            for entry, arr in zip(table, tensors):
                if entry["offset"] > pos:
                    put(bytes(entry["offset"] - pos))
                if arr.nbytes:
                    put(arr.reshape(-1).view(np.uint8))
                pos = entry["offset"] + entry["nbytes"]
            if data_nbytes > pos:
                put(bytes(data_nbytes - pos))
            f.write(digest.digest())

    write_atomically(path, write)


def write_atomically(path, write) -> None:
    """Replace ``path`` all at once: ``write(fd)`` fills a temp file in the same folder, which
    is fsynced and renamed over ``path``, then the folder is fsynced. A crash at any point
    leaves the old file or the new one, never a part; the temp file is removed on failure
    (and one a killed writer left is swept the next time)."""
    folder, base = os.path.split(os.path.abspath(path))
    _remove_stale_temps(folder, base)
    tmp = os.path.join(folder, f".{base}.tmp-{os.getpid()}-{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        try:
            write(fd)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(folder)


def _layout(arrays):
    """Canonical (C-order, little-endian) copies of the arrays and their tensor table."""
    tensors, table, pos = [], [], 0
    for name, value in arrays.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"save_file: array names must be non-empty str, got {name!r} "
                            f"({type(name).__name__})")
        if not isinstance(value, np.ndarray) and callable(getattr(value, "get", None)) \
                and not isinstance(value, dict):
            value = value.get()  # device array (CuPy): copy to the host
        arr = np.asarray(value)
        key = arr.dtype.name if arr.dtype.kind in "biuf" else None
        if key not in DTYPES or arr.dtype.itemsize != DTYPES[key].itemsize:
            raise TypeError(f"save_file: array {name!r} has dtype {arr.dtype}; a gpudl file "
                            f"stores only {', '.join(DTYPES)}")
        # asarray keeps 0-d arrays 0-d, which ascontiguousarray does not
        arr = np.asarray(arr, dtype=DTYPES[key], order="C")
        pos += -pos % ALIGNMENT
        table.append({"name": name, "dtype": key, "shape": list(arr.shape),
                      "offset": pos, "nbytes": arr.nbytes})
        tensors.append(arr)
        pos += arr.nbytes
    return tensors, table, pos


def _remove_stale_temps(folder, base):
    """Delete temp files of earlier saves to the same target whose writer has died."""
    prefix = f".{base}.tmp-"
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if not name.startswith(prefix):
            continue
        pid = name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and _process_alive(int(pid)):
            continue  # a save in progress elsewhere; its own cleanup handles it
        try:
            os.unlink(os.path.join(folder, name))
        except OSError:
            pass


def _process_alive(pid):
    if os.name != "posix":
        return False  # an open file cannot be deleted there anyway
    if pid == os.getpid():
        return False  # this process never leaves a live temp between saves
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _fsync_dir(folder):
    """Make the rename durable. Not every OS or filesystem can fsync a folder; skip there."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(folder, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP, errno.EACCES):
            raise
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- loading

def load_file(path) -> tuple[dict, dict]:
    """Read a gpudl file: returns ``(meta, arrays)``, arrays as writable NumPy arrays.

    Raises FileNotFoundError for a missing path and ModelFileError, naming the file and
    what is wrong with it, for anything that is not an intact gpudl file.
    """
    path = os.fspath(path)
    with _open(path) as f:
        header, data_start, size = _read_header(f, path)
        table = header["tensors"]
        arrays = {}
        digest = hashlib.sha256()
        f.seek(0)
        _hash_range(f, path, digest, data_start)
        pos = 0
        for entry in sorted(table, key=lambda e: (e["offset"], e["nbytes"])):
            _hash_range(f, path, digest, entry["offset"] - pos)
            arr = _empty(entry, path)
            if entry["nbytes"]:
                buf = arr.reshape(-1).view(np.uint8)
                _read_into(f, path, buf)
                digest.update(buf)
            arrays[entry["name"]] = arr
            pos = entry["offset"] + entry["nbytes"]
        _hash_range(f, path, digest, header["data_nbytes"] - pos)
        _check_digest(f, path, digest)
    out = {}
    for entry in table:  # the file's order, and native byte order for arithmetic
        arr = arrays[entry["name"]]
        out[entry["name"]] = arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))
    return header["meta"], out


def inspect_file(path) -> dict:
    """The validated header of a gpudl file without reading its arrays into memory.

    Returns ``{"format_version", "meta", "tensors", "data_nbytes"}``; the tensor table
    lists ``name, dtype, shape, offset, nbytes`` per array. The checksum is verified by
    streaming the file, so a corrupt file is refused here as it would be by load_file.
    """
    path = os.fspath(path)
    with _open(path) as f:
        header, data_start, size = _read_header(f, path)
        digest = hashlib.sha256()
        f.seek(0)
        _hash_range(f, path, digest, data_start + header["data_nbytes"])
        _check_digest(f, path, digest)
    return {"format_version": FORMAT_VERSION, **header}


class _open:
    """open(path, "rb") whose OS errors other than a missing file become ModelFileError."""

    def __init__(self, path):
        try:
            if os.path.isdir(path):
                raise ModelFileError(f"{path!r} is a directory, not a gpudl model file")
            self.f = open(path, "rb")
        except (FileNotFoundError, ModelFileError):
            raise
        except OSError as exc:
            raise ModelFileError(f"cannot read gpudl model file {path!r}: {exc}") from exc

    def __enter__(self):
        return self.f

    def __exit__(self, *exc):
        self.f.close()


def _fail(path, message):
    raise ModelFileError(f"{path!r} is not a valid gpudl model file: {message}")


def _read_header(f, path):
    """Parse and validate everything before the data; returns (header, data_start, size)."""
    try:
        size = os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise ModelFileError(f"cannot read gpudl model file {path!r}: {exc}") from exc
    if size == 0:
        _fail(path, "the file is empty (0 bytes)")
    head = _read_exact(f, path, min(size, _PREFIX.size))
    if head[:len(MAGIC)] != MAGIC[:len(head)]:
        _fail(path, f"wrong magic: expected {MAGIC!r}, found {head[:len(MAGIC)]!r}")
    if len(head) < _PREFIX.size:
        _fail(path, f"truncated: {size} bytes is shorter than the {_PREFIX.size}-byte prefix")
    _, version, flags, header_len = _PREFIX.unpack(head)
    if version != FORMAT_VERSION:
        if version > FORMAT_VERSION:
            _fail(path, f"format version {version} is newer than this gpudl reads "
                        f"(version {FORMAT_VERSION}); upgrade gpudl")
        _fail(path, f"unknown format version {version}: expected {FORMAT_VERSION}")
    if flags != 0:
        _fail(path, f"unknown flags {flags:#x}: expected 0")
    if header_len > MAX_HEADER_BYTES:
        _fail(path, f"header length {header_len} exceeds the cap of {MAX_HEADER_BYTES} bytes")
    data_start = _PREFIX.size + header_len
    if data_start + _DIGEST_BYTES > size:
        _fail(path, f"header length {header_len} runs past the end of the file "
                    f"({size} bytes; truncated?)")
    if data_start % ALIGNMENT:
        _fail(path, f"header length {header_len} leaves the data section at byte {data_start},"
                    f" expected a multiple of {ALIGNMENT}")
    raw = _read_exact(f, path, header_len)
    header = _parse_json(raw, path)
    _check_header(header, path)
    expected = data_start + header["data_nbytes"] + _DIGEST_BYTES
    if size < expected:
        _fail(path, f"truncated: header promises {header['data_nbytes']} data bytes, so "
                    f"{expected} bytes in all, but the file has {size}")
    if size > expected:
        _fail(path, f"{size - expected} trailing bytes after the checksum: expected "
                    f"{expected} bytes in all, the file has {size}")
    return header, data_start, size


def _parse_json(raw, path):
    def no_constant(name):
        raise ValueError(f"non-finite number {name} is not allowed")

    def no_duplicates(pairs):
        obj = {}
        for key, value in pairs:
            if key in obj:
                raise ValueError(f"duplicate key {key!r}")
            obj[key] = value
        return obj

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        _fail(path, f"header is not valid UTF-8: {exc}")
    try:
        return json.loads(text, parse_constant=no_constant, object_pairs_hook=no_duplicates)
    except RecursionError:
        _fail(path, "header JSON is nested too deeply")
    except ValueError as exc:  # JSONDecodeError and the hooks' errors
        _fail(path, f"header is not valid JSON: {exc}")


def _is_int(x):
    return type(x) is int


def _check_header(header, path):
    if not isinstance(header, dict):
        _fail(path, f"header JSON must be an object, found {type(header).__name__}")
    keys = set(header)
    if keys != _HEADER_KEYS:
        missing, extra = sorted(_HEADER_KEYS - keys), sorted(keys - _HEADER_KEYS)
        _fail(path, f"header keys must be {sorted(_HEADER_KEYS)}: missing {missing}, "
                    f"unexpected {extra}")
    if not isinstance(header["meta"], dict):
        _fail(path, f"'meta' must be a JSON object, found {type(header['meta']).__name__}")
    data_nbytes = header["data_nbytes"]
    if not _is_int(data_nbytes) or data_nbytes < 0:
        _fail(path, f"'data_nbytes' must be a non-negative integer, found {data_nbytes!r}")
    table = header["tensors"]
    if not isinstance(table, list):
        _fail(path, f"'tensors' must be a JSON array, found {type(table).__name__}")
    names = set()
    for i, entry in enumerate(table):
        where = f"tensor #{i}"
        if not isinstance(entry, dict):
            _fail(path, f"{where} must be an object, found {type(entry).__name__}")
        if set(entry) != _TENSOR_KEYS:
            missing, extra = sorted(_TENSOR_KEYS - set(entry)), sorted(set(entry) - _TENSOR_KEYS)
            _fail(path, f"{where} keys must be {sorted(_TENSOR_KEYS)}: missing {missing}, "
                        f"unexpected {extra}")
        name = entry["name"]
        if not isinstance(name, str) or not name:
            _fail(path, f"{where} name must be a non-empty string, found {name!r}")
        where = f"tensor #{i} {name!r}"
        if name in names:
            _fail(path, f"duplicate tensor name {name!r}")
        names.add(name)
        dtype = entry["dtype"]
        if not isinstance(dtype, str) or dtype not in DTYPES:
            _fail(path, f"{where} has unsupported dtype {dtype!r}: expected one of "
                        f"{', '.join(DTYPES)}")
        shape = entry["shape"]
        if not isinstance(shape, list) or len(shape) > MAX_NDIM or \
                not all(_is_int(d) and d >= 0 for d in shape):
            _fail(path, f"{where} shape must be a list of at most {MAX_NDIM} non-negative "
                        f"integers, found {shape!r}")
        # numpy refuses shapes whose element count overflows intp even when a dim is 0
        if math.prod(max(d, 1) for d in shape) * DTYPES[dtype].itemsize > _MAX_INTP:
            _fail(path, f"{where} shape {shape} is too large for an array on this platform")
        offset, nbytes = entry["offset"], entry["nbytes"]
        for key, value in (("offset", offset), ("nbytes", nbytes)):
            if not _is_int(value) or value < 0:
                _fail(path, f"{where} {key} must be a non-negative integer, found {value!r}")
        expected = math.prod(shape) * DTYPES[dtype].itemsize
        if nbytes != expected:
            _fail(path, f"{where} nbytes is {nbytes}, but shape {shape} of {dtype} "
                        f"needs {expected}")
        if offset % ALIGNMENT:
            _fail(path, f"{where} offset {offset} is not a multiple of {ALIGNMENT}")
        if offset + nbytes > data_nbytes:
            _fail(path, f"{where} spans bytes {offset}..{offset + nbytes} of the data section, "
                        f"past its end at {data_nbytes}")
    end, prev = 0, None
    for entry in sorted(table, key=lambda e: (e["offset"], e["nbytes"])):
        if entry["offset"] < end:
            _fail(path, f"tensor {entry['name']!r} at offset {entry['offset']} overlaps "
                        f"tensor {prev!r}, which ends at {end}")
        end, prev = entry["offset"] + entry["nbytes"], entry["name"]


def _empty(entry, path):
    try:
        return np.empty(entry["shape"], dtype=DTYPES[entry["dtype"]])
    except (ValueError, MemoryError) as exc:
        _fail(path, f"tensor {entry['name']!r} of shape {entry['shape']} cannot be made: {exc}")


def _read_exact(f, path, n):
    data = f.read(n)
    if len(data) != n:
        _fail(path, f"truncated: wanted {n} bytes at offset {f.tell() - len(data)}, "
                    f"got {len(data)}")
    return data


def _read_into(f, path, buf):
    got = 0
    while got < len(buf):
        n = f.readinto(buf[got:])
        if not n:
            _fail(path, f"truncated: file ended {len(buf) - got} bytes before the end of "
                        f"a tensor")
        got += n


def _hash_range(f, path, digest, n):
    while n > 0:
        chunk = _read_exact(f, path, min(n, _CHUNK))
        digest.update(chunk)
        n -= len(chunk)


def _check_digest(f, path, digest):
    stored = _read_exact(f, path, _DIGEST_BYTES)
    if stored != digest.digest():
        _fail(path, f"checksum mismatch: stored SHA-256 {stored.hex()[:16]}..., computed "
                    f"{digest.hexdigest()[:16]}...; the file was modified or damaged")
