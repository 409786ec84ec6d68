"""Makes mitmproxy's own error answers (502 upstream unreachable, 400 bad request) Ollama-shaped.

mitmproxy answers a failed upstream connection with an HTML page. Ollama clients expect
``{"error": "..."}`` JSON, so while the proxy runs we replace the one function that builds
that page. It is a private mitmproxy function: the version is pinned and the e2e tests fail
if the replacement stops taking effect.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from mitmproxy import http, version
from mitmproxy.net.http import http1
from mitmproxy.proxy.layers.http import _http1

from .context import upstream_url

logger = logging.getLogger(__name__)


def ollama_error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def install(upstream: str) -> Callable[[], None]:
    """Replace mitmproxy's HTML error page; returns the function that undoes it."""
    original = _http1.make_error_response

    def make_error_response(status_code: int, message: str = "") -> bytes:
        if status_code == 502:
            message = f"could not reach Ollama at {upstream}: {message}"
        response = http.Response.make(
            status_code,
            ollama_error_body(message),
            http.Headers(
                Server=version.MITMPROXY,
                Connection="close",
                Content_Type="application/json; charset=utf-8",
            ),
        )
        return http1.assemble_response(response)

    _http1.make_error_response = make_error_response  # type: ignore[assignment]

    def uninstall() -> None:
        _http1.make_error_response = original

    return uninstall


class ErrorPages:
    """Ollama-shaped errors while the proxy runs: installed in running(), undone in done()."""

    def __init__(self) -> None:
        self._uninstall: Callable[[], None] | None = None

    def running(self) -> None:
        if self._uninstall is None:
            self._uninstall = install(upstream_url())

    def done(self) -> None:
        if self._uninstall is not None:
            self._uninstall()
            self._uninstall = None
