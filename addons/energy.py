"""The energy ledger in the proxy: fed by each machine sample, shown at scrape time.

The ledger (``llama_core.energy_ledger``, in the context) hears from the tap when a client
request starts and ends generating; the ``Energy`` addon hands it each sample's GPU readings
(on the resource poller's thread, stamped with the moment they arrive), registers the
collector of its totals, and in ``done()`` closes it, so that the requests still waiting for
a poll go to the history (it comes before the ``History`` addon, whose ``done()`` closes the
file). Without a GPU that can be metered the series are
absent, as the other ``gpu_*`` series are.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily

from llama_core import catalogue, exposition
from llama_core.energy_ledger import EnergyLedger
from llama_core.sampler import ResourceSample

from .context import ProxyContext

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


class Energy:
    """Feeds the context's energy ledger with every machine sample, exports it, closes it."""

    def __init__(self, context: ProxyContext,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.ledger = context.energy
        self.clock = clock  # the tap's clock: a request's start and end are perf_counter
        context.registry.register(EnergyCollector(self.ledger))
        context.subscribe_samples(self.sampled)

    def sampled(self, sample: ResourceSample) -> None:
        # The GPUs are read last in sample(): this is their moment, to a millisecond.
        self.ledger.poll(self.clock(), sample.gpus)

    def done(self) -> None:
        self.ledger.close()  # the rows still waiting for a poll go to the history now
