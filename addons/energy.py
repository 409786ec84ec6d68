"""Prometheus collector for the energy ledger: GPU joules, idle joules, joules by model.

The ledger (``llama_core.energy_ledger``) is fed by the resource poller and the tap; this
only shows its totals at scrape time. Without a GPU that can be metered the series are
absent, as the other ``gpu_*`` series are.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily

from llama_core import catalogue, exposition
from llama_core.energy_ledger import EnergyLedger

logger = logging.getLogger(__name__)


class EnergyCollector:
    """``gpu_energy_joules_total``, ``gpu_idle_energy_joules_total``, ``energy_joules_total``."""

    def __init__(self, ledger: EnergyLedger) -> None:
        self._ledger = ledger

    def describe(self) -> Iterator[CounterMetricFamily]:
        for series in (catalogue.GPU_ENERGY, catalogue.GPU_IDLE_ENERGY, catalogue.ENERGY):
            yield exposition.counter_family(series)

    def collect(self) -> Iterator[CounterMetricFamily]:
        totals = self._ledger.totals()
        if not totals.gpu:  # nothing metered (no GPU, or not yet): no series at all
            return
        gpu = exposition.counter_family(catalogue.GPU_ENERGY)
        for (index, name, source), joules in sorted(totals.gpu.items()):
            gpu.add_metric([index, name, source], joules)
        yield gpu
        idle = exposition.counter_family(catalogue.GPU_IDLE_ENERGY)
        # Every metered GPU has an idle series, 0 until an interval with nothing in flight.
        for key in sorted({(g, n) for g, n, _ in totals.gpu}):
            idle.add_metric(list(key), totals.idle.get(key, 0.0))
        yield idle
        attributed = exposition.counter_family(catalogue.ENERGY)
        for values, joules in sorted(totals.attributed.items()):
            attributed.add_metric(list(values), joules)
        if attributed.samples:  # no model has been in flight while metered yet
            yield attributed
