"""Owns ``max_concurrency`` and ``max_queue``: the limits of the queue the tap admits requests by.

The queue itself is ``admission.Admission`` (pure asyncio, shared with the tap, which waits
in it); this addon sets its limits from the options, at start and whenever they change (a
higher limit admits waiters at once), and exports its depth by priority.
"""

from __future__ import annotations

import logging

from mitmproxy.addonmanager import Loader

from . import options
from .admission import Admission, AdmissionCollector
from .context import ProxyContext

logger = logging.getLogger(__name__)

OPTIONS = frozenset({"max_concurrency", "max_queue"})


class AdmissionLimits:
    """The admission queue's limits, and its ``queue_depth`` collector."""

    def __init__(self, context: ProxyContext, admission: Admission) -> None:
        self.context = context
        self.admission = admission
        context.registry.register(AdmissionCollector(admission))
        self.started = False

    def load(self, loader: Loader) -> None:
        options.declare(loader, "max_concurrency", "Requests forwarded at once; 0 = unlimited.")
        options.declare(loader, "max_queue", "Requests waiting for admission before 503.")

    def running(self) -> None:
        self.started = True

    def configure(self, updated: set[str]) -> None:
        if not updated & OPTIONS:
            return
        with options.refusing(starting=not self.started):
            limits = options.read("max_concurrency"), options.read("max_queue")
        if limits != (self.admission.max_concurrency, self.admission.max_queue):
            self.admission.configure(*limits)
            logger.info("admission: %d at once (0 = unlimited), %d may wait", *limits)
