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

from .http_client import Client, FetchError
from .stats import ratio
from .windows import SourceError, Window

logger = logging.getLogger(__name__)

P = "ollama_proxy_"
MIN_RATE_RANGE_S = 60  # four scrapes at Prometheus's usual 15 s


def _quantile(q: float, histogram: str, by: str = "") -> str:
    return (f"histogram_quantile({q}, sum by (le{by}) "
            f"(rate({P}{histogram}_bucket[{{r}}])))")


SERIES_QUERIES: dict[str, str] = {
    "requests_per_second": f"sum(rate({P}requests_total[{{r}}]))",
    "prompt_tokens_per_second": f"sum(rate({P}prompt_tokens_total[{{r}}]))",
    "generated_tokens_per_second": f"sum(rate({P}generated_tokens_total[{{r}}]))",
    "error_rate": (f"(sum(rate({P}errors_total[{{r}}])) or vector(0))"
                   f" / sum(rate({P}requests_total[{{r}}]))"),
    "ttft_p50": _quantile(0.5, "time_to_first_token_seconds"),
    "ttft_p95": _quantile(0.95, "time_to_first_token_seconds"),
    "duration_p50": _quantile(0.5, "request_duration_seconds"),
    "duration_p95": _quantile(0.95, "request_duration_seconds"),
    "active_requests": f"sum({P}active_requests)",
    "queue_depth": f"sum({P}queue_depth)",
    "cpu_percent": f"avg({P}system_cpu_percent)",
    "memory_percent": (f"100 * sum({P}system_memory_used_bytes)"
                       f" / sum({P}system_memory_total_bytes)"),
    "gpu_utilization_percent": f"avg({P}gpu_utilization_percent)",
    "gpu_memory_percent": (f"100 * sum({P}gpu_memory_used_bytes)"
                           f" / sum({P}gpu_memory_total_bytes)"),
}

def _growth(counter: str) -> str:
    """How much a counter grew over the window, per model, exactly.

    ``increase()`` extrapolates to the window's edges and cannot see a series' first
    increments (it has no sample from before them), so whole counts come out fractional or
    short. Now minus then is exact, with a series that did not exist then counting from zero
    (a proxy started inside the window). A counter reset inside the window (a proxy restart)
    is not seen and undercounts; ``clamp_min`` keeps that from going negative.
    """
    now = f"sum by (model) ({P}{counter})"
    then = f"sum by (model) ({P}{counter} offset {{w}})"
    return f"clamp_min({now} - ({then} or {now} * 0), 0)"


MODEL_QUERIES: dict[str, str] = {
    "requests": _growth("requests_total"),
    "errors": _growth("errors_total"),
    "prompt_tokens": _growth("prompt_tokens_total"),
    "generated_tokens": _growth("generated_tokens_total"),
    "tps_sum": f"sum by (model) (increase({P}tokens_per_second_sum[{{w}}]))",
    "tps_count": f"sum by (model) (increase({P}tokens_per_second_count[{{w}}]))",
    "ttft_p95": (f"histogram_quantile(0.95, sum by (model, le) "
                 f"(increase({P}time_to_first_token_seconds_bucket[{{w}}])))"),
    "ttft_seconds": f"sum by (model) (increase({P}time_to_first_token_seconds_sum[{{w}}]))",
    "ttft_count": f"sum by (model) (increase({P}time_to_first_token_seconds_count[{{w}}]))",
    "loads": _growth("model_loads_total"),
    "load_seconds": f"sum by (model) (increase({P}model_load_duration_seconds_sum[{{w}}]))",
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

    def history(self, window: Window, now: float) -> dict[str, Any]:
        first, last = window.buckets(now)
        step = window.step
        rate_range = f"{max(step, MIN_RATE_RANGE_S)}s"
        columns: dict[str, list[Any]] = {
            "ts": [float(b * step) for b in range(first, last + 1)]
        }
        for key, template in SERIES_QUERIES.items():
            values: list[Any] = [None] * (last - first + 1)
            # The open bucket is evaluated at its end, a moment ahead: Prometheus answers
            # that from the latest samples, which is what "now" should show.
            params = {"query": template.format(r=rate_range), "start": (first + 1) * step,
                      "end": (last + 1) * step, "step": step}
            for series in self._api("query_range", params)[:1]:
                for ts, text in series.get("values") or []:
                    index = round(float(ts) / step) - 1 - first
                    if 0 <= index < len(values):
                        values[index] = _number(text)
            columns[key] = values
        return {"series": columns, "models": self.models(window, now), "unavailable": []}

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
