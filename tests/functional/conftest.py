"""Fixtures shared by the functional tests."""
from __future__ import annotations

import pytest


@pytest.fixture
def set_threads():
    """gpudl's CPU thread setter; the count the test found is put back after it."""
    from gpudl.functional import _threads
    old = _threads.threads()
    yield _threads.set_threads
    _threads.set_threads(old)
