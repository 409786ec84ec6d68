"""Performance degradation: the answers Ollama gave lately against a rolling baseline.

Per model, the recent window (default the last 5 min) is compared with the baseline before it
(default the 24 h before the window): time to first token and request duration as ratios
(recent / baseline, higher is worse), tokens per second as a ratio (lower is worse), and the
error rate as an increase in share of requests. Only inference requests that name a model are
judged, and only those Ollama answered: a request the proxy could not forward (Ollama down,
queue full, no token) or whose client gave up says nothing about how Ollama performs, and an
outage is the Ollama check's to report. After an outage (the last request that could not reach
Ollama, or the Ollama check's recovery) the recent window starts again, so that requests cut
off by the outage do not keep the check red once Ollama answers well. A model with fewer than
``min_requests`` in either window is not judged; with none judged the check is ok with "not
enough data".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from healthd.results import Outcome, Status
from llama_core.history.readers import (
    connect_readonly,
    inference_models,
    last_failure_end,
    window_averages,
)
from llama_core.history.schema import HistoryError
from llama_core.thresholds import Threshold

logger = logging.getLogger(__name__)

# Error types of requests Ollama never answered: the proxy could not reach it, refused the
# request itself (queue full, no access token), or the client left first.
NOT_ANSWERED = frozenset({"upstream_unreachable", "queue_full", "unauthorized",
                          "client_cancelled"})
OUTAGE = ("upstream_unreachable",)  # what an outage leaves in the history
MIN_DELTA_S = 0.05  # below this a time difference is jitter, whatever the ratio says
_LEVELS = {None: Status.OK, "warn": Status.WARN, "critical": Status.CRITICAL}


class PerformanceCheck:
    """Reads the history file read-only on every run; keeps no connection open between runs."""

    def __init__(
        self,
        history_path: str,
        thresholds: Mapping[str, Threshold],
        *,
        window_s: float = 300.0,
        baseline_s: float = 86400.0,
        min_requests: int = 20,
        clock: Callable[[], float] = time.time,
        ollama_back_at: Callable[[], float | None] | None = None,
    ) -> None:
        """``ollama_back_at``: when the Ollama check last saw Ollama back (None: never down)."""
        self._path = Path(history_path)
        self._thresholds = thresholds
        self._window_s = window_s
        self._baseline_s = baseline_s
        self._min = min_requests
        self._clock = clock
        self._ollama_back_at = ollama_back_at

    def __call__(self) -> Outcome:
        if not self._path.is_file():
            return Outcome(Status.WARN, f"history {self._path} not found: is the proxy writing "
                           "it (proxy history_path) and is healthd's history_path the same file?")
        try:
            conn = connect_readonly(self._path)
        except HistoryError as exc:
            return Outcome(Status.WARN, str(exc))
        try:
            return self._compare(conn)
        finally:
            conn.close()

    def _compare(self, conn: Any) -> Outcome:
        now = self._clock()
        window_start = now - self._window_s
        base_start = window_start - self._baseline_s
        since = self._outage_end(conn, window_start, now)
        start = window_start if since is None else since
        # until now + 1: a row may carry a start time a moment after the clock was read
        models = inference_models(conn, start, now + 1.0)
        status, findings, thin, data = Status.OK, [], [], {}
        for model in models:
            recent = window_averages(conn, start, now + 1.0, model=model, inference_only=True,
                                     leave_out=NOT_ANSWERED)
            base = window_averages(conn, base_start, window_start, model=model,
                                   inference_only=True, leave_out=NOT_ANSWERED)
            data[model] = {"recent": _rounded(recent), "baseline": _rounded(base)}
            if recent["requests"] < self._min or base["requests"] < self._min:
                thin.append(f"{model} {recent['requests']}/{base['requests']}")
                continue
            for level, text in self._judge(recent, base):
                status = max(status, _LEVELS[level])
                findings.append(f"{model}: {text} ({level})")
        window = {"window_s": self._window_s, "baseline_s": self._baseline_s,
                  "since_outage": since, "models": data}
        recently = (f"the {_span(now - start, exact=False)} since Ollama was back"
                    if since is not None else f"the last {_span(self._window_s)}")
        if findings:
            return Outcome(status, "; ".join(findings), window)
        judged = len(models) - len(thin)
        if judged:
            return Outcome(Status.OK, f"no degradation in {judged} model(s) over {recently} "
                           f"against the {_span(self._baseline_s)} before", window)
        have = f" (recent/baseline requests: {', '.join(thin)})" if thin else ""
        return Outcome(Status.OK, f"not enough data: need {self._min} answered requests per "
                       f"model in {recently} and in the {_span(self._baseline_s)} "
                       f"before{have}", window)

    def _outage_end(self, conn: Any, window_start: float, now: float) -> float | None:
        """When the last outage inside the window ended, or None when there was none."""
        ends = [last_failure_end(conn, OUTAGE, window_start)]
        if self._ollama_back_at is not None:
            ends.append(self._ollama_back_at())
        inside = [t for t in ends if t is not None and window_start < t]
        return min(max(inside), now) if inside else None

    def _judge(self, recent: dict[str, Any], base: dict[str, Any]) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for field, name, label in (("ttft_s", "ttft_ratio", "time to first token"),
                                   ("duration_s", "duration_ratio", "request duration")):
            now, then = recent[field], base[field]
            if now is None or not then or now - then < MIN_DELTA_S:
                continue
            ratio = now / then
            if level := self._thresholds[name].breached(ratio):
                found.append((level, f"{label} {now:.2f} s vs {then:.2f} s baseline "
                                     f"({ratio:.1f}x)"))
        now, then = recent["tokens_per_second"], base["tokens_per_second"]
        if now is not None and then:
            ratio = now / then
            if level := self._thresholds["tokens_per_second_ratio"].breached(ratio):
                found.append((level, f"{now:.1f} tokens/s vs {then:.1f} baseline "
                                     f"({ratio:.0%} of it)"))
        increase = (recent["error_rate"] or 0.0) - (base["error_rate"] or 0.0)
        if level := self._thresholds["error_rate_increase"].breached(increase):
            found.append((level, f"error rate {recent['error_rate']:.1%} vs "
                                 f"{base['error_rate'] or 0:.1%} baseline"))
        return found


def _rounded(averages: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in averages.items()}


def _span(seconds: float, *, exact: bool = True) -> str:
    if not exact:
        seconds = round(seconds)
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
