"""gpudl.io: the model-file container, its validation of hostile files, and atomic saves."""

import ast
import hashlib
import json
import os
import pickle
import random
import signal
import stat
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import gpudl.io as gio
from gpudl.errors import ModelFileError
from gpudl.io import MAGIC, inspect_file, load_file, save_file

# ----------------------------------------------------------------------------- helpers


def craft(header, data=b"", *, magic=MAGIC, version=1, flags=0, header_len=None, sign=True,
          tail=b""):
    """Bytes of a file laid out like save_file's, with any part replaced by the caller.

    ``header`` is a dict (dumped as JSON) or raw bytes; ``sign`` appends a correct SHA-256
    so that the checks past the checksum are reached.
    """
    raw = header if isinstance(header, bytes) else \
        json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-(24 + len(raw)) % 64)
    hl = len(raw) if header_len is None else header_len
    body = struct.pack("<8sIIQ", magic, version, flags, hl) + raw + data
    digest = hashlib.sha256(body).digest() if sign else bytes(32)
    return body + digest + tail


def tensor(name="w", dtype="float32", shape=(2,), offset=0, nbytes=8):
    return {"name": name, "dtype": dtype, "shape": list(shape), "offset": offset,
            "nbytes": nbytes}


def header(tensors=None, meta=None, data_nbytes=8, **extra):
    h = {"meta": {} if meta is None else meta,
         "tensors": [tensor()] if tensors is None else tensors,
         "data_nbytes": data_nbytes}
    h.update(extra)
    return h


DATA8 = np.array([1.5, -2.0], dtype="<f4").tobytes()


def resign(blob):
    """Replace the trailer with the SHA-256 of everything before it."""
    return blob[:-32] + hashlib.sha256(blob[:-32]).digest()


# ------------------------------------------------------------------------- round trips

DTYPE_NAMES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
               "uint64", "float16", "float32", "float64"]


def sample(dtype, shape, rng):
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype.startswith(("int", "uint")):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_round_trip_every_dtype_and_shape(tmp_path, dtype):
    rng = np.random.default_rng(0)
    shapes = [(), (0,), (3, 0, 2), (1,), (7,), (3, 5), (2, 3, 4, 1, 2)]
    arrays = {f"{dtype}_{i}": sample(dtype, s, rng) for i, s in enumerate(shapes)}
    path = tmp_path / "m.gdl"
    save_file(path, arrays, {"dtype": dtype})
    meta, out = load_file(path)
    assert meta == {"dtype": dtype}
    assert list(out) == list(arrays)
    for name, arr in arrays.items():
        got = out[name]
        assert type(got) is np.ndarray
        assert got.dtype == np.dtype(dtype) and got.shape == arr.shape
        assert np.array_equal(got, arr)
        assert got.flags.writeable and got.flags.c_contiguous and got.dtype.isnative


def test_big_endian_and_non_contiguous_are_stored_canonically(tmp_path):
    base = np.arange(60, dtype=">f8").reshape(3, 4, 5)
    arrays = {
        "big_endian": np.arange(10, dtype=">i4"),
        "transposed": base.transpose(2, 0, 1),
        "strided": base[:, ::2, 1::3],
        "fortran": np.asfortranarray(np.arange(12, dtype="<u2").reshape(3, 4)),
        "negative_stride": np.arange(8, dtype="f4")[::-1],
        "broadcast": np.broadcast_to(np.float32(3.0), (4, 4)),
    }
    path = tmp_path / "m.gdl"
    save_file(path, arrays, {})
    _, out = load_file(path)
    for name, arr in arrays.items():
        assert np.array_equal(out[name], arr), name
        assert out[name].dtype == arr.dtype.newbyteorder("=")
    # canonical: the same values saved from a plain native C-order array give identical bytes
    plain = {k: np.array(v, dtype=v.dtype.newbyteorder("="), order="C") for k, v in arrays.items()}
    save_file(tmp_path / "plain.gdl", plain, {})
    assert (tmp_path / "plain.gdl").read_bytes() == path.read_bytes()
    # data offsets are 64-byte aligned in the file, not just in the section
    info = inspect_file(path)
    raw = path.read_bytes()
    data_start = len(raw) - 32 - info["data_nbytes"]
    assert data_start % 64 == 0
    for entry in info["tensors"]:
        assert entry["offset"] % 64 == 0
        chunk = raw[data_start + entry["offset"]:data_start + entry["offset"] + entry["nbytes"]]
        assert chunk == np.ascontiguousarray(arrays[entry["name"]]).astype(
            np.dtype(entry["dtype"]).newbyteorder("<")).tobytes()


def test_unicode_names_and_meta_round_trip(tmp_path):
    arrays = {"dense/W": np.ones((2, 2), "f4"), "权重 ü ✓": np.zeros(3, "f8"),
              "emoji 🎉": np.arange(3, dtype="i8"), " spaces and \"quotes\"\n": np.ones(1, "u1"),
              "lone surrogate \ud800": np.ones(1, "i1")}
    meta = {
        "architecture": {"class": "Sequential", "layers": [{"class": "Dense", "units": 10,
                                                             "activation": "relu"}]},
        "optimizer": {"name": "Adam", "learning_rate": 1e-3, "beta_1": 0.9, "amsgrad": False},
        "position": {"epoch": 3, "step": 2**40, "done": None},
        "rng": {"state": [2**64 - 1, 0, 123456789], "bit_generator": "PCG64"},
        "text": "naïve – ∑ 🎉", "empty": {}, "list": [], "neg": -0.0, "tiny": 5e-324,
        "big": 1.7976931348623157e308,
    }
    path = tmp_path / "ünïcode módel.gdl"
    save_file(path, arrays, meta)
    got_meta, out = load_file(path)
    assert got_meta == meta
    assert json.dumps(got_meta) == json.dumps(meta)  # -0.0 and float precision preserved
    assert list(out) == list(arrays)
    for name in arrays:
        assert np.array_equal(out[name], arrays[name])


def test_empty_file_contents_round_trip(tmp_path):
    path = tmp_path / "m.gdl"
    save_file(path, {}, {})
    assert load_file(path) == ({}, {})
    assert inspect_file(path) == {"format_version": 1, "meta": {}, "tensors": [],
                                  "data_nbytes": 0}


def test_loaded_arrays_are_independent_copies(tmp_path):
    path = tmp_path / "m.gdl"
    save_file(path, {"a": np.arange(4.0), "b": np.arange(3)}, {})
    _, out = load_file(path)
    out["a"][0] = 99.0
    assert not np.shares_memory(out["a"], out["b"])
    os.remove(path)  # nothing still refers to the file
    assert out["a"][0] == 99.0 and out["b"].sum() == 3


def test_device_arrays_are_fetched_with_get(tmp_path):
    class FakeDeviceArray:  # what a CuPy array offers: .get() -> numpy
        def __init__(self, host):
            self.host, self.calls = host, 0

        def get(self):
            self.calls += 1
            return self.host

    dev = FakeDeviceArray(np.arange(6, dtype="f4").reshape(2, 3))
    save_file(tmp_path / "m.gdl", {"w": dev}, {})
    assert dev.calls == 1
    assert np.array_equal(load_file(tmp_path / "m.gdl")[1]["w"], dev.host)


def test_inspect_file_returns_header_without_data(tmp_path):
    path = tmp_path / "m.gdl"
    save_file(path, {"W": np.zeros((3, 4), "f4"), "b": np.zeros(4, "f8")}, {"epoch": 2})
    info = inspect_file(path)
    assert info["meta"] == {"epoch": 2}
    assert info["tensors"] == [
        {"name": "W", "dtype": "float32", "shape": [3, 4], "offset": 0, "nbytes": 48},
        {"name": "b", "dtype": "float64", "shape": [4], "offset": 64, "nbytes": 32},
    ]
    assert info["data_nbytes"] == 96


def test_crafted_helper_matches_the_writer(tmp_path):
    """The corrupt-file table below is built with craft(); it must agree with save_file."""
    path = tmp_path / "m.gdl"
    save_file(path, {"w": np.array([1.5, -2.0], "f4")}, {})
    blob = path.read_bytes()
    path.write_bytes(craft(header(), DATA8))
    meta, out = load_file(path)
    assert meta == {} and np.array_equal(out["w"], [1.5, -2.0])
    assert blob == craft(header(), DATA8)


# ---------------------------------------------------------------- corrupt-file table

DEEP = b'{"meta": {"x": ' + b"[" * 100_000 + b"]" * 100_000 + b'}, "tensors": [], ' \
       b'"data_nbytes": 0}'

DIRECTORY = None  # a CORRUPT entry whose path is a folder instead of a file

CORRUPT = [
    # (id, file bytes, expected message regex)
    ("directory", DIRECTORY, r"is a directory, not a gpudl model file"),
    ("empty", b"", r"empty \(0 bytes\)"),
    ("bad_magic", b"PK\x03\x04" + bytes(100), r"wrong magic: expected b'GPUDL\\x00MF', found b'PK"),
    ("npy_file", b"\x93NUMPY\x01\x00" + bytes(100), r"wrong magic"),
    ("text_file", b"hello", r"wrong magic"),
    ("magic_only", b"GPUDL\x00", r"truncated: 6 bytes is shorter than the 24-byte prefix"),
    ("future_version", craft(header(), DATA8, version=2),
     r"format version 2 is newer than this gpudl reads \(version 1\)"),
    ("version_zero", craft(header(), DATA8, version=0), r"unknown format version 0"),
    ("flags", craft(header(), DATA8, flags=4), r"unknown flags 0x4: expected 0"),
    ("header_len_past_end", craft(header(), DATA8, header_len=10_000),
     r"header length 10000 runs past the end of the file"),
    ("header_len_over_cap", craft(header(), DATA8, header_len=2**63),
     r"header length 9223372036854775808 exceeds the cap of 67108864 bytes"),
    ("header_len_unaligned", craft(header(), DATA8, header_len=8),
     r"data section at byte 32, expected a multiple of 64"),
    ("invalid_json", craft(b'{"meta": {}, "tensors": [', DATA8), r"header is not valid JSON"),
    ("invalid_utf8", craft(b'{"meta": {"\xff": 1}}', DATA8), r"header is not valid UTF-8"),
    ("json_not_object", craft(b"[1, 2, 3]", DATA8), r"header JSON must be an object, found list"),
    ("json_string", craft(b'"model"', DATA8), r"header JSON must be an object, found str"),
    ("meta_not_object", craft(header(meta=[1, 2]), DATA8),
     r"'meta' must be a JSON object, found list"),
    ("nan_in_meta", craft(header(meta={"lr": float("nan")}), DATA8),
     r"non-finite number NaN is not allowed"),
    ("infinity_in_meta", craft(header(meta={"lr": float("-inf")}), DATA8),
     r"non-finite number -Infinity"),
    ("duplicate_json_key", craft(b'{"meta": {"a": 1, "a": 2}, "tensors": [], "data_nbytes": 0}'),
     r"duplicate key 'a'"),
    ("deeply_nested", craft(DEEP), r"nested too deeply"),
    ("missing_key", craft(b'{"meta": {}, "data_nbytes": 8}', DATA8),
     r"missing \['tensors'\], unexpected \[\]"),
    ("unknown_key", craft(header(code="__import__('os')"), DATA8), r"unexpected \['code'\]"),
    ("tensors_not_list", craft(header(tensors={"w": 1}), DATA8),
     r"'tensors' must be a JSON array, found dict"),
    ("data_nbytes_negative", craft(header(data_nbytes=-8), DATA8),
     r"'data_nbytes' must be a non-negative integer, found -8"),
    ("data_nbytes_bool", craft(header(data_nbytes=True), DATA8),
     r"'data_nbytes' must be a non-negative integer, found True"),
    ("tensor_not_object", craft(header(tensors=[[1]]), DATA8),
     r"tensor #0 must be an object, found list"),
    ("tensor_extra_key", craft(header(tensors=[{**tensor(), "reduce": "os.system"}]), DATA8),
     r"tensor #0 keys must be .*unexpected \['reduce'\]"),
    ("offset_past_end", craft(header(tensors=[tensor(offset=64)]), DATA8),
     r"tensor #0 'w' spans bytes 64\.\.72 of the data section, past its end at 8"),
    ("nbytes_past_end", craft(header(tensors=[tensor(shape=(4,), nbytes=16)]), DATA8),
     r"spans bytes 0\.\.16 of the data section, past its end at 8"),
    ("negative_offset", craft(header(tensors=[tensor(offset=-64)]), DATA8),
     r"offset must be a non-negative integer, found -64"),
    ("float_offset", craft(header(tensors=[tensor(offset=0.0)]), DATA8),
     r"offset must be a non-negative integer, found 0\.0"),
    ("unaligned_offset",
     craft(header(tensors=[tensor(offset=4)], data_nbytes=12), DATA8 + bytes(4)),
     r"offset 4 is not a multiple of 64"),
    ("overlapping", craft(header(tensors=[tensor(), tensor(name="v")]), DATA8),
     r"tensor '(v|w)' at offset 0 overlaps tensor '(v|w)', which ends at 8"),
    ("overlapping_later",
     craft(header(tensors=[tensor(shape=(20,), nbytes=80), tensor(name="v", offset=64)],
                  data_nbytes=128), bytes(128)),
     r"tensor 'v' at offset 64 overlaps tensor 'w', which ends at 80"),
    ("shape_nbytes_mismatch", craft(header(tensors=[tensor(shape=(3,))]), DATA8),
     r"nbytes is 8, but shape \[3\] of float32 needs 12"),
    ("negative_dim", craft(header(tensors=[tensor(shape=(-2,), nbytes=8)]), DATA8),
     r"shape must be a list of at most 32 non-negative integers, found \[-2\]"),
    ("shape_not_list", craft(header(tensors=[{**tensor(), "shape": "2"}]), DATA8),
     r"shape must be a list .*found '2'"),
    ("bool_dim", craft(header(tensors=[{**tensor(), "shape": [True, 2]}]), DATA8),
     r"found \[True, 2\]"),
    ("too_many_dims", craft(header(tensors=[tensor(shape=(1,) * 40 + (2,))]), DATA8),
     r"at most 32 non-negative integers"),
    ("huge_dims_zero_size", craft(header(tensors=[tensor(shape=(0, 2**62, 2**62), nbytes=0)]),
                                  DATA8),
     r"shape \[0, 4611686018427387904, 4611686018427387904\] is too large"),
    ("dtype_object", craft(header(tensors=[tensor(dtype="object")]), DATA8),
     r"unsupported dtype 'object': expected one of bool, int8"),
    ("dtype_O", craft(header(tensors=[tensor(dtype="O")]), DATA8), r"unsupported dtype 'O'"),
    ("dtype_typestr", craft(header(tensors=[tensor(dtype="<f4")]), DATA8),
     r"unsupported dtype '<f4'"),
    ("dtype_structured", craft(header(tensors=[tensor(dtype=[["a", "O"]])]), DATA8),
     r"unsupported dtype \[\['a', 'O'\]\]"),
    ("dtype_complex", craft(header(tensors=[tensor(dtype="complex64", nbytes=16)]), DATA8),
     r"unsupported dtype 'complex64'"),
    ("duplicate_names",
     craft(header(tensors=[tensor(shape=(1,), nbytes=4), tensor(shape=(1,), nbytes=4,
                                                                offset=64)],
                  data_nbytes=68), bytes(68)),
     r"duplicate tensor name 'w'"),
    ("empty_name", craft(header(tensors=[tensor(name="")]), DATA8),
     r"tensor #0 name must be a non-empty string, found ''"),
    ("name_not_string", craft(header(tensors=[tensor(name=7)]), DATA8),
     r"tensor #0 name must be a non-empty string, found 7"),
    ("truncated_data", craft(header([tensor(shape=(64,), nbytes=256)], data_nbytes=256),
                             bytes(256))[:-100],
     r"truncated: header promises 256 data bytes, so 480 bytes in all, but the file has 380"),
    ("truncated_trailer", craft(header(), DATA8)[:-1],
     r"truncated: header promises 8 data bytes, so 168 bytes in all, but the file has 167"),
    ("truncated_in_header", craft(header(), DATA8)[:100],
     r"header length 104 runs past the end of the file \(100 bytes; truncated\?\)"),
    ("checksum_zeroed", craft(header(), DATA8, sign=False), r"checksum mismatch"),
    ("data_flipped", (lambda b: b[:-40] + bytes([b[-40] ^ 1]) + b[-39:])(craft(header(), DATA8)),
     r"checksum mismatch: stored SHA-256 [0-9a-f]{16}\.\.\., computed"),
    ("trailing_garbage", craft(header(), DATA8, tail=b"junk"),
     r"4 trailing bytes after the checksum: expected 168 bytes in all, the file has 172"),
]


@pytest.mark.parametrize("blob, message", [c[1:] for c in CORRUPT], ids=[c[0] for c in CORRUPT])
@pytest.mark.parametrize("reader", [load_file, inspect_file], ids=["load", "inspect"])
def test_corrupt_files_are_refused_with_a_clear_message(tmp_path, reader, blob, message):
    path = tmp_path / "bad.gdl"
    if blob is DIRECTORY:
        path.mkdir()
    else:
        path.write_bytes(blob)
    with pytest.raises(ModelFileError, match=message) as excinfo:
        reader(path)
    assert str(path) in str(excinfo.value)  # the message names the file
    assert isinstance(excinfo.value, ValueError)


def test_corrupt_table_is_large_and_distinct():
    assert len(CORRUPT) >= 15
    assert len({c[0] for c in CORRUPT}) == len(CORRUPT)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_file(tmp_path / "nope.gdl")
    with pytest.raises(FileNotFoundError):
        inspect_file(tmp_path / "nope.gdl")


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_device_file_is_refused():
    with pytest.raises(ModelFileError, match=r"empty"):
        load_file("/dev/null")


def test_object_dtype_header_is_refused_and_never_unpickled(tmp_path, monkeypatch):
    # a payload that would run code if anything unpickled the data section
    payload = pickle.dumps(object())
    nbytes = len(payload)
    blob = craft(header(tensors=[tensor(dtype="O", shape=(1,), nbytes=8)], data_nbytes=nbytes),
                 payload)
    path = tmp_path / "evil.gdl"
    path.write_bytes(blob)
    _forbid_deserializers(monkeypatch)
    with pytest.raises(ModelFileError, match=r"unsupported dtype 'O'"):
        load_file(path)
    with pytest.raises(TypeError, match=r"dtype object"):
        save_file(tmp_path / "o.gdl", {"o": np.array([object()], dtype="O")}, {})


# ------------------------------------------------------------------------- no pickle


def _forbid_deserializers(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a deserializer that can run code was called")

    for module, name in [(pickle, "loads"), (pickle, "load"), (pickle, "Unpickler"),
                         (np, "load"), (np.lib.format, "read_array"), (np, "fromfile")]:
        monkeypatch.setattr(module, name, forbidden)
    monkeypatch.setattr("builtins.eval", forbidden)
    monkeypatch.setattr("builtins.exec", forbidden)


def test_save_and_load_never_touch_pickle_or_eval(tmp_path, monkeypatch):
    _forbid_deserializers(monkeypatch)
    path = tmp_path / "m.gdl"
    save_file(path, {"w": np.arange(5.0)}, {"a": 1})
    meta, out = load_file(path)
    assert meta == {"a": 1} and np.array_equal(out["w"], np.arange(5.0))
    assert inspect_file(path)["meta"] == {"a": 1}


def test_io_source_has_no_code_running_deserializer():
    tree = ast.parse(open(gio.__file__, encoding="utf-8").read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in {"eval", "exec", "compile", "__import__"}
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id in {"np", "numpy"}:
                assert node.attr not in {"load", "fromfile", "memmap"}, node.attr
        elif isinstance(node, ast.keyword):
            assert node.arg != "allow_pickle"
    assert not imported & {"pickle", "cPickle", "marshal", "shelve", "dill", "importlib"}


# ------------------------------------------------------------------------------ fuzz


def _time_limit(seconds):
    """Turn a hang into a TimeoutError (POSIX main thread); a no-op elsewhere."""
    class Guard:
        def __enter__(self):
            self.armed = hasattr(signal, "setitimer") and \
                threading.current_thread() is threading.main_thread()
            if self.armed:
                def on_alarm(signum, frame):
                    raise TimeoutError(f"fuzz case ran past {seconds} s")
                self.old = signal.signal(signal.SIGALRM, on_alarm)
                signal.setitimer(signal.ITIMER_REAL, seconds)

        def __exit__(self, *exc):
            if self.armed:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, self.old)
    return Guard()


def _mutate_structure(blob, rng):
    """Rewrite one field of the JSON header with a hostile value; keep the file well signed."""
    hl = struct.unpack_from("<Q", blob, 16)[0]
    head = json.loads(blob[24:24 + hl])
    data = blob[24 + hl:-32]
    hostile = [-1, 0, 1, 3, 63, 64, 2**31, 2**63, 2**64, -2**63, 1.5, True, None, "", "O",
               "object", "float32", [], [0], [-1], [2**62, 2**62], {}, [[1]], "x" * 3]
    entry = rng.choice(head["tensors"]) if head["tensors"] else head
    key = rng.choice(sorted(entry))
    entry[key] = rng.choice(hostile)
    if rng.random() < 0.3:
        head[rng.choice(["meta", "tensors", "data_nbytes"])] = rng.choice(hostile)
    return craft(json.dumps(head).encode(), data)


def _mutate(blob, rng):
    kind = rng.randrange(7)
    b = bytearray(blob)
    if kind == 0:  # flip one to eight random bits anywhere
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif kind == 1:  # insert a run of random bytes
        at = rng.randrange(len(b) + 1)
        b[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif kind == 2:  # delete a run of bytes
        at = rng.randrange(len(b))
        del b[at:at + rng.randint(1, 16)]
    elif kind == 3:  # truncate
        del b[rng.randrange(len(b)):]
    elif kind == 4:  # flip a byte in the prefix or header, then re-sign so parsing is reached
        b[rng.randrange(min(len(b) - 32, 24 + 200))] ^= 1 << rng.randrange(8)
        return resign(bytes(b))
    elif kind == 5:  # overwrite a data byte and re-sign: must load, with a changed value
        b[-33 - rng.randrange(64)] = rng.randrange(256)
        return resign(bytes(b))
    else:
        return _mutate_structure(blob, rng)
    return bytes(b)


def test_fuzzed_files_load_or_raise_model_file_error(tmp_path):
    rng = random.Random(1234)
    path = tmp_path / "m.gdl"
    arrays = {"W": np.arange(12, dtype="f4").reshape(3, 4), "b": np.arange(3, dtype="i8"),
              "flag": np.array(True), "empty": np.zeros((0, 2), "f2")}
    save_file(path, arrays, {"epoch": 1, "opt": {"lr": 0.01}})
    good = path.read_bytes()
    outcomes = {"loaded": 0, "refused": 0}
    start = time.perf_counter()
    with _time_limit(60):
        for i in range(2000):
            blob = _mutate(good, rng)
            with open(path, "r+b") as f:  # rewriting in place: ext4 syncs on truncate-to-0
                f.write(blob)
                f.truncate()
            reader = load_file if i % 4 else inspect_file
            try:
                result = reader(path)
            except ModelFileError as exc:
                assert str(path) in str(exc)
                outcomes["refused"] += 1
            except Exception as exc:  # noqa: BLE001 - the point of the test
                pytest.fail(f"case {i}: {type(exc).__name__}: {exc} (blob {blob[:80]!r}...)")
            else:
                outcomes["loaded"] += 1
                if reader is load_file:
                    meta, out = result
                    assert isinstance(meta, dict)
                    for arr in out.values():
                        assert isinstance(arr, np.ndarray) and arr.flags.writeable
    elapsed = time.perf_counter() - start
    assert outcomes["refused"] > 1000 and outcomes["loaded"] > 0, outcomes
    assert elapsed < 30, f"fuzzing took {elapsed:.1f} s"


# ------------------------------------------------------------------- atomic saves


def test_save_replaces_atomically_and_leaves_no_temp(tmp_path):
    path = tmp_path / "m.gdl"
    save_file(path, {"w": np.zeros(3)}, {"v": 1})
    save_file(path, {"w": np.ones(3)}, {"v": 2})
    assert os.listdir(tmp_path) == ["m.gdl"]
    meta, out = load_file(path)
    assert meta == {"v": 2} and np.array_equal(out["w"], np.ones(3))


def test_save_fsyncs_file_and_folder(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    save_file(tmp_path / "m.gdl", {"w": np.zeros(3)}, {})
    assert synced == [False, True]  # the temp file's bytes first, then the rename


@pytest.mark.parametrize("failing", ["fsync", "replace", "interrupt"])
def test_failure_during_save_keeps_old_file_and_removes_temp(tmp_path, monkeypatch, failing):
    path = tmp_path / "m.gdl"
    save_file(path, {"w": np.zeros(3)}, {"v": "old"})
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    if failing == "interrupt":  # Ctrl-C while the temp file is open
        def interrupt(fd):
            raise KeyboardInterrupt

        monkeypatch.setattr(os, "fsync", interrupt)
        with pytest.raises(KeyboardInterrupt):
            save_file(path, {"w": np.ones(3)}, {"v": "new"})
    else:
        monkeypatch.setattr(os, failing, boom)
        with pytest.raises(OSError, match="No space left"):
            save_file(path, {"w": np.ones(3)}, {"v": "new"})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.gdl"]


def test_write_error_midway_removes_temp(tmp_path, monkeypatch):
    path = tmp_path / "m.gdl"
    save_file(path, {"w": np.zeros(3)}, {"v": "old"})
    before = path.read_bytes()
    real_fdopen = os.fdopen

    class FailingFile:
        def __init__(self, f):
            self.f, self.writes = f, 0

        def write(self, buf):
            self.writes += 1
            if self.writes == 3:
                raise OSError(5, "Input/output error")
            return self.f.write(buf)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(os, "fdopen", lambda *a, **k: FailingFile(real_fdopen(*a, **k)))
    with pytest.raises(OSError, match="Input/output error"):
        save_file(path, {"a": np.ones(100), "b": np.ones(100)}, {"v": "new"})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.gdl"]


@pytest.mark.parametrize("arrays, meta, error, message", [
    ({"o": np.array([None], dtype=object)}, {}, TypeError, r"array 'o' has dtype object"),
    ({"c": np.zeros(2, "c8")}, {}, TypeError, r"array 'c' has dtype complex64"),
    ({"s": np.array(["abc"])}, {}, TypeError, r"array 's' has dtype <U3"),
    ({"t": np.zeros(2, "M8[s]")}, {}, TypeError, r"dtype datetime64"),
    ({"r": np.zeros(2, [("a", "f4")])}, {}, TypeError, r"dtype \[\('a', '<f4'\)\]"),
    ({3: np.zeros(2)}, {}, TypeError, r"array names must be non-empty str, got 3"),
    ({"": np.zeros(2)}, {}, TypeError, r"non-empty str, got ''"),
    ({"w": np.zeros(2)}, {"lr": float("nan")}, ValueError,
     r"finite JSON \(NaN and Infinity are refused\)"),
    ({"w": np.zeros(2)}, {"lr": float("inf")}, ValueError,
     r"finite JSON \(NaN and Infinity are refused\)"),
    ({"w": np.zeros(2)}, {"f": object()}, TypeError, r"only JSON types"),
    ({"w": np.zeros(2)}, {"a": np.float32(1)}, TypeError, r"only JSON types"),
    ({"w": np.zeros(2)}, {"loop": (lambda d: d.setdefault("me", d))({})}, ValueError,
     r"Circular reference"),
    ({"w": np.zeros(2)}, [1], TypeError, r"meta must be a dict, got list"),
    ([np.zeros(2)], {}, TypeError, r"arrays must be a dict"),
])
def test_unstorable_input_is_refused_before_touching_the_file(tmp_path, arrays, meta, error,
                                                              message):
    path = tmp_path / "m.gdl"
    save_file(path, {"w": np.zeros(3)}, {"v": "old"})
    before = path.read_bytes()
    with pytest.raises(error, match=message):
        save_file(path, arrays, meta)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.gdl"]


def test_header_over_cap_is_refused_on_save(tmp_path, monkeypatch):
    monkeypatch.setattr(gio, "MAX_HEADER_BYTES", 256)
    with pytest.raises(ValueError, match=r"over the 256-byte cap"):
        save_file(tmp_path / "m.gdl", {"w": np.zeros(2)}, {"notes": "x" * 300})
    assert os.listdir(tmp_path) == []


def test_stale_temps_of_the_same_target_are_swept(tmp_path):
    path = tmp_path / "m.gdl"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout.strip()
        stale = [f".m.gdl.tmp-{dead}-abc", ".m.gdl.tmp-junk", f".m.gdl.tmp-{os.getpid()}-x"]
        kept = [f".other.gdl.tmp-{dead}-abc", "m.gdl.tmp-1-x", ".m.gdlx.tmp-1-x",
                f".m.gdl.tmp-{sleeper.pid}-live"]  # the last: a save still running elsewhere
        for name in stale + kept:
            (tmp_path / name).write_bytes(b"partial")
        save_file(path, {"w": np.zeros(2)}, {})
        assert sorted(os.listdir(tmp_path)) == sorted(kept + ["m.gdl"])
    finally:
        sleeper.kill()
        sleeper.wait()
    save_file(path, {"w": np.zeros(2)}, {})  # its writer is gone now
    assert f".m.gdl.tmp-{sleeper.pid}-live" not in os.listdir(tmp_path)


@pytest.mark.skipif(not hasattr(os, "symlink") or os.name != "posix", reason="POSIX symlinks")
def test_save_through_a_symlink_updates_its_target(tmp_path):
    (tmp_path / "runs").mkdir()
    target = tmp_path / "runs" / "best.gdl"
    link = tmp_path / "model.gdl"
    save_file(target, {"w": np.zeros(2)}, {"v": 1})
    link.symlink_to(target)
    save_file(link, {"w": np.ones(2)}, {"v": 2})
    assert link.is_symlink()
    assert load_file(target)[0] == {"v": 2}
    assert sorted(os.listdir(tmp_path / "runs")) == ["best.gdl"]


def test_save_accepts_str_and_pathlike(tmp_path):
    save_file(str(tmp_path / "a.gdl"), {"w": np.zeros(1)}, {})
    save_file(tmp_path / "b.gdl", {"w": np.zeros(1)}, {})
    assert load_file(str(tmp_path / "b.gdl"))[1]["w"].shape == (1,)
