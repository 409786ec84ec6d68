"""Machine resources (host, Ollama processes, NVIDIA GPUs), sampled in the background.

``llama_core.sampler.ResourceSampler.sample()`` reads the host and the GPUs;
``ResourcePoller`` calls it on a daemon thread and hands each sample to ``on_sample`` (the
proxy: to the history writer's queue); ``ResourceCollector`` exposes the last sample to
Prometheus, so a scrape never waits for psutil or NVML.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily

from llama_core import catalogue, exposition
from llama_core.sampler import ResourceSample, ResourceSampler

from .polling import Poller

logger = logging.getLogger(__name__)


class ResourcePoller(Poller):
    """Calls ``sampler.sample()`` every ``interval`` seconds on a daemon thread.

    ``on_sample`` gets every sample on that thread; it must not block (the history writer's
    ``submit_sample`` queues it). A failing callback is logged and the sample still kept.
    """

    thread_name = "resource-poller"

    def __init__(self, sampler: ResourceSampler, *, interval: float = 5.0,
                 on_sample: Callable[[ResourceSample], None] | None = None) -> None:
        super().__init__(interval=interval)
        self.sampler = sampler
        self.on_sample = on_sample
        self.last: ResourceSample | None = None

    def _poll(self) -> None:
        self.last = sample = self.sampler.sample()
        if self.on_sample is not None:
            try:
                self.on_sample(sample)
            except Exception:
                logger.exception("resource sample: on_sample callback failed")

    def stop(self, join_timeout: float = 5.0) -> None:
        """Stop the thread (at once, even mid-interval) and close the sampler."""
        super().stop(join_timeout)
        self.sampler.close()


class _HasLastSample(Protocol):
    @property
    def last(self) -> ResourceSample | None: ...


# Each series with the sample attribute it shows.
_HOST_GAUGES = (
    (catalogue.SYSTEM_CPU, "cpu_percent"),
    (catalogue.SYSTEM_MEMORY_USED, "memory_used_bytes"),
    (catalogue.SYSTEM_MEMORY_TOTAL, "memory_total_bytes"),
    (catalogue.OLLAMA_RSS, "ollama_rss_bytes"),
    (catalogue.OLLAMA_CPU, "ollama_cpu_percent"),
)

_GPU_GAUGES = (
    (catalogue.GPU_UTILIZATION, "utilization_percent"),
    (catalogue.GPU_MEMORY_USED, "memory_used_bytes"),
    (catalogue.GPU_MEMORY_TOTAL, "memory_total_bytes"),
    (catalogue.GPU_TEMPERATURE, "temperature_celsius"),
    (catalogue.GPU_POWER, "power_watts"),
)


class ResourceCollector:
    """Prometheus collector for the last sample of ``source.last`` (a ``ResourcePoller``)."""

    def __init__(self, source: _HasLastSample) -> None:
        self._source = source

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families(None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        sample = self._source.last
        if sample is not None:
            yield from self._families(sample)

    def _families(self, s: ResourceSample | None) -> Iterator[GaugeMetricFamily]:
        # With s None (describe) every family comes out empty; otherwise only those with values.
        for series, attr in _HOST_GAUGES:
            value = None if s is None else getattr(s, attr)
            if s is None or value is not None:
                yield exposition.gauge_family(series, value)
        for series, attr in _GPU_GAUGES:
            family = exposition.gauge_family(series)
            for gpu in [] if s is None else s.gpus:
                value = getattr(gpu, attr)
                if value is not None:
                    family.add_metric([str(gpu.index), gpu.name], value)
            # No GPU means no series at all, not zeros.
            if s is None or family.samples:
                yield family
