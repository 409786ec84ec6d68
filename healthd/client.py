"""Small HTTP client for probes, webhooks and the summary model; one error type for failures.

Outside errors (refused connections, timeouts, bad JSON) become ``ProbeError`` here and only
here, with a message that names the URL. An HTTP error status is not an exception: the caller
decides what a 404 or a 502 means. Proxy variables in the environment are ignored, since every
target is a service the daemon watches directly.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
USER_AGENT = "llama-metrics-healthd"
MAX_BODY = 4 * 1024 * 1024


class ProbeError(Exception):
    """The request did not get an HTTP answer (or the answer could not be read)."""


@dataclass(frozen=True, slots=True)
class Response:
    url: str
    status: int
    body: bytes
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise ProbeError(
                f"{self.url} answered {self.status} with a body that is not JSON") from exc

    def json_object(self) -> dict[str, Any]:
        data = self.json()
        if not isinstance(data, dict):
            raise ProbeError(f"{self.url} answered {self.status} with JSON that is not an object")
        return data

    def error_text(self) -> str:
        """Ollama's ``{"error": ...}`` message, or the start of the body."""
        try:
            data = json.loads(self.body)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            return data["error"]
        return self.body[:200].decode("utf-8", "replace").strip()


def request(
    url: str,
    *,
    timeout: float,
    method: str = "GET",
    payload: Any = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """One HTTP request; ``payload`` is sent as JSON. Raises ProbeError without an answer."""
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("User-Agent", USER_AGENT)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        # Not carried over a redirect: the access token is for the address it was meant for.
        req.add_unredirected_header(name, value)
    started = time.perf_counter()
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            body = resp.read(MAX_BODY)
            status = resp.status
    except urllib.error.HTTPError as exc:
        try:
            body = exc.read(MAX_BODY)
        except OSError:
            body = b""
        finally:
            exc.close()
        status = exc.code
    except urllib.error.URLError as exc:
        raise ProbeError(f"could not reach {url}: {_reason(exc.reason, timeout)}") from exc
    except TimeoutError as exc:
        raise ProbeError(f"{url} timed out after {timeout:g} s") from exc
    except (OSError, ValueError, http.client.HTTPException) as exc:  # reset, bad status line
        raise ProbeError(f"request to {url} failed: {_reason(exc, timeout)}") from exc
    return Response(url, status, body, time.perf_counter() - started)


def _reason(reason: object, timeout: float) -> str:
    if isinstance(reason, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason) or type(reason).__name__
