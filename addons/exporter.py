"""Serves ``/metrics`` (Prometheus text), ``/health`` and ``/requests`` (JSON) on the metrics port.

``/requests?limit=N`` lists the last finished requests, newest first, for live views: the
fields of ``RequestRecord`` without prompt and response text, which never leave the process
over HTTP.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from llama_core.security import Security

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
