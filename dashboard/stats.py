"""Quantiles from histogram buckets, the way Prometheus's ``histogram_quantile`` computes them.

Live numbers (bucket deltas between scrapes), the history file (rows counted into the
catalogue's buckets by SQL) and Prometheus all describe latency as bucketed histograms; using
one estimator for all three keeps their p50/p95 comparable.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

logger = logging.getLogger(__name__)


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of cumulative ``(upper bound, count)`` pairs; None without data.

    Linear interpolation inside the bucket that holds the rank; the first bucket starts at
    0; a rank in the +Inf bucket answers the highest finite bound (Prometheus does the same).
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within 0-1, got {q}")
    ordered = sorted(buckets)
    if not ordered or not math.isinf(ordered[-1][0]):
        return None  # without +Inf the total is unknown
    total = ordered[-1][1]
    if not total > 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank and count > below:
            if math.isinf(bound):
                return lower if len(ordered) > 1 else None
            if bound <= 0:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def cumulative(bounds: Sequence[float], counts: Sequence[float]) -> list[tuple[float, float]]:
    """Per-bucket ``counts`` (one per bound, then +Inf) as cumulative (le, count) pairs."""
    if len(counts) != len(bounds) + 1:
        raise ValueError(f"{len(counts)} counts for {len(bounds)} bounds (+Inf)")
    out, running = [], 0.0
    for bound, count in zip((*bounds, math.inf), counts, strict=True):
        running += count
        out.append((bound, running))
    return out


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is unknown or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def cache_hit_share(cached: dict[str, float], prompt: dict[str, float], model: str
                    ) -> float | None:
    """Cached prompt tokens over prompt tokens, 0-1; None where the server reported no cache
    counts (today's Ollama reports none: docs/ollama-wire.md)."""
    if model not in cached:
        return None
    return ratio(cached[model], prompt.get(model))
