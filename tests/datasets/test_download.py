"""Downloads against a real HTTP server on 127.0.0.1 serving the shared MNIST test files."""
import functools
import gzip
import hashlib
import http.server
import os
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from gpudl.datasets import _cache, mnist
from gpudl.errors import DatasetError

MNIST_DIR = (Path(__file__).parents[2] / "../shared/datasets/mnist").resolve()
TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

pytestmark = pytest.mark.skipif(
    not all((MNIST_DIR / name).is_file() for name in TEST_FILES),
    reason=f"shared MNIST test files not found in {MNIST_DIR}",
)


@functools.lru_cache(maxsize=None)
def _altered(name: str) -> bytes:
    """A well-formed gzip whose content differs from the original file's by one byte."""
    raw = bytearray(gzip.decompress((MNIST_DIR / name).read_bytes()))
    raw[len(raw) // 2] ^= 0x01
    return gzip.compress(bytes(raw), compresslevel=1)


def _garbled(data: bytes) -> bytes:
    garbled = bytearray(data)
    middle = len(garbled) // 2
    garbled[middle:middle + 64] = bytes(64)
    return bytes(garbled)


class _Handler(http.server.BaseHTTPRequestHandler):
    """GET /<mode>/<file name>; the mode says how the file is (mis)served."""

    timeout = 10  # a stuck client cannot hold the server loop for long

    def do_GET(self):
        self.server.requests.append(self.path)
        _, mode, name = self.path.split("/", 2)
        source = MNIST_DIR / name
        if mode == "missing" or name not in TEST_FILES or not source.is_file():
            self.send_error(404, "File not found")
            return
        data = source.read_bytes()
        length = len(data)
        if mode == "altered":
            data = _altered(name)
            length = len(data)
        elif mode == "garbled":
            data = _garbled(data)
        elif mode == "truncated":  # promises the whole file, then the connection drops
            data = data[: len(data) // 2]
        elif mode == "short":  # an honest Content-Length for a file that was cut short
            data = data[: len(data) // 2]
            length = len(data)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def base(server, monkeypatch):
    """The server's base URL, with no proxy in the way and a fresh request log."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(_cache, "TIMEOUT", 10.0)
    server.requests.clear()
    host, port = server.server_address
    return f"http://{host}:{port}"


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No real cache or data folder is looked at or written to."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(_cache.ENV_VAR, raising=False)
    monkeypatch.setattr(mnist, "MIRRORS", ["http://127.0.0.1:9/never-used/"])
    return tmp_path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_test_set(x, y):
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10000,) and y.dtype == np.uint8
    assert np.bincount(y, minlength=10).tolist() == LABEL_COUNTS


def test_download_then_cache_hit(base, server, isolated):
    cache = isolated / "cache"
    x, y = mnist.load_test(path=cache, mirrors=[base + "/ok/"])
    _check_test_set(x, y)
    assert server.requests == ["/ok/" + name for name in TEST_FILES]
    assert sorted(os.listdir(cache)) == sorted(TEST_FILES)  # no temporary file left over
    for name in TEST_FILES:
        assert _sha256(cache / name) == _sha256(MNIST_DIR / name)

    x2, y2 = mnist.load_test(path=cache, mirrors=[base + "/ok/"])
    assert len(server.requests) == 2, "the second call must be served from the cache"
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, y)


def test_download_goes_to_gpudl_data_dir_and_module_mirrors(base, server, isolated, monkeypatch):
    monkeypatch.setenv(_cache.ENV_VAR, str(isolated / "data"))
    monkeypatch.setattr(mnist, "MIRRORS", [base + "/ok/"])
    _check_test_set(*mnist.load_test())
    assert sorted(os.listdir(isolated / "data" / "mnist")) == sorted(TEST_FILES)
    assert not (isolated / "home").exists()


def test_download_goes_to_home_cache_by_default(base, server, isolated):
    _check_test_set(*mnist.load_test(mirrors=base + "/ok/"))
    cache = isolated / "home" / ".cache" / "gpudl" / "mnist"
    assert sorted(os.listdir(cache)) == sorted(TEST_FILES)
    mnist.load_test(mirrors=base + "/ok/")
    assert len(server.requests) == 2


def test_download_writes_a_temp_file_fsyncs_and_renames(base, isolated, monkeypatch):
    cache = isolated / "cache"
    replaced, synced = [], []
    real_replace, real_fsync = os.replace, os.fsync

    def spy_replace(src, dst):
        replaced.append((Path(src), Path(dst)))
        real_replace(src, dst)

    def spy_fsync(fd):
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "replace", spy_replace)
    monkeypatch.setattr(os, "fsync", spy_fsync)
    mnist.load_test(path=cache, mirrors=[base + "/ok/"])
    assert [dst.name for _, dst in replaced] == list(TEST_FILES)
    for src, dst in replaced:
        assert src.parent == dst.parent == cache and src.name.endswith(".part") and not src.exists()
    assert len(synced) >= 2


def test_wrong_checksum_leaves_nothing(base, isolated):
    cache = isolated / "cache"
    with pytest.raises(DatasetError, match=r"checksum mismatch: expected SHA-256 0fa7898d.* of the decompressed "
                                           r"content of t10k-images-idx3-ubyte.gz"):
        mnist.load_test(path=cache, mirrors=[base + "/altered/"])
    assert os.listdir(cache) == []


def test_garbled_bytes_leave_nothing(base, isolated):
    cache = isolated / "cache"
    with pytest.raises(DatasetError, match=r"/garbled/t10k-images-idx3-ubyte.gz: (corrupt gzip stream|checksum mismatch)"):
        mnist.load_test(path=cache, mirrors=[base + "/garbled/"])
    assert os.listdir(cache) == []


def test_dropped_connection_leaves_nothing(base, isolated):
    cache = isolated / "cache"
    size = (MNIST_DIR / TEST_FILES[0]).stat().st_size
    with pytest.raises(DatasetError, match=rf"truncated download: expected {size} bytes \(Content-Length\), "
                                           rf"received {size // 2}"):
        mnist.load_test(path=cache, mirrors=[base + "/truncated/"])
    assert os.listdir(cache) == []


def test_short_file_leaves_nothing(base, isolated):
    cache = isolated / "cache"
    with pytest.raises(DatasetError, match=r"truncated gzip stream"):
        mnist.load_test(path=cache, mirrors=[base + "/short/"])
    assert os.listdir(cache) == []


def test_404_on_first_mirror_falls_back_to_second(base, server, isolated):
    cache = isolated / "cache"
    _check_test_set(*mnist.load_test(path=cache, mirrors=[base + "/missing/", base + "/ok/"]))
    assert server.requests == ["/missing/t10k-images-idx3-ubyte.gz", "/ok/t10k-images-idx3-ubyte.gz",
                               "/missing/t10k-labels-idx1-ubyte.gz", "/ok/t10k-labels-idx1-ubyte.gz"]
    assert sorted(os.listdir(cache)) == sorted(TEST_FILES)


def test_corrupt_first_mirror_falls_back_to_second(base, isolated):
    cache = isolated / "cache"
    _check_test_set(*mnist.load_test(path=cache, mirrors=[base + "/altered/", base + "/ok/"]))
    assert sorted(os.listdir(cache)) == sorted(TEST_FILES)


def test_unreachable_mirror_falls_back(base, isolated):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/"
    _check_test_set(*mnist.load_test(path=isolated / "cache", mirrors=[dead, base + "/ok/"]))


def test_every_mirror_failing_lists_each_failure(base, isolated):
    cache = isolated / "cache"
    with pytest.raises(DatasetError) as info:
        mnist.load_test(path=cache, mirrors=[base + "/missing/", base + "/altered/"])
    message = str(info.value)
    assert f"could not download t10k-images-idx3-ubyte.gz into {cache}: every mirror failed" in message
    assert f"{base}/missing/t10k-images-idx3-ubyte.gz: HTTPError: HTTP Error 404" in message
    assert f"{base}/altered/t10k-images-idx3-ubyte.gz: " in message and "checksum mismatch" in message
    assert os.listdir(cache) == []


def test_download_false_never_touches_the_network(base, server, isolated):
    with pytest.raises(DatasetError, match=r"mnist: t10k-images-idx3-ubyte.gz not found: looked in .*download=True"):
        mnist.load_test(download=False, mirrors=[base + "/ok/"])
    assert server.requests == []


def test_no_mirrors(isolated):
    with pytest.raises(DatasetError, match="expected at least one mirror URL, found none"):
        mnist.load_test(path=isolated / "cache", mirrors=[])
