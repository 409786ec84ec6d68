"""The proxy's options and lifecycle: resolves settings, starts and stops its parts."""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from importlib import metadata
from typing import Any, Optional

from mitmproxy import ctx, exceptions
from mitmproxy.addonmanager import Loader
from prometheus_client import CollectorRegistry

from llama_core import settings
from llama_core.energy_ledger import EnergyLedger
from llama_core.history import schema as history
from llama_core.history import writer as history_writer
from llama_core.record import RequestRecord
from llama_core.sampler import ResourceSampler
from llama_core.security import Security, load_security

from . import errors
from .access import AccessControl
from .admission import AdmissionCollector
from .energy import EnergyCollector
from .exporter import MAX_RECENT, MetricsServer
from .inventory import InventoryCollector, InventoryPoller
from .metrics import ProxyMetrics
from .recorder import CassetteRecorder
from .resources import ResourceCollector, ResourcePoller
from .routes import ModelLabels
from .tap import TrafficTap

logger = logging.getLogger(__name__)

# Options given with ``--set``; unset (None) means "from the YAML file, environment or default".
OPTIONS = {
    "metrics_host": "Address for /metrics and /health (default 127.0.0.1).",
    "metrics_port": "Port for /metrics and /health (default 8001).",
    "history_path": "SQLite file for request history; empty disables it.",
    "max_concurrency": "Requests forwarded at once; 0 = unlimited (default).",
    "max_queue": "Requests waiting for admission before 503 (default 100).",
    "max_model_labels": "Model names unknown to the upstream that get their own label.",
    "store_prompts": "Store prompts and responses in the history (default false).",
    "load_threshold_seconds": "A reported load_duration above this counts as a model load.",
    "record_path": "Cassette file every finished flow is appended to; empty = off (default).",
}


def repeated_options(argv: list[str]) -> list[str]:
    """Our options given more than once with ``--set`` on a command line.

    mitmproxy refuses a repeated option only while loading the script that declares it, and
    then swallows the error: the proxy would run without this addon and measure nothing. So
    the script checks the command line itself and refuses to start.
    """
    seen: set[str] = set()
    repeated: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--set" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--set="):
            value = arg[len("--set="):]
        else:
            continue
        name = value.split("=", 1)[0]
        if name in OPTIONS or name == "llama_config":
            if name in seen and name not in repeated:
                repeated.append(name)
            seen.add(name)
    return repeated


def version() -> str:
    try:
        return metadata.version("llama-metrics")
    except metadata.PackageNotFoundError:
        return "0.1.0"


def upstream_url() -> str:
    """The reverse-proxy target mitmproxy was started with."""
    for mode in ctx.options.mode:
        if mode.startswith("reverse:"):
            return mode[len("reverse:") :]
    return "http://127.0.0.1:11434"


class MetricsProxy:
    """The one addon ``llama_metrics.py`` loads; its parts are nested addons."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.metrics = ProxyMetrics(self.registry, version=version())
        self.inventory: InventoryPoller | None = None
        self.labels = ModelLabels(is_known=self.is_known)
        self.recent: deque[RequestRecord] = deque(maxlen=MAX_RECENT)
        self.energy = EnergyLedger()  # GPU joules shared among requests (docs/energy.md)
        self.tap = TrafficTap(self.metrics, self.labels, on_record=self.recent.append,
                              energy=self.energy, on_complete=self.record)
        # Refuses in requestheaders, after the tap's (which makes the state it marks), before
        # the tap's request hook: a refused request is never queued nor forwarded.
        self.access = AccessControl()
        self.recorder = CassetteRecorder(self.registry)
        # mitmproxy calls each hook on these in order: the recorder first sees each request as
        # its client sent it, before the tap changes it.
        self.addons: list[object] = [self.recorder, self.tap, self.access]
        self.resources = ResourcePoller(ResourceSampler(), energy=self.energy)
        self.registry.register(ResourceCollector(self.resources))
        self.registry.register(EnergyCollector(self.energy))
        self.registry.register(AdmissionCollector(self.tap.admission))
        self.settings: dict[str, Any] = {}
        self.server: MetricsServer | None = None
        self.history: history_writer.HistoryWriter | None = None
        self._uninstall_errors: Any = None
        self._rebind = False

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "llama_config", str, "", "YAML configuration file (default config/llama-metrics.yml)."
        )
        for name, help_text in OPTIONS.items():
            loader.add_option(name, Optional[str], None, help_text)  # type: ignore[arg-type]

    def configure(self, updated: set[str]) -> None:
        if not updated & (set(OPTIONS) | {"llama_config"}) and self.settings:
            return
        overrides = {name: getattr(ctx.options, name) for name in OPTIONS}
        try:
            new = settings.load(
                "proxy", config=ctx.options.llama_config or None, overrides=overrides
            )
            security = load_security(config=ctx.options.llama_config or None)
            self.check_listen(new, security)
        except settings.ConfigError as e:
            if not self.settings:  # at start: nothing starts half-configured
                logger.error("llama-metrics: %s", e)
                raise SystemExit(2) from e
            raise exceptions.OptionsError(str(e)) from e
        old, self.settings = self.settings, new
        old_security, self.access.security = self.access.security, security
        if not old:
            self.first_configure(new)
        self.labels.max_others = new["max_model_labels"]
        self.tap.store_prompts = new["store_prompts"]
        if not old or old["record_path"] != new["record_path"]:
            self.open_recorder(new["record_path"])
        self.tap.load_threshold_s = new["load_threshold_seconds"]
        self.resources.interval = new["resources_interval_seconds"]
        self.tap.admission.configure(new["max_concurrency"], new["max_queue"])
        if self.inventory is not None:
            self.inventory.interval = new["inventory_interval_seconds"]
        if not old or (old["history_path"], old["history_retention_days"]) != (
            new["history_path"], new["history_retention_days"]
        ):
            self.open_history(new)
        endpoint = (new["metrics_host"], new["metrics_port"])
        if self.server is not None and (
            endpoint != (old["metrics_host"], old["metrics_port"]) or security != old_security
        ):
            self.stop_server()
            self.start_server()

    @staticmethod
    def check_listen(new: dict[str, Any], security: Security) -> None:
        """Refuse an address other machines reach while no token (and no opt-out) is set."""
        security.check_listen("proxy.metrics_host", new["metrics_host"])
        if ctx.options.listen_host:
            security.check_listen("proxy.listen_host (--listen-host)", ctx.options.listen_host)
        else:  # first_configure binds the configured address instead of every interface
            security.check_listen("proxy.listen_host", new["listen_host"])

    def open_history(self, new: dict[str, Any]) -> None:
        """(Re)open the history writer; requests are recorded off the event loop."""
        self.close_history()
        try:
            self.history = history_writer.open_writer(
                new["history_path"],
                retention_days=new["history_retention_days"],
                on_drop=self.metrics.history_dropped.inc,
            )
        except (history.HistoryError, OSError) as e:
            message = f"history_path {new['history_path']!r} cannot be used: {e}"
            if self.server is None:  # at start: refuse to run half-configured
                logger.error("llama-metrics: %s", message)
                raise SystemExit(2) from e
            raise exceptions.OptionsError(message) from e
        if self.history is not None:
            logger.info("history in %s", self.history.path)

    def open_recorder(self, path: str) -> None:
        """Record every finished flow to the cassette ``path`` (empty: stop recording)."""
        try:
            self.recorder.open(path)
        except OSError as e:
            message = f"record_path {path!r} cannot be used: {e}"
            if self.server is None:  # at start: refuse to run half-configured
                logger.error("llama-metrics: %s", message)
                raise SystemExit(2) from e
            raise exceptions.OptionsError(message) from e
        self.tap.keep_chunks = self.recorder.writer is not None

    def record(self, record: RequestRecord) -> None:
        """Every finished request, once its energy is known, is written to the history.

        /requests has it from its end on (``recent``); its ``energy_j`` fills in there when
        the next resource poll completes it.
        """
        if self.history is not None:
            self.history.submit(record)

    def recent_requests(self, limit: int) -> list[dict[str, Any]]:
        newest = list(reversed(self.recent.copy()))[:limit]  # copy(): atomic against appends
        return [
            {k: v for k, v in dataclasses.asdict(r).items() if k not in ("prompt", "response")}
            for r in newest
        ]

    def close_history(self) -> None:
        if self.history is not None:
            self.history.close()
            self.history = None

    def first_configure(self, new: dict[str, Any]) -> None:
        # mitmproxy listens on every interface unless told otherwise; this proxy does not.
        changes: dict[str, Any] = {"connection_strategy": "lazy"}
        if not ctx.options.listen_host:
            changes["listen_host"] = new["listen_host"]
            self._rebind = True
        ctx.options.update(**changes)

    async def running(self) -> None:
        self._uninstall_errors = errors.install(upstream_url())
        # Background pollers: never on the request path, never on a scrape.
        self.inventory = InventoryPoller(
            upstream_url(), interval=self.settings["inventory_interval_seconds"]
        )
        self.registry.register(InventoryCollector(self.inventory))
        self.inventory.start()
        self.resources.start()
        self.start_server()
        if self._rebind:
            await self.rebind_proxy()

    async def rebind_proxy(self) -> None:
        """Listen on ``listen_host`` (127.0.0.1) when the command line named no address.

        mitmproxy binds its servers before this script can change the default, so they are
        brought up again on the configured address right at start.
        """
        proxyserver = ctx.master.addons.get("proxyserver")
        host = ctx.options.listen_host
        if proxyserver is None or all(a[0] == host for a in proxyserver.listen_addrs()):
            return
        await proxyserver.servers.update([])
        await proxyserver.setup_servers()

    def start_server(self) -> None:
        host, port = self.settings["metrics_host"], self.settings["metrics_port"]
        try:
            self.server = MetricsServer(
                host, port, self.registry, self.health, self.recent_requests,
                security=self.access.security,
            )
        except OSError as e:
            logger.error("cannot serve metrics on %s:%s: %s", host, port, e)
            ctx.master.shutdown()
            raise exceptions.OptionsError(f"metrics_port {port} on {host}: {e}") from e
        self.server.start()
        logger.info("metrics on http://%s:%d/metrics", host, self.server.port)

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def done(self) -> None:
        self.stop_server()
        self.energy.close()  # the rows still waiting for a poll go to the history now
        self.close_history()
        self.recorder.close()
        if self.inventory is not None:
            self.inventory.stop()
        self.resources.stop()
        if self._uninstall_errors is not None:
            self._uninstall_errors()
            self._uninstall_errors = None

    def is_known(self, model: str) -> bool:
        return self.inventory is not None and self.inventory.is_known(model)

    def health(self) -> dict[str, Any]:
        """The proxy is healthy when it serves; the upstream's state is reported beside it."""
        inventory = self.inventory
        return {
            "status": "ok",
            "version": version(),
            "upstream": upstream_url(),
            "upstream_up": inventory.up if inventory is not None else None,
            "upstream_version": inventory.version if inventory is not None else None,
            "loaded_models": sorted(inventory.loaded) if inventory is not None else [],
        }
