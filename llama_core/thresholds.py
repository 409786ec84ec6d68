"""The one definition of when a number is ok, a warning or critical, for every reader.

The dashboard colours and labels its headline numbers with these, the health daemon starts
from ``HEALTHD_DEFAULTS`` (its ``thresholds`` setting overrides them), and the shipped alert
rules (``config/alerts.yml``) quote the same numbers; ``tests/llama_core/test_thresholds.py``
fails when one of them drifts. Plain data: no Flask, no mitmproxy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

logger = logging.getLogger(__name__)

State = Literal["ok", "warn", "critical"]


@dataclass(frozen=True, slots=True)
class Threshold:
    """Levels of one number; ``higher_is_worse`` False for rates where low is bad."""

    warn: float | None
    critical: float | None
    higher_is_worse: bool = True
    unit: str = ""

    def breached(self, value: float) -> State | None:
        """``"critical"``, ``"warn"`` or None for a measured value."""
        for level, limit in (("critical", self.critical), ("warn", self.warn)):
            if limit is not None and (value >= limit if self.higher_is_worse else value <= limit):
                return level  # type: ignore[return-value]
        return None

    def state(self, value: float | None) -> State | None:
        """The state of ``value``: None when there is no value to judge."""
        if value is None:
            return None
        return self.breached(value) or "ok"


# Absolute levels of the numbers a person reads on the dashboard. Where an alert rule exists,
# its threshold is the warn level here (the test names the rule).
LIVE: dict[str, Threshold] = {
    # Failed requests / all requests; alert OllamaProxyErrorRatioHigh (> 5 %).
    "error_rate": Threshold(0.05, 0.25, unit="ratio"),
    # p95 time to first token of streamed answers; alert OllamaTimeToFirstTokenHigh (> 10 s).
    "ttft_p95": Threshold(10.0, 30.0, unit="s"),
    # Mean per-request generation rate; alert OllamaGenerationSlow (< 5 tokens/s).
    "generation_tokens_per_second": Threshold(5.0, 1.0, higher_is_worse=False,
                                              unit="tokens/s"),
    # Requests waiting for admission; alert OllamaProxyQueueBacklog (average >= 1).
    "queue_depth": Threshold(1.0, 10.0, unit="requests"),
    # Host and GPU, the health daemon's resource levels (percent used).
    "cpu_percent": Threshold(90.0, 98.0, unit="%"),
    # Alert HostMemoryNearlyFull fires at the critical level (> 95 %).
    "memory_percent": Threshold(90.0, 95.0, unit="%"),
    "disk_percent": Threshold(85.0, 95.0, unit="%"),
    # Alert OllamaGPUMemoryNearlyFull (> 95 %).
    "gpu_memory_percent": Threshold(95.0, 99.0, unit="%"),
}

# The health daemon's comparisons of the recent window against its baseline.
BASELINE: dict[str, Threshold] = {
    "ttft_ratio": Threshold(2.0, 4.0, unit="x"),
    "duration_ratio": Threshold(2.0, 4.0, unit="x"),
    "tokens_per_second_ratio": Threshold(0.5, 0.25, higher_is_worse=False, unit="x"),
    "error_rate_increase": Threshold(0.05, 0.25, unit="ratio"),
}

# What healthd's ``thresholds`` setting starts from (its names, its defaults).
HEALTHD_DEFAULTS: dict[str, Threshold] = {
    **{name: LIVE[name] for name in ("cpu_percent", "memory_percent", "disk_percent",
                                     "gpu_memory_percent")},
    **BASELINE,
}


def state(name: str, value: float | None) -> State | None:
    """The state of the live number ``name`` (None: no value, or no level for it)."""
    threshold = LIVE.get(name)
    return None if threshold is None else threshold.state(value)


def as_json() -> dict[str, dict[str, float | bool | str | None]]:
    """``LIVE`` for the page: name -> warn, critical, higher_is_worse, unit."""
    return {name: {"warn": t.warn, "critical": t.critical,
                   "higher_is_worse": t.higher_is_worse, "unit": t.unit}
            for name, t in LIVE.items()}
