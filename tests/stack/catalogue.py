"""The series llama-metrics exports, built from the proxy's own collectors, and a checker for
the PromQL in config/ (alert rules, Grafana panels) against them.

Every collector of addons/ is registered in a fresh ``CollectorRegistry`` and fed one of
everything (a finished request, an inventory poll, a machine sample with a GPU through the
fake psutil and NVML of tests/addons/test_resources.py), so each family shows its samples and
their label names: counters with ``_total``, histograms with ``_bucket``/``_sum``/``_count``.
"""

from __future__ import annotations

import json
from functools import cache

from prometheus_client import CollectorRegistry

from addons.admission import Admission, AdmissionCollector
from addons.inventory import InventoryCollector, InventoryPoller
from addons.metrics import ProxyMetrics
from addons.recorder import CassetteRecorder
from addons.resources import ResourceCollector, ResourcePoller
from addons.upstream_client import Request, Response, UpstreamClient
from llama_core.record import RequestRecord
from llama_core.sampler import ResourceSampler
from tests.addons.test_resources import FakeNvml, FakePsutil, ollama_procs
from tests.stack.promql import names

# Labels Prometheus adds to every scraped series (config/prometheus.yml sets `instance`).
TARGET_LABELS = frozenset({"job", "instance"})

# Prometheus's own series per target.
PROMETHEUS_SERIES: dict[str, frozenset[str]] = {"up": frozenset()}

# PROVISIONAL: the health daemon's series as agreed while healthd/ is being written
# (0 ok, 1 warn, 2 critical). Used by the llama-metrics-healthd group of config/alerts.yml
# only. No rule or panel uses dashboard_* series yet.
HEALTHD_SERIES: dict[str, frozenset[str]] = {
    "healthd_check_status": frozenset({"check"}),
    "healthd_overall_status": frozenset(),
}

_OLLAMA = {
    "/api/version": {"version": "0.9.0"},
    "/api/ps": {"models": [{"name": "llama3.2:latest", "model": "llama3.2:latest",
                            "size": 3_000_000_000, "size_vram": 2_500_000_000,
                            "expires_at": "2030-01-01T00:00:00Z"}]},
    "/api/tags": {"models": [{"name": "llama3.2:latest"}]},
}


def _send(request: Request) -> Response:
    path = "/" + request.url.split("/", 3)[3]
    return Response(request.url, 200, json.dumps(_OLLAMA[path]).encode())


def _everything() -> CollectorRegistry:
    registry = CollectorRegistry()

    metrics = ProxyMetrics(registry, version="0.1.0")
    record = RequestRecord(
        started_at=0.0, endpoint="/api/chat", model="llama3.2:latest", status=200,
        error_type="stream_error", prompt_tokens=10, generated_tokens=20, usage_reported=False,
        ttft_s=0.1, duration_s=1.0, queue_wait_s=0.0, tokens_per_second=30.0,
        load_duration_s=2.0, prompt_eval_duration_s=0.05, request_bytes=100,
        response_bytes=1000, tpot_s=0.03, loaded_model=True,
    )
    metrics.observe(record, "llama3.2:latest")
    metrics.internal_requests.labels("healthd", "/api/chat", "200").inc()
    metrics.queue_wait.labels("normal").observe(0.0)
    metrics.itl.observe_many("llama3.2:latest", [0.03, 0.04])
    metrics.active.labels("llama3.2:latest").set(1)

    poller = InventoryPoller("http://ollama.invalid:11434", client=UpstreamClient(_send))
    poller.poll_once()
    registry.register(InventoryCollector(poller))

    resources = ResourcePoller(
        ResourceSampler(psutil_module=FakePsutil(procs=ollama_procs()), nvml=FakeNvml())
    )
    resources.poll_once()
    resources.poll_once()  # the Ollama process's CPU needs a second reading
    registry.register(ResourceCollector(resources))

    registry.register(AdmissionCollector(Admission()))
    CassetteRecorder(registry)  # ollama_proxy_record_dropped_total
    return registry


@cache
def proxy_series() -> dict[str, frozenset[str]]:
    """Every sample name the proxy exports, with its label names (without job/instance)."""
    series: dict[str, set[str]] = {}
    for family in _everything().collect():
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(labels) for name, labels in series.items()}


def known_series() -> dict[str, frozenset[str]]:
    """What the rules and panels may name: the proxy's, Prometheus's and healthd's series."""
    return {**proxy_series(), **PROMETHEUS_SERIES, **HEALTHD_SERIES}


def problems(expr: str, series: dict[str, frozenset[str]] | None = None) -> list[str]:
    """What in ``expr`` is not in the catalogue: unknown metrics, labels no series has."""
    series = known_series() if series is None else series
    used = names(expr)
    out = []
    for selector in used.selectors:
        if selector.metric not in series:
            out.append(f"unknown metric {selector.metric or '(none)'!r}")
            continue
        allowed = series[selector.metric] | TARGET_LABELS
        for label in sorted(selector.labels - allowed):
            out.append(f"{selector.metric} has no label {label!r}")
    available = set(TARGET_LABELS)
    for metric in used.metrics & series.keys():
        available |= series[metric]
    for label in sorted(used.grouping - available):
        out.append(f"no series here has the label {label!r} it groups or matches on")
    return out
