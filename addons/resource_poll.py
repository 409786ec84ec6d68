"""Samples the machine (host, Ollama processes, NVIDIA GPUs) in the background while the proxy runs.

The ``ResourcePoll`` addon owns ``resources_interval_seconds``: a ``resources.ResourcePoller``
samples on its own thread from ``running()`` to ``done()``, and a collector exports its last
sample, so a scrape never waits for psutil or NVML.
"""

from __future__ import annotations

import logging

from mitmproxy.addonmanager import Loader

from llama_core.sampler import ResourceSampler

from . import options
from .context import ProxyContext
from .resources import ResourceCollector, ResourcePoller

logger = logging.getLogger(__name__)


class ResourcePoll:
    """The background sample of the machine's resources, and its collector."""

    def __init__(self, context: ProxyContext, sampler: ResourceSampler | None = None) -> None:
        self.poller = ResourcePoller(sampler if sampler is not None else ResourceSampler(),
                                     on_sample=context.publish_sample)
        context.registry.register(ResourceCollector(self.poller))
        self.started = False

    def load(self, loader: Loader) -> None:
        options.declare(loader, "resources_interval_seconds",
                        "Seconds between samples of the machine's resources.")

    def configure(self, updated: set[str]) -> None:
        if "resources_interval_seconds" not in updated:
            return
        with options.refusing(starting=not self.started):
            self.poller.interval = options.read("resources_interval_seconds")

    def running(self) -> None:
        self.started = True
        self.poller.start()

    def done(self) -> None:
        self.poller.stop()
