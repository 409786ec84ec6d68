"""Serves the app with gunicorn (gthread worker), started from Python rather than its CLI.

One worker process, so that one live poller and one history cache serve every page; threads
carry the websockets (one each, for as long as a page is open) and the API calls. The line
``dashboard on http://HOST:PORT/`` is printed once the socket listens (with port 0, the port
the system chose).
"""

from __future__ import annotations

import logging
import socket
import sys
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

logger = logging.getLogger(__name__)


def _announce(server: Any) -> None:
    for listener in server.LISTENERS:
        host, port = listener.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"dashboard on http://{shown}:{port}/", file=sys.stderr, flush=True)


class DashboardServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, app: Flask, options: dict[str, Any]) -> None:
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.application


def options(host: str, port: int, threads: int) -> dict[str, Any]:
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return {
        "bind": [bind],
        "workers": 1,
        "worker_class": "gthread",
        "threads": threads,
        # A websocket holds its thread for as long as the page is open; the worker's
        # heartbeat runs apart from them, so this timeout only catches a hung worker.
        "timeout": 60,
        "graceful_timeout": 3,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "when_ready": _announce,
        "proc_name": "llama-metrics-dashboard",
        "control_socket_disable": True,  # no gunicornc socket in ~/.gunicorn
    }


def check_bind(host: str, port: int) -> None:
    """OSError now if ``host:port`` cannot be listened on (gunicorn would retry for 5 s)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def serve(app: Flask, host: str, port: int, threads: int) -> None:
    """Run until SIGINT or SIGTERM."""
    DashboardServer(app, options(host, port, threads)).run()
