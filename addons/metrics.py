"""The request-traffic metrics of the catalogue, built into a given registry."""

from __future__ import annotations

import logging
import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import HistogramMetricFamily

from llama_core.buckets import (
    DURATION_BUCKETS,
    QUEUE_WAIT_BUCKETS,
    RATE_BUCKETS,
    SERVER_DURATION_BUCKETS,
    SIZE_BUCKETS,
    TOKEN_COUNT_BUCKETS,
    TOKEN_LATENCY_BUCKETS,
    TTFT_BUCKETS,
)
from llama_core.record import RequestRecord

logger = logging.getLogger(__name__)

PREFIX = "ollama_proxy_"

class BulkHistogram:
    """A one-label histogram that takes many observations at once, for per-token values.

    prometheus_client's ``Histogram.observe`` takes a lock and walks the buckets for every
    value; a stream observes a gap per token, so the tap hands over gaps in batches instead.
    """

    def __init__(self, name: str, documentation: str, label: str, buckets: Sequence[float]):
        self.name = name
        self.documentation = documentation
        self.label = label
        self.bounds = tuple(buckets)
        self._series: dict[str, list[float]] = {}  # label value -> bucket counts + [sum]
        self._lock = threading.Lock()

    def observe_many(self, label: str, values: Iterable[float]) -> None:
        with self._lock:
            counts = self._series.get(label)
            if counts is None:
                counts = self._series[label] = [0.0] * (len(self.bounds) + 2)
            bounds, total = self.bounds, 0.0
            for value in values:
                counts[bisect_left(bounds, value)] += 1
                total += value
            counts[-1] += total

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=[self.label])
        with self._lock:
            series = {k: list(v) for k, v in self._series.items()}
        for label, counts in series.items():
            cumulative, buckets = 0.0, []
            for bound, count in zip((*self.bounds, float("inf")), counts, strict=False):
                cumulative += count
                buckets.append((str(bound) if bound != float("inf") else "+Inf", cumulative))
            family.add_metric([label], buckets, sum_value=counts[-1])
        yield family


class ProxyMetrics:
    """Every request-traffic series; ``observe`` takes a finished request."""

    def __init__(self, registry: CollectorRegistry, *, version: str = "0.0.0") -> None:
        def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
            return Counter(PREFIX + name, doc, labels, registry=registry)

        def histogram(
            name: str, doc: str, labels: Sequence[str], buckets: Iterable[float]
        ) -> Histogram:
            return Histogram(PREFIX + name, doc, labels, buckets=tuple(buckets), registry=registry)

        self.requests = counter(
            "requests", "Finished requests.", ("endpoint", "model", "status")
        )
        self.errors = counter(
            "errors", "Failed requests by kind.", ("endpoint", "model", "error_type")
        )
        self.prompt_tokens = counter(
            "prompt_tokens", "Input tokens as reported by the server.", ("model",)
        )
        self.generated_tokens = counter(
            "generated_tokens", "Output tokens as reported by the server.", ("model",)
        )
        self.usage_estimated = counter(
            "usage_estimated",
            "Requests whose output tokens were counted from content chunks because the "
            "server sent no final report.",
            ("endpoint", "model"),
        )
        self.model_loads = counter(
            "model_loads", "Requests that caused a model load.", ("model",)
        )
        self.request_duration = histogram(
            "request_duration_seconds",
            "Arrival at the proxy to the last byte sent to the client.",
            ("endpoint", "model"),
            DURATION_BUCKETS,
        )
        self.ttft = histogram(
            "time_to_first_token_seconds",
            "Request forwarded upstream to the first content token.",
            ("endpoint", "model"),
            TTFT_BUCKETS,
        )
        self.tpot = histogram(
            "time_per_output_token_seconds",
            "Per request: (last token - first token) / (tokens - 1).",
            ("model",),
            TOKEN_LATENCY_BUCKETS,
        )
        self.itl = BulkHistogram(
            PREFIX + "inter_token_latency_seconds",
            "Gap between successive content chunks.",
            "model",
            TOKEN_LATENCY_BUCKETS,
        )
        registry.register(self.itl)
        self.tokens_per_second = histogram(
            "tokens_per_second",
            "Per request generation rate (server-reported when present).",
            ("model",),
            RATE_BUCKETS,
        )
        self.request_prompt_tokens = histogram(
            "request_prompt_tokens", "Prompt tokens per request.", ("model",), TOKEN_COUNT_BUCKETS
        )
        self.request_generated_tokens = histogram(
            "request_generated_tokens",
            "Generated tokens per request.",
            ("model",),
            TOKEN_COUNT_BUCKETS,
        )
        self.prompt_eval_duration = histogram(
            "prompt_eval_duration_seconds",
            "Server-reported prompt processing time.",
            ("model",),
            SERVER_DURATION_BUCKETS,
        )
        self.model_load_duration = histogram(
            "model_load_duration_seconds",
            "Server-reported load time, when a load happened.",
            ("model",),
            SERVER_DURATION_BUCKETS,
        )
        self.queue_wait = histogram(
            "queue_wait_seconds", "Time in the proxy's own queue.", ("priority",),
            QUEUE_WAIT_BUCKETS,
        )
        self.request_size = histogram(
            "request_size_bytes", "Request bodies.", ("endpoint",), SIZE_BUCKETS
        )
        self.response_size = histogram(
            "response_size_bytes", "Response bodies.", ("endpoint",), SIZE_BUCKETS
        )
        self.active = Gauge(
            PREFIX + "active_requests",
            "Requests forwarded upstream and not finished.",
            ("model",),
            registry=registry,
        )
        self.internal_requests = counter(
            "internal_requests",
            "Requests our own processes sent through the proxy.",
            ("source", "endpoint", "status"),
        )
        self.history_dropped = counter(
            "history_dropped", "History rows dropped (queue full, database error)."
        )
        self.build_info = Info(PREFIX + "build", "This proxy.", registry=registry)
        self.build_info.info({"version": version})

    def observe(self, record: RequestRecord, label: str) -> None:
        """Count one finished request; ``label`` names its model's series (``ModelLabels``).

        The record is everything counted (``addons.accounting.account`` made it); inter-token
        gaps are observed as they happen, not here.
        """
        endpoint = record.endpoint
        self.requests.labels(endpoint, label, str(record.status)).inc()
        if record.error_type:
            self.errors.labels(endpoint, label, record.error_type).inc()
        self.request_duration.labels(endpoint, label).observe(record.duration_s)
        self.request_size.labels(endpoint).observe(record.request_bytes)
        self.response_size.labels(endpoint).observe(record.response_bytes)
        if record.ttft_s is not None:
            self.ttft.labels(endpoint, label).observe(record.ttft_s)
        if record.prompt_tokens is not None:
            self.prompt_tokens.labels(label).inc(record.prompt_tokens)
            self.request_prompt_tokens.labels(label).observe(record.prompt_tokens)
        if record.generated_tokens is not None:
            self.generated_tokens.labels(label).inc(record.generated_tokens)
            self.request_generated_tokens.labels(label).observe(record.generated_tokens)
            if not record.usage_reported:
                self.usage_estimated.labels(endpoint, label).inc()
        if record.tokens_per_second is not None:
            self.tokens_per_second.labels(label).observe(record.tokens_per_second)
        if record.prompt_eval_duration_s is not None:
            self.prompt_eval_duration.labels(label).observe(record.prompt_eval_duration_s)
        if record.loaded_model and record.load_duration_s is not None:
            self.model_loads.labels(label).inc()
            self.model_load_duration.labels(label).observe(record.load_duration_s)
        if record.tpot_s is not None:
            self.tpot.labels(label).observe(record.tpot_s)
