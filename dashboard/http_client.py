"""The dashboard's one HTTP client: its GETs to the proxies, the health daemon and Prometheus,
and the narrative's stream from Ollama; one error type for every request that got no answer.

Outside errors (a refused connection, a timeout, a cut or malformed answer) become
``FetchError`` here and only here (``_translated``), raised from the original, with the short
reason the status line shows. An HTTP error status is an answer, not an exception: the caller
decides what a 404 or a 503 means. The access token goes to our own services only (never to
Prometheus, never over a redirect). Proxy variables in the environment are ignored: every peer
is local or named explicitly, like Ollama's clients reaching Ollama.

Tests hand ``Client`` a transport of their own (a function from ``Request`` to ``Response``);
the real one is urllib. The narrative's stream reads line by line under one deadline, so it
talks ``http.client`` directly, through the same translation.
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

USER_AGENT = "llama-metrics-dashboard"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class FetchError(Exception):
    """A request got no HTTP answer (or one that could not be read)."""

    def __init__(self, url: str, reason: str, *, refused: bool = False,
                 timed_out: bool = False) -> None:
        super().__init__(f"could not reach {url}: {reason}")
        self.url = url
        self.reason = reason
        self.refused = refused
        self.timed_out = timed_out


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    url: str
    timeout: float
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None


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
"""Sends one request and returns its answer; raises OSError (or ValueError, or
``http.client.HTTPException``) when nothing answered. The client translates those."""


def urllib_transport(request: Request) -> Response:
    req = urllib.request.Request(request.url, data=request.body, method=request.method)
    for name, value in request.headers.items():
        # Not carried over a redirect: the access token is for the address it was meant for.
        req.add_unredirected_header(name, value)
    try:
        with _OPENER.open(req, timeout=request.timeout) as answer:
            return Response(request.url, answer.status, answer.read(), dict(answer.headers))
    except urllib.error.HTTPError as exc:
        with exc:  # it holds the response's socket
            return Response(request.url, exc.code, exc.read(), dict(exc.headers))


_NO_ANSWER = (OSError, ValueError, http.client.HTTPException)


@contextmanager
def _translated(url: str, timeout: float) -> Iterator[None]:
    """The one place where what the network raised becomes ``FetchError``."""
    try:
        yield
    except FetchError:
        raise
    except _NO_ANSWER as exc:
        cause: object = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise FetchError(url, _reason(cause, timeout),
                         refused=isinstance(cause, ConnectionRefusedError),
                         timed_out=isinstance(cause, TimeoutError)) from exc


def _reason(cause: object, timeout: float) -> str:
    if isinstance(cause, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, http.client.HTTPException):  # a cut body, a bad status line
        return f"broken HTTP answer ({type(cause).__name__})"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror.lower()
    return str(cause) or type(cause).__name__


class Client:
    """Requests to the dashboard's peers through one transport; the token to our own only."""

    def __init__(
        self,
        transport: Transport = urllib_transport,
        *,
        token_headers: Mapping[str, str] | None = None,
        own_urls: Iterable[str] = (),
    ) -> None:
        self._transport = transport
        self._token_headers = dict(token_headers or {})
        self._own = tuple(url.strip().rstrip("/") + "/" for url in own_urls if url.strip())

    def _headers(self, url: str, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json, text/plain"}
        if self._token_headers and url.startswith(self._own):
            headers.update(self._token_headers)
        headers.update(extra or {})
        return headers

    def request(
        self,
        method: str,
        url: str,
        *,
        timeout: float,
        payload: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """One request, its answer read whole; ``payload`` goes as JSON. FetchError: none."""
        body = None if payload is None else json.dumps(payload).encode()
        sent = self._headers(url, headers)
        if body is not None:
            sent["Content-Type"] = "application/json"
        with _translated(url, timeout):
            return self._transport(Request(method, url, timeout, sent, body))

    def get(self, url: str, *, timeout: float) -> Response:
        return self.request("GET", url, timeout=timeout)

    @contextmanager
    def stream(
        self,
        url: str,
        *,
        timeout: float,
        payload: Any,
        headers: Mapping[str, str] | None = None,
    ) -> Iterator[Stream]:
        """POST ``payload`` as JSON and read the answer as it comes; closed on leaving."""
        parts = urlsplit(url)
        connection_class = (http.client.HTTPSConnection if parts.scheme == "https"
                            else http.client.HTTPConnection)
        sent = {**self._headers(url, headers), "Content-Type": "application/json"}
        with _translated(url, timeout):
            conn = connection_class(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
        try:
            with _translated(url, timeout):
                conn.request("POST", parts.path + (f"?{parts.query}" if parts.query else ""),
                             body=json.dumps(payload).encode(), headers=sent)
                answer = conn.getresponse()
            yield Stream(url, conn, answer)
        finally:
            conn.close()  # closing is what makes Ollama stop generating


class Stream:
    """An answer being read: its status, then its body line by line, each under a timeout."""

    def __init__(self, url: str, conn: http.client.HTTPConnection,
                 answer: http.client.HTTPResponse) -> None:
        self.url = url
        self.status = answer.status
        self.headers = dict(answer.headers)
        self._conn = conn
        self._answer = answer

    def read(self, limit: int, timeout: float) -> bytes:
        with _translated(self.url, timeout):
            self._settimeout(timeout)
            return self._answer.read(limit)

    def readline(self, timeout: float) -> bytes:
        """The next line (b"" at the end); FetchError with ``timed_out`` after ``timeout``."""
        with _translated(self.url, timeout):
            self._settimeout(timeout)
            return self._answer.readline()

    def _settimeout(self, timeout: float) -> None:
        if self._conn.sock is not None:
            self._conn.sock.settimeout(timeout)
