"""Prometheus metrics of the daemon (prefix ``healthd_``), read from the monitor at scrape time.

Every family is built from its ``llama_core.catalogue`` entry (``HEALTHD``) through
``llama_core.exposition``, so its name, type, labels and help are written once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric

from healthd.monitor import Monitor
from healthd.results import Overall
from llama_core import catalogue, exposition

logger = logging.getLogger(__name__)

C = catalogue


class HealthCollector:
    """``healthd_check_status{check}`` 0/1/2 (ok/warn/critical), durations, overall, alerts."""

    def __init__(self, monitor: Monitor) -> None:
        self._monitor = monitor

    def collect(self) -> Iterator[Metric]:
        results = self._monitor.results()
        status = exposition.gauge_family(C.HEALTHD_CHECK_STATUS)
        duration = exposition.gauge_family(C.HEALTHD_CHECK_DURATION)
        last = exposition.gauge_family(C.HEALTHD_CHECK_LAST_RUN)
        for r in results:
            status.add_metric([r.name], int(r.status))
            duration.add_metric([r.name], r.duration_s)
            last.add_metric([r.name], r.checked_at)
        yield from (status, duration, last)

        overall = self._monitor.overall()
        if overall != "unknown":  # no value until a check has run, rather than a made-up one
            yield exposition.gauge_family(C.HEALTHD_OVERALL_STATUS,
                                          int(Overall[overall.upper()]))
        yield exposition.gauge_family(C.HEALTHD_READY, int(self._monitor.ready))

        alerts = self._monitor.alerts
        if alerts is not None:
            active = exposition.gauge_family(C.HEALTHD_ALERTS)
            for state, count in alerts.counts().items():
                active.add_metric([state], count)
            yield active
        sender = self._monitor.sender
        if sender is not None:
            sent = exposition.counter_family(C.HEALTHD_WEBHOOK_DELIVERIES)
            sent.add_metric(["ok"], sender.delivered)
            sent.add_metric(["failed"], sender.failed)
            yield sent


def make_registry(monitor: Monitor) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HealthCollector(monitor))
    return registry
