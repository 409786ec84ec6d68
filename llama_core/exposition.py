"""Builds catalogue entries into prometheus_client objects: instruments and scrape-time families.

An instrument (``counter``, ``gauge``, ``histogram``, ``info``) is registered in the given
registry through a wrapper that leaves out prometheus_client's ``_created`` samples: they
double the lines of a scrape and nothing here reads them. That is per registry, not the
library's process-wide ``disable_created_metrics()`` switch, so it holds whoever imports
what first. A custom collector takes its empty families from ``*_family`` and adds samples.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.metrics import MetricWrapperBase

from .catalogue import Kind, Series

logger = logging.getLogger(__name__)


class _WithoutCreated:
    """One instrument as a collector, its ``_created`` samples left out."""

    def __init__(self, instrument: MetricWrapperBase) -> None:
        self._instrument = instrument

    def describe(self) -> Iterable[Metric]:
        return self._instrument.describe()

    def collect(self) -> Iterator[Metric]:
        for family in self._instrument.collect():
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family


def _expect(series: Series, kind: Kind) -> None:
    if series.type != kind:
        raise ValueError(f"{series.name} is a {series.type}, not a {kind}")


def _register(instrument: MetricWrapperBase, registry: CollectorRegistry) -> None:
    registry.register(_WithoutCreated(instrument))


def counter(series: Series, registry: CollectorRegistry) -> Counter:
    _expect(series, "counter")
    made = Counter(series.family, series.help, series.labels, registry=None)
    _register(made, registry)
    return made


def gauge(series: Series, registry: CollectorRegistry) -> Gauge:
    _expect(series, "gauge")
    made = Gauge(series.family, series.help, series.labels, registry=None)
    _register(made, registry)
    return made


def histogram(series: Series, registry: CollectorRegistry) -> Histogram:
    _expect(series, "histogram")
    made = Histogram(series.family, series.help, series.labels, buckets=series.buckets,
                     registry=None)
    _register(made, registry)
    return made


def info(series: Series, registry: CollectorRegistry, values: dict[str, str]) -> Info:
    """An info series set once to ``values``, which must name exactly its labels."""
    _expect(series, "info")
    if set(values) != set(series.labels):
        raise ValueError(f"{series.name} takes labels {series.labels}, not {sorted(values)}")
    made = Info(series.family, series.help, registry=None)
    made.info(values)
    _register(made, registry)
    return made


def gauge_family(series: Series, value: float | None = None) -> GaugeMetricFamily:
    """An empty gauge family with the series' labels, or an unlabelled one holding ``value``."""
    _expect(series, "gauge")
    if series.labels:
        return GaugeMetricFamily(series.name, series.help, labels=series.labels)
    return GaugeMetricFamily(series.name, series.help, value=value)


def counter_family(series: Series, value: float | None = None) -> CounterMetricFamily:
    _expect(series, "counter")
    if series.labels:
        return CounterMetricFamily(series.family, series.help, labels=series.labels)
    return CounterMetricFamily(series.family, series.help, value=value)


def histogram_family(series: Series) -> HistogramMetricFamily:
    _expect(series, "histogram")
    return HistogramMetricFamily(series.name, series.help, labels=series.labels)
