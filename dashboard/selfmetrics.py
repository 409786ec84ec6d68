"""The dashboard's own Prometheus metrics (``dashboard_*``), served at its ``/metrics``.

Prometheus scrapes them beside the proxy and the health daemon (config/prometheus.yml), so a
dashboard that stopped reaching the proxy, or answers slowly, shows up there too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric

import llama_core
from llama_core import catalogue, exposition

from .live import LiveState

logger = logging.getLogger(__name__)


class _LiveCollector:
    """What the live poller has done, read at scrape time."""

    def __init__(self, live: LiveState) -> None:
        self._live = live

    def collect(self) -> Iterator[Metric]:
        up = self._live.proxy_up
        if up is not None:
            yield exposition.gauge_family(catalogue.DASHBOARD_PROXY_UP, int(up))
        yield exposition.counter_family(catalogue.DASHBOARD_LIVE_TICKS, self._live.ticks)
        yield exposition.counter_family(catalogue.DASHBOARD_SCRAPE_FAILURES,
                                        self._live.scrape_failures)


class DashboardMetrics:
    def __init__(self, registry: CollectorRegistry, live: LiveState) -> None:
        self.registry = registry
        exposition.info(catalogue.DASHBOARD_BUILD, registry, {"version": llama_core.version()})
        self.api_seconds = exposition.histogram(catalogue.DASHBOARD_API_SECONDS, registry)
        self.websockets = exposition.gauge(catalogue.DASHBOARD_WEBSOCKETS, registry)
        self.narratives = exposition.counter(catalogue.DASHBOARD_NARRATIVES, registry)
        registry.register(_LiveCollector(live))
