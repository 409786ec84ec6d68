"""Waiting on another process's state, where no event crosses the process boundary.

Within one process a test waits on an event (a condition variable, ``LogReader``, the
simulator's ``wait_for_*``); these poll, for what only another process knows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.history_files import read_rows

T = TypeVar("T")


def poll(probe: Callable[[], T], done: Callable[[T], bool], timeout: float,
         interval: float = 0.05) -> T:
    """Call ``probe`` until ``done(value)`` holds or ``timeout`` passes; the last value (the
    caller asserts on it, with what it knows of the value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def wait_until(condition: Callable[[], T], what: str, timeout: float = 30.0,
               interval: float = 0.05) -> T:
    """Poll ``condition`` until it is truthy; that value, or AssertionError naming ``what``."""
    value = poll(condition, bool, timeout, interval)
    assert value, f"not within {timeout}s: {what}"
    return value


def wait_rows(path: Path, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The history's rows, newest first, once the proxy's writer (another process, which
    writes in batches) has written at least ``count``; AssertionError if it has not."""
    rows = poll(lambda: read_rows(path), lambda found: len(found) >= count, timeout, 0.02)
    assert len(rows) >= count, f"{len(rows)} history rows in {path} after {timeout}s, not {count}"
    return rows
