"""The simulator's clock, which a request can stop (``X-Sim-Clock``) to make answers repeatable.

With ``X-Sim-Clock: S`` (epoch seconds) every time the simulator writes for that request is
S (``created``, ``created_at``), every duration it reports is 0 (and so omitted, as Go's
``omitempty`` omits it), and OpenAI ids are derived from S: the same request answers with the
same bytes, directly and through a proxy. Nothing real Ollama does; a test device.
"""

from __future__ import annotations

import contextvars
import time

from aiohttp import web

_stopped: contextvars.ContextVar[int | None] = contextvars.ContextVar("sim_clock", default=None)
HEADER = "X-Sim-Clock"


def set_for(request: web.BaseRequest) -> None:
    """Stop the clock for this request if it asks, else let it run (a connection's requests
    share one task, so every request sets it)."""
    raw = request.headers.get(HEADER, "").strip()
    _stopped.set(int(raw) if raw.isdigit() else None)


def stopped() -> int | None:
    """The epoch second the clock stands at, or None when it runs."""
    return _stopped.get()


def time_ns() -> int:
    at = _stopped.get()
    return time.time_ns() if at is None else at * 1_000_000_000


def seconds() -> int:
    at = _stopped.get()
    return int(time.time()) if at is None else at
