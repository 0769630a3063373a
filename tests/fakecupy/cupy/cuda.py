"""cupy.cuda on the test device: one device, one stream, a driver that answers."""
from __future__ import annotations

import contextlib
import time


class _Runtime:
    @staticmethod
    def driverGetVersion():
        return 13000

    @staticmethod
    def runtimeGetVersion():
        return 13000

    @staticmethod
    def getDeviceCount():
        return 1

    @staticmethod
    def memGetInfo():
        return (8 << 30, 16 << 30)

    @staticmethod
    def getDeviceProperties(i):
        return {"name": b"gpudl test device (host memory, Numba simulator)", "multiProcessorCount": 2,
                "totalGlobalMem": 1 << 30}


runtime = _Runtime()


class _Queue:
    """What Stream and Device share: work runs at once on the host, so synchronising only counts."""

    def synchronize(self):
        from . import _count
        _count("sync")

    def use(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class Stream(_Queue):
    null = None

    def __init__(self, null=False, non_blocking=False, ptr=0):
        self.ptr = ptr


Stream.null = Stream()
_current = Stream.null


def get_current_stream(device_id=None):
    return _current


class Device(_Queue):
    def __init__(self, device=0):
        self.id = int(device)
        self.compute_capability = "90"


class Event:
    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self.t = None

    def record(self, stream=None):
        self.t = time.perf_counter()

    def synchronize(self):
        from . import _count
        _count("sync")


def get_elapsed_time(start, end):
    return (end.t - start.t) * 1e3


class _Pool:
    def used_bytes(self):
        return 0

    def total_bytes(self):
        return 0

    def free_bytes(self):
        return 0

    def free_all_blocks(self):
        pass


def get_default_memory_pool():
    return _Pool()


def get_default_pinned_memory_pool():
    return _Pool()


@contextlib.contextmanager
def profile():
    yield
