"""History from Prometheus (HTTP API, PromQL): how several proxies are shown as one.

Every series is a PromQL expression summed (or averaged) over all scraped proxies. A chart
point for the bucket ``[t - step, t)`` is the expression evaluated at ``t``; per-model tables
are instant queries over the whole window (counts exact, see ``_growth``). ``now`` is passed
in, so a window ends where the caller says; the open bucket is evaluated at its end.
"""

from __future__ import annotations

import logging
import math
from typing import Any
from urllib.parse import urlencode

from llama_core import catalogue
from llama_core.catalogue import Series

from . import history_charts
from .http_client import Client, FetchError
from .stats import cache_hit_share, ratio
from .windows import SourceError, Window

logger = logging.getLogger(__name__)

C = catalogue
MIN_RATE_RANGE_S = 60  # four scrapes at Prometheus's usual 15 s


def _quantile(q: float, histogram: Series, by: str = "") -> str:
    return (f"histogram_quantile({q}, sum by (le{by}) "
            f"(rate({histogram.bucket}[{{r}}])))")


SERIES_QUERIES: dict[str, str] = {
    "requests_per_second": f"sum(rate({C.REQUESTS.name}[{{r}}]))",
    "prompt_tokens_per_second": f"sum(rate({C.PROMPT_TOKENS.name}[{{r}}]))",
    "generated_tokens_per_second": f"sum(rate({C.GENERATED_TOKENS.name}[{{r}}]))",
    "error_rate": (f"(sum(rate({C.ERRORS.name}[{{r}}])) or vector(0))"
                   f" / sum(rate({C.REQUESTS.name}[{{r}}]))"),
    "ttft_p50": _quantile(0.5, C.TTFT),
    "ttft_p95": _quantile(0.95, C.TTFT),
    "duration_p50": _quantile(0.5, C.REQUEST_DURATION),
    "duration_p95": _quantile(0.95, C.REQUEST_DURATION),
    "active_requests": f"sum({C.ACTIVE_REQUESTS.name})",
    "queue_depth": f"sum({C.QUEUE_DEPTH.name})",
    "cpu_percent": f"avg({C.SYSTEM_CPU.name})",
    "memory_percent": (f"100 * sum({C.SYSTEM_MEMORY_USED.name})"
                       f" / sum({C.SYSTEM_MEMORY_TOTAL.name})"),
    "gpu_utilization_percent": f"avg({C.GPU_UTILIZATION.name})",
    "gpu_memory_percent": (f"100 * sum({C.GPU_MEMORY_USED.name})"
                           f" / sum({C.GPU_MEMORY_TOTAL.name})"),
}

# The per-model series the live charts draw (history_charts picks the busiest, sums the rest):
# every model's generated-token rate, and its TTFT bucket rates for the quantiles.
BY_MODEL_QUERIES: dict[str, str] = {
    "tokens_by_model": f"sum by (model) (rate({C.GENERATED_TOKENS.name}[{{r}}]))",
    "ttft_p95_by_model": f"sum by (model, le) (rate({C.TTFT.bucket}[{{r}}]))",
}


def _growth(counter: Series) -> str:
    """How much a counter grew over the window, per model, exactly.

    ``increase()`` extrapolates to the window's edges and cannot see a series' first
    increments (it has no sample from before them), so whole counts come out fractional or
    short. Now minus then is exact, with a series that did not exist then counting from zero
    (a proxy started inside the window). A counter reset inside the window (a proxy restart)
    is not seen and undercounts; ``clamp_min`` keeps that from going negative.
    """
    now = f"sum by (model) ({counter.name})"
    then = f"sum by (model) ({counter.name} offset {{w}})"
    return f"clamp_min({now} - ({then} or {now} * 0), 0)"


MODEL_QUERIES: dict[str, str] = {
    "requests": _growth(C.REQUESTS),
    "errors": _growth(C.ERRORS),
    "prompt_tokens": _growth(C.PROMPT_TOKENS),
    "generated_tokens": _growth(C.GENERATED_TOKENS),
    "tps_sum": f"sum by (model) (increase({C.TOKENS_PER_SECOND.sum}[{{w}}]))",
    "tps_count": f"sum by (model) (increase({C.TOKENS_PER_SECOND.count}[{{w}}]))",
    "ttft_p95": (f"histogram_quantile(0.95, sum by (model, le) "
                 f"(increase({C.TTFT.bucket}[{{w}}])))"),
    "ttft_seconds": f"sum by (model) (increase({C.TTFT.sum}[{{w}}]))",
    "ttft_count": f"sum by (model) (increase({C.TTFT.count}[{{w}}]))",
    "loads": _growth(C.MODEL_LOADS),
    "load_seconds": f"sum by (model) (increase({C.MODEL_LOAD_DURATION.sum}[{{w}}]))",
    "cached_prompt_tokens": _growth(C.CACHED_PROMPT_TOKENS),
}


def _number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


class PrometheusHistory:
    """Answers history from a Prometheus server that scrapes the proxies."""

    name = "prometheus"

    def __init__(self, url: str, *, client: Client, timeout: float) -> None:
        self.url = url.rstrip("/")
        self._client = client
        self._timeout = timeout

    def _api(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/{path}?{urlencode(params)}"
        try:
            answer = self._client.get(url, timeout=self._timeout)
        except FetchError as exc:
            raise SourceError(f"prometheus {self.url}: {exc.reason}") from exc
        status = answer.status
        try:
            data = answer.json()
        except ValueError:
            raise SourceError(
                f"prometheus {self.url} answered HTTP {status} without JSON"
            ) from None
        if not isinstance(data, dict) or data.get("status") != "success":
            error = data.get("error") if isinstance(data, dict) else None
            raise SourceError(f"prometheus {self.url} answered HTTP {status}: {error}")
        result = (data.get("data") or {}).get("result")
        return result if isinstance(result, list) else []

    def _range(self, query: str, window: Window, now: float
               ) -> list[tuple[dict[str, str], list[float | None]]]:
        """Every series of a range query over the window's buckets: (labels, one value a
        bucket, None where Prometheus has none)."""
        first, last = window.buckets(now)
        step = window.step
        # The open bucket is evaluated at its end, a moment ahead: Prometheus answers that
        # from the latest samples, which is what "now" should show.
        params = {"query": query, "start": (first + 1) * step, "end": (last + 1) * step,
                  "step": step}
        out = []
        for series in self._api("query_range", params):
            values: list[float | None] = [None] * (last - first + 1)
            for ts, text in series.get("values") or []:
                index = round(float(ts) / step) - 1 - first
                if 0 <= index < len(values):
                    values[index] = _number(text)
            out.append((dict(series.get("metric") or {}), values))
        return out

    def history(self, window: Window, now: float) -> dict[str, Any]:
        first, last = window.buckets(now)
        step = window.step
        rate_range = f"{max(step, MIN_RATE_RANGE_S)}s"
        points = last - first + 1
        columns: dict[str, list[Any]] = {
            "ts": [float(b * step) for b in range(first, last + 1)]
        }
        for key, template in SERIES_QUERIES.items():
            found = self._range(template.format(r=rate_range), window, now)[:1]
            columns[key] = found[0][1] if found else [None] * points
        return {"series": columns, "by_model": self._by_model_series(window, now, rate_range),
                "models": self.models(window, now), "unavailable": []}

    def _by_model_series(self, window: Window, now: float, rate_range: str
                         ) -> dict[str, dict[str, list[float | None]]]:
        points = window.points
        tokens: list[dict[str, float]] = [{} for _ in range(points)]
        query = BY_MODEL_QUERIES["tokens_by_model"].format(r=rate_range)
        for labels, values in self._range(query, window, now):
            for i, value in enumerate(values):
                if value is not None:
                    tokens[i][labels.get("model", "")] = value
        buckets: list[dict[str, dict[float, float]]] = [{} for _ in range(points)]
        query = BY_MODEL_QUERIES["ttft_p95_by_model"].format(r=rate_range)
        for labels, values in self._range(query, window, now):
            le = _number(labels.get("le")) if labels.get("le") != "+Inf" else math.inf
            if le is None:
                continue
            for i, value in enumerate(values):
                if value is not None:
                    buckets[i].setdefault(labels.get("model", ""), {})[le] = value
        ttft = [{model: sorted(bounds.items()) for model, bounds in bucket.items()}
                for bucket in buckets]
        return {
            # Already rates: one second per bucket.
            "tokens_by_model": history_charts.rate_series(tokens, [1.0] * points),
            "ttft_p95_by_model": history_charts.quantile_series(ttft, 0.95),
        }

    def _by_model(self, template: str, seconds: float, at: float) -> dict[str, float]:
        query = template.format(w=f"{int(seconds)}s")
        out: dict[str, float] = {}
        for series in self._api("query", {"query": query, "time": at}):
            model = (series.get("metric") or {}).get("model", "")
            value = _number((series.get("value") or [None, None])[1])
            if value is not None:
                out[model] = value
        return out

    def models(self, window: Window, now: float) -> list[dict[str, Any]]:
        got = {key: self._by_model(q, window.seconds, now) for key, q in MODEL_QUERIES.items()}
        rows = []
        for model in sorted(got["requests"]):
            requests = got["requests"][model]
            if requests < 0.5:
                continue
            rows.append({
                "model": model,
                "requests": round(requests),
                "errors": round(got["errors"].get(model, 0.0)),
                "prompt_tokens": round(got["prompt_tokens"].get(model, 0.0)),
                "generated_tokens": round(got["generated_tokens"].get(model, 0.0)),
                "tokens_per_second": ratio(got["tps_sum"].get(model),
                                           got["tps_count"].get(model)),
                "ttft_p95": got["ttft_p95"].get(model),
                "ttft_mean": ratio(got["ttft_seconds"].get(model),
                                   got["ttft_count"].get(model)),
                "ttft_seconds": got["ttft_seconds"].get(model, 0.0),
                "loads": round(got["loads"].get(model, 0.0)),
                "load_seconds": got["load_seconds"].get(model, 0.0),
                "cache_hit_share": cache_hit_share(got["cached_prompt_tokens"],
                                                   got["prompt_tokens"], model),
            })
        return rows

    def baseline_tps(self, since: float, until: float) -> dict[str, float]:
        sums = self._by_model(MODEL_QUERIES["tps_sum"], until - since, until)
        counts = self._by_model(MODEL_QUERIES["tps_count"], until - since, until)
        out = {}
        for model, total in sums.items():
            mean = ratio(total, counts.get(model))
            if mean is not None:
                out[model] = mean
        return out

    def prewarm(self) -> None:
        """Nothing to do: Prometheus keeps its own caches."""
