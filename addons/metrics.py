"""The request-traffic metrics of the catalogue, built into a given registry."""

from __future__ import annotations

import logging
import platform
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from mitmproxy.version import VERSION as MITMPROXY_VERSION
from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily

import llama_core
from llama_core import catalogue, exposition
from llama_core.record import RequestRecord

logger = logging.getLogger(__name__)


class BulkHistogram:
    """A one-label histogram that takes many observations at once, for per-token values.

    prometheus_client's ``Histogram.observe`` takes a lock and walks the buckets for every
    value; a stream observes a gap per token, so the tap hands over gaps in batches instead.
    """

    def __init__(self, series: catalogue.Series) -> None:
        if series.type != "histogram" or len(series.labels) != 1:
            raise ValueError(f"{series.name} is not a histogram with one label")
        self.series = series
        self.bounds = series.buckets
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
        family = exposition.histogram_family(self.series)
        with self._lock:
            series = {k: list(v) for k, v in self._series.items()}
        for label, counts in series.items():
            cumulative, buckets = 0.0, []
            for bound, count in zip((*self.bounds, float("inf")), counts, strict=False):
                cumulative += count
                buckets.append((str(bound) if bound != float("inf") else "+Inf", cumulative))
            family.add_metric([label], buckets, sum_value=counts[-1])
        yield family


def children(metric: Any) -> Callable[..., Any]:
    """``metric.labels`` remembered: the child of each label tuple, looked up in a plain dict.

    prometheus_client's ``labels()`` validates and converts its values and takes a lock on
    every call (about 1 us; ``observe`` makes a dozen per request). A child is made on first
    use, as before, so no series appears before its first observation; the label values are
    the bounded ones of the series themselves, so the dict is as bounded as the registry.
    """
    cache: dict[tuple[Any, ...], Any] = {}

    def child(*values: Any) -> Any:
        found = cache.get(values)
        if found is None:
            found = cache[values] = metric.labels(*values)
        return found

    return child


class Children:
    """The remembered ``labels`` of each series a request is counted in: ``observe``'s and
    those the tap counts in as the request goes (``children.active(label).inc()``)."""

    def __init__(self, m: ProxyMetrics) -> None:
        for name in _PER_REQUEST:
            setattr(self, name, children(getattr(m, name)))

    def __getattr__(self, name: str) -> Callable[..., Any]:  # for mypy: set in __init__
        raise AttributeError(name)


_PER_REQUEST = (
    "requests", "errors", "request_duration", "request_size", "response_size", "ttft",
    "prompt_tokens", "request_prompt_tokens", "generated_tokens", "request_generated_tokens",
    "usage_estimated", "tokens_per_second", "prompt_eval_duration", "model_loads",
    "model_load_duration", "tpot", "cached_prompt_tokens", "lifecycle", "lifecycle_duration",
    "active", "queue_wait", "internal_requests", "non_post", "uncounted", "body_unread",
)


class ProxyMetrics:
    """Every request-traffic series; ``observe`` takes a finished request."""

    def __init__(self, registry: CollectorRegistry, *, version: str | None = None) -> None:
        c = catalogue
        self.requests = exposition.counter(c.REQUESTS, registry)
        self.errors = exposition.counter(c.ERRORS, registry)
        self.prompt_tokens = exposition.counter(c.PROMPT_TOKENS, registry)
        self.generated_tokens = exposition.counter(c.GENERATED_TOKENS, registry)
        self.usage_estimated = exposition.counter(c.USAGE_ESTIMATED, registry)
        self.model_loads = exposition.counter(c.MODEL_LOADS, registry)
        self.uncounted = exposition.counter(c.UNCOUNTED, registry)
        self.cached_prompt_tokens = exposition.counter(c.CACHED_PROMPT_TOKENS, registry)
        self.request_duration = exposition.histogram(c.REQUEST_DURATION, registry)
        self.ttft = exposition.histogram(c.TTFT, registry)
        self.tpot = exposition.histogram(c.TPOT, registry)
        self.itl = BulkHistogram(c.ITL)
        registry.register(self.itl)
        self.tokens_per_second = exposition.histogram(c.TOKENS_PER_SECOND, registry)
        self.request_prompt_tokens = exposition.histogram(c.REQUEST_PROMPT_TOKENS, registry)
        self.request_generated_tokens = exposition.histogram(c.REQUEST_GENERATED_TOKENS, registry)
        self.prompt_eval_duration = exposition.histogram(c.PROMPT_EVAL_DURATION, registry)
        self.model_load_duration = exposition.histogram(c.MODEL_LOAD_DURATION, registry)
        self.queue_wait = exposition.histogram(c.QUEUE_WAIT, registry)
        self.request_size = exposition.histogram(c.REQUEST_SIZE, registry)
        self.response_size = exposition.histogram(c.RESPONSE_SIZE, registry)
        self.active = exposition.gauge(c.ACTIVE_REQUESTS, registry)
        self.internal_requests = exposition.counter(c.INTERNAL_REQUESTS, registry)
        self.history_dropped = exposition.counter(c.HISTORY_DROPPED, registry)
        # Requests that run no model, and bodies not read as Ollama reads them (issue 15).
        self.lifecycle = exposition.counter(c.MODEL_LIFECYCLE, registry)
        self.lifecycle_duration = exposition.histogram(c.MODEL_LIFECYCLE_DURATION, registry)
        self.non_post = exposition.counter(c.NON_POST_REQUESTS, registry)
        self.body_unread = exposition.counter(c.REQUEST_BODY_UNREAD, registry)
        self.build_info = exposition.info(c.BUILD, registry, {
            "version": llama_core.version() if version is None else version,
            "python": platform.python_version(),
            "mitmproxy": MITMPROXY_VERSION,
        })
        self.children = Children(self)

    def observe(self, record: RequestRecord, label: str) -> None:
        """Count one finished request; ``label`` names its model's series (``ModelLabels``).

        The record is everything counted (``addons.accounting.account`` made it); inter-token
        gaps are observed as they happen, not here.
        """
        endpoint = record.endpoint
        client = record.client or ""  # bounded: configured names and "anonymous" only
        c = self.children
        c.requests(endpoint, label, record.status, client).inc()
        if record.error_type:
            c.errors(endpoint, label, record.error_type, client).inc()
        c.request_duration(endpoint, label).observe(record.duration_s)
        c.request_size(endpoint).observe(record.request_bytes)
        c.response_size(endpoint).observe(record.response_bytes)
        if record.ttft_s is not None:
            c.ttft(endpoint, label).observe(record.ttft_s)
        if record.prompt_tokens is not None:
            c.prompt_tokens(label, client).inc(record.prompt_tokens)
            c.request_prompt_tokens(label).observe(record.prompt_tokens)
        if record.generated_tokens is not None:
            c.generated_tokens(label, client).inc(record.generated_tokens)
            c.request_generated_tokens(label).observe(record.generated_tokens)
            if not record.usage_reported:
                c.usage_estimated(endpoint, label).inc()
        if record.cached_prompt_tokens is not None:  # a 0 reported is a miss, and counts
            c.cached_prompt_tokens(label).inc(record.cached_prompt_tokens)
        if record.tokens_per_second is not None:
            c.tokens_per_second(label).observe(record.tokens_per_second)
        if record.prompt_eval_duration_s is not None:
            c.prompt_eval_duration(label).observe(record.prompt_eval_duration_s)
        if record.loaded_model and record.load_duration_s is not None:
            c.model_loads(label).inc()
            c.model_load_duration(label).observe(record.load_duration_s)
        if record.tpot_s is not None:
            c.tpot(label).observe(record.tpot_s)

    def observe_lifecycle(self, record: RequestRecord, label: str, action: str) -> None:
        """Count a request that only loaded or unloaded its model (``addons/lifecycle.py``).

        It is a finished request of its endpoint (``requests_total``, sizes), but its
        duration is a load's, not an answer's: it goes to the lifecycle histogram, never to
        the request-duration, time-to-first-token or token series.
        """
        endpoint = record.endpoint
        c = self.children
        c.requests(endpoint, label, record.status, record.client or "").inc()
        c.request_size(endpoint).observe(record.request_bytes)
        c.response_size(endpoint).observe(record.response_bytes)
        c.lifecycle(label, action).inc()
        c.lifecycle_duration(label, action).observe(record.duration_s)
        if record.loaded_model and record.load_duration_s is not None:
            c.model_loads(label).inc()
            c.model_load_duration(label).observe(record.load_duration_s)
