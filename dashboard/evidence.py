"""Gathers what the analysis rules look at from the live scrapes and the history source.

With history (SQLite or Prometheus) the per-model numbers cover the last hour, "current"
speed the last 15 minutes and the baseline the day before that. Without it, the proxy's own
counters stand in: the last few minutes the dashboard has seen, against everything since the
proxy started.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from llama_core import catalogue

from . import promtext, snapshot
from .analysis import Evidence
from .live import LiveState
from .stats import ratio
from .windows import WINDOWS, HistorySource, SourceError

logger = logging.getLogger(__name__)

C = catalogue
BASELINE_SECONDS = 86400.0


def _recent(live: LiveState) -> dict[str, Any]:
    seconds, old, new = live.recent_window()
    if new is None:
        return {"seconds": 0.0, "requests": 0, "errors": {}, "queue_wait": None, "models": [],
                "since_start": []}
    grown_errors = promtext.counter_delta(old, new, C.ERRORS.name) if old else {}
    errors: dict[str, int] = {}
    for (_, labels), value in grown_errors.items():
        kind = dict(labels).get("error_type", "other")
        errors[kind] = errors.get(kind, 0) + int(value)
    requests = promtext.counter_delta(old, new, C.REQUESTS.name) if old else {}
    waited = promtext.counter_delta(old, new, C.QUEUE_WAIT.sum) if old else {}
    admitted = promtext.counter_delta(old, new, C.QUEUE_WAIT.count) if old else {}
    return {
        "seconds": seconds,
        "requests": int(math.fsum(requests.values())),
        "errors": {k: n for k, n in errors.items() if n},
        "queue_wait": ratio(math.fsum(waited.values()), math.fsum(admitted.values())),
        "models": snapshot.models(old, new) if old else [],
        "since_start": snapshot.models(None, new),
    }


def gather(live: LiveState, history: HistorySource | None, now: float) -> tuple[Evidence, str]:
    """The evidence, and a sentence saying where its per-model numbers came from."""
    current = live.snapshot()
    gauges = current.get("gauges") or {}
    recent = _recent(live)
    base: dict[str, Any] = {
        "loaded": current.get("loaded") or [],
        "gpu_present": bool(gauges.get("gpus")),
        "queue_depth": gauges.get("queue_depth"),
        "active_requests": gauges.get("active_requests"),
        "queue_wait_mean_s": recent["queue_wait"],
        "recent_window_s": recent["seconds"],
        "recent_requests": recent["requests"],
        "recent_errors": recent["errors"],
    }
    if history is not None:
        try:
            hour, quarter = WINDOWS["1h"], WINDOWS["15m"]
            evidence = Evidence(
                window_s=hour.seconds,
                models=history.models(hour, now),
                current=history.models(quarter, now),
                current_window_s=quarter.seconds,
                baseline_tps=history.baseline_tps(now - BASELINE_SECONDS, now - quarter.seconds),
                **base,
            )
            return evidence, f"history ({history.name}): last hour, speed against the day before"
        except SourceError as exc:
            logger.info("analysis without history: %s", exc)
    baseline = {row["model"]: row["tokens_per_second"] for row in recent["since_start"]
                if row["tokens_per_second"] is not None}
    evidence = Evidence(
        window_s=recent["seconds"],
        models=recent["models"],
        current=recent["models"],
        current_window_s=recent["seconds"],
        baseline_tps=baseline,
        **base,
    )
    return evidence, "the proxy's counters: the last minutes seen, speed against since its start"
