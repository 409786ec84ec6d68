#!/usr/bin/env python3
"""Simulate an Ollama server on the wire, as the upstream for tests, the demo and benchmarks.

It speaks Ollama's native API (/api/generate, /api/chat, /api/embed, /api/embeddings,
/api/tags, /api/ps, /api/version, /api/show, /api/blobs/:digest, GET and HEAD /) and the
OpenAI-compatible API
(/v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models) with the bytes a real
Ollama sends: compact JSON in Go's key order, NDJSON or SSE streams with one HTTP chunk per
token, durations in nanoseconds. Text comes deterministically from a small vocabulary that
includes multi-byte UTF-8, so clients and proxies meet code points split across chunks.

Run it: ``python scripts/ollama_sim.py --port 11434 --token-rate 50 --ttft 0.2``. Once it
accepts connections it prints one line, ``ollama-sim listening on http://HOST:PORT`` (the URL
is the last word; ``--port 0`` picks a free port). Ctrl-C or SIGTERM stops it.
With ``--cassette FILE [--speed X]`` it serves recorded traffic instead (docs/cassettes.md).

From tests (``scripts/`` is not a package: load this file by path with importlib)::

    with SimServer(tokens=5) as sim:
        ollama.Client(host=sim.url).chat(model="llama3.2", messages=[...])
        sim.reports  # one dict per finished inference request

Faults, for every request with ``--fault MODE`` or for one with the header ``X-Sim-Fault``:
  close_mid_stream  close the connection after a few chunks, without the terminating chunk
  malformed_line    one non-JSON line mid-stream; the stream then finishes normally
  error_in_stream   status 200, a few chunks, an error object, then a clean end
  status:CODE       that status with an Ollama-shaped error body
  split             every chunk written as several HTTP chunks cut at seeded random bytes,
                    one cut inside a UTF-8 sequence where the chunk has one
  no_counts         final chunk without counts and durations (OpenAI: no usage)
  no_usage          OpenAI stream without the usage chunk even when asked for
  stall             after the first chunk, send nothing more until the client leaves
  refuse            reset each connection once accepted (as a header: reset this one)
  reset             like close_mid_stream, but a TCP reset (SO_LINGER 0) instead of a close
  invalid_utf8      the second content chunk's text is bytes that are not UTF-8
  truncated_tail    the final line (the one with the counts) cut in half, then a clean end
  big_body:MB       MB mebibytes of text, streamed as 64 KiB content chunks or as one body
  none              (header only) no fault, whatever --fault says
A non-streamed response meets the same faults on its one body: close_mid_stream and stall
send half of it, malformed_line sends a truncated body, error_in_stream becomes a 500.
reset sends half of it, then a reset; truncated_tail is malformed_line; invalid_utf8 ends
its text with bytes that are not UTF-8.

Other request headers: ``X-Sim-Tokens: N`` (length the model would stop at),
``X-Sim-Token-Rate: R``, ``X-Sim-TTFT: S`` and ``X-Sim-Hold: KEY`` (after the first content
chunk, wait for ``SimServer.release(KEY)`` or ``POST /_sim/release/KEY``). Control endpoints:
``GET /_sim/reports``, ``GET /_sim/connections`` (open client connections other than the
asking one), ``POST /_sim/reset`` (clears reports and releases), ``POST /_sim/release/KEY``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import itertools
import json
import logging
import math
import os
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

logger = logging.getLogger(__name__)

VERSION = "0.12.6"
DEFAULT_MODELS = ("llama3.2:latest", "qwen3:latest", "nomic-embed-text:latest")
DEFAULT_PORT = 11434
DEFAULT_TOKENS = 20
DEFAULT_KEEP_ALIVE = 300.0
FAULT_MODES = (
    "close_mid_stream", "malformed_line", "error_in_stream", "split",
    "no_counts", "no_usage", "stall", "refuse", "reset", "invalid_utf8", "truncated_tail",
)
# Content chunks, in order; multi-byte UTF-8 (2, 3 and 4 bytes), a quote and Go's escaped < >.
VOCAB = (
    "The", " llama", " grazes", " near", " the", " café", ",", " naïve", " and", " calm",
    ";", " 日本", "語", " text", " flows", " <br>", " past", " \"quoted\"", " words", " 🦙",
    " résumé", ".", "\n", " Über", " 😊", " tokens", "!",
)
_CUT_AFTER = 3  # content chunks sent before close_mid_stream / error_in_stream strike
_INVALID_UTF8 = b"\xff\xfe\xc3("  # stray bytes and a broken 2-byte sequence
_BIG_CHUNK = 64 * 1024  # characters of text per content chunk of big_body:MB
_BIG_TOKEN = ("llama " * (_BIG_CHUNK // 6 + 1))[:_BIG_CHUNK]
_NS = 1_000_000_000
_FOREVER = 9e9  # seconds; what Ollama shows for a negative keep_alive is centuries away

_ROOT_TEXT = b"Ollama is running"
_NATIVE_JSON = "application/json; charset=utf-8"
_OPENAI_JSON = "application/json"
_STATUS_MESSAGES = {
    500: "llama runner process has terminated: exit status 2",
    503: "server busy, please try again.  maximum pending requests exceeded",
}


# ---------------------------------------------------------------------------------------------
# Encoding helpers


def _go_json(value: object) -> str:
    """Encode like Go's encoding/json: compact, UTF-8 kept, HTML characters escaped."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        if char in text:
            text = text.replace(char, escaped)
    return text


_VOCAB_JSON = tuple(_go_json(token) for token in VOCAB)


@functools.lru_cache(maxsize=8)
def _utc_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def _rfc3339(ns: int) -> str:
    """Format epoch nanoseconds like Go's time.RFC3339Nano in UTC (trailing zeros trimmed)."""
    second, frac = divmod(ns, _NS)
    if frac == 0:
        return _utc_second(second) + "Z"
    return f"{_utc_second(second)}.{frac:09d}".rstrip("0") + "Z"


def _words(text: object) -> int:
    """Count words in a prompt, message content or OpenAI content-part list."""
    if isinstance(text, str):
        return len(text.split())
    if isinstance(text, list):
        return sum(_words(part.get("text")) for part in text if isinstance(part, dict))
    return 0


def _split_cuts(data: bytes, rng: random.Random) -> list[bytes]:
    """Cut data at 1-3 random places, one of them inside a UTF-8 sequence when there is one."""
    if len(data) < 2:
        return [data]
    cuts = set(rng.sample(range(1, len(data)), k=min(len(data) - 1, rng.randint(1, 3))))
    inside = [m.start() for m in re.finditer(rb"[\x80-\xbf]", data)]
    if inside:
        cuts.add(rng.choice(inside))
    edges = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@functools.lru_cache(maxsize=64)
def _embedding(text: str, dims: int, seed: int, normalize: bool) -> tuple[float, ...]:
    rng = random.Random(zlib.crc32(text.encode()) ^ seed)
    vector = [rng.uniform(-1.0, 1.0) for _ in range(dims)]
    scale = 1.0 / (math.sqrt(sum(x * x for x in vector)) or 1.0) if normalize else 2.0
    return tuple(round(x * scale, 8) for x in vector)


# ---------------------------------------------------------------------------------------------
# Configuration values


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault mode; ``status`` is set for ``status:CODE``, ``megabytes`` for big_body:MB."""

    mode: str
    status: int = 0
    megabytes: int = 0

    @classmethod
    def parse(cls, text: str | None) -> Fault | None:
        """Parse a --fault / X-Sim-Fault value; None for no fault; ValueError when unknown."""
        value = (text or "").strip()
        if value in ("", "none"):
            return None
        if value.startswith("status:"):
            code = value.removeprefix("status:")
            if not code.isdigit() or not 400 <= int(code) <= 599:
                raise ValueError(f"fault {value!r}: status must be a code from 400 to 599")
            return cls("status", int(code))
        if value.startswith("big_body:"):
            size = value.removeprefix("big_body:")
            if not size.isdigit() or not 1 <= int(size) <= 1024:
                raise ValueError(f"fault {value!r}: size must be 1 to 1024 (MiB)")
            return cls("big_body", megabytes=int(size))
        if value not in FAULT_MODES:
            allowed = ", ".join((*FAULT_MODES, "status:CODE", "big_body:MB", "none"))
            raise ValueError(f"fault {value!r} is unknown; allowed: {allowed}")
        return cls(value)

    def __str__(self) -> str:
        if self.megabytes:
            return f"big_body:{self.megabytes}"
        return f"status:{self.status}" if self.status else self.mode


class _RequestError(Exception):
    """A request the simulator answers with an error status, as Ollama would."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _parse_keep_alive(value: object, default: float) -> float:
    """Seconds a model stays loaded; Ollama takes a number of seconds or a Go duration."""
    if value is None:
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value.strip()):
        seconds = float(value)
    elif isinstance(value, str) and re.fullmatch(r"-?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+", value):
        units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
        seconds = sum(float(n) * units[u] for n, _, u in re.findall(
            r"(\d+(\.\d+)?)(ns|us|µs|ms|s|m|h)", value)) * (-1 if value[0] == "-" else 1)
    else:
        raise _RequestError(400, f"time: invalid duration {_go_json(value)}")
    return _FOREVER if seconds < 0 else seconds


# ---------------------------------------------------------------------------------------------
# Models and their residency


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What /api/tags, /api/show and /api/ps say about one model."""

    name: str
    family: str
    parameter_size: str
    quantization: str
    size: int
    embedding_length: int
    embedding_only: bool
    digest: str
    modified_at: str

    @classmethod
    def describe(cls, name: str) -> ModelInfo:
        base = name.split(":", 1)[0]
        known = {  # family, parameters, quantization, file size, embedding length
            "llama3.2": ("llama", "3.2B", "Q4_K_M", 2_019_393_189, 3072),
            "llama3.1": ("llama", "8.0B", "Q4_K_M", 4_920_753_328, 4096),
            "qwen3": ("qwen3", "8.2B", "Q4_K_M", 5_225_388_164, 4096),
            "gemma3": ("gemma3", "4.3B", "Q4_K_M", 3_338_801_804, 2560),
            "nomic-embed-text": ("nomic-bert", "137M", "F16", 274_302_450, 768),
            "all-minilm": ("bert", "23M", "F16", 45_960_996, 384),
        }
        guess = (re.sub(r"[^a-z].*", "", base) or "llama", "7B", "Q4_K_M", 4_109_865_159, 4096)
        family, params, quant, size, dims = known.get(base, guess)
        digest = hashlib.sha256(name.encode()).hexdigest()
        embedding_only = "bert" in family or "embed" in base
        return cls(name, family, params, quant, size, dims, embedding_only, digest,
                   "2025-05-16T00:12:47.040277964Z")

    def details(self) -> dict[str, Any]:
        return {"parent_model": "", "format": "gguf", "family": self.family,
                "families": [self.family], "parameter_size": self.parameter_size,
                "quantization_level": self.quantization}


@dataclass(slots=True)
class _Residency:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    active: int = 0
    expires: float = 0.0  # time.monotonic()

    def loaded(self, now: float) -> bool:
        return self.active > 0 or self.expires > now


class _Models:
    """The configured models, which of them are loaded, and for how long."""

    def __init__(self, names: Sequence[str], load_delay: float) -> None:
        self.infos = {name: ModelInfo.describe(name) for name in names}
        self._lower = {name.lower(): info for name, info in self.infos.items()}
        self._residency = {name: _Residency() for name in names}
        self._load_delay = load_delay

    def resolve(self, name: str) -> ModelInfo | None:
        key = name.lower()
        return self._lower.get(key) or self._lower.get(f"{key}:latest")

    async def acquire(self, info: ModelInfo) -> tuple[int, bool]:
        """Load the model if needed; return (nanoseconds waited, whether this call loaded it)."""
        start = time.perf_counter_ns()
        residency = self._residency[info.name]
        loaded_here = False
        if not residency.loaded(time.monotonic()):
            async with residency.lock:
                if not residency.loaded(time.monotonic()):
                    if self._load_delay > 0:
                        await asyncio.sleep(self._load_delay)
                    loaded_here = True
        residency.active += 1
        return time.perf_counter_ns() - start, loaded_here

    def release(self, info: ModelInfo, keep_alive: float) -> None:
        residency = self._residency[info.name]
        residency.active -= 1
        residency.expires = time.monotonic() + keep_alive

    def new_locks(self) -> None:
        for residency in self._residency.values():
            residency.lock = asyncio.Lock()

    def unload(self, info: ModelInfo) -> None:
        self._residency[info.name].expires = 0.0

    def loaded(self) -> list[tuple[ModelInfo, float]]:
        """Loaded models with their expiry as epoch seconds."""
        now, wall = time.monotonic(), time.time()
        return [(self.infos[name], wall + max(r.expires - now, 0.0))
                for name, r in self._residency.items() if r.loaded(now)]


# ---------------------------------------------------------------------------------------------
# Wire formats: one class per response shape, building bytes from precomputed pieces


@dataclass(slots=True)
class _Stats:
    done_reason: str
    prompt_eval_count: int
    eval_count: int
    total_ns: int = 0
    load_ns: int = 0
    prompt_eval_ns: int = 0
    eval_ns: int = 0
    counts: bool = True
    usage: bool = False
    context: list[int] = field(default_factory=list)

    def native_metrics(self) -> str:
        if not self.counts:
            return ""
        pairs = (("total_duration", self.total_ns), ("load_duration", self.load_ns),
                 ("prompt_eval_count", self.prompt_eval_count),
                 ("prompt_eval_duration", self.prompt_eval_ns),
                 ("eval_count", self.eval_count), ("eval_duration", self.eval_ns))
        return "".join(f',"{key}":{value}' for key, value in pairs if value)  # Go omitempty

    def openai_usage(self) -> str:
        total = self.prompt_eval_count + self.eval_count
        return (f'"usage":{{"prompt_tokens":{self.prompt_eval_count},'
                f'"completion_tokens":{self.eval_count},"total_tokens":{total}}}')


class _Wire(Protocol):
    stream_type: str
    body_type: str

    def content(self, token_json: str) -> bytes: ...
    def tail(self, stats: _Stats) -> list[bytes]: ...
    def body(self, text_json: str, stats: _Stats) -> bytes: ...
    def error(self, message: str) -> bytes: ...
    def malformed(self) -> bytes: ...


class _NativeChat:
    stream_type, body_type = "application/x-ndjson", _NATIVE_JSON

    def __init__(self, model_json: str) -> None:
        self._head = '{"model":' + model_json + ',"created_at":"'
        self._mid = '","message":{"role":"assistant","content":'

    def content(self, token_json: str) -> bytes:
        now = _rfc3339(time.time_ns())
        return f'{self._head}{now}{self._mid}{token_json}}},"done":false}}\n'.encode()

    def body(self, text_json: str, stats: _Stats) -> bytes:
        return (f'{self._head}{_rfc3339(time.time_ns())}{self._mid}{text_json}}},'
                f'"done_reason":"{stats.done_reason}","done":true{stats.native_metrics()}}}').encode()

    def tail(self, stats: _Stats) -> list[bytes]:
        return [self.body('""', stats) + b"\n"]

    def error(self, message: str) -> bytes:
        return (_go_json({"error": message}) + "\n").encode()

    def malformed(self) -> bytes:
        return b'{"model":"simulated malformed line\n'


class _NativeGenerate(_NativeChat):
    def __init__(self, model_json: str) -> None:
        self._head = '{"model":' + model_json + ',"created_at":"'
        self._mid = '","response":'

    def content(self, token_json: str) -> bytes:
        now = _rfc3339(time.time_ns())
        return f'{self._head}{now}{self._mid}{token_json},"done":false}}\n'.encode()

    def body(self, text_json: str, stats: _Stats) -> bytes:
        context = ",".join(map(str, stats.context))
        return (f'{self._head}{_rfc3339(time.time_ns())}{self._mid}{text_json},"done":true,'
                f'"done_reason":"{stats.done_reason}","context":[{context}]'
                f'{stats.native_metrics()}}}').encode()


class _OpenAIChat:
    """SSE chunks and bodies of /v1/chat/completions, in the field order of Ollama's structs."""

    stream_type, body_type = "text/event-stream", _OPENAI_JSON
    chunk_object, body_object = "chat.completion.chunk", "chat.completion"

    def __init__(self, model_json: str, completion_id: str) -> None:
        self._id = f'"id":"{completion_id}","object":"{self.chunk_object}","created":'
        self._body_id = f'{{"id":"{completion_id}","object":"{self.body_object}","created":'
        self._meta = f'"model":{model_json},"system_fingerprint":"fp_ollama"'

    def _chunk(self, choice: str, usage: str = "") -> str:
        now = int(time.time())
        return f'data: {{{self._id}{now},{self._meta},"choices":[{choice}]{usage}}}\n\n'

    @staticmethod
    def _choice(text_json: str, finish: str) -> str:
        return (f'{{"index":0,"delta":{{"role":"assistant","content":{text_json}}},'
                f'"finish_reason":{finish}}}')

    def content(self, token_json: str) -> bytes:
        return self._chunk(self._choice(token_json, "null")).encode()

    def tail(self, stats: _Stats) -> list[bytes]:
        pieces = [self._chunk(self._choice('""', f'"{stats.done_reason}"'))]
        if stats.usage and stats.counts:
            pieces.append(self._chunk("", "," + stats.openai_usage()))
        pieces.append("data: [DONE]\n\n")
        return [piece.encode() for piece in pieces]

    def body(self, text_json: str, stats: _Stats) -> bytes:
        choice = (f'{{"index":0,"message":{{"role":"assistant","content":{text_json}}},'
                  f'"finish_reason":"{stats.done_reason}"}}')
        usage = "," + stats.openai_usage() if stats.counts else ""
        return (f'{self._body_id}{int(time.time())},{self._meta},"choices":[{choice}]{usage}}}\n'
                ).encode()

    def error(self, message: str) -> bytes:
        return b"data: " + _openai_error(message, "api_error").rstrip(b"\n") + b"\n\n"

    def malformed(self) -> bytes:
        return b'data: {"id":"simulated malformed line\n\n'


class _OpenAICompletion(_OpenAIChat):
    """SSE chunks and bodies of /v1/completions (its chunks put choices before model)."""

    chunk_object = body_object = "text_completion"

    def _chunk(self, choice: str, usage: str = "") -> str:
        now = int(time.time())
        return f'data: {{{self._id}{now},"choices":[{choice}],{self._meta}{usage}}}\n\n'

    @staticmethod
    def _choice(text_json: str, finish: str) -> str:
        return f'{{"text":{text_json},"index":0,"finish_reason":{finish}}}'

    def body(self, text_json: str, stats: _Stats) -> bytes:
        choice = self._choice(text_json, f'"{stats.done_reason}"')
        usage = "," + stats.openai_usage() if stats.counts else ""
        return (f'{self._body_id}{int(time.time())},{self._meta},"choices":[{choice}]{usage}}}\n'
                ).encode()


def _openai_error(message: str, kind: str) -> bytes:
    error = {"message": message, "type": kind, "param": None, "code": None}
    return (_go_json({"error": error}) + "\n").encode()


def _error_response(status: int, message: str, openai: bool) -> web.Response:
    if openai:
        kind = "invalid_request_error" if status == 400 else "api_error"
        return web.Response(status=status, body=_openai_error(message, kind),
                            headers={"Content-Type": _OPENAI_JSON})
    return web.Response(status=status, body=_go_json({"error": message}).encode(),
                        headers={"Content-Type": _NATIVE_JSON})


def _json_response(value: object, openai: bool = False) -> web.Response:
    body = _go_json(value) + ("\n" if openai else "")
    return web.Response(body=body.encode(),
                        headers={"Content-Type": _OPENAI_JSON if openai else _NATIVE_JSON})


def _not_found() -> web.Response:
    return web.Response(status=404, body=b"404 page not found",
                        headers={"Content-Type": "text/plain"})


def _reset(transport: Any) -> None:
    """Drop a connection with a TCP reset instead of an orderly close."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


# ---------------------------------------------------------------------------------------------
# One inference request


@dataclass(slots=True)
class _Job:
    endpoint: str
    model: str
    fault: Fault | None
    tokens: int
    token_rate: float
    ttft: float
    hold: str | None
    started_ns: int
    number: int
    stream: bool = False
    prompt_eval_count: int = 0
    eval_count: int = 0
    cap: int | None = None
    done_reason: str = ""
    first: int = 0
    loaded: bool = False
    recorded: bool = False

    @property
    def mode(self) -> str:
        return self.fault.mode if self.fault else ""

    def report(self, status: int, outcome: str) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "model": self.model, "status": status,
                "stream": self.stream, "fault": str(self.fault) if self.fault else None,
                "prompt_eval_count": self.prompt_eval_count, "eval_count": self.eval_count,
                "done_reason": self.done_reason or None, "load": self.loaded, "outcome": outcome}


_GENERATION = {  # endpoint: whether it is a chat
    "/api/generate": False, "/api/chat": True, "/v1/completions": False,
    "/v1/chat/completions": True,
}
_EMBEDDING = ("/api/embed", "/api/embeddings", "/v1/embeddings")


# ---------------------------------------------------------------------------------------------
# The server


class _TrackingServer(web.Server):
    """aiohttp's low-level server, counting open connections and refusing them on demand."""

    def __init__(self, handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
                 sim: SimServer, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._sim = sim

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        if self._sim.fault is not None and self._sim.fault.mode == "refuse":
            _reset(transport)
            return
        self._sim._connection_changed(handler, opened=True)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        self._sim._connection_changed(handler, opened=False)


class SimServer:
    """An Ollama look-alike on a TCP port, run in a background thread or in a running loop."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, token_rate: float = 0.0,
                 ttft: float = 0.0, load_delay: float = 0.0, tokens: int = DEFAULT_TOKENS,
                 models: Sequence[str] = DEFAULT_MODELS, fault: str | None = None,
                 seed: int = 0, keep_alive: float = DEFAULT_KEEP_ALIVE,
                 cassette: str | os.PathLike[str] | None = None, speed: float = 1.0) -> None:
        for name, value in (("token_rate", token_rate), ("ttft", ttft),
                            ("load_delay", load_delay), ("tokens", tokens),
                            ("keep_alive", keep_alive), ("port", port)):
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        names = [m.strip() if ":" in m else f"{m.strip()}:latest" for m in models if m.strip()]
        if not names:
            raise ValueError("models must name at least one model")
        self.host, self.port = host, port
        self.fault = Fault.parse(fault)
        self._token_rate, self._ttft, self._tokens = token_rate, ttft, tokens
        self._keep_alive, self._seed = keep_alive, seed
        self._models = _Models(names, load_delay)
        self._reports: list[dict[str, Any]] = []
        self._open: set[RequestHandler] = set()
        self._changed = threading.Condition()
        self._holds: dict[str, asyncio.Event] = {}
        self._released: set[str] = set()
        self._counter = itertools.count(1)
        self._jobs = itertools.count()
        self._routes: dict[str, tuple[tuple[str, ...], Callable[..., Awaitable[Any]]]] = {
            "/": (("GET", "HEAD"), self._root),
            "/api/version": (("GET", "HEAD"), self._version),
            "/api/tags": (("GET", "HEAD"), self._tags),
            "/api/ps": (("GET",), self._ps),
            "/api/show": (("POST",), self._show),
            "/v1/models": (("GET",), self._v1_models),
            **{path: (("POST",), self._generation) for path in _GENERATION},
            **{path: (("POST",), self._embeddings) for path in _EMBEDDING},
        }
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.ServerRunner | None = None
        self._player = None if cassette is None else _CassettePlayer(cassette, speed)
        self.blobs: dict[str, int] = {}  # digest -> size of each blob pushed to /api/blobs

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # -- what tests look at ----------------------------------------------------------------

    @property
    def reports(self) -> list[dict[str, Any]]:
        """One dict per finished inference request, oldest first (a copy).

        Keys: endpoint, model (as requested), status, stream, fault, prompt_eval_count,
        eval_count (content chunks emitted), done_reason, load (this request loaded the
        model) and outcome: done, error, aborted (by a fault) or client_gone.
        """
        with self._changed:
            return list(self._reports)

    @property
    def connections(self) -> int:
        """Client connections open now."""
        with self._changed:
            return len(self._open)

    def wait_for_reports(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until at least count reports exist; TimeoutError if they do not come."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._reports) >= count, timeout):
                raise TimeoutError(f"{len(self._reports)} reports after {timeout}s, not {count}")
            return list(self._reports)

    def wait_for_connections(self, count: int, timeout: float = 5.0) -> None:
        """Wait until exactly count client connections are open; TimeoutError otherwise."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._open) == count, timeout):
                raise TimeoutError(f"{len(self._open)} connections after {timeout}s, not {count}")

    def release(self, key: str) -> None:
        """Let requests held with X-Sim-Hold: KEY (now or later) go on."""
        loop = self._loop
        if loop is not None and loop.is_running() and self._thread is not None:
            loop.call_soon_threadsafe(self._release, key)
        else:
            self._release(key)

    def reset(self) -> None:
        """Forget reports and releases."""
        with self._changed:
            self._reports.clear()
        self._released.clear()

    def _release(self, key: str) -> None:
        self._released.add(key)
        event = self._holds.pop(key, None)
        if event is not None:
            event.set()

    def _record(self, job: _Job, status: int, outcome: str) -> None:
        if job.recorded:
            return
        job.recorded = True
        with self._changed:
            self._reports.append(job.report(status, outcome))
            self._changed.notify_all()

    def _connection_changed(self, handler: RequestHandler, opened: bool) -> None:
        with self._changed:
            if opened:
                self._open.add(handler)
            else:
                self._open.discard(handler)
            self._changed.notify_all()

    # -- lifecycle -------------------------------------------------------------------------

    async def astart(self) -> None:
        """Listen, in the running event loop."""
        sock = socket.create_server((self.host, self.port), backlog=1024,
                                    family=socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        self.port = sock.getsockname()[1]
        self._loop = asyncio.get_running_loop()
        self._holds.clear()  # events and locks belong to one loop; a restart gets new ones
        self._models.new_locks()
        server = _TrackingServer(self._dispatch, self, handler_cancellation=True, access_log=None)
        self._runner = web.ServerRunner(server, shutdown_timeout=2.0)
        try:
            await self._runner.setup()
            await web.SockSite(self._runner, sock, backlog=1024).start()
        except BaseException:
            sock.close()
            raise
        logger.info("ollama simulator listening on %s", self.url)

    async def astop(self) -> None:
        """Drop open connections and stop listening."""
        with self._changed:
            handlers = list(self._open)
        for handler in handlers:
            _reset(handler.transport)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start(self) -> SimServer:
        """Run in a background thread with its own loop; return once it is listening."""
        if self._thread is not None:
            raise RuntimeError(f"simulator on {self.url} is already running")
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run_thread, args=(ready, failure),
                                        name="ollama-sim", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop the background thread started by start(); a no-op when not running."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.astop(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _run_thread(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            try:
                loop.run_until_complete(self.astart())
            except BaseException as exc:  # handed to the thread that called start()
                failure.append(exc)
                return
            finally:
                ready.set()
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending))
            loop.run_until_complete(loop.shutdown_asyncgens())
            asyncio.set_event_loop(None)
            loop.close()
            self._loop = None

    # -- routing ---------------------------------------------------------------------------

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        path, method = request.path, request.method
        if path.startswith("/_sim/"):
            return await self._control(request)
        if self._player is not None:
            return await self._player.serve(request)
        methods, handler = self._routes.get(path, ((), None))
        if handler is None and path.startswith("/v1/models/") and method in ("GET", "HEAD"):
            methods, handler = ("GET", "HEAD"), self._v1_model
        if handler is None and path.startswith("/api/blobs/"):
            methods, handler = ("POST", "HEAD"), self._blob
        if handler is None or method not in methods:
            return _not_found()
        openai = path.startswith("/v1/")
        try:
            header = request.headers.get("X-Sim-Fault")
            fault = self.fault if header is None else Fault.parse(header)
        except ValueError as exc:
            return _error_response(400, f"X-Sim-Fault: {exc}", openai)
        if fault is not None and fault.mode == "refuse":
            _reset(request.transport)
            return web.Response()
        if path in _GENERATION or path in _EMBEDDING:
            return await self._inference(request, handler, fault, openai)
        if fault is not None and fault.status and path != "/":
            return _error_response(fault.status, _status_message(fault.status), openai)
        try:
            response: web.StreamResponse = await handler(request)
        except _RequestError as exc:
            return _error_response(exc.status, exc.message, openai)
        return response

    async def _control(self, request: web.BaseRequest) -> web.StreamResponse:
        path, method = request.path, request.method
        if path == "/_sim/reports" and method == "GET":
            return _json_response(self.reports)
        if path == "/_sim/connections" and method == "GET":
            return _json_response({"connections": max(self.connections - 1, 0)})
        if path == "/_sim/reset" and method == "POST":
            self.reset()
            return _json_response({"reset": True})
        if path.startswith("/_sim/release/") and method == "POST":
            key = path.removeprefix("/_sim/release/")
            self._release(key)
            return _json_response({"released": key})
        return _not_found()

    # -- metadata endpoints ----------------------------------------------------------------

    async def _root(self, request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(body=_ROOT_TEXT, headers={"Content-Type": "text/plain; charset=utf-8"})

    async def _version(self, request: web.BaseRequest) -> web.StreamResponse:
        return _json_response({"version": VERSION})

    async def _tags(self, request: web.BaseRequest) -> web.StreamResponse:
        return _json_response({"models": [
            {"name": info.name, "model": info.name, "modified_at": info.modified_at,
             "size": info.size, "digest": info.digest, "details": info.details()}
            for info in self._models.infos.values()]})

    async def _ps(self, request: web.BaseRequest) -> web.StreamResponse:
        return _json_response({"models": [
            {"name": info.name, "model": info.name, "size": info.size * 5 // 4,
             "digest": info.digest, "details": info.details(),
             "expires_at": _rfc3339(int(expires * _NS)), "size_vram": info.size * 5 // 4}
            for info, expires in self._models.loaded()]})

    async def _show(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await _read_json(request)
        name = body.get("model") or body.get("name") or ""
        info = self._models.resolve(str(name))
        if info is None:
            raise _RequestError(404, f"model '{name}' not found")
        arch = info.family.replace("-", "")
        return _json_response({
            "license": "Simulated model: no license.",
            "modelfile": f"# Modelfile generated by ollama-sim\nFROM {info.name}\n",
            "parameters": 'stop                           "<|eot_id|>"',
            "template": "{{ .Prompt }}",
            "details": info.details(),
            "model_info": {"general.architecture": arch,
                           "general.parameter_count": info.size * 2,
                           f"{arch}.context_length": 131072,
                           f"{arch}.embedding_length": info.embedding_length},
            "capabilities": ["embedding"] if info.embedding_only else ["completion"],
            "modified_at": info.modified_at,
        })

    async def _blob(self, request: web.BaseRequest) -> web.StreamResponse:
        """HEAD: 200 when the blob exists; POST: read the body as it comes, check its digest."""
        digest = request.path.removeprefix("/api/blobs/")
        if not re.fullmatch(r"sha256[:-][0-9a-f]{64}", digest):
            raise _RequestError(400, "invalid digest format")
        digest = "sha256:" + digest[7:]
        if request.method == "HEAD":
            return web.Response(status=200 if digest in self.blobs else 404)
        if digest in self.blobs:
            return web.Response(status=200)
        sha, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():  # never the whole body at once
            sha.update(chunk)
            size += len(chunk)
        if "sha256:" + sha.hexdigest() != digest:
            raise _RequestError(400, "digest mismatch")
        self.blobs[digest] = size
        return web.Response(status=201)

    async def _v1_models(self, request: web.BaseRequest) -> web.StreamResponse:
        return _json_response({"object": "list", "data": [
            _v1_model_entry(info) for info in self._models.infos.values()]}, openai=True)

    async def _v1_model(self, request: web.BaseRequest) -> web.StreamResponse:
        name = request.path.removeprefix("/v1/models/")
        info = self._models.resolve(name)
        if info is None:
            raise _RequestError(404, f'model "{name}" not found')
        return _json_response({**_v1_model_entry(info), "id": name}, openai=True)

    # -- inference -------------------------------------------------------------------------

    async def _inference(self, request: web.BaseRequest,
                         handler: Callable[..., Awaitable[web.StreamResponse]],
                         fault: Fault | None, openai: bool) -> web.StreamResponse:
        job = _Job(request.path, "", fault, self._tokens, self._token_rate, self._ttft,
                   request.headers.get("X-Sim-Hold"), time.perf_counter_ns(), next(self._jobs))
        try:
            self._apply_headers(request, job)
            body = await _read_json(request)
            job.model = str(body.get("model") or "")
            if not job.model:
                raise _RequestError(400, "model is required")
            job.stream = bool(body.get("stream", not openai)) and request.path in _GENERATION
            if fault is not None and fault.status:
                raise _RequestError(fault.status, _status_message(fault.status))
            info = self._models.resolve(job.model)
            if info is None:
                raise _RequestError(404, f"model {_go_json(job.model)} not found, "
                                         "try pulling it first")
            response: web.StreamResponse = await handler(request, job, body, info, openai)
            return response
        except _RequestError as exc:
            self._record(job, exc.status, "error")
            return _error_response(exc.status, exc.message, openai)
        except (asyncio.CancelledError, ConnectionError):
            self._record(job, 200, "client_gone")
            raise
        except Exception:
            self._record(job, 500, "error")
            raise
        finally:
            self._record(job, 200, "done")  # a normal return not recorded on the way

    def _apply_headers(self, request: web.BaseRequest, job: _Job) -> None:
        for header, attr, kind in (("X-Sim-Tokens", "tokens", int),
                                   ("X-Sim-Token-Rate", "token_rate", float),
                                   ("X-Sim-TTFT", "ttft", float)):
            raw = request.headers.get(header)
            if raw is None:
                continue
            try:
                value = kind(raw)
            except ValueError:
                value = -1
            if not 0 <= value < math.inf:
                raise _RequestError(400, f"{header}: {raw!r} is not a number >= 0")
            setattr(job, attr, value)

    async def _generation(self, request: web.BaseRequest, job: _Job, body: dict[str, Any],
                          info: ModelInfo, openai: bool) -> web.StreamResponse:
        chat = _GENERATION[request.path]
        kind = "chat" if chat else "generate"
        if info.embedding_only:
            raise _RequestError(400, f"{_go_json(job.model)} does not support {kind}")
        if openai:
            cap = body.get("max_tokens", body.get("max_completion_tokens"))
            keep_alive = self._keep_alive
        else:
            cap = (body.get("options") or {}).get("num_predict")
            keep_alive = _parse_keep_alive(body.get("keep_alive"), self._keep_alive)
        if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool)):
            raise _RequestError(400, f"max tokens must be an integer, got {_go_json(cap)}")
        if chat:
            messages = body.get("messages") or []
            if not isinstance(messages, list):
                raise _RequestError(400, "messages must be a list")
            text = "\n".join(str(m.get("content")) for m in messages if isinstance(m, dict))
            job.prompt_eval_count = sum(_words(m.get("content")) + 4 for m in messages
                                        if isinstance(m, dict)) + 3
            empty = not messages
        else:
            text = str(body.get("prompt") or "")
            system = str(body.get("system") or "")
            job.prompt_eval_count = _words(text) + _words(system) + (0 if body.get("raw") else 8)
            empty = not text
        if empty and not openai:
            return await self._load_only(job, info, chat, keep_alive)
        job.first = (zlib.crc32(text.encode()) + self._seed) % len(VOCAB)
        job.cap = cap if cap is not None and cap > 0 else None
        job.eval_count = 0
        model_json = _go_json(job.model)
        wire: _Wire
        if openai:
            completion_id = f"{'chatcmpl' if chat else 'cmpl'}-{next(self._counter) % 1000}"
            wire = (_OpenAIChat if chat else _OpenAICompletion)(model_json, completion_id)
        else:
            wire = _NativeChat(model_json) if chat else _NativeGenerate(model_json)
        options = body.get("stream_options") or {}
        include_usage = openai and isinstance(options, dict) and options.get("include_usage")
        load_ns, job.loaded = await self._models.acquire(info)
        try:
            return await self._produce(request, job, wire, load_ns, bool(include_usage))
        finally:
            self._models.release(info, keep_alive)

    async def _load_only(self, job: _Job, info: ModelInfo, chat: bool,
                         keep_alive: float) -> web.StreamResponse:
        """An empty prompt loads (or with keep_alive 0 unloads) the model, as in Ollama."""
        if keep_alive == 0:
            self._models.unload(info)
            job.done_reason = "unload"
        else:
            _, job.loaded = await self._models.acquire(info)
            self._models.release(info, keep_alive)
            job.done_reason = "load"
        head = {"model": job.model, "created_at": _rfc3339(time.time_ns())}
        if chat:
            return _json_response({**head, "message": {"role": "assistant", "content": ""},
                                   "done_reason": job.done_reason, "done": True})
        return _json_response({**head, "response": "", "done": True,
                               "done_reason": job.done_reason})

    async def _produce(self, request: web.BaseRequest, job: _Job, wire: _Wire, load_ns: int,
                       include_usage: bool) -> web.StreamResponse:
        """Emit the tokens at the configured pace, streamed or as one body, with the faults."""
        started = time.perf_counter_ns()
        if job.ttft > 0:
            await asyncio.sleep(job.ttft)
        eval_start = time.perf_counter_ns()
        n = job.tokens if job.cap is None else min(job.tokens, job.cap)
        job.done_reason = "length" if job.cap is not None and job.cap <= job.tokens else "stop"
        if job.fault is not None and job.fault.megabytes:
            n = job.fault.megabytes * (1 << 20) // _BIG_CHUNK
        rng = self._cutter(job)

        def stats() -> _Stats:
            now = time.perf_counter_ns()
            result = _Stats(job.done_reason, job.prompt_eval_count, job.eval_count,
                            total_ns=now - job.started_ns, load_ns=load_ns,
                            prompt_eval_ns=eval_start - started, eval_ns=now - eval_start,
                            counts=job.mode != "no_counts",
                            usage=include_usage and job.mode != "no_usage")
            if isinstance(wire, _NativeGenerate):
                result.context = [(job.first * 7919 + i * 104729) % 128000
                                  for i in range(job.prompt_eval_count + job.eval_count)]
            return result

        if not job.stream:
            await self._emit(request, job, wire, n, None)
            if job.mode == "error_in_stream":
                raise _RequestError(500, "an error was encountered while running the model: "
                                         "simulated error_in_stream")
            if job.mode == "big_body":
                text = _BIG_TOKEN * job.eval_count
            else:
                text = "".join(VOCAB[(job.first + i) % len(VOCAB)] for i in range(job.eval_count))
            text_json = _go_json(text)
            if job.mode == "invalid_utf8":  # an escape no text contains, swapped for the bytes
                text_json = text_json[:-1] + '\\ufffd"'
            body = wire.body(text_json, stats())
            if job.mode == "invalid_utf8":
                body = body.replace(b"\\ufffd", _INVALID_UTF8, 1)
            return await self._send_body(request, job, body, wire.body_type, rng)
        resp = web.StreamResponse(headers={"Content-Type": wire.stream_type})
        resp.enable_chunked_encoding()
        await resp.prepare(request)  # the headers leave with the first chunk, as in Ollama

        async def write(data: bytes) -> None:
            if rng is not None:
                for piece in _split_cuts(data, rng):
                    await resp.write(piece)
            else:
                await resp.write(data)

        try:
            if await self._emit(request, job, wire, n, write):
                final = wire.tail(stats())
                if job.mode == "truncated_tail":
                    final = [final[0][: len(final[0]) // 2]]
                self._record(job, 200, "aborted" if job.mode == "truncated_tail" else "done")
                for piece in final:
                    await write(piece)
        except ConnectionError:
            self._record(job, 200, "client_gone")
        return resp

    async def _emit(self, request: web.BaseRequest, job: _Job, wire: _Wire, n: int,
                    write: Callable[[bytes], Awaitable[None]] | None) -> bool:
        """Pace n content chunks (written when write is given); False if a fault ended it."""
        mode = job.mode
        cutting = write is not None and mode in ("close_mid_stream", "error_in_stream", "reset")
        cut = min(_CUT_AFTER, n) if cutting else -1
        interval = 1.0 / job.token_rate if job.token_rate > 0 else 0.0
        loop = asyncio.get_running_loop()
        first_at = loop.time()
        for i in range(n + 1):
            if i == cut and write is not None:
                if mode in ("close_mid_stream", "reset"):
                    self._record(job, 200, "aborted")
                    if mode == "reset":
                        _reset(request.transport)
                    elif request.transport is not None:
                        request.transport.close()
                    return False
                self._record(job, 200, "error")
                await write(wire.error("an error was encountered while running the model: "
                                       "simulated error_in_stream"))
                return False
            if i == n:
                return True
            if interval and i:
                delay = first_at + i * interval - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            if write is not None:
                if mode == "big_body":
                    await write(wire.content(_go_json(_BIG_TOKEN)))
                elif mode == "invalid_utf8" and i == min(1, n - 1):
                    await write(wire.content('"\\ufffd"').replace(b"\\ufffd", _INVALID_UTF8))
                else:
                    await write(wire.content(_VOCAB_JSON[(job.first + i) % len(VOCAB)]))
            job.eval_count = i + 1
            if i == 0 and job.hold:
                await self._hold(job.hold)
            if i == 0 and mode == "stall" and write is not None:
                await loop.create_future()  # until the client goes (the task is cancelled)
            if mode == "malformed_line" and write is not None and i + 1 == max(n // 2, 1):
                await write(wire.malformed())
        return True

    async def _send_body(self, request: web.BaseRequest, job: _Job, body: bytes,
                         content_type: str, rng: random.Random | None) -> web.StreamResponse:
        """Send a non-streamed body, applying the fault modes that make sense for one."""
        mode = job.mode
        if mode in ("malformed_line", "truncated_tail"):
            body = body[: len(body) // 2]
        if mode not in ("close_mid_stream", "stall", "split", "reset"):
            self._record(job, 200, "done")
            return web.Response(body=body, headers={"Content-Type": content_type})
        resp = web.StreamResponse(headers={"Content-Type": content_type})
        resp.content_length = len(body)
        await resp.prepare(request)
        try:
            if rng is not None:
                self._record(job, 200, "done")
                for piece in _split_cuts(body, rng):
                    await resp.write(piece)
                return resp
            await resp.write(body[: len(body) // 2])
            if mode in ("close_mid_stream", "reset"):
                self._record(job, 200, "aborted")
                if mode == "reset":
                    _reset(request.transport)
                elif request.transport is not None:
                    request.transport.close()
                return resp
            await asyncio.get_running_loop().create_future()  # stall until cancelled
        except ConnectionError:
            self._record(job, 200, "client_gone")
        return resp

    def _cutter(self, job: _Job) -> random.Random | None:
        """The seeded source of split positions, for the split fault only."""
        return random.Random(self._seed * 1_000_003 + job.number) if job.mode == "split" else None

    async def _hold(self, key: str) -> None:
        if key in self._released:
            return
        event = self._holds.setdefault(key, asyncio.Event())
        await event.wait()

    async def _embeddings(self, request: web.BaseRequest, job: _Job, body: dict[str, Any],
                          info: ModelInfo, openai: bool) -> web.StreamResponse:
        legacy = request.path == "/api/embeddings"
        raw = body.get("prompt" if legacy else "input", "")
        inputs = [raw] if isinstance(raw, str) else raw
        if not isinstance(inputs, list) or not all(isinstance(x, str) for x in inputs):
            raise _RequestError(400, "invalid input type")
        job.prompt_eval_count = sum(_words(text) for text in inputs)
        keep_alive = self._keep_alive if openai else _parse_keep_alive(
            body.get("keep_alive"), self._keep_alive)
        load_ns, job.loaded = await self._models.acquire(info)
        try:
            if job.ttft > 0:
                await asyncio.sleep(job.ttft)
            vectors = [list(_embedding(text, info.embedding_length, self._seed, not legacy))
                       for text in inputs if text or not legacy]
        finally:
            self._models.release(info, keep_alive)
        if job.mode == "error_in_stream":
            raise _RequestError(500, "simulated error_in_stream")
        if legacy:
            value: dict[str, Any] = {"embedding": vectors[0] if vectors else []}
        elif openai:
            value = {"object": "list", "data": [
                {"object": "embedding", "embedding": v, "index": i} for i, v in enumerate(vectors)],
                "model": job.model, "usage": {"prompt_tokens": job.prompt_eval_count,
                                              "total_tokens": job.prompt_eval_count}}
        else:
            value = {"model": job.model, "embeddings": vectors}
            if job.mode != "no_counts":
                value.update(total_duration=time.perf_counter_ns() - job.started_ns,
                             load_duration=load_ns, prompt_eval_count=job.prompt_eval_count)
        text = _go_json(value) + ("\n" if openai else "")
        return await self._send_body(request, job, text.encode(),
                                     _OPENAI_JSON if openai else _NATIVE_JSON, self._cutter(job))


def _v1_model_entry(info: ModelInfo) -> dict[str, Any]:
    return {"id": info.name, "object": "model", "created": 1747354367, "owned_by": "library"}


def _status_message(status: int) -> str:
    return _STATUS_MESSAGES.get(status, f"simulated status {status}")


async def _read_json(request: web.BaseRequest) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 worded like Go's decoder."""
    raw = await request.read()
    if not raw.strip():
        raise _RequestError(400, "missing request body")
    try:
        value = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise _RequestError(400, "invalid character in request body") from exc
    except json.JSONDecodeError as exc:
        if exc.pos >= len(exc.doc):
            raise _RequestError(400, "unexpected end of JSON input") from exc
        message = f"invalid character {exc.doc[exc.pos]!r} looking for beginning of value"
        raise _RequestError(400, message) from exc
    if not isinstance(value, dict):
        raise _RequestError(400, f"json: cannot unmarshal {type(value).__name__} into Go value")
    return value

# ---------------------------------------------------------------------------------------------
# Cassettes: recorded traffic served as the upstream (docs/cassettes.md)


def _cassettes_module() -> Any:
    """``addons.cassettes``, imported on first use so the simulator otherwise stands alone."""
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    from addons import cassettes

    return cassettes


class _CassettePlayer:
    """Answers each request with a recorded interaction, chunk by chunk at recorded offsets.

    A request is matched by method, path and body (JSON compared parsed, so key order and
    spacing do not matter), then by method and path alone; each time the first interaction
    not served yet, in recorded order, else the last one again. ``speed`` 2 plays twice as
    fast, 0 sends without waiting.
    """

    def __init__(self, path: str | os.PathLike[str], speed: float) -> None:
        if not speed >= 0:
            raise ValueError(f"speed must be >= 0, got {speed!r}")
        self.cassettes = _cassettes_module()
        try:
            self.interactions = self.cassettes.read(path)
        except OSError as exc:
            raise ValueError(f"cassette {os.fspath(path)}: {exc}") from exc
        self.speed = speed
        self._keys = [(i.request.method, i.request.path,
                       self.cassettes.normalised_body(i.request.body))
                      for i in self.interactions]
        self._served: set[int] = set()

    def match(self, method: str, path: str, body: bytes) -> Any:
        parsed = self.cassettes.normalised_body(body)
        key = (method, path, parsed)
        # A cassette holds requests as their clients sent them; the proxy in front asks an
        # OpenAI stream for its usage (stream_options) on the way here.
        bare = key
        if isinstance(parsed, dict) and "stream_options" in parsed:
            bare = (method, path, {k: v for k, v in parsed.items() if k != "stream_options"})
        for same in (lambda k: k in (key, bare), lambda k: k[:2] == key[:2]):
            found = [n for n, k in enumerate(self._keys) if same(k)]
            if found:
                index = next((n for n in found if n not in self._served), found[-1])
                self._served.add(index)
                return self.interactions[index]
        return None

    async def serve(self, request: web.BaseRequest) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        interaction = self.match(request.method, request.raw_path, await request.read())
        if interaction is None:
            return _error_response(
                404, f"no recorded interaction for {request.method} {request.raw_path}", False)
        recorded = interaction.response
        if recorded is None:  # the recorded flow got no answer: neither does this one
            _reset(request.transport)
            return web.Response()
        response = web.StreamResponse(status=recorded.status, reason=recorded.reason or None)
        length = False
        for name, value in recorded.headers:
            if name.lower() == "content-length":
                length = True
            elif name.lower() not in self.cassettes.HOP_HEADERS:
                response.headers.add(name, value)
        bodiless = request.method == "HEAD" or recorded.status in (204, 304)
        if length or bodiless:
            response.content_length = 0 if bodiless else len(recorded.body)
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        for chunk in [] if bodiless else recorded.chunks:
            if self.speed:
                delay = sent_at + chunk.offset / self.speed - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            await response.write(chunk.data)  # chunked: one HTTP chunk per recorded chunk
        await response.write_eof()
        return response


# ---------------------------------------------------------------------------------------------
# Command line


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ollama_sim.py", description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port ({DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--token-rate", type=float, default=0.0,
                        help="tokens per second per stream (0: as fast as possible)")
    parser.add_argument("--ttft", type=float, default=0.0,
                        help="seconds of prompt evaluation before the first token")
    parser.add_argument("--load-delay", type=float, default=0.0,
                        help="seconds to load a model on first use")
    parser.add_argument("--tokens", type=int, default=DEFAULT_TOKENS,
                        help=f"tokens a model generates before it stops ({DEFAULT_TOKENS})")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help="comma-separated model names")
    parser.add_argument("--fault", default=None, help="fault for every request (see module doc)")
    parser.add_argument("--seed", type=int, default=0, help="seed for text, cuts and vectors")
    parser.add_argument("--keep-alive", type=float, default=DEFAULT_KEEP_ALIVE,
                        help="seconds a model stays loaded after use (300)")
    parser.add_argument("--cassette", default=None,
                        help="serve the recorded interactions of this cassette instead")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="cassette timing: 2 plays twice as fast, 0 without waiting (1)")
    parser.add_argument("--log-level", default="WARNING", help="logging level (WARNING)")
    args = parser.parse_args(argv)
    try:
        args.server = SimServer(
            host=args.host, port=args.port, token_rate=args.token_rate, ttft=args.ttft,
            load_delay=args.load_delay, tokens=args.tokens, models=args.models.split(","),
            fault=args.fault, seed=args.seed, keep_alive=args.keep_alive,
            cassette=args.cassette, speed=args.speed)
    except ValueError as exc:
        parser.error(str(exc))
    return args


async def _serve(server: SimServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await server.astart()
    print(f"ollama-sim listening on {server.url}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.astop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator until Ctrl-C or SIGTERM; return the exit status."""
    args = _parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_serve(args.server))
    except OSError as exc:
        print(f"ollama-sim: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
