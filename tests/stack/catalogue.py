"""The series llama-metrics exports, as ``llama_core.catalogue`` lists them, and a checker for
the PromQL in config/ (alert rules, Grafana panels) against them.

The catalogue is the reference; ``exported()`` is what the collectors really show: every
collector of addons/ in a fresh ``CollectorRegistry``, fed one of everything (a finished
request, an inventory poll, a machine sample with a GPU through the fake psutil and NVML of
tests/addons/test_resources.py), so each family has samples. tests/llama_core checks the two
against each other.
"""

from __future__ import annotations

import json
import re
from functools import cache

from prometheus_client import CollectorRegistry

from addons.admission import Admission, AdmissionCollector
from addons.inventory import InventoryCollector, InventoryPoller
from addons.metrics import ProxyMetrics
from addons.recorder import CassetteRecorder
from addons.resources import ResourceCollector, ResourcePoller
from addons.upstream import UpstreamGuard
from addons.upstream_client import Request, Response, UpstreamClient
from llama_core import catalogue
from llama_core.catalogue import Series
from llama_core.record import RequestRecord
from llama_core.sampler import ResourceSampler
from tests.addons.test_resources import FakeNvml, FakePsutil, ollama_procs
from tests.stack.promql import names

# Labels Prometheus adds to every scraped series (config/prometheus.yml sets `instance`).
TARGET_LABELS = frozenset({"job", "instance"})

# Prometheus's own series per target.
PROMETHEUS_SERIES: dict[str, frozenset[str]] = {"up": frozenset()}

HEALTHD_SERIES: dict[str, frozenset[str]] = catalogue.samples(catalogue.HEALTHD)
DASHBOARD_SERIES: dict[str, frozenset[str]] = catalogue.samples(catalogue.DASHBOARD)

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


def exported() -> CollectorRegistry:
    """The proxy's collectors in a fresh registry, each with samples."""
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
    UpstreamGuard(registry).waits.labels("connected").inc()  # ollama_proxy_upstream_connect_*
    return registry


def proxy_series() -> dict[str, frozenset[str]]:
    """Every sample name the proxy exports, with its label names (without job/instance)."""
    return catalogue.samples(catalogue.PROXY)


@cache
def exported_series() -> dict[str, frozenset[str]]:
    """Every sample name ``exported()`` shows, with its label names."""
    series: dict[str, set[str]] = {}
    for family in exported().collect():
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(labels) for name, labels in series.items()}


def known_series() -> dict[str, frozenset[str]]:
    """What the rules and panels may name: the catalogue's series and Prometheus's own."""
    return {**catalogue.samples(), **PROMETHEUS_SERIES}


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


# What is not one sentence: a full stop, question or exclamation mark followed by more text.
_SENTENCE_END = re.compile(r"[.!?;]\s+\S")
# Name endings that say a value is a measure, not a count, and the unit its help must name.
_UNIT_SUFFIXES = {"_seconds": "seconds", "_bytes": "bytes", "_percent": "percent",
                  "_celsius": "celsius", "_watts": "watts", "_per_second": "per second"}


def help_problems(series: Series) -> list[str]:
    """What is wrong with a help text: it is one sentence, says its unit and its labels."""
    text, out = series.help, []
    if not text.endswith("."):
        out.append("does not end with a period")
    if _SENTENCE_END.search(text.removesuffix(".")):
        out.append("is more than one sentence")
    if not (text[:1].isupper() or text[:1].isdigit()):
        out.append("does not start with a capital or a digit")
    for suffix, unit in _UNIT_SUFFIXES.items():
        if series.name.removesuffix("_total").endswith(suffix) and series.unit != unit:
            if not (unit == "per second" and series.unit.endswith(unit)):
                out.append(f"is named *{suffix} but its unit is {series.unit!r}")
    if series.type == "histogram" and not series.unit:
        out.append("is a histogram without a unit")
    if series.unit:
        # "requests" is named as "Requests ..." or "... a request"; "tokens per second" whole.
        word = series.unit if " " in series.unit else series.unit.removesuffix("s")
        if word not in text.lower():
            out.append(f"does not name its unit {series.unit!r}")
    described = [label for label in series.labels if label not in ("version", "python",
                                                                   "mitmproxy")]
    if described and ", by " not in text:
        out.append("has labels but does not say what it is by")
    return [f"{series.name} help {series.help!r} {problem}" for problem in out]


def scrape_problems(text: str, entries: tuple[Series, ...] = catalogue.ALL) -> list[str]:
    """What in a /metrics text is not as the catalogue says: names, types, help, _created."""
    by_name = {entry.name: entry for entry in entries}
    out = []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, doc = line.removeprefix("# HELP ").partition(" ")
            entry = by_name.get(name)
            if entry is None:
                out.append(f"{name} is not in the catalogue")
                continue
            if doc != entry.help:
                out.append(f"{name} help {doc!r} is not the catalogue's {entry.help!r}")
            out.extend(help_problems(entry))
        elif line.startswith("# TYPE "):
            name, _, kind = line.removeprefix("# TYPE ").partition(" ")
            entry = by_name.get(name)
            # The text format has no info type: prometheus_client writes an info as a gauge.
            expected = None if entry is None else entry.type.replace("info", "gauge")
            if entry is not None and kind != expected:
                out.append(f"{name} is a {kind}, the catalogue says {entry.type}")
        elif "_created" in line:
            out.append(f"a _created series: {line}")
    return out
