"""A short narrative of the findings, written by a model on the user's Ollama, streamed.

The request goes straight to ``ollama_url``, and carries our own-traffic header
(``X-Llama-Metrics-Source: dashboard``), so that an ``ollama_url`` that is a proxy counts it
apart, never as user traffic. It is skipped when the proxy is busy (the narrative would compete
with the users for the GPU), limited to one at a time, and cut off after
``narrative_timeout_seconds`` (closing the connection makes Ollama stop generating).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from llama_core.traffic import header

from .http_client import Client, FetchError, Stream

logger = logging.getLogger(__name__)

PROMPT = """You help someone who runs an Ollama server. Below, as JSON, are the server's \
current numbers and the findings computed from them. In at most 120 words of plain text, say \
how the server is doing and the single most useful next step. Use only the numbers given; \
do not invent any.

{facts}
"""

Event = dict[str, Any]


def busy_reason(current: dict[str, Any], max_active: int, max_queue: int) -> str | None:
    """Why the narrative should wait, or None: the proxy's own load gauges against limits."""
    gauges = current.get("gauges") or {}
    active, depth = gauges.get("active_requests"), gauges.get("queue_depth")
    if active is not None and active > max_active:
        return (f"skipped under load: the proxy has {active:.0f} requests in flight "
                f"(narrative_max_active is {max_active})")
    if depth is not None and depth > max_queue:
        return (f"skipped under load: {depth:.0f} requests wait in the proxy's queue "
                f"(narrative_max_queue is {max_queue})")
    return None


def prompt(current: dict[str, Any], findings: list[dict[str, Any]]) -> str:
    point = current.get("point") or {}
    facts = {
        "ollama": (current.get("status") or {}).get("ollama"),
        "now": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in point.items()
                if k != "ts" and v is not None},
        "loaded_models": current.get("loaded"),
        "findings": [{k: f[k] for k in ("title", "detail", "action")} for f in findings],
    }
    return PROMPT.format(facts=json.dumps(facts, indent=1, default=str))


class Narrator:
    """Streams one narrative at a time from Ollama's /api/generate."""

    def __init__(self, settings: dict[str, Any], *, client: Client,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._client = client
        self._clock = clock
        self._busy = threading.Lock()

    def stream(self, current: dict[str, Any], findings: list[dict[str, Any]]) -> Iterator[Event]:
        """Events: start, chunk (text), done, or one skipped/error with its reason."""
        model = self.settings["narrative_model"]
        if not model:
            yield {"type": "skipped", "reason": "the narrative is off (narrative_model is empty)"}
            return
        reason = busy_reason(current, self.settings["narrative_max_active"],
                             self.settings["narrative_max_queue"])
        if reason:
            yield {"type": "skipped", "reason": reason}
            return
        if not self._busy.acquire(blocking=False):
            yield {"type": "skipped", "reason": "a narrative is being written already"}
            return
        try:
            yield from self._generate(model, prompt(current, findings))
        finally:
            self._busy.release()

    def _generate(self, model: str, text: str) -> Iterator[Event]:
        url = self.settings["ollama_url"]
        limit = self.settings["narrative_timeout_seconds"]
        deadline = self._clock() + limit
        payload = {"model": model, "prompt": text, "stream": True,
                   "options": {"temperature": 0.2, "num_predict": 400}}
        try:
            with self._client.stream(url.rstrip("/") + "/api/generate", timeout=limit,
                                     payload=payload, headers=header("dashboard")) as answer:
                if answer.status != 200:
                    yield {"type": "error", "error": _ollama_error(url, answer, limit)}
                    return
                yield {"type": "start", "model": model, "ollama_url": url}
                while True:
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        raise FetchError(url, "past the deadline", timed_out=True)
                    line = answer.readline(remaining)
                    if not line:
                        yield {"type": "error", "error": f"{url} ended the stream early"}
                        return
                    event = _event(line)
                    if event is not None:
                        yield event
                        if event["type"] in ("done", "error"):
                            return
        except FetchError as exc:
            if exc.timed_out:
                yield {"type": "error", "error": f"stopped after the time limit of {limit:g} s "
                       "(narrative_timeout_seconds)"}
            else:
                yield {"type": "error", "error": f"cannot reach Ollama at {url}: {exc.reason}"}


def _ollama_error(url: str, answer: Stream, timeout: float) -> str:
    raw = answer.read(4096, timeout)
    try:
        message = json.loads(raw).get("error")
    except (ValueError, AttributeError):
        message = None
    return f"Ollama at {url} answered HTTP {answer.status}: {message or raw[:200]!r}"


def _event(line: bytes) -> Event | None:
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if data.get("error"):
        return {"type": "error", "error": f"Ollama: {data['error']}"}
    if data.get("done"):
        return {"type": "done", "tokens": data.get("eval_count")}
    text = data.get("response")
    return {"type": "chunk", "text": text} if isinstance(text, str) and text else None
