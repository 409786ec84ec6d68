"""The counts at the end of a JSON body too big to keep: a bounded tail, scanned once.

Ollama writes its counts as the last keys of a non-streamed answer (Go's encoder, struct
field order, compact): ``/api/embed`` ends ``,"total_duration":N,"load_duration":N,
"prompt_eval_count":N}`` after an ``embeddings`` array that can be tens of megabytes (the
same in 0.6.0 and 0.32.15); ``/api/generate`` and ``/api/chat`` end with the ``Metrics``
keys (after ``context``, which can be as long as the conversation); ``/v1/embeddings``,
``/v1/chat/completions`` and ``/v1/completions`` end ``,"usage":{...}}\\n``, and
``/v1/messages`` the same. So a body over the parse limit keeps only its last bytes and reads
the counts from them, in constant memory.

Only keys at the top level of the body count: the scan is anchored at the body's final
``}``, and a run of ``,"key":<integer>`` pairs directly before it, or a ``"usage"`` object
that ends right there, cannot be inside a string (Go escapes a string's quotes).
"""

from __future__ import annotations

import json
import re

# Enough for Ollama's metrics keys, an OpenAI/Anthropic/Responses usage object and what Go
# writes after the metrics of /api/generate (tool_calls, a short _debug_info).
TAIL_BYTES = 64 * 1024

_INT_KEYS = re.compile(rb'((?:,"[A-Za-z_]+":-?\d+)+)\}\s*\Z')
_PAIR = re.compile(rb',"([A-Za-z_]+)":(-?\d+)')
_USAGE = b'"usage":{'


class Tail:
    """The last ``TAIL_BYTES`` of a body, kept as it streams by."""

    __slots__ = ("_buf", "size")

    def __init__(self, size: int = TAIL_BYTES) -> None:
        self._buf = bytearray()
        self.size = size

    def feed(self, data: bytes) -> None:
        if len(data) >= self.size:
            self._buf[:] = data[-self.size:]
            return
        self._buf += data
        if len(self._buf) > 2 * self.size:  # trim now and then, not on every chunk
            del self._buf[: len(self._buf) - self.size]

    def bytes(self) -> bytes:
        return bytes(self._buf[-self.size:])


def trailing_counts(tail: bytes) -> dict[str, object] | None:
    """The top-level keys a JSON body ends with, from its last bytes; None if none are read.

    Returns the integer keys of a trailing run (``prompt_eval_count`` ...), or
    ``{"usage": {...}}`` when the body's last key is a ``usage`` object.
    """
    m = _INT_KEYS.search(tail)
    if m is not None:
        return {k.decode(): int(v) for k, v in _PAIR.findall(m.group(1))}
    return _trailing_usage(tail)


def _trailing_usage(tail: bytes) -> dict[str, object] | None:
    end = tail.rstrip()
    if not end.endswith(b"}"):
        return None
    start = end.rfind(_USAGE)
    while start > 0:
        if end[start - 1 : start] in (b",", b"{"):
            try:
                value, stop = json.JSONDecoder().raw_decode(
                    end[start + len(_USAGE) - 1 :].decode("utf-8", "replace"))
            except ValueError:
                value, stop = None, -1
            rest = end[start + len(_USAGE) - 1 :].decode("utf-8", "replace")[stop:]
            if isinstance(value, dict) and rest == "}":
                return {"usage": value}
        start = end.rfind(_USAGE, 0, start)
    return None
