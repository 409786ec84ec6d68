"""Per-model history chart series: the busiest models by name, the rest summed as ``other``.

The live page draws generated tokens per second and TTFT p95 per model (``dashboard.live``,
``dashboard.latency``); the history charts draw the same from a source's buckets, whichever
source it is (``history_sqlite``, ``history_prom``). The models are chosen over the whole
window, so a line keeps its name from one end of the chart to the other. Pure functions:
per-bucket numbers in, one list of chart values per model out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from .stats import histogram_quantile

logger = logging.getLogger(__name__)

OTHER = "other"  # as the live series and the proxy's label guard name the rest
TOP_MODELS = 3
Histogram = Sequence[tuple[float, float]]  # cumulative (le, count), +Inf last


def busiest(totals: Mapping[str, float], top: int = TOP_MODELS) -> list[str]:
    """The ``top`` models with the largest positive totals (ties by name); never ``other``,
    which already means "the rest" (the label guard's overflow) and is drawn as such."""
    named = [m for m, total in totals.items() if total > 0 and m != OTHER]
    return sorted(named, key=lambda m: (-totals[m], m))[:top]


def rate_series(per_bucket: Sequence[Mapping[str, float]], seconds: Sequence[float],
                top: int = TOP_MODELS) -> dict[str, list[float | None]]:
    """Amounts per bucket and model (tokens) as per-second rates of the busiest models.

    A bucket where a model did nothing is 0 for it, as the all-models line is. Empty when no
    model has anything in the window.
    """
    totals: dict[str, float] = {}
    for bucket in per_bucket:
        for model, amount in bucket.items():
            totals[model] = totals.get(model, 0.0) + amount
    names = busiest(totals, top)
    rest = sorted(m for m, total in totals.items() if total > 0 and m not in names)
    out: dict[str, list[float | None]] = {}
    for model in names:
        out[model] = [b.get(model, 0.0) / s for b, s in zip(per_bucket, seconds, strict=True)]
    if rest:
        out[OTHER] = [sum(b.get(m, 0.0) for m in rest) / s
                      for b, s in zip(per_bucket, seconds, strict=True)]
    return out


def _merge(histograms: Sequence[Histogram]) -> list[tuple[float, float]]:
    counts: dict[float, float] = {}
    for histogram in histograms:
        for bound, count in histogram:
            counts[bound] = counts.get(bound, 0.0) + count
    return sorted(counts.items())


def quantile_series(per_bucket: Sequence[Mapping[str, Histogram]], q: float = 0.95,
                    top: int = TOP_MODELS) -> dict[str, list[float | None]]:
    """The ``q`` quantile per bucket of the models with the most observations, the rest's
    histograms merged into ``other`` (quantiles cannot be averaged). None where a model has
    no observation in a bucket; empty when none has any in the window."""
    totals: dict[str, float] = {}
    for bucket in per_bucket:
        for model, histogram in bucket.items():
            total = max((count for _, count in histogram), default=0.0)
            totals[model] = totals.get(model, 0.0) + total
    names = busiest(totals, top)
    rest = sorted(m for m, total in totals.items() if total > 0 and m not in names)
    out: dict[str, list[float | None]] = {}
    for model in names:
        out[model] = [histogram_quantile(q, b[model]) if model in b else None
                      for b in per_bucket]
    if rest:
        out[OTHER] = [histogram_quantile(q, _merge([b[m] for m in rest if m in b]))
                      for b in per_bucket]
    return out
