"""A request body as Ollama's Go decoder reads it, and a byte-exact way to add a field to it.

Ollama decodes every request with Go's ``encoding/json`` (gin ``ShouldBindJSON``), which is
more forgiving than Python's ``json.loads``: it reads only the first JSON value (trailing data
is ignored), matches keys to fields without regard to case (``"Model"``, ``"MODEL"``, even
``"ſtream"``), lets the last of duplicate keys win (merging duplicate objects), and turns
invalid UTF-8 and lone surrogate escapes (``"\\ud83d"``, which JavaScript writes when it cuts
an emoji in half) into U+FFFD. ``go_view`` reads a body the same way, so the proxy attributes
a request to the model Ollama will serve; ``append_field`` adds a key by splicing bytes before
the object's closing brace, never re-serialising what the client wrote (Python would turn
``1e400`` into ``Infinity`` and cannot encode a lone surrogate).

Pure: no mitmproxy. Nothing here raises on a bad body; it answers None.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

logger = logging.getLogger(__name__)

# Go skips these before a value (and so does ``Decoder.Decode``); Python's raw_decode does not.
_JSON_SPACE = " \t\n\r"
# Python refuses to parse integers longer than this (sys.int_info.default_max_str_digits);
# Go reads them into a float64, and so does this parser.
_MAX_INT_DIGITS = 4000
_REPLACEMENT = "\ufffd"
# What can put a lone surrogate into a decoded value: a \uD800-\uDFFF escape, or (in text
# that is not ASCII) a byte that is not UTF-8, decoded as one. A body with neither (nearly
# every body) needs no cleaning after decoding.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def go_fold(key: str) -> str:
    """The form two keys share when Go's decoder matches them (Unicode simple case folding).

    ``encoding/json`` compares a key with a field name by folding both with
    ``unicode.ToUpper(unicode.ToLower(r))`` per rune; Python's case mappings are used where
    they map one character to one, which they do for every letter Go's simple folding maps.
    """
    if key.isascii():  # for ASCII the three steps come to lower()
        return key.lower()
    out = []
    for char in key:
        folded = char
        for step in (str.lower, str.upper, str.lower):
            mapped = step(folded)
            folded = mapped if len(mapped) == 1 else folded
        out.append(folded)
    return "".join(out)


def go_string(text: str) -> str:
    """A decoded string as Go holds it: each lone surrogate (or undecodable byte) is U+FFFD."""
    if text.isascii():
        return text
    return "".join(_REPLACEMENT if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


def _parse_int(digits: str) -> int | float:
    return int(digits) if len(digits) <= _MAX_INT_DIGITS else float(digits)


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object as Go fills a struct: folded keys, the last duplicate wins, objects merge."""
    view: dict[str, Any] = {}
    for key, value in pairs:
        name = go_fold(go_string(key))
        old = view.get(name)
        if isinstance(old, dict) and isinstance(value, dict):
            merged = dict(old)
            merged.update(value)
            value = merged
        view[name] = value
    return view


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return go_string(value)
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


# Stateless, so one serves every call (and every thread).
_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_int=_parse_int)


def _may_hold_surrogates(text: str) -> bool:
    return _SURROGATE_ESCAPE.search(text) is not None or (
        not text.isascii() and _SURROGATE.search(text) is not None)


def _first_value(raw: bytes) -> tuple[Any, str, int, int] | None:
    """The first JSON value of ``raw``: (value, text, start, end), offsets into ``text``.

    The bytes are decoded with ``surrogateescape``: each byte that is not UTF-8 becomes one
    lone surrogate (U+FFFD once read, as in Go) and the text encodes back to exactly ``raw``.
    """
    text = raw.decode("utf-8", "surrogateescape")
    start = len(text) - len(text.lstrip(_JSON_SPACE))
    try:
        value, end = _DECODER.raw_decode(text, start)
    except (ValueError, RecursionError):
        return None
    return value, text, start, end


def go_view(raw: bytes | None) -> dict[str, Any] | None:
    """The body's top-level object as Ollama's decoder sees it, keys folded (``"model"``).

    None when the body is empty or its first value is not an object Python can read (Go
    refuses most of those too: a BOM, NaN, a top-level array). Strings are as Go holds them.
    """
    if not raw:
        return None
    try:
        found = _first_value(raw)
    except Exception:  # never let a body reach the proxy as an exception
        logger.exception("could not read a request body")
        return None
    if found is None or not isinstance(found[0], dict):
        return None
    if not _may_hold_surrogates(found[1]):
        return found[0]  # keys were made as Go holds them by _pairs; no string to clean
    cleaned: dict[str, Any] = _clean(found[0])
    return cleaned


def append_field(raw: bytes, name: str, value: object) -> bytes | None:
    """``raw`` with ``"name": value`` added as the last key of its first object, or None.

    Only bytes are inserted, just before the object's closing brace: everything the client
    wrote reaches Ollama as it was, and Go's decoder, for which the last duplicate wins and
    duplicate objects merge, sees the field as set. None when the body's first value is not
    an object.
    """
    try:
        found = _first_value(raw)
    except Exception:
        logger.exception("could not read a request body")
        return None
    if found is None or not isinstance(found[0], dict):
        return None
    _, text, start, end = found
    close = end - 1  # raw_decode ended just after the object's "}"
    inner = text[start + 1 : close].strip(_JSON_SPACE)
    member = json.dumps(name) + ":" + json.dumps(value, separators=(",", ":"))
    spliced = text[:close] + ("," if inner else "") + member + text[close:]
    return spliced.encode("utf-8", "surrogateescape")
