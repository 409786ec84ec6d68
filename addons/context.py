"""What the proxy's addons share: the registry, metrics, configuration and finished requests.

``llama_metrics.py`` makes one ``ProxyContext`` and hands it to each addon that needs it.
Each addon owns its options and its background work; the context carries only what several
of them read: the Prometheus registry every collector is in, the request metrics, the
resolved ``proxy`` and ``security`` sections (``LlamaConfig`` keeps them), the upstream's
inventory (``InventoryPoll`` keeps it) and the finished requests, which the tap publishes and
the history writer and ``/requests`` take.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mitmproxy import ctx
from prometheus_client import CollectorRegistry

import llama_core
from llama_core import settings
from llama_core.record import RequestRecord
from llama_core.sampler import ResourceSample
from llama_core.security import Security

from .inventory import InventoryPoller
from .metrics import ProxyMetrics

logger = logging.getLogger(__name__)

DEFAULT_UPSTREAM = "http://127.0.0.1:11434"


def upstream_url() -> str:
    """The reverse-proxy target mitmproxy was started with."""
    for mode in ctx.options.mode:
        if mode.startswith("reverse:"):
            return mode[len("reverse:") :]
    return DEFAULT_UPSTREAM


class ProxyContext:
    """The state the addons share; every part has a working default, so a test builds one bare."""

    def __init__(
        self, registry: CollectorRegistry | None = None, *, security: Security | None = None
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = ProxyMetrics(self.registry, version=llama_core.version())
        # The proxy section as resolved from the file, the environment and the command line;
        # options are read from mitmproxy's options, this holds what mitmdump's own
        # arguments carry (upstream, listen_host, listen_port).
        self.settings: dict[str, Any] = {k.name: k.default for k in settings.PROXY_KEYS}
        self.security = security if security is not None else Security()
        self.inventory: InventoryPoller | None = None
        self._listeners: list[Callable[[RequestRecord], object]] = []
        self._sample_listeners: list[Callable[[ResourceSample], object]] = []

    def subscribe(self, listener: Callable[[RequestRecord], object]) -> None:
        """Call ``listener`` with every finished client request, in the order subscribed."""
        self._listeners.append(listener)

    def publish(self, record: RequestRecord) -> None:
        """One finished client request, for every listener; one failing never stops the next."""
        for listener in self._listeners:
            try:
                listener(record)
            except Exception:
                logger.exception("a listener of finished requests failed on %s %s",
                                 record.endpoint, record.model)

    def subscribe_samples(self, listener: Callable[[ResourceSample], object]) -> None:
        """Call ``listener`` with every machine sample (on the resource poller's thread)."""
        self._sample_listeners.append(listener)

    def publish_sample(self, sample: ResourceSample) -> None:
        """One machine sample, for every listener; one failing never stops the next."""
        for listener in self._sample_listeners:
            try:
                listener(sample)
            except Exception:
                logger.exception("a listener of machine samples failed")

    def is_known(self, model: str) -> bool:
        """Whether the upstream has this model (by its last inventory poll)."""
        return self.inventory is not None and self.inventory.is_known(model)

    def listed_name(self, model: str) -> str | None:
        """The spelling the upstream's ``/api/tags`` lists for ``model``; None if unknown."""
        return self.inventory.listed_name(model) if self.inventory is not None else None
