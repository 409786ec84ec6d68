"""Where the views get their data (live poller, history source, narrator), one each per app.

``init_app`` installs them, built from the app's settings and injected seams (HTTP client,
clock, history source), with the dashboard's own metrics; views reach them through
``get_sources()``. Background work starts on the first request, inside the server's worker
process, never at import or before a fork.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, current_app
from prometheus_client import CollectorRegistry

from .history_prom import PrometheusHistory
from .history_sqlite import SqliteHistory
from .http_client import Client
from .live import LiveState
from .narrative import Narrator
from .selfmetrics import DashboardMetrics
from .windows import HistorySource

logger = logging.getLogger(__name__)

EXTENSION = "llama_metrics"


class Sources:
    def __init__(
        self,
        settings: dict[str, Any],
        *,
        client: Client | None = None,
        clock: Callable[[], float] = time.time,
        history: HistorySource | None = None,
        autostart: bool = True,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.client = client if client is not None else Client()
        self.live = LiveState(settings, client=self.client, clock=clock)
        self.history = history if history is not None else make_history(settings, self.client)
        self.narrator = Narrator(settings, client=self.client)
        self.metrics = DashboardMetrics(CollectorRegistry(), self.live)
        self.autostart = autostart
        self._started = False
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the live poller and warm the history cache (once; later calls return)."""
        with self._lock:
            if self._started or not self.autostart:
                return
            self._started = True
        self.live.ensure_started()
        if self.history is not None:
            threading.Thread(target=self._prewarm, name="history-prewarm", daemon=True).start()

    def _prewarm(self) -> None:
        started = time.monotonic()
        try:
            assert self.history is not None
            self.history.prewarm()
        except Exception:
            logger.exception("warming the history cache failed")
        else:
            logger.info("history cache warm in %.2f s", time.monotonic() - started)

    def stop(self) -> None:
        self.live.stop()


def make_history(settings: dict[str, Any], client: Client) -> HistorySource | None:
    """Prometheus when ``prometheus_url`` is set, else the history file, else none."""
    if settings["prometheus_url"]:
        return PrometheusHistory(settings["prometheus_url"], client=client,
                                 timeout=max(settings["request_timeout_seconds"], 5.0))
    if settings["history_path"]:
        return SqliteHistory(settings["history_path"])
    return None


def init_app(app: Flask, sources: Sources) -> None:
    app.extensions[EXTENSION] = sources

    @app.before_request
    def _start() -> None:
        sources.start()


def get_sources() -> Sources:
    sources: Sources = current_app.extensions[EXTENSION]
    return sources
