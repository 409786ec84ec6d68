"""Reading a request body as Ollama does: Go's ``encoding/json`` into Ollama's request structs.

Every Ollama release (0.6 to 0.32.15) decodes with gin's ``ShouldBindJSON``: only the first
JSON value is read (trailing data is ignored), a key matches a field without regard to case
(Unicode simple folding: ``"Model"``, ``"MODEL"``, ``"ſtream"``), the last of duplicate keys
wins and duplicate objects merge into one, invalid UTF-8 and lone surrogate escapes become
U+FFFD, and a UTF-8 BOM, ``NaN`` or a top-level non-object is a 400. Keys come back folded to
lower case, which is how the simulator's handlers name every field. (Independent of the
proxy's own reader, ``addons/request_body.py``, on purpose: the tests compare the two.)
"""

from __future__ import annotations

import json
from typing import Any

from ollama_sim.responses import RequestError

_SPACE = " \t\n\r"


def _fold(key: str) -> str:
    out = []
    for char in key:
        for step in (str.lower, str.upper, str.lower):
            mapped = step(char)
            char = mapped if len(mapped) == 1 else char
        out.append(char)
    return "".join(out)


def _text(value: str) -> str:
    return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in value)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        name = _fold(_text(key))
        if isinstance(value, str):
            value = _text(value)
        elif isinstance(value, list):
            value = [_text(v) if isinstance(v, str) else v for v in value]
        old = out.get(name)
        out[name] = {**old, **value} if isinstance(old, dict) and isinstance(value, dict) else value
    return out


def _constant(name: str) -> None:
    raise RequestError(400, f"invalid character {name[0]!r} looking for beginning of value")


def _big_int(digits: str) -> int | float:
    return int(digits) if len(digits) < 4000 else float(digits)


def decode(raw: bytes) -> dict[str, Any]:
    """The body's first value as a dict with folded keys, or a 400 worded like Go's."""
    text = raw.decode("utf-8", "surrogateescape")
    start = len(text) - len(text.lstrip(_SPACE))
    if start == len(text):
        raise RequestError(400, "missing request body")
    if text[start] == "\ufeff":
        raise RequestError(400, "invalid character 'ï' looking for beginning of value")
    decoder = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_constant,
                               parse_int=_big_int)
    try:
        value, _ = decoder.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(exc.doc):
            raise RequestError(400, "unexpected EOF") from exc
        raise RequestError(
            400, f"invalid character {exc.doc[exc.pos]!r} looking for beginning of value"
        ) from exc
    except RecursionError as exc:
        raise RequestError(400, "exceeded max depth") from exc
    if not isinstance(value, dict):
        kind = {list: "array", str: "string", bool: "bool"}.get(type(value), "number")
        raise RequestError(400, f"json: cannot unmarshal {kind} into Go value")
    # Go skips an unknown field's value unread, but converts what fills a field: a number
    # out of float64's range in ``options`` (a map[string]any) is a 400.
    if any(isinstance(v, float) and v in (float("inf"), float("-inf"))
           for v in _numbers(value.get("options"))):
        raise RequestError(400, "json: cannot unmarshal number into Go value of type float64")
    return value


def _numbers(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [value]
