"""Serves ``/metrics`` (Prometheus text), ``/health`` and ``/requests`` (JSON) on the metrics port.

The ``Exporter`` addon owns ``metrics_host`` and ``metrics_port``: it keeps the last finished
requests, starts the server in ``running()`` (a port that cannot be bound stops the proxy),
moves it when either option or the access token changes, and stops it in ``done()``.

``/requests?limit=N`` lists the last finished requests, newest first, for live views: the
fields of ``RequestRecord`` without prompt and response text, which never leave the process
over HTTP.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from mitmproxy import ctx, exceptions
from mitmproxy.addonmanager import Loader
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

import llama_core
from llama_core.record import RequestRecord
from llama_core.security import Security

from . import options
from .context import ProxyContext, upstream_url

logger = logging.getLogger(__name__)


MAX_RECENT = 500


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    registry: CollectorRegistry
    health: Callable[[], dict]
    recent: Callable[[int], list[dict]]
    security: Security


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if not self.server.security.allows(self.headers.get("Authorization")):
            error = {"error": "this metrics port needs an access token: "
                              "send Authorization: Bearer <token>"}
            self._send(401, json.dumps(error).encode(), "application/json",
                       {"WWW-Authenticate": 'Bearer realm="llama-metrics"'})
        elif path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._send(200, encoder(self.server.registry), content_type)
        elif path == "/health":
            health = self.server.health()
            status = 200 if health.get("status") == "ok" else 503
            self._send(status, json.dumps(health).encode(), "application/json")
        elif path == "/requests":
            query = parse_qs(urlsplit(self.path).query)
            raw = query.get("limit", ["100"])[-1]
            if not raw.isdigit() or not 1 <= int(raw) <= MAX_RECENT:
                error = {"error": f"limit must be an integer 1-{MAX_RECENT}, not {raw!r}"}
                self._send(400, json.dumps(error).encode(), "application/json")
                return
            recent = json.dumps(self.server.recent(int(raw))).encode()
            self._send(200, recent, "application/json")
        else:
            error = {"error": f"not found: {path}; try /metrics, /health, /requests"}
            self._send(404, json.dumps(error).encode(), "application/json")

    def _send(
        self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("metrics server: " + format, *args)


class MetricsServer:
    """A small threaded HTTP server; scrapes never touch the proxy's event loop."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        health: Callable[[], dict],
        recent: Callable[[int], list[dict]] = lambda limit: [],
        security: Security | None = None,
    ) -> None:
        self._server = _Server((host, port), _Handler)  # OSError if the port is taken
        self._server.registry = registry
        self._server.health = health
        self._server.recent = recent
        self._server.security = security or Security()
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-server", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class Exporter:
    """The metrics port: its address (``metrics_host``, ``metrics_port``) and its server."""

    def __init__(self, context: ProxyContext) -> None:
        self.context = context
        self.recent: deque[RequestRecord] = deque(maxlen=MAX_RECENT)
        context.subscribe(self.recent.append)
        self.host: str = options.KEYS["metrics_host"].default
        self.port: int = options.KEYS["metrics_port"].default
        self.security = context.security
        self.server: MetricsServer | None = None
        self.started = False

    def load(self, loader: Loader) -> None:
        options.declare(loader, "metrics_host", "Address for /metrics, /health and /requests.")
        options.declare(loader, "metrics_port", "Port for /metrics, /health and /requests "
                                                "(0 = any free port).")

    def configure(self, updated: set[str]) -> None:
        if not updated & {"metrics_host", "metrics_port", "llama_config"}:
            return
        starting = not self.started
        security = self.context.security
        with options.refusing(starting=starting):
            host, port = options.read("metrics_host"), options.read("metrics_port")
            security.check_listen("proxy.metrics_host", host)
        if (host, port, security) == (self.host, self.port, self.security):
            return
        old = self.host, self.port, self.security
        self.host, self.port, self.security = host, port, security
        if self.server is None:  # not serving yet: running() starts it
            return
        self.stop_server()
        try:
            self.start_server()
        except OSError as e:
            self.host, self.port, self.security = old
            self.start_server()  # the old address was ours a moment ago
            options.refuse(f"metrics_port {port} on {host}: {e}", starting=False, cause=e)

    def running(self) -> None:
        self.started = True
        try:
            self.start_server()
        except OSError as e:
            logger.error("cannot serve metrics on %s:%s: %s", self.host, self.port, e)
            ctx.master.shutdown()
            raise exceptions.OptionsError(f"metrics_port {self.port} on {self.host}: {e}") from e

    def done(self) -> None:
        self.stop_server()

    def start_server(self) -> None:
        """Serve on the configured address; OSError when it cannot be bound."""
        self.server = MetricsServer(
            self.host, self.port, self.context.registry, self.health, self.recent_requests,
            security=self.security,
        )
        self.server.start()
        logger.info("metrics on http://%s:%d/metrics", self.host, self.server.port)

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def recent_requests(self, limit: int) -> list[dict[str, Any]]:
        newest = list(reversed(self.recent.copy()))[:limit]  # copy(): atomic against appends
        return [
            {k: v for k, v in dataclasses.asdict(r).items() if k not in ("prompt", "response")}
            for r in newest
        ]

    def health(self) -> dict[str, Any]:
        """The proxy is healthy when it serves; the upstream's state is reported beside it."""
        inventory = self.context.inventory
        return {
            "status": "ok",
            "version": llama_core.version(),
            "upstream": upstream_url(),
            "upstream_up": inventory.up if inventory is not None else None,
            "upstream_version": inventory.version if inventory is not None else None,
            "loaded_models": sorted(inventory.loaded) if inventory is not None else [],
        }
