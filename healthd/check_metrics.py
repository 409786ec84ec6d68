"""Prometheus metrics of the daemon (prefix ``healthd_``), read from the monitor at scrape time."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from healthd.monitor import Monitor
from healthd.results import Overall

logger = logging.getLogger(__name__)


class HealthCollector:
    """``healthd_check_status{check}`` 0/1/2 (ok/warn/critical), durations, overall, alerts."""

    def __init__(self, monitor: Monitor) -> None:
        self._monitor = monitor

    def collect(self) -> Iterator[Metric]:
        results = self._monitor.results()
        status = GaugeMetricFamily(
            "healthd_check_status", "Last status of a check: 0 ok, 1 warn, 2 critical",
            labels=["check"])
        duration = GaugeMetricFamily(
            "healthd_check_duration_seconds", "How long the last run of a check took",
            labels=["check"])
        last = GaugeMetricFamily(
            "healthd_check_last_run_timestamp_seconds", "When a check last ran (epoch)",
            labels=["check"])
        for r in results:
            status.add_metric([r.name], int(r.status))
            duration.add_metric([r.name], r.duration_s)
            last.add_metric([r.name], r.checked_at)
        yield from (status, duration, last)

        overall = self._monitor.overall()
        if overall != "unknown":
            yield GaugeMetricFamily(
                "healthd_overall_status", "Overall: 0 healthy, 1 degraded, 2 unhealthy",
                value=int(Overall[overall.upper()]))
        yield GaugeMetricFamily("healthd_ready", "1 once every check has run at least once",
                                value=int(self._monitor.ready))

        alerts = self._monitor.alerts
        if alerts is not None:
            active = GaugeMetricFamily("healthd_alerts", "Alerts by state", labels=["state"])
            for state, count in alerts.counts().items():
                active.add_metric([state], count)
            yield active
        sender = self._monitor.sender
        if sender is not None:
            sent = CounterMetricFamily(
                "healthd_webhook_deliveries", "Notifications delivered to a webhook URL, by result",
                labels=["result"])
            sent.add_metric(["ok"], sender.delivered)
            sent.add_metric(["failed"], sender.failed)
            yield sent


def make_registry(monitor: Monitor) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HealthCollector(monitor))
    return registry
