"""Waiting on another process's state, where no event crosses the process boundary."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(probe: Callable[[], T], done: Callable[[T], bool], timeout: float,
         interval: float = 0.02) -> T:
    """Call ``probe`` until ``done(value)`` holds or ``timeout`` passes; the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def wait_until(condition: Callable[[], bool], what: str = "condition", timeout: float = 15.0,
               interval: float = 0.02) -> None:
    """Poll ``condition`` until it holds; TimeoutError naming ``what`` when it does not."""
    if not poll(condition, bool, timeout, interval):
        raise TimeoutError(f"{what} not reached in {timeout}s")
