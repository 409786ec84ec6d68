"""The live view: scrapes the proxy every push interval and publishes one snapshot per tick.

With several proxies (``proxy_metrics_url`` lists them) each tick scrapes all of them and
shows their merge (``dashboard.proxies``) as one proxy.

One background thread does the scraping for every open page; websocket handlers wait on
``wait_next`` for the next snapshot instead of scraping themselves. The thread starts on the
first use (so nothing runs before gunicorn forks its worker) and ``tick`` can be driven by hand
with an injected client and clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from llama_core import thresholds

from . import proxies, snapshot
from .http_client import Client, FetchError
from .latency import LatencyWindow
from .promtext import Samples

logger = logging.getLogger(__name__)

SERIES_POINTS = 300  # live chart length, in ticks
RECENT_SECONDS = 300.0  # the "recent" window analysis reads
HEALTH_EVERY_SECONDS = 5.0
FEED_LIMIT = 50
LATENCY_ROWS = 200  # rows asked of each proxy per tick: more than finish in one tick
TOP_MODELS = 3  # per-model chart series; the rest are summed as "other"


class LiveState:
    """Scrapes, keeps what rates need, and holds the current snapshot."""

    def __init__(
        self,
        settings: dict[str, Any],
        *,
        client: Client,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._client = client
        self._clock = clock
        self._timeout = settings["request_timeout_seconds"]
        self._window = settings["rate_window_seconds"]
        self._interval = settings["push_interval_seconds"]
        self._scrapes: deque[tuple[float, Samples]] = deque()  # the rate window
        self._recent: deque[tuple[float, Samples]] = deque()  # one per ~15 s, RECENT_SECONDS
        self._points: deque[dict[str, Any]] = deque(maxlen=SERIES_POINTS)
        self._health: dict[str, Any] = {"status": "unknown", "detail": "not asked yet"}
        self._health_at = -float("inf")
        self._snapshot: dict[str, Any] | None = None
        self._latest: Samples | None = None
        self._seq = 0
        self.ticks = 0  # for the dashboard's own /metrics
        self.scrape_failures = 0
        self.proxy_up: bool | None = None  # every proxy answered the last scrape
        self._answered: frozenset[str] = frozenset()
        self._latency = LatencyWindow()
        self._proxy_ok_at: float | None = None  # the last tick a proxy answered
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    # -- thread ------------------------------------------------------------------------------

    def ensure_started(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="live-poller", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=2 * self._timeout + 1)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except Exception:
                logger.exception("live tick failed; going on")
            self._stop.wait(max(0.0, self._interval - (time.monotonic() - started)))

    # -- reading -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The current snapshot; the first call scrapes at once."""
        with self._cond:
            current = self._snapshot
        return current if current is not None else self.tick()

    @property
    def seq(self) -> int:
        """How many snapshots were published; ``wait_next(seq)`` waits for the next one."""
        with self._cond:
            return self._seq

    def series(self) -> list[dict[str, Any]]:
        with self._cond:
            return list(self._points)

    def wait_next(self, seq: int, timeout: float) -> tuple[int, dict[str, Any] | None]:
        """Block until a snapshot newer than ``seq`` exists: (its seq, it); None on timeout."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq > seq or self._stop.is_set(), timeout)
            return self._seq, (self._snapshot if self._seq > seq else None)

    def recent_window(self) -> tuple[float, Samples | None, Samples | None]:
        """(seconds covered, oldest, newest) scrapes of the recent window, for analysis."""
        with self._cond:
            if not self._recent or self._latest is None:
                return 0.0, None, self._latest
            t0, oldest = self._recent[0]
            t1 = self._scrapes[-1][0] if self._scrapes else t0
            return t1 - t0, oldest, self._latest

    # -- one tick ----------------------------------------------------------------------------

    def tick(self) -> dict[str, Any]:
        """Scrape the proxy (and now and then the health daemon); publish a new snapshot."""
        now = self._clock()
        urls = proxies.split_urls(self.settings["proxy_metrics_url"])
        scrapes = proxies.scrape(self._client, urls, self._timeout, recent=LATENCY_ROWS)
        samples = proxies.merge(scrapes)
        errors = [s.error for s in scrapes if s.error]
        proxy: dict[str, Any] = {
            "url": ", ".join(urls), "reachable": samples is not None,
            "error": "; ".join(errors) or None,
            "proxies": [{"url": s.url, "reachable": s.samples is not None, "error": s.error}
                        for s in scrapes],
        }
        rows = proxies.merge_recent([s.recent for s in scrapes if s.samples is not None],
                                    LATENCY_ROWS * len(urls))
        # Newest first by start time, the time the feed shows.
        feed = sorted(rows, key=lambda r: r.get("started_at") or 0.0, reverse=True)[:FEED_LIMIT]
        if samples is not None:
            self._proxy_ok_at = now
        self.scrape_failures += len(errors)
        self.ticks += 1
        self.proxy_up = not errors
        # Sums over a changed set of proxies are not comparable: rates start again.
        answered = frozenset(s.url for s in scrapes if s.samples is not None)
        if answered != self._answered:
            self._answered = answered
            with self._cond:
                self._scrapes.clear()
                self._recent.clear()
                self._latency.clear()
        self._latency.add(rows, now)
        latency = self._latency.summary(top=TOP_MODELS)
        if now - self._health_at >= HEALTH_EVERY_SECONDS:
            self._health_at = now
            self._health = self._ask_health()

        with self._cond:
            if samples is not None:
                self._scrapes.append((now, samples))
                while len(self._scrapes) > 2 and now - self._scrapes[1][0] >= self._window:
                    self._scrapes.popleft()
                if not self._recent or now - self._recent[-1][0] >= 15.0:
                    self._recent.append((now, samples))
                while len(self._recent) > 2 and now - self._recent[1][0] >= RECENT_SECONDS:
                    self._recent.popleft()
                base_t, base_samples = self._scrapes[0]
                old = base_samples if base_t < now else None
                rate_values = snapshot.rates(old, samples, now - base_t)
                by_model = snapshot.tokens_by_model(old, samples, now - base_t, TOP_MODELS)
                gauge_values = snapshot.gauges(samples)
            else:
                self._scrapes.clear()
                rate_values, gauge_values, by_model = {}, {}, {}
            # Latency from the requests themselves: one set for TTFT and duration.
            rate_values.update({k: latency[k] for k in (
                "ttft_p50", "ttft_p95", "duration_p50", "duration_p95")})
            self._latest = samples
            point = snapshot.point(now, rate_values, gauge_values)
            point["generation_tokens_per_second"] = latency["generation_tokens_per_second"]
            point["tokens_by_model"] = by_model
            point["ttft_p95_by_model"] = latency["ttft_p95_by_model"]
            self._points.append(point)
            current = {
                "ts": now,
                "status": {
                    "proxy": proxy,
                    "ollama": snapshot.status(samples),
                    "healthd": self._health,
                },
                "window_seconds": (now - self._scrapes[0][0]) if self._scrapes else 0.0,
                "point": point,
                "states": {name: thresholds.state(name, point.get(name))
                           for name in thresholds.LIVE},
                "latency": {k: latency[k] for k in ("window_seconds", "sampled", "counts")},
                "sources": self._sources(proxy, now),
                "gauges": gauge_values,
                "models": snapshot.models(None, samples) if samples is not None else [],
                "loaded": snapshot.loaded(samples) if samples is not None else [],
                "requests": feed,
            }
            self._snapshot = current
            self._seq += 1
            self._cond.notify_all()
        return current

    def _sources(self, proxy: dict[str, Any], now: float) -> dict[str, Any]:
        """Each source the page reads, whether it answered, and when it last did."""
        health = self._health
        return {
            "proxy": {"reachable": proxy["reachable"], "last_ok": self._proxy_ok_at,
                      "error": proxy["error"]},
            "healthd": {"reachable": health.get("reachable"), "error": None
                        if health.get("reachable") else health.get("detail")},
        }

    def _ask_health(self) -> dict[str, Any]:
        url = self.settings["healthd_url"]
        if not url:
            return {"status": "unknown", "detail": "no health daemon configured", "url": None,
                    "reachable": None}
        try:
            answer = self._client.get(url + "/health", timeout=self._timeout)
        except FetchError as exc:
            detail = (f"not running at {url}" if exc.refused
                      else f"not reachable at {url}: {exc.reason}")
            return {"status": "unreachable", "url": url, "detail": detail, "reachable": False}
        status = answer.status
        try:
            data = answer.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return {"status": "unknown", "url": url, "reachable": True,
                    "detail": f"{url}/health answered HTTP {status} without a JSON object"}
        reported = data.get("status")
        state = str(reported) if isinstance(reported, str) and reported else (
            "ok" if status == 200 else "unhealthy")
        return {"status": state, "url": url, "detail": _failing_checks(data), "reachable": True}


def _failing_checks(data: dict[str, Any]) -> str | None:
    """Names of the checks the health daemon does not call ok, when it lists them."""
    checks = data.get("checks")
    items: list[tuple[str, Any]] = []
    if isinstance(checks, dict):
        items = [(str(name), value) for name, value in checks.items()]
    elif isinstance(checks, list):
        items = [(str(c.get("name", "?")), c) for c in checks if isinstance(c, dict)]
    failing = []
    for name, value in items:
        state = value.get("status") if isinstance(value, dict) else value
        if isinstance(state, str) and state.lower() not in ("ok", "healthy", "pass", "passing"):
            failing.append(f"{name}: {state}")
    return ", ".join(failing[:5]) or None

