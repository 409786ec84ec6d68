"""Latency of the last minute from the proxy's finished requests: one set, one meaning.

Percentiles from the proxy's histograms mix what cannot be compared (each histogram has its
own buckets and requests: a non-streamed answer has a duration but no first token, a metadata
call or a 502 is instant). Here both time to first token and duration are computed over the
same requests: streamed inference answers that Ollama gave in full, finished in the window.
So the TTFT p95 of a window never exceeds its duration p95. What is left out is counted
apart: other inference answers, metadata calls, proxy errors (never reached Ollama) and
Ollama's errors.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

from llama_core.endpoints import INFERENCE_ENDPOINTS

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60.0
MAX_KEPT = 20_000  # a window this full is a sample of its newest requests (``sampled``)
# Error types the proxy itself answers with: the request never got an answer from Ollama.
PROXY_ERRORS = frozenset({"upstream_unreachable", "queue_full", "unauthorized",
                          "client_cancelled"})
OTHER = "other"


def key(row: dict[str, Any]) -> tuple[Any, ...]:
    """What tells two finished requests apart (the proxy's rows carry no id)."""
    return (row.get("started_at"), row.get("endpoint"), row.get("model"), row.get("status"),
            row.get("duration_s"), row.get("response_bytes"))


def finished_at(row: dict[str, Any]) -> float:
    return float(row.get("started_at") or 0.0) + float(row.get("duration_s") or 0.0)


def kind(row: dict[str, Any]) -> str:
    """``streamed``, ``answer`` (inference, not streamed), ``metadata``, ``proxy_error``,
    ``ollama_error``."""
    error = row.get("error_type")
    if error in PROXY_ERRORS:
        return "proxy_error"
    if row.get("endpoint") not in INFERENCE_ENDPOINTS:
        return "ollama_error" if error else "metadata"
    if error or int(row.get("status") or 0) >= 400:
        return "ollama_error"
    # TTFT None means "not a streamed answer" (a non-streamed one has no first token).
    return "streamed" if row.get("stream") and row.get("ttft_s") is not None else "answer"


def quantile(q: float, values: list[float]) -> float | None:
    """The ``q`` quantile of ``values`` (sorted), linearly interpolated; None when empty."""
    if not values:
        return None
    pos = q * (len(values) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


class LatencyWindow:
    """The finished requests of the last ``seconds``, fed with each scrape's newest rows."""

    def __init__(self, seconds: float = WINDOW_SECONDS) -> None:
        self.seconds = seconds
        self._rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.sampled = False

    def add(self, rows: Iterable[dict[str, Any]], now: float) -> None:
        for row in rows:
            self._rows.setdefault(key(row), row)
        since = now - self.seconds
        self._rows = {k: r for k, r in self._rows.items() if finished_at(r) >= since}
        self.sampled = len(self._rows) > MAX_KEPT
        if self.sampled:
            newest = sorted(self._rows.items(), key=lambda item: finished_at(item[1]))
            self._rows = dict(newest[-MAX_KEPT:])

    def clear(self) -> None:
        self._rows.clear()

    def rows(self) -> list[dict[str, Any]]:
        return list(self._rows.values())

    def summary(self, top: int = 3) -> dict[str, Any]:
        return summarise(self.rows(), self.seconds, top=top, sampled=self.sampled)


def summarise(rows: list[dict[str, Any]], seconds: float, *, top: int = 3,
              sampled: bool = False) -> dict[str, Any]:
    """Percentiles over the streamed answers, counts of the rest, TTFT p95 of the busiest
    models (the others as ``other``)."""
    counts = {k: 0 for k in ("streamed", "answer", "metadata", "proxy_error", "ollama_error")}
    streamed = []
    for row in rows:
        counts[kind(row)] += 1
        if kind(row) == "streamed":
            streamed.append(row)
    ttft = sorted(float(r["ttft_s"]) for r in streamed)
    duration = sorted(float(r.get("duration_s") or 0.0) for r in streamed)
    tps = [float(r["tokens_per_second"]) for r in streamed
           if r.get("tokens_per_second") is not None]
    by_model: dict[str, list[float]] = {}
    for r in streamed:
        by_model.setdefault(str(r.get("model") or "?"), []).append(float(r["ttft_s"]))
    busiest = sorted(by_model, key=lambda m: (-len(by_model[m]), m))
    per_model: dict[str, float | None] = {}
    for model in busiest[:top]:
        per_model[model] = quantile(0.95, sorted(by_model[model]))
    rest = sorted(v for m in busiest[top:] for v in by_model[m])
    if rest:
        per_model[OTHER] = quantile(0.95, rest)
    return {
        "window_seconds": seconds,
        "sampled": sampled,
        "counts": counts,
        "ttft_p50": quantile(0.5, ttft),
        "ttft_p95": quantile(0.95, ttft),
        "duration_p50": quantile(0.5, duration),
        "duration_p95": quantile(0.95, duration),
        "generation_tokens_per_second": sum(tps) / len(tps) if tps else None,
        "ttft_p95_by_model": per_model,
    }
