"""Cassettes: recorded Ollama traffic as JSON Lines, one interaction per line (docs/cassettes.md).

An interaction is a request, its start offset from the cassette's first request, and the
response as the client received it: status, reason, headers and the body as the chunks it
came in, each with its time offset from the moment the request went upstream. Secret headers
(``Authorization``, cookies, API keys) are replaced by ``<redacted>`` whenever an interaction
is serialised, so no path can write one. Nothing here needs mitmproxy at run time: the proxy's
recorder, ``scripts/cassette.py``, ``scripts/ollama_sim.py`` and ``scripts/replay.py`` share it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mitmproxy import http

VERSION = 1
REDACTED = "<redacted>"
# Header names that carry credentials, and name parts that usually do (x-auth-token, x-secret).
SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key",
    "apikey", "x-auth-token", "x-access-token", "openai-api-key", "anthropic-api-key",
})
_SECRET_PARTS = ("token", "secret", "password", "api-key", "apikey", "auth")
# Connection-level headers: they describe one hop, not the recorded exchange.
HOP_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
    "upgrade", "content-length", "host",
})

Headers = list[tuple[str, str]]


def is_secret(name: str) -> bool:
    lower = name.strip().lower()
    return lower in SECRET_HEADERS or any(part in lower for part in _SECRET_PARTS)


def redact(headers: Iterable[tuple[str, str]]) -> Headers:
    """The headers with every credential's value replaced by ``<redacted>``."""
    return [(k, REDACTED if is_secret(k) else v) for k, v in headers]


def header(headers: Headers, name: str, default: str = "") -> str:
    """The first value of a header (names compare case-insensitively)."""
    lower = name.lower()
    return next((v for k, v in headers if k.lower() == lower), default)


@dataclass(slots=True)
class Chunk:
    offset: float  # seconds from the moment the request went upstream
    data: bytes


@dataclass(slots=True)
class Request:
    method: str
    path: str
    headers: Headers = field(default_factory=list)
    body: bytes = b""


@dataclass(slots=True)
class Response:
    status: int
    reason: str = ""
    headers: Headers = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)

    @property
    def body(self) -> bytes:
        return b"".join(c.data for c in self.chunks)


@dataclass(slots=True)
class Interaction:
    request: Request
    response: Response | None  # None: the flow ended without one (see ``error``)
    start: float = 0.0  # seconds from the cassette's first request
    started_at: float | None = None  # wall clock (Unix seconds), for people reading it
    error: str | None = None  # how the flow failed, when it did


# -- JSON ---------------------------------------------------------------------------------------


def _bytes_field(data: bytes, text_key: str, b64_key: str) -> dict[str, str]:
    try:
        return {text_key: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {b64_key: base64.b64encode(data).decode("ascii")}


def _read_bytes(obj: dict[str, Any], text_key: str, b64_key: str, where: str) -> bytes:
    if b64_key in obj:
        try:
            return base64.b64decode(_str(obj[b64_key], where + "." + b64_key), validate=True)
        except binascii.Error as e:
            raise ValueError(f"{where}.{b64_key}: not base64 ({e})") from e
    return _str(obj.get(text_key, ""), where + "." + text_key).encode("utf-8")


def _str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected a string, got {type(value).__name__}")
    return value


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{where}: expected a number >= 0, got {value!r}")
    return float(value)


def _headers(value: object, where: str) -> Headers:
    if not isinstance(value, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in value
    ):
        raise ValueError(f"{where}: expected a list of [name, value] string pairs")
    return [(k, v) for k, v in value]


def to_json(interaction: Interaction) -> dict[str, Any]:
    """The interaction as one cassette line's object, secrets redacted."""
    req = interaction.request
    out: dict[str, Any] = {"version": VERSION, "start": round(interaction.start, 6)}
    if interaction.started_at is not None:
        out["started_at"] = round(interaction.started_at, 6)
    out["request"] = {
        "method": req.method,
        "path": req.path,
        "headers": [list(p) for p in redact(req.headers)],
        **_bytes_field(req.body, "body", "body_base64"),
    }
    resp = interaction.response
    out["response"] = None if resp is None else {
        "status": resp.status,
        "reason": resp.reason,
        "headers": [list(p) for p in redact(resp.headers)],
        "chunks": [
            {"offset": round(c.offset, 6), **_bytes_field(c.data, "text", "base64")}
            for c in resp.chunks
        ],
    }
    if interaction.error is not None:
        out["error"] = interaction.error
    return out


def dumps(interaction: Interaction) -> str:
    """One cassette line (with its newline)."""
    return json.dumps(to_json(interaction), ensure_ascii=False, separators=(",", ":")) + "\n"


def from_json(obj: object) -> Interaction:
    """An interaction from one line's object; ValueError says what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    if obj.get("version") != VERSION:
        raise ValueError(f"version {obj.get('version')!r} is not one this reads ({VERSION})")
    req = obj.get("request")
    if not isinstance(req, dict):
        raise ValueError("request: expected an object")
    request = Request(
        method=_str(req.get("method"), "request.method"),
        path=_str(req.get("path"), "request.path"),
        headers=_headers(req.get("headers", []), "request.headers"),
        body=_read_bytes(req, "body", "body_base64", "request"),
    )
    resp = obj.get("response")
    response = None
    if resp is not None:
        if not isinstance(resp, dict):
            raise ValueError("response: expected an object or null")
        status = resp.get("status")
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f"response.status: expected an HTTP status, got {status!r}")
        chunks = resp.get("chunks", [])
        if not isinstance(chunks, list) or not all(isinstance(c, dict) for c in chunks):
            raise ValueError("response.chunks: expected a list of objects")
        response = Response(
            status=status,
            reason=_str(resp.get("reason", ""), "response.reason"),
            headers=_headers(resp.get("headers", []), "response.headers"),
            chunks=[
                Chunk(_number(c.get("offset", 0), f"response.chunks[{i}].offset"),
                      _read_bytes(c, "text", "base64", f"response.chunks[{i}]"))
                for i, c in enumerate(chunks)
            ],
        )
    started_at = obj.get("started_at")
    error = obj.get("error")
    return Interaction(
        request=request,
        response=response,
        start=_number(obj.get("start", 0), "start"),
        started_at=None if started_at is None else _number(started_at, "started_at"),
        error=None if error is None else _str(error, "error"),
    )


def iter_lines(lines: Iterable[str], name: str = "cassette") -> Iterator[Interaction]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield from_json(json.loads(line))
        except ValueError as e:  # json.JSONDecodeError is a ValueError
            raise ValueError(f"{name} line {number}: {e}") from e


def read(path: str | os.PathLike[str]) -> list[Interaction]:
    """Every interaction of a cassette, in the order written; ValueError names the bad line."""
    with open(path, encoding="utf-8") as f:
        return list(iter_lines(f, os.fspath(path)))


def open_private(path: str | os.PathLike[str], mode: str = "a") -> Any:
    """Open a cassette for writing; a new file is readable by its owner only (it holds prompts)."""
    path = Path(path)
    if path.parent != Path(""):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "a" else os.O_TRUNC)
    return os.fdopen(os.open(path, flags, 0o600), mode, encoding="utf-8")


def write(path: str | os.PathLike[str], interactions: Iterable[Interaction]) -> int:
    """Write a whole cassette (replacing the file); returns the number of interactions."""
    count = 0
    with open_private(path, "w") as f:
        for interaction in interactions:
            f.write(dumps(interaction))
            count += 1
    return count


# -- building interactions ----------------------------------------------------------------------


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def natural_chunks(body: bytes, content_type: str) -> list[bytes]:
    """A body cut where its server would have flushed: NDJSON lines, SSE events, else whole."""
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime == "application/x-ndjson":
        sep = b"\n"
    elif mime == "text/event-stream":
        sep = b"\r\n\r\n" if b"\r\n\r\n" in body else b"\n\n"
    else:
        return [body] if body else []
    pieces = [p + sep for p in body.split(sep)]
    pieces[-1] = pieces[-1][: -len(sep)]
    return [p for p in pieces if p]


def spread(pieces: list[bytes], first: float, last: float) -> list[Chunk]:
    """Chunks with offsets evenly between ``first`` and ``last`` (when no timing is known)."""
    if len(pieces) <= 1:
        return [Chunk(max(first, 0.0), p) for p in pieces]
    step = (last - first) / (len(pieces) - 1)
    return [Chunk(max(first + i * step, 0.0), p) for i, p in enumerate(pieces)]


def request_of(flow: http.HTTPFlow, body: bytes | None = None) -> Request:
    req = flow.request
    return Request(
        method=req.method,
        path=req.path,
        headers=list(req.headers.items(multi=True)),
        body=(req.raw_content or b"") if body is None else body,
    )


def from_flow(
    flow: http.HTTPFlow,
    *,
    chunks: list[Chunk] | None = None,
    request_body: bytes | None = None,
    start: float = 0.0,
) -> Interaction:
    """An interaction from a finished flow.

    ``chunks`` are the body as the client received it (the proxy's stream tap). Without them
    the stored body is used: cut into its natural chunks, their offsets spread between the
    response's first and last byte (a flow file keeps no per-chunk timing).
    """
    resp = flow.response
    response = None
    if resp is not None:
        if chunks is None:
            sent = flow.request.timestamp_end or flow.request.timestamp_start
            first = (resp.timestamp_start or sent) - sent
            last = (resp.timestamp_end or resp.timestamp_start or sent) - sent
            pieces = natural_chunks(resp.raw_content or b"", resp.headers.get("content-type", ""))
            chunks = spread(pieces, first, last)
        response = Response(
            status=resp.status_code,
            reason=resp.reason or reason_phrase(resp.status_code),
            headers=list(resp.headers.items(multi=True)),
            chunks=chunks,
        )
    return Interaction(
        request=request_of(flow, request_body),
        response=response,
        start=start,
        started_at=flow.request.timestamp_start,
        error=flow.error.msg if flow.error else None,
    )


def normalised_body(body: bytes) -> object:
    """A request body for matching: parsed JSON where it is JSON, else the bytes."""
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body
