"""Finding, downloading and verifying dataset files: written once, used by every loader.

Lookup order for a dataset called ``name``: an explicit ``path`` (then the only place
looked at, and where downloads go), else ``$GPUDL_DATA_DIR/<name>``, ``~/.cache/gpudl/<name>``
and the loader's system folders (e.g. Debian's ``/usr/share/datasets/...``), then a download
into the first of the first two that applies.

Files are checked by the SHA-256 of their *decompressed* content, so a copy that was
gzipped anew (other compression level, no file name in the header) is still accepted.
A download goes to a temporary file in the destination folder, is fsynced and verified,
and only then renamed over the final name with ``os.replace``: a failed, truncated or
corrupt download never leaves a partial file behind.
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import DatasetError
from .idx import decompress

__all__ = ["RemoteFile", "ENV_VAR", "cache_root", "search_dirs", "download_dir", "fetch",
           "read_verified", "download_file"]

logger = logging.getLogger("gpudl")

#: environment variable naming a folder that holds one sub-folder per dataset
ENV_VAR = "GPUDL_DATA_DIR"

#: seconds a download may wait on the network before trying the next mirror
TIMEOUT = 60.0

_CHUNK = 1 << 16


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: its canonical name and checksums."""

    name: str
    #: SHA-256 of the decompressed content (what is checked)
    sha256: str
    #: SHA-256 of the canonical ``.gz`` as the mirrors serve it (reported in errors)
    gz_sha256: str = ""


def cache_root() -> Path | None:
    """``~/.cache/gpudl``, or None where the home folder cannot be found."""
    try:
        return Path.home() / ".cache" / "gpudl"
    except RuntimeError:
        return None


def search_dirs(name: str, path=None, system_dirs: Iterable = ()) -> list[Path]:
    """The folders looked in for dataset ``name``, in order."""
    if path is not None:
        return [Path(path).expanduser()]
    dirs = []
    env = os.environ.get(ENV_VAR)
    if env:
        dirs.append(Path(env).expanduser() / name)
    root = cache_root()
    if root is not None:
        dirs.append(root / name)
    dirs.extend(Path(d) for d in system_dirs)
    return dirs


def download_dir(name: str, path=None) -> Path:
    """Where a download of dataset ``name`` is written."""
    if path is not None:
        return Path(path).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser() / name
    root = cache_root()
    if root is None:
        raise DatasetError(
            f"{name}: no folder to download into: expected ${ENV_VAR} or a home folder, found neither; "
            f"pass path=<folder>"
        )
    return root / name


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check(raw: bytes, spec: RemoteFile, source: str, hint: str = "") -> None:
    digest = _sha256(raw)
    if digest != spec.sha256:
        canonical = f" (canonical .gz SHA-256 {spec.gz_sha256})" if spec.gz_sha256 else ""
        raise DatasetError(
            f"{source}: checksum mismatch: expected SHA-256 {spec.sha256} of the decompressed "
            f"content of {spec.name}{canonical}, found {digest}{hint}"
        )


def read_verified(file_path: Path, spec: RemoteFile) -> bytes:
    """The decompressed content of ``file_path``, after checking it against ``spec``."""
    source = str(file_path)
    try:
        data = Path(file_path).read_bytes()
    except OSError as err:
        raise DatasetError(f"{source}: cannot be read: {err}") from err
    raw = decompress(data, source)
    _check(raw, spec, source, hint="; delete the file to fetch a fresh copy")
    return raw


def _find(spec: RemoteFile, dirs: Sequence[Path]) -> Path | None:
    # a folder may also hold the file already gunzipped, under the name without ".gz"
    names = [spec.name]
    if spec.name.endswith(".gz"):
        names.append(spec.name[:-3])
    for folder in dirs:
        for file_name in names:
            candidate = folder / file_name
            if candidate.is_file():
                return candidate
    return None


def fetch(dataset: str, spec: RemoteFile, *, path=None, download: bool = True,
          mirrors: Sequence[str] = (), system_dirs: Iterable = (), timeout: float | None = None) -> bytes:
    """The verified, decompressed content of one dataset file: found locally, else downloaded."""
    dirs = search_dirs(dataset, path, system_dirs)
    found = _find(spec, dirs)
    if found is not None:
        return read_verified(found, spec)
    looked = ", ".join(str(d) for d in dirs)
    if not download:
        raise DatasetError(
            f"{dataset}: {spec.name} not found: looked in {looked}; pass download=True, "
            f"path=<folder holding it>, or set ${ENV_VAR}"
        )
    return download_file(spec, download_dir(dataset, path), mirrors, timeout)


def _fsync_dir(folder: Path) -> None:
    # make the rename itself durable; not every platform can open a folder
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _MirrorFailed(Exception):
    pass


def _download_one(url: str, spec: RemoteFile, folder: Path, timeout: float) -> bytes:
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{spec.name}.", suffix=".part")
    tmp: Path | None = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    length = response.headers.get("Content-Length")
                    received = 0
                    while chunk := response.read(_CHUNK):
                        out.write(chunk)
                        received += len(chunk)
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
                raise _MirrorFailed(f"{type(err).__name__}: {err}") from err
            if length is not None and length.isdigit() and received != int(length):
                raise _MirrorFailed(
                    f"truncated download: expected {int(length)} bytes (Content-Length), received {received}"
                )
            out.flush()
            os.fsync(out.fileno())
        try:
            raw = decompress(tmp.read_bytes(), url)
            _check(raw, spec, url)
        except DatasetError as err:
            raise _MirrorFailed(str(err)) from err
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache file is data like any other
        os.replace(tmp, folder / spec.name)
        tmp = None
        _fsync_dir(folder)
        return raw
    finally:
        if tmp is not None:
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass


def download_file(spec: RemoteFile, folder: Path, mirrors: Sequence[str], timeout: float | None = None) -> bytes:
    """Download ``spec`` from the first mirror that serves it intact into ``folder``.

    Each mirror is a base URL; the file's name is appended. A mirror that fails (HTTP error,
    network error, truncated or corrupt content, wrong checksum) is reported and the next one
    tried. Returns the decompressed content; raises :class:`DatasetError` listing every failure
    when none succeeds. Nothing but the verified final file is ever left in ``folder``.
    """
    if isinstance(mirrors, str):
        mirrors = [mirrors]
    if not mirrors:
        raise DatasetError(f"cannot download {spec.name}: expected at least one mirror URL, found none")
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DatasetError(f"cannot create the download folder {folder}: {err}") from err
    timeout = TIMEOUT if timeout is None else timeout
    failures = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + spec.name
        logger.info("downloading %s into %s", url, folder)
        try:
            return _download_one(url, spec, folder, timeout)
        except _MirrorFailed as err:
            logger.warning("download of %s failed: %s", url, err)
            failures.append(f"{url}: {err}")
        except OSError as err:  # the folder itself: not writable, disk full
            raise DatasetError(f"cannot write {spec.name} into {folder}: {err}") from err
    raise DatasetError(
        f"could not download {spec.name} into {folder}: every mirror failed:\n  " + "\n  ".join(failures)
    )
