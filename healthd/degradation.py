"""Performance degradation: the last minutes of the request history against a rolling baseline.

Per model, the recent window (default the last 5 min) is compared with the baseline before it
(default the 24 h before the window): time to first token and request duration as ratios
(recent / baseline, higher is worse), tokens per second as a ratio (lower is worse), and the
error rate as an increase in share of requests. A model with fewer than ``min_requests`` in
either window is not judged; with none judged the check is ok with "not enough data".
Metadata requests (model ``none``, e.g. this daemon's own probe through the proxy) are left out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from healthd.config import Threshold
from healthd.results import Outcome, Status
from llama_core.history.readers import connect_readonly, recent_requests, window_averages
from llama_core.history.schema import HistoryError

logger = logging.getLogger(__name__)

NO_MODEL = "none"  # addons.routes.NO_MODEL: requests that name no model
RECENT_ROWS = 2000  # rows read to learn which models were used in the window
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
        min_requests: int = 5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._path = Path(history_path)
        self._thresholds = thresholds
        self._window_s = window_s
        self._baseline_s = baseline_s
        self._min = min_requests
        self._clock = clock

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
        start = now - self._window_s
        base_start = start - self._baseline_s
        rows = recent_requests(conn, limit=RECENT_ROWS)
        models = sorted({r["model"] for r in rows if r["ts"] >= start} - {NO_MODEL})
        status, findings, thin, data = Status.OK, [], [], {}
        for model in models:
            # until now + 1: a row may carry a start time a moment after the clock was read
            recent = window_averages(conn, start, now + 1.0, model=model)
            base = window_averages(conn, base_start, start, model=model)
            data[model] = {"recent": _rounded(recent), "baseline": _rounded(base)}
            if recent["requests"] < self._min or base["requests"] < self._min:
                thin.append(f"{model} {recent['requests']}/{base['requests']}")
                continue
            for level, text in self._judge(recent, base):
                status = max(status, _LEVELS[level])
                findings.append(f"{model}: {text} ({level})")
        window = {"window_s": self._window_s, "baseline_s": self._baseline_s, "models": data}
        if findings:
            return Outcome(status, "; ".join(findings), window)
        judged = len(models) - len(thin)
        if judged:
            return Outcome(Status.OK, f"no degradation in {judged} model(s) over the last "
                           f"{_span(self._window_s)} against the {_span(self._baseline_s)} "
                           "before", window)
        have = f" (recent/baseline requests: {', '.join(thin)})" if thin else ""
        return Outcome(Status.OK, f"not enough data: need {self._min} requests per model in the "
                       f"last {_span(self._window_s)} and in the {_span(self._baseline_s)} "
                       f"before{have}", window)

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


def _span(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
