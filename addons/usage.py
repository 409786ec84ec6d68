"""Asks an OpenAI-compatible stream for the usage its client did not ask for, then hides it.

Ollama's ``/v1/chat/completions`` and ``/v1/completions`` streams only report token counts
when the request says ``stream_options.include_usage``. The proxy adds that option upstream
and takes the extra usage event out of what the client receives, so the client gets the
bytes it would have got without the proxy while the metrics still get exact counts.
"""

from __future__ import annotations

import json
import logging

logger = logging.getLogger(__name__)

USAGE_ENDPOINTS = frozenset({"/v1/chat/completions", "/v1/completions"})


def wants_injected_usage(body: object) -> bool:
    """True for a streamed request whose client did not ask for usage itself."""
    if not isinstance(body, dict) or body.get("stream") is not True:
        return False
    options = body.get("stream_options")
    if options is None:
        return True
    return isinstance(options, dict) and options.get("include_usage") is not True


def with_usage(body: dict) -> bytes:
    """The request body with ``stream_options.include_usage`` set."""
    options = dict(body.get("stream_options") or {})
    options["include_usage"] = True
    return json.dumps({**body, "stream_options": options}, ensure_ascii=False).encode()


def _is_usage_event(line: bytes) -> bool:
    # Cheap byte checks first: this runs for every line of an injected stream.
    if not line.startswith(b"data:") or b'"usage"' not in line:
        return False
    try:
        obj = json.loads(line[5:])
    except ValueError:
        return False
    return (
        isinstance(obj, dict)
        and obj.get("choices") == []
        and isinstance(obj.get("usage"), dict)
    )


class UsageEventFilter:
    """Passes an SSE stream through line by line, leaving out the usage-only event.

    Complete lines go out as soon as they arrive; only a partial last line is held back
    (the client could not have used it yet either). Everything else is returned unchanged
    and in order.
    """

    __slots__ = ("_tail", "_skip_blank", "removed")

    def __init__(self) -> None:
        self._tail = b""
        self._skip_blank = False
        self.removed = 0

    def feed(self, data: bytes) -> bytes:
        if self._tail:
            data = self._tail + data
        end = data.rfind(b"\n") + 1
        self._tail = data[end:]
        if not end:
            return b""
        if b'"usage"' not in data and not self._skip_blank:
            return data[:end]
        out = []
        for line in data[:end].splitlines(keepends=True):
            if self._skip_blank and line.strip() == b"":
                self._skip_blank = False
                continue
            self._skip_blank = False
            if _is_usage_event(line.rstrip(b"\r\n")):
                self.removed += 1
                self._skip_blank = True
                continue
            out.append(line)
        return b"".join(out)

    def take_held(self) -> bytes:
        """The partial line held back so far, unfiltered (for giving up on filtering)."""
        tail, self._tail = self._tail, b""
        return tail

    def flush(self) -> bytes:
        tail, self._tail = self._tail, b""
        if tail and _is_usage_event(tail.rstrip(b"\r\n")):
            self.removed += 1
            return b""
        return tail
