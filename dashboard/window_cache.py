"""One answer per history window, kept a few seconds: a page of many viewers reads the file once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .windows import Window

CACHE_S = 5.0


class WindowCache:
    """``answer(window, now, read)``: the answer ``read(window, now)`` gave for this window
    less than ``seconds`` ago, else a new one (one reader at a time)."""

    def __init__(self, seconds: float = CACHE_S) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._kept: dict[str, tuple[float, dict[str, Any]]] = {}

    def answer(self, window: Window, now: float,
               read: Callable[[Window, float], dict[str, Any]]) -> dict[str, Any]:
        with self._lock:
            kept = self._kept.get(window.name)
            if kept is not None and now - kept[0] < self.seconds:
                return kept[1]
            answer = read(window, now)
            self._kept[window.name] = (now, answer)
            return answer
