"""Requests that load or unload a model rather than generate: how to tell them, before and after.

Ollama (``server/routes.go``, every version from 0.6 to 0.32.15) treats ``/api/generate``
without a prompt and ``/api/chat`` without messages as a load, and the same with
``keep_alive`` 0 as an unload. It answers one non-streamed JSON object, whatever ``stream``
says, with ``"done_reason":"load"`` or ``"unload"`` and no counts or durations at all.
``/api/embed`` with no input and ``/api/embeddings`` with an empty prompt load the model too
(``{"model":…,"embeddings":[]}``, ``{"embedding":[]}``), and so does ``/v1/completions`` with
an empty prompt (``"finish_reason":"load"``). Pure: no mitmproxy.
"""

from __future__ import annotations

import re
from typing import Any

LOAD, UNLOAD = "load", "unload"
ACTIONS = (LOAD, UNLOAD)
# The field whose emptiness makes a request a load, per endpoint.
EMPTY_MEANS_LOAD = {
    "/api/generate": "prompt",
    "/api/chat": "messages",
    "/api/embed": "input",
    "/api/embeddings": "prompt",
    "/v1/completions": "prompt",
}
# Only these answer with a done_reason (or finish_reason) that says so; the embedding
# endpoints' answers are just empty, so the request decides.
UNLOADS_WITH_KEEP_ALIVE_0 = frozenset({"/api/generate", "/api/chat"})
_GO_DURATION = re.compile(r"[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+")
_GO_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
              "m": 60.0, "h": 3600.0}


def keep_alive_is_zero(value: Any) -> bool:
    """Whether ``keep_alive`` decodes to a zero ``time.Duration`` (``api.Duration``).

    A number is seconds (``0``, ``0.0``, also ``1e-10``: under a nanosecond); a string is a Go
    duration (``"0"``, ``"0s"``, ``"0m"``). Absent or ``null`` is not zero (the default 5m).
    Ollama before 0.11.8 compared whole seconds (``0.5`` unloaded too); the answer's
    ``done_reason`` settles that case for generate and chat.
    """
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return value >= 0 and abs(value) * 1e9 < 1
    if isinstance(value, str):
        text = value.strip()
        if text in ("0", "+0", "-0"):
            return True
        if not _GO_DURATION.fullmatch(text):
            return False
        parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)", text)
        return sum(float(n) * _GO_UNIT_S[u] for n, u in parts) * 1e9 < 1
    return False


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == []


def expected_action(endpoint: str, body: dict[str, Any]) -> str | None:
    """What a request body asks for when it is not a generation: load, unload or None.

    ``body`` is the Go view of the request (``addons.request_body.go_view``).
    """
    field = EMPTY_MEANS_LOAD.get(endpoint)
    if field is None or not _empty(body.get(field)):
        return None
    if endpoint in UNLOADS_WITH_KEEP_ALIVE_0 and keep_alive_is_zero(body.get("keep_alive")):
        return UNLOAD
    return LOAD


def action_of(
    endpoint: str, expected: str | None, status: int, done_reason: str | None
) -> str | None:
    """What a finished request was: load, unload or None (a generation, or a failure).

    The answer's ``done_reason`` decides where Ollama sends one (generate, chat, completions,
    in every version); an embedding endpoint's answer to an empty request is a load.
    """
    if status != 200:
        return None
    if done_reason in ACTIONS:
        return done_reason
    if expected == LOAD and endpoint in ("/api/embed", "/api/embeddings"):
        return LOAD
    return None
