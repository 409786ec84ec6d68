"""Every series llama-metrics exports, as data: name, type, labels, unit, help and buckets.

The proxy's collectors, the dashboard's and the health daemon's are built from these entries
(``llama_core.exposition``), and every reader names a series through them
(``catalogue.REQUESTS.name``), so a name is written once. The Grafana dashboard and the alert
rules cannot import Python: their tests check every series they use against ``ALL``.

A ``name`` is what a scrape shows and PromQL asks for: a counter's ends in ``_total``, an
info's in ``_info``; a histogram's samples add ``_bucket``, ``_sum`` and ``_count``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["counter", "gauge", "histogram", "info"]

PROXY_PREFIX = "ollama_proxy_"
DASHBOARD_PREFIX = "dashboard_"
HEALTHD_PREFIX = "healthd_"


@dataclass(frozen=True)
class Series:
    """One metric family. ``unit`` is what a value is in; empty for a 0/1 state or an info."""

    name: str
    type: Kind
    help: str
    unit: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        suffix = {"counter": "_total", "info": "_info"}.get(self.type)
        if suffix and not self.name.endswith(suffix):
            raise ValueError(f"{self.type} {self.name}: the name must end in {suffix}")
        if (self.type == "histogram") != bool(self.buckets):
            raise ValueError(f"{self.name}: buckets are for histograms, and every one has them")

    @property
    def family(self) -> str:
        """The name prometheus_client takes: without ``_total`` or ``_info``."""
        if self.type == "counter":
            return self.name.removesuffix("_total")
        if self.type == "info":
            return self.name.removesuffix("_info")
        return self.name

    @property
    def bucket(self) -> str:
        return self.name + "_bucket"

    @property
    def sum(self) -> str:
        return self.name + "_sum"

    @property
    def count(self) -> str:
        return self.name + "_count"

    def samples(self) -> dict[str, frozenset[str]]:
        """The sample names a scrape shows for this family, each with its label names."""
        labels = frozenset(self.labels)
        if self.type != "histogram":
            return {self.name: labels}
        return {self.bucket: labels | {"le"}, self.sum: labels, self.count: labels}


def one_two_five(start: int, stop: int) -> tuple[float, ...]:
    """1-2-5 series from ``start`` up to ``stop``: 1, 2, 5, 10, 20, 50, ..."""
    out: list[float] = []
    decade = start
    while decade <= stop:
        out.extend(float(decade * m) for m in (1, 2, 5) if decade * m <= stop)
        decade *= 10
    return tuple(out)


# Like vLLM's: a first token can take a model load (minutes) or a millisecond.
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
    10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)
TOKEN_LATENCY_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
)
DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0,
    30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0,
)
SERVER_DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0, 120.0, 300.0,
)
QUEUE_WAIT_BUCKETS = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    300.0,
)
RATE_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0)
TOKEN_COUNT_BUCKETS = one_two_five(1, 500_000)
SIZE_BUCKETS = tuple(float(4**n * 64) for n in range(12))  # 64 B ... 256 MiB
API_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

P = PROXY_PREFIX
BY_GPU = ("gpu", "name")
# The ``client`` label of the request and token series: a name from security.clients_file,
# "anonymous" (allow_anonymous), or "" (no clients file, or refused before it was known).

# The proxy: request traffic (addons/metrics.py).
REQUESTS = Series(
    P + "requests_total", "counter",
    "Requests the proxy finished, by endpoint, model, HTTP status and client.",
    "requests", ("endpoint", "model", "status", "client"))
ERRORS = Series(
    P + "errors_total", "counter",
    "Requests that failed, by endpoint, model, error type and client.",
    "requests", ("endpoint", "model", "error_type", "client"))
INTERNAL_REQUESTS = Series(
    P + "internal_requests_total", "counter",
    "Requests our own processes sent through the proxy, by source, endpoint and HTTP status.",
    "requests", ("source", "endpoint", "status"))
PROMPT_TOKENS = Series(
    P + "prompt_tokens_total", "counter",
    "Input tokens Ollama reported evaluating, by model and client.",
    "tokens", ("model", "client"))
GENERATED_TOKENS = Series(
    P + "generated_tokens_total", "counter",
    "Output tokens Ollama reported generating (or the proxy counted without a report), by model "
    "and client.",
    "tokens", ("model", "client"))
USAGE_ESTIMATED = Series(
    P + "usage_estimated_total", "counter",
    "Requests whose output tokens the proxy counted from content chunks because Ollama sent no "
    "final report, by endpoint and model.",
    "requests", ("endpoint", "model"))
# Counting what Ollama's answers hold (issue 15; addons/streams.py, addons/reports.py).
UNCOUNTED = Series(
    P + "uncounted_requests_total", "counter",
    "Requests whose answer held tokens the proxy could not read, in no token series rather "
    "than as 0, by endpoint, model and reason (body_too_large, content_encoding).",
    "requests", ("endpoint", "model", "reason"))
CACHED_PROMPT_TOKENS = Series(
    P + "cached_prompt_tokens_total", "counter",
    "Input tokens the server reported serving from its prompt cache, by model, from the "
    "answers that report them.",
    "tokens", ("model",))

MODEL_LOADS = Series(
    P + "model_loads_total", "counter",
    "Requests that waited for Ollama to load their model, by model.",
    "requests", ("model",))
REQUEST_DURATION = Series(
    P + "request_duration_seconds", "histogram",
    "Seconds from a request's arrival at the proxy to the last byte sent to the client, by "
    "endpoint and model.",
    "seconds", ("endpoint", "model"), DURATION_BUCKETS)
TTFT = Series(
    P + "time_to_first_token_seconds", "histogram",
    "Seconds from forwarding a request upstream to its first content token, by endpoint and "
    "model.",
    "seconds", ("endpoint", "model"), TTFT_BUCKETS)
TPOT = Series(
    P + "time_per_output_token_seconds", "histogram",
    "Seconds per output token after the first, one observation per request, by model.",
    "seconds", ("model",), TOKEN_LATENCY_BUCKETS)
ITL = Series(
    P + "inter_token_latency_seconds", "histogram",
    "Seconds between successive content chunks of a response, by model.",
    "seconds", ("model",), TOKEN_LATENCY_BUCKETS)
TOKENS_PER_SECOND = Series(
    P + "tokens_per_second", "histogram",
    "Output tokens per second of a request (Ollama's own rate when it reports one), by model.",
    "tokens per second", ("model",), RATE_BUCKETS)
REQUEST_PROMPT_TOKENS = Series(
    P + "request_prompt_tokens", "histogram",
    "Input tokens of a request, by model.",
    "tokens", ("model",), TOKEN_COUNT_BUCKETS)
REQUEST_GENERATED_TOKENS = Series(
    P + "request_generated_tokens", "histogram",
    "Output tokens of a request, by model.",
    "tokens", ("model",), TOKEN_COUNT_BUCKETS)
PROMPT_EVAL_DURATION = Series(
    P + "prompt_eval_duration_seconds", "histogram",
    "Seconds Ollama reported spending on a request's prompt, by model.",
    "seconds", ("model",), SERVER_DURATION_BUCKETS)
MODEL_LOAD_DURATION = Series(
    P + "model_load_duration_seconds", "histogram",
    "Seconds Ollama reported loading the model for a request that loaded one, by model.",
    "seconds", ("model",), SERVER_DURATION_BUCKETS)
QUEUE_WAIT = Series(
    P + "queue_wait_seconds", "histogram",
    "Seconds a request waited in the proxy's admission queue, by priority.",
    "seconds", ("priority",), QUEUE_WAIT_BUCKETS)
REQUEST_SIZE = Series(
    P + "request_size_bytes", "histogram",
    "Bytes of a request's body, by endpoint.",
    "bytes", ("endpoint",), SIZE_BUCKETS)
RESPONSE_SIZE = Series(
    P + "response_size_bytes", "histogram",
    "Bytes of a response's body as sent to the client, by endpoint.",
    "bytes", ("endpoint",), SIZE_BUCKETS)
ACTIVE_REQUESTS = Series(
    P + "active_requests", "gauge",
    "Requests forwarded upstream and not yet finished, by model.",
    "requests", ("model",))
HISTORY_DROPPED = Series(
    P + "history_dropped_total", "counter",
    "History rows dropped because the queue was full or the database failed.",
    "rows")
BUILD = Series(
    P + "build_info", "info",
    "The proxy's version, with the versions of Python and mitmproxy it runs on.",
    "", ("version", "python", "mitmproxy"))

# The proxy: its admission queue (addons/admission.py) and cassette recorder (recorder.py).
QUEUE_DEPTH = Series(
    P + "queue_depth", "gauge",
    "Requests waiting in the proxy's admission queue, by priority.",
    "requests", ("priority",))
RECORD_DROPPED = Series(
    P + "record_dropped_total", "counter",
    "Interactions not written to the cassette because the queue was full or a write failed.",
    "interactions")

# The proxy: requests that run no model (addons/lifecycle.py, addons/tap.py), bodies it could
# not read as Ollama does, and its connection to Ollama (addons/upstream.py).
MODEL_LIFECYCLE = Series(
    P + "model_lifecycle_requests_total", "counter",
    "Requests that only loaded or unloaded a model (no prompt, no messages, no input), by model "
    "and action.",
    "requests", ("model", "action"))
MODEL_LIFECYCLE_DURATION = Series(
    P + "model_lifecycle_duration_seconds", "histogram",
    "Seconds from a load or unload request's arrival at the proxy to its answer, by model and "
    "action.",
    "seconds", ("model", "action"), DURATION_BUCKETS)
NON_POST_REQUESTS = Series(
    P + "non_post_requests_total", "counter",
    "Requests to an inference endpoint with a method other than POST (CORS preflights, HEAD, "
    "GET), which Ollama answers without a model, by endpoint, method and status.",
    "requests", ("endpoint", "method", "status"))
REQUEST_BODY_UNREAD = Series(
    P + "request_body_unread_total", "counter",
    "Inference requests forwarded with their body unchanged because the proxy could not read or "
    "rewrite it as Ollama reads it, by endpoint and reason.",
    "requests", ("endpoint", "reason"))
UPSTREAM_CONNECT_RETRIES = Series(
    P + "upstream_connect_retries_total", "counter",
    "Connection attempts to Ollama repeated while it refused connections, before a request "
    "went upstream.",
    "attempts")
UPSTREAM_CONNECT_WAITS = Series(
    P + "upstream_connect_waits_total", "counter",
    "Requests that waited for Ollama to accept connections, by outcome (connected or gave_up).",
    "requests", ("outcome",))

# The proxy: the Ollama behind it, polled in the background (addons/inventory.py).
UPSTREAM_UP = Series(
    P + "upstream_up", "gauge",
    "1 when the proxy's last poll of Ollama succeeded, else 0.",
    "")
UPSTREAM_INFO = Series(
    P + "upstream_info", "gauge",
    "Always 1, labelled with the version of the Ollama behind the proxy.",
    "", ("version",))
MODEL_LOADED = Series(
    P + "model_loaded", "gauge",
    "1 for each model Ollama holds in memory, by model.",
    "", ("model",))
MODEL_VRAM = Series(
    P + "model_vram_bytes", "gauge",
    "Bytes of GPU memory a loaded model occupies, by model.",
    "bytes", ("model",))
MODEL_SIZE = Series(
    P + "model_size_bytes", "gauge",
    "Bytes of memory a loaded model occupies in all, by model.",
    "bytes", ("model",))
MODEL_EXPIRES_AT = Series(
    P + "model_expires_at_seconds", "gauge",
    "Unix time in seconds at which Ollama will unload a loaded model (absent when it never "
    "will), by model.",
    "seconds", ("model",))

# The proxy: the machine, polled in the background (addons/resources.py).
SYSTEM_CPU = Series(
    P + "system_cpu_percent", "gauge",
    "Host CPU use in percent of all cores.",
    "percent")
SYSTEM_MEMORY_USED = Series(
    P + "system_memory_used_bytes", "gauge",
    "Bytes of host memory in use (total minus available).",
    "bytes")
SYSTEM_MEMORY_TOTAL = Series(
    P + "system_memory_total_bytes", "gauge",
    "Bytes of host memory in all.",
    "bytes")
OLLAMA_RSS = Series(
    P + "ollama_process_rss_bytes", "gauge",
    "Bytes of resident memory of the Ollama processes.",
    "bytes")
OLLAMA_CPU = Series(
    P + "ollama_process_cpu_percent", "gauge",
    "CPU use of the Ollama processes in percent of one core.",
    "percent")
GPU_UTILIZATION = Series(
    P + "gpu_utilization_percent", "gauge",
    "GPU use in percent, by GPU index and name.",
    "percent", BY_GPU)
GPU_MEMORY_USED = Series(
    P + "gpu_memory_used_bytes", "gauge",
    "Bytes of GPU memory in use, by GPU index and name.",
    "bytes", BY_GPU)
GPU_MEMORY_TOTAL = Series(
    P + "gpu_memory_total_bytes", "gauge",
    "Bytes of GPU memory in all, by GPU index and name.",
    "bytes", BY_GPU)
GPU_TEMPERATURE = Series(
    P + "gpu_temperature_celsius", "gauge",
    "GPU core temperature in degrees celsius, by GPU index and name.",
    "celsius", BY_GPU)
GPU_POWER = Series(
    P + "gpu_power_watts", "gauge",
    "GPU power draw in watts, by GPU index and name.",
    "watts", BY_GPU)

D = DASHBOARD_PREFIX

# The dashboard's own (dashboard/selfmetrics.py).
DASHBOARD_BUILD = Series(
    D + "build_info", "info",
    "The dashboard's version.",
    "", ("version",))
DASHBOARD_API_SECONDS = Series(
    D + "api_request_seconds", "histogram",
    "Seconds the dashboard took to answer an API request, by endpoint.",
    "seconds", ("endpoint",), API_BUCKETS)
DASHBOARD_WEBSOCKETS = Series(
    D + "websocket_clients", "gauge",
    "Pages connected to the dashboard for live updates.",
    "pages")
DASHBOARD_NARRATIVES = Series(
    D + "narratives_total", "counter",
    "Narratives asked of the dashboard, by how they ended.",
    "narratives", ("outcome",))
DASHBOARD_PROXY_UP = Series(
    D + "proxy_up", "gauge",
    "1 when the dashboard's last scrape of every proxy's /metrics worked, else 0.",
    "")
DASHBOARD_LIVE_TICKS = Series(
    D + "live_ticks_total", "counter",
    "Live snapshots the dashboard published.",
    "snapshots")
DASHBOARD_SCRAPE_FAILURES = Series(
    D + "proxy_scrape_failures_total", "counter",
    "Scrapes of a proxy's /metrics by the dashboard that failed.",
    "scrapes")

H = HEALTHD_PREFIX

# The health daemon's own (healthd/check_metrics.py).
HEALTHD_CHECK_STATUS = Series(
    H + "check_status", "gauge",
    "Last status of a check (0 ok, 1 warn, 2 critical), by check.",
    "", ("check",))
HEALTHD_CHECK_DURATION = Series(
    H + "check_duration_seconds", "gauge",
    "Seconds the last run of a check took, by check.",
    "seconds", ("check",))
HEALTHD_CHECK_LAST_RUN = Series(
    H + "check_last_run_timestamp_seconds", "gauge",
    "Unix time in seconds of a check's last run, by check.",
    "seconds", ("check",))
HEALTHD_OVERALL_STATUS = Series(
    H + "overall_status", "gauge",
    "Overall health (0 healthy, 1 degraded, 2 unhealthy).",
    "")
HEALTHD_READY = Series(
    H + "ready", "gauge",
    "1 once every check has run at least once, else 0.",
    "")
HEALTHD_ALERTS = Series(
    H + "alerts", "gauge",
    "Alerts the health daemon holds, by state.",
    "alerts", ("state",))
HEALTHD_WEBHOOK_DELIVERIES = Series(
    H + "webhook_deliveries_total", "counter",
    "Notifications sent to a webhook URL, by result.",
    "notifications", ("result",))


def _of(prefix: str) -> tuple[Series, ...]:
    found = [v for v in globals().values() if isinstance(v, Series) and v.name.startswith(prefix)]
    return tuple(found)


PROXY: tuple[Series, ...] = _of(PROXY_PREFIX)
DASHBOARD: tuple[Series, ...] = _of(DASHBOARD_PREFIX)
HEALTHD: tuple[Series, ...] = _of(HEALTHD_PREFIX)
ALL: tuple[Series, ...] = PROXY + DASHBOARD + HEALTHD
BY_NAME: dict[str, Series] = {s.name: s for s in ALL}


def samples(series: tuple[Series, ...] = ALL) -> dict[str, frozenset[str]]:
    """Every sample name of ``series`` with its label names, as PromQL may ask for them."""
    out: dict[str, frozenset[str]] = {}
    for entry in series:
        out.update(entry.samples())
    return out
