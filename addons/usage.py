"""Asks an OpenAI-compatible stream for the usage its client did not ask for, then hides it.

Ollama's ``/v1/chat/completions`` and ``/v1/completions`` streams only report token counts
when the request says ``stream_options.include_usage``. The proxy adds that option upstream
and takes out of what the client receives everything the option added, so the client gets
the bytes it would have got without the proxy while the metrics still get exact counts:

- both writers (0.6.0 to 0.32.15) add one event with ``"choices":[]`` and the real usage
  before ``data: [DONE]``: it is dropped, with its blank line;
- the completions writer also ends EVERY other event with an all-zero usage,
  ``,"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}``: that key is cut,
  which leaves the event exactly as Ollama writes it without the option (``usage`` is the
  struct's last field, a nil pointer with ``omitempty``).

/v1/responses and /v1/messages always report usage (0.13.3 and 0.14.0 on): nothing is
injected there. A request body in ``Content-Encoding: zstd`` (which Ollama reads on /v1 since
0.18.0) is decoded, changed and encoded again; one in a coding the proxy cannot write back is
forwarded unchanged, and its stream's tokens are then counted from its chunks.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from .codings import CodingError, Decoder, decode_all, encode_all

logger = logging.getLogger(__name__)

USAGE_ENDPOINTS = frozenset({"/v1/chat/completions", "/v1/completions"})


# Appended as the body's last key: Go's decoder lets the last of keys that match a field
# (case-insensitively) win, and decodes an object into the struct already there, so this sets
# include_usage and nothing else, whatever the client wrote before it.
_OPTION = b'"stream_options":{"include_usage":true}'


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its (key, value) pairs in order: duplicates and case kept."""


def _pairs(items: list[tuple[str, Any]]) -> _Pairs:
    return _Pairs(items)


def _items(obj: object) -> list[tuple[str, Any]] | None:
    if isinstance(obj, _Pairs):
        return obj
    if isinstance(obj, dict):
        return list(obj.items())
    return None


def _go_values(obj: object, name: str) -> list[Any]:
    """Every value Go's decoder assigns to the field ``name``, in order (keys match
    case-insensitively, as encoding/json's folded names do)."""
    items = _items(obj) or []
    folded = name.casefold()
    return [value for key, value in items if key.casefold() == folded]


def wants_injected_usage(body: object) -> bool:
    """True for a streamed request whose client did not ask for usage itself.

    Read as Ollama's Go structs read it (``Stream bool``, ``StreamOptions *StreamOptions``):
    the last matching key wins, ``null`` resets the pointer, a later object fills the
    struct already there. A value Go would refuse makes it False (nothing is injected).
    """
    if _items(body) is None:
        return False
    streams = _go_values(body, "stream")
    if not streams or streams[-1] is not True:
        return False
    include: bool | None = None  # None: no StreamOptions (nil pointer)
    for options in _go_values(body, "stream_options"):
        if options is None:
            include = None
        elif _items(options) is None:
            return False  # Go answers 400: nothing to hide
        else:
            include = include or False
            for value in _go_values(options, "include_usage"):
                if not isinstance(value, bool):
                    return False
                include = value
    return include is not True


def with_usage(raw: bytes) -> bytes | None:
    """The request body asking for usage, or None when the proxy should not ask.

    None: the client asked itself, the request does not stream, or the body is not one JSON
    object the proxy can edit without re-serialising it. Only bytes are inserted (before the
    object's closing brace), so what Go reads from everything else is unchanged: lone
    surrogate escapes, invalid UTF-8, big numbers and trailing data included.
    """
    text = raw.decode("utf-8", "surrogateescape")
    start = len(text) - len(text.lstrip(" \t\r\n"))
    try:
        body, end = json.JSONDecoder(object_pairs_hook=_pairs).raw_decode(text, start)
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, _Pairs) or not wants_injected_usage(body):
        return None
    close = len(text[:end].encode("utf-8", "surrogateescape")) - 1  # the object's "}"
    if raw[close:close + 1] != b"}":
        return None
    return raw[:close] + (b"," if body else b"") + _OPTION + raw[close:]


def injected_body(raw: bytes, content_encoding: str) -> bytes | None:
    """``with_usage`` through the body's content coding (zstd on /v1 since Ollama 0.18.0):
    the new raw body, or None to forward it unchanged."""
    try:
        plain = decode_all(raw, content_encoding)
        changed = with_usage(plain)
        return None if changed is None else encode_all(changed, content_encoding)
    except CodingError as e:
        logger.info("request body in content-encoding %r not changed: %s", content_encoding, e)
        return None


# A usage object that is the last key of an event's JSON: nothing nested in it.
_TRAILING_USAGE = re.compile(rb',"usage":(\{[^{}]*\})\}\Z')


def without_usage(line: bytes) -> bytes:
    """An SSE ``data:`` line (no line end) without a ``usage`` that is its JSON's last key.

    The line comes back unchanged unless cutting the key leaves exactly the same JSON minus
    ``usage`` (checked by parsing both).
    """
    m = _TRAILING_USAGE.search(line)
    if m is None or not line.startswith(b"data:"):
        return line
    cut = line[: m.start()] + b"}"
    try:
        before, after = json.loads(line[5:]), json.loads(cut[5:])
    except ValueError:
        return line
    if not isinstance(before, dict) or before.pop("usage", None) is None or before != after:
        return line
    return cut


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
    """Passes an SSE stream through line by line, leaving out what include_usage added.

    Complete lines go out as soon as they arrive; only a partial last line is held back
    (the client could not have used it yet either). The usage-only event is left out and a
    trailing ``usage`` key cut from the others (``without_usage``); everything else is
    returned unchanged and in order. ``removed`` counts dropped events, ``cut`` cut keys.
    """

    __slots__ = ("_tail", "_skip_blank", "removed", "cut", "_decode")

    def __init__(self, content_encoding: str = "") -> None:
        """``content_encoding``: the stream's coding, undone here (the output is plain);
        ``CodingError`` when it is one the proxy cannot read."""
        self._tail = b""
        self._skip_blank = False
        self.removed = 0
        self.cut = 0
        decoder = Decoder(content_encoding)
        self._decode = None if decoder.identity else decoder

    @property
    def decodes(self) -> bool:
        return self._decode is not None

    def feed(self, data: bytes) -> bytes:
        if self._decode is not None:
            data = self._decode(data)
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
            body = line.rstrip(b"\r\n")
            if _is_usage_event(body):
                self.removed += 1
                self._skip_blank = True
                continue
            out.append(self._cut(body, line))
        return b"".join(out)

    def _cut(self, body: bytes, line: bytes) -> bytes:
        if b'"usage"' not in body:
            return line
        cut = without_usage(body)
        if cut is body:
            return line
        self.cut += 1
        return cut + line[len(body):]

    def take_held(self) -> bytes:
        """The partial line held back so far, unfiltered (for giving up on filtering)."""
        tail, self._tail = self._tail, b""
        return tail

    def flush(self) -> bytes:
        tail, self._tail = self._tail, b""
        if tail and _is_usage_event(tail.rstrip(b"\r\n")):
            self.removed += 1
            return b""
        return self._cut(tail.rstrip(b"\r\n"), tail) if tail else tail
