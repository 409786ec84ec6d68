"""The history windows the dashboard offers, and what a history source promises to answer.

Each window has a step (the width of one chart point); steps divide one another's windows
so that every point covers the same seconds on every call, which lets a source cache the
points that can no longer change.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Protocol

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Window:
    name: str
    seconds: int
    step: int

    @property
    def points(self) -> int:
        return self.seconds // self.step

    def buckets(self, now: float) -> tuple[int, int]:
        """First and last bucket index (``floor(ts / step)``); the last is the open one."""
        last = math.floor(now / self.step)
        return last - self.points + 1, last


WINDOWS: dict[str, Window] = {
    w.name: w
    for w in (
        Window("15m", 15 * 60, 5),
        Window("1h", 3600, 15),
        Window("24h", 86400, 300),
        Window("7d", 7 * 86400, 1800),
        Window("30d", 30 * 86400, 7200),
    )
}
DEFAULT_WINDOW = "1h"


def parse_window(value: str | None) -> Window:
    """The window named ``value`` (None: the default); ValueError naming what is allowed."""
    name = DEFAULT_WINDOW if value is None else value
    try:
        return WINDOWS[name]
    except KeyError:
        raise ValueError(
            f"window must be one of {', '.join(WINDOWS)}, not {name!r}"
        ) from None


class SourceError(Exception):
    """The history source cannot answer now (file missing, Prometheus down, bad reply)."""


class HistorySource(Protocol):
    """Where history comes from: the proxy's SQLite file, or Prometheus."""

    name: str

    def history(self, window: Window, now: float) -> dict[str, Any]:
        """``{"ts": [...], <series>: [...], ...}`` columns, plus ``models`` for the window."""
        ...

    def models(self, window: Window, now: float) -> list[dict[str, Any]]: ...

    def baseline_tps(self, since: float, until: float) -> dict[str, float]:
        """Mean tokens/s per model over [since, until), for 'slower than usual'."""
        ...

    def prewarm(self) -> None:
        """Do the expensive first reads now (called on a background thread)."""
        ...
