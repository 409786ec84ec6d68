"""Polls the upstream's version and models in the background while the proxy runs.

The ``InventoryPoll`` addon owns ``inventory_interval_seconds``. In ``running()`` it starts
an ``inventory.InventoryPoller`` on the upstream mitmproxy proxies to (never on the request
path, never on a scrape), puts it in the context (the label guard asks it which models the
upstream knows, ``/health`` what it last saw) and exports its last poll; ``done()`` stops it.
"""

from __future__ import annotations

import logging

from mitmproxy.addonmanager import Loader

from . import options
from .context import ProxyContext, upstream_url
from .inventory import InventoryCollector, InventoryPoller

logger = logging.getLogger(__name__)


class InventoryPoll:
    """The background poll of the upstream's ``/api/version``, ``/api/ps`` and ``/api/tags``."""

    def __init__(self, context: ProxyContext) -> None:
        self.context = context
        self.interval: float = options.KEYS["inventory_interval_seconds"].default
        self.started = False

    def load(self, loader: Loader) -> None:
        options.declare(loader, "inventory_interval_seconds",
                        "Seconds between polls of the upstream's version and models.")

    def configure(self, updated: set[str]) -> None:
        if "inventory_interval_seconds" not in updated:
            return
        with options.refusing(starting=not self.started):
            self.interval = options.read("inventory_interval_seconds")
        if self.context.inventory is not None:
            self.context.inventory.interval = self.interval

    def running(self) -> None:
        self.started = True
        if self.context.inventory is not None:
            return
        poller = InventoryPoller(upstream_url(), interval=self.interval)
        self.context.registry.register(InventoryCollector(poller))
        self.context.inventory = poller
        poller.start()

    def done(self) -> None:
        if self.context.inventory is not None:
            self.context.inventory.stop()
