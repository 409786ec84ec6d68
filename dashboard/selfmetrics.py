"""The dashboard's own Prometheus metrics (``dashboard_*``), served at its ``/metrics``.

Prometheus scrapes them beside the proxy and the health daemon (config/prometheus.yml), so a
dashboard that stopped reaching the proxy, or answers slowly, shows up there too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from importlib import metadata

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .live import LiveState

logger = logging.getLogger(__name__)

API_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def version() -> str:
    try:
        return metadata.version("llama-metrics")
    except metadata.PackageNotFoundError:
        return "0.1.0"


class _LiveCollector:
    """What the live poller has done, read at scrape time."""

    def __init__(self, live: LiveState) -> None:
        self._live = live

    def collect(self) -> Iterator[Metric]:
        up = self._live.proxy_up
        if up is not None:
            yield GaugeMetricFamily("dashboard_proxy_up",
                                    "1 when the last scrape of every proxy's /metrics worked",
                                    value=int(up))
        yield CounterMetricFamily("dashboard_live_ticks", "Live snapshots published",
                                  value=self._live.ticks)
        yield CounterMetricFamily("dashboard_proxy_scrape_failures",
                                  "Scrapes of the proxy's /metrics that failed (one per proxy)",
                                  value=self._live.scrape_failures)


class DashboardMetrics:
    def __init__(self, registry: CollectorRegistry, live: LiveState) -> None:
        self.registry = registry
        Info("dashboard_build", "This dashboard.", registry=registry).info(
            {"version": version()})
        self.api_seconds = Histogram(
            "dashboard_api_request_seconds", "Time to answer an API request.", ["endpoint"],
            buckets=API_BUCKETS, registry=registry)
        self.websockets = Gauge(
            "dashboard_websocket_clients", "Pages connected for live updates.",
            registry=registry)
        self.narratives = Counter(
            "dashboard_narratives", "Narratives asked for, by how they ended.", ["outcome"],
            registry=registry)
        registry.register(_LiveCollector(live))
