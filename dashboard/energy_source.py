"""What ``/api/energy`` answers: the proxies' energy now, and a history window's from the file.

The live part comes from the live poller's scrapes (``LiveState.recent_window``: the newest
and one about five minutes older, whose counters' growth is the average watts); a window's
part from the history file (rows' ``energy_j`` and the GPUs' power samples,
``llama_core.history.readers``), cached for a few seconds per window as the clients' tables
are. ``dashboard.energy`` does the arithmetic; this module only fetches and assembles.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from llama_core.history import readers
from llama_core.history.schema import HistoryError

from . import energy
from .live import LiveState
from .window_cache import WindowCache
from .windows import SourceError, Window

logger = logging.getLogger(__name__)

CACHE_S = 5.0
NO_METER = "no GPU energy meter on this machine"


class EnergyHistory:
    """Reads ``history_path`` read-only (a fresh connection per answer)."""

    def __init__(self, history_path: str, clock: Callable[[], float] = time.time) -> None:
        self.history_path = history_path
        self.clock = clock
        self._cache = WindowCache(CACHE_S)

    def answer(self, window: Window) -> dict[str, Any]:
        return self._cache.answer(window, self.clock(), self._read)

    def _read(self, window: Window, now: float) -> dict[str, Any]:
        since = now - window.seconds
        try:
            conn = readers.connect_readonly(self.history_path)
        except (HistoryError, OSError) as exc:
            raise SourceError(str(exc)) from exc
        with contextlib.closing(conn):
            try:
                rows = readers.energy_by_day(conn, since, now + 1)
                gpus = readers.gpu_energy_sampled(conn, since, now + 1)
            except sqlite3.Error as exc:
                raise SourceError(f"cannot read history {self.history_path}: {exc}") from exc
        return {"window": window.name, "since": since, "until": now, "source": "sqlite",
                **energy.window(rows, gpus, window.seconds)}


def live_energy(live: LiveState) -> dict[str, Any]:
    """The energy of the proxies' newest scrape, with the average watts of the recent window."""
    current = live.snapshot()  # the first call scrapes at once
    reachable = bool(current["status"]["proxy"]["reachable"])
    seconds, older, newer = live.recent_window()
    answer = energy.live(newer if reachable else None, older, seconds)
    return {**answer, "reachable": reachable}


def assemble(live: dict[str, Any], history: dict[str, Any] | None,
             history_error: str | None) -> dict[str, Any]:
    """One answer: whether anything is metered, and in words why not."""
    metered = bool(live["metered"] or (history is not None and history["metered"]))
    note = None
    if not metered:
        note = NO_METER if live["reachable"] else (
            "energy unknown: the proxy is unreachable and the history has none")
    return {"metered": metered, "note": note, "live": live, "history": history,
            "history_error": history_error}
