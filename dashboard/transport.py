"""Plain HTTP GETs to the proxy, the health daemon and Prometheus, through one injectable seam.

Tests hand the dashboard a ``Fetch`` of their own; the real one is urllib without the
environment's proxy settings (every peer is local or named explicitly, like Ollama's clients
reaching Ollama). Failures to connect are ``OSError``; an HTTP error status is an answer.
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import Any

logger = logging.getLogger(__name__)

Fetch = Callable[[str, float], tuple[int, bytes]]
"""GET ``url`` within ``timeout`` seconds: (status, body); OSError when nothing answered."""

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def urllib_fetch(
    url: str, timeout: float, headers: Mapping[str, str] | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Accept": "application/json, text/plain"})
    for name, value in (headers or {}).items():
        # Not carried over a redirect: the access token is for the address it was meant for.
        request.add_unredirected_header(name, value)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:  # it holds the response's socket
            return exc.code, exc.read()
    except http.client.HTTPException as exc:  # a cut body, a bad status line: no answer
        raise OSError(f"broken HTTP answer ({type(exc).__name__})") from exc


def authorized_fetch(headers: Mapping[str, str], own_urls: Iterable[str]) -> Fetch:
    """``urllib_fetch`` that sends ``headers`` (the access token) to our own services only.

    Prometheus and anything else outside ``own_urls`` never see the token.
    """
    prefixes = tuple(url.rstrip("/") + "/" for url in own_urls if url)

    def fetch(url: str, timeout: float) -> tuple[int, bytes]:
        return urllib_fetch(url, timeout, headers if url.startswith(prefixes) else None)

    return fetch


def get_json(fetch: Fetch, url: str, timeout: float) -> tuple[int, Any]:
    """GET and decode JSON; ValueError when the body is not JSON."""
    status, body = fetch(url, timeout)
    return status, json.loads(body)


def describe_error(exc: BaseException) -> str:
    """A short reason for a failed fetch, for the status line."""
    if isinstance(exc, urllib.error.URLError) and exc.reason is not None:
        return str(exc.reason)
    return str(exc) or type(exc).__name__
