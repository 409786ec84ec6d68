"""The daemon's HTTP API: /health, /health/live, /health/ready, /metrics, /alerts.

Served by the standard library's threaded HTTP server, as the proxy's metrics port is: every
answer is a small document read from memory, so nothing here waits on a check.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from healthd.monitor import Monitor
from llama_core.security import Security

logger = logging.getLogger(__name__)

PATHS = ("/health", "/health/live", "/health/ready", "/metrics", "/alerts")
MAX_ALERTS = 200


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    monitor: Monitor
    registry: CollectorRegistry
    started: float
    security: Security

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up before its answer is not an error of ours: no traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            logger.debug("client %s left before its answer", client_address)
            return
        super().handle_error(request, client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    _head = False

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        monitor = self.server.monitor
        if not self._authorized():
            return
        if path == "/health":
            report = monitor.report()
            self._json(503 if report["overall"] in ("unhealthy", "unknown") else 200, report)
        elif path == "/health/live":
            uptime = time.monotonic() - self.server.started
            self._json(200, {"status": "alive", "uptime_s": round(uptime, 3)})
        elif path == "/health/ready":
            self._ready(monitor)
        elif path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._send(200, encoder(self.server.registry), content_type)
        elif path == "/alerts":
            self._alerts(monitor, parse_qs(parts.query))
        else:
            self._json(404, {"error": f"not found: {parts.path}; try " + ", ".join(PATHS)})

    def do_HEAD(self) -> None:  # noqa: N802
        self._head = True  # the same status and headers as GET, without the body
        self.do_GET()

    def _authorized(self) -> bool:
        """With an access token set, 401 for a request that does not carry it."""
        if self.server.security.allows(self.headers.get("Authorization")):
            return True
        self._json(401, {"error": "this health daemon needs an access token: "
                                  "send Authorization: Bearer <token>"},
                   {"WWW-Authenticate": 'Bearer realm="llama-metrics"'})
        return False

    def _refuse(self) -> None:
        if not self._authorized():
            return
        self.send_response(405)
        body = json.dumps({"error": f"method {self.command} not allowed; use GET"}).encode()
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse  # noqa: N815

    def send_error(self, code: int, message: str | None = None, explain: str | None = None
                   ) -> None:
        """http.server's own refusals (a bad request line, an unknown method) as JSON too."""
        extra = {"Connection": "close"}
        if code == HTTPStatus.NOT_IMPLEMENTED:  # a method no handler has: as for POST
            code, message = HTTPStatus.METHOD_NOT_ALLOWED, f"method {self.command} not allowed"
            extra["Allow"] = "GET, HEAD"
        elif code >= 500:  # 505, an HTTP version it does not speak: still the request's fault
            code = HTTPStatus.BAD_REQUEST
        if not self.request_version.startswith("HTTP/1."):
            self.request_version = "HTTP/1.0"  # unparsed: answer with a status line anyway
        self.close_connection = True
        self._json(code, {"error": message or HTTPStatus(code).phrase}, extra)

    def _ready(self, monitor: Monitor) -> None:
        overall = monitor.overall()
        if not monitor.ready:
            reason = "waiting for the first round of checks"
        elif overall == "unhealthy":
            reason = "unhealthy"
        else:
            self._json(200, {"ready": True, "overall": overall})
            return
        self._json(503, {"ready": False, "overall": overall, "reason": reason})

    def _alerts(self, monitor: Monitor, query: dict[str, list[str]]) -> None:
        raw = query.get("limit", ["50"])[-1]
        # ASCII digits only, and few: str.isdigit() takes '²', and int() refuses 4301 digits.
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 6) or not (
            1 <= int(raw) <= MAX_ALERTS
        ):
            self._json(400, {"error": f"limit must be an integer 1-{MAX_ALERTS}, "
                                      f"not {raw[:50]!r}"})
            return
        alerts = monitor.alerts
        self._json(200, {
            "active": alerts.active() if alerts is not None else [],
            "recent": alerts.recent(int(raw)) if alerts is not None else [],
        })

    def _json(self, status: int, document: Any, extra: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(document).encode(), "application/json", extra)

    def _send(
        self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not self._head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("healthd http: " + format, *args)


class HealthServer:
    """Serves the API on ``host:port`` from a daemon thread; ``port`` 0 takes a free one."""

    def __init__(self, host: str, port: int, monitor: Monitor, registry: CollectorRegistry,
                 security: Security | None = None) -> None:
        server_class = _Server6 if ":" in host else _Server
        self._server = server_class((host, port), _Handler)  # OSError if the port is taken
        self._server.security = security or Security()
        self._server.monitor = monitor
        self._server.registry = registry
        self._server.started = time.monotonic()
        # a short poll interval makes stop() quick; the wake-ups cost next to nothing
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,),
                                        name="healthd-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = str(self._server.server_address[0])
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
