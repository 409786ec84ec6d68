"""The proxy's one HTTP client for its own calls to the upstream Ollama; one error type.

The proxy's background pollers (the model inventory: ``/api/version``, ``/api/ps``,
``/api/tags``) ask Ollama through ``UpstreamClient``. Outside errors (a refused connection, a
timeout, a cut or malformed answer) become ``UpstreamError`` here and only here, raised from
the original, with a message that names the URL. An HTTP error status is an answer, not an
exception: the caller decides what a 500 means. Proxy variables in the environment are
ignored: like mitmproxy's reverse mode, the proxy talks to Ollama directly.

Tests hand the client a transport of their own (a function from ``Request`` to ``Response``);
the real one is urllib. Client traffic never goes through here: mitmproxy forwards it.
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

USER_AGENT = "llama-metrics-proxy"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class UpstreamError(Exception):
    """A request to the upstream got no HTTP answer (or one that could not be read)."""


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    timeout: float
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Response:
    url: str
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not JSON."""
        return json.loads(self.body)


Transport = Callable[[Request], Response]
"""Sends one GET and returns its answer; raises OSError (or ValueError, or
``http.client.HTTPException``) when nothing answered. The client translates those."""


def urllib_transport(request: Request) -> Response:
    req = urllib.request.Request(request.url, headers=dict(request.headers))
    try:
        with _OPENER.open(req, timeout=request.timeout) as answer:
            return Response(request.url, answer.status, answer.read(), dict(answer.headers))
    except urllib.error.HTTPError as exc:
        with exc:  # it holds the response's socket
            return Response(request.url, exc.code, exc.read(), dict(exc.headers))


class UpstreamClient:
    """GETs to the upstream Ollama through one transport."""

    def __init__(self, transport: Transport = urllib_transport) -> None:
        self._transport = transport

    def get(self, url: str, *, timeout: float) -> Response:
        """One GET, its answer read whole; UpstreamError when nothing answered."""
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        try:
            return self._transport(Request(url, timeout, headers))
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise UpstreamError(f"could not reach {url}: {_reason(exc, timeout)}") from exc


def _reason(exc: BaseException, timeout: float) -> str:
    cause: object = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(cause, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, http.client.HTTPException):  # a cut body, a bad status line
        return f"broken HTTP answer ({type(cause).__name__})"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror.lower()
    return str(cause) or type(cause).__name__
