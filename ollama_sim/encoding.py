"""How Ollama writes values: Go's JSON, RFC 3339 times, the vocabulary, cuts and vectors."""

from __future__ import annotations

import functools
import itertools
import json
import math
import random
import re
import time
import zlib

NS = 1_000_000_000

# Content chunks, in order; multi-byte UTF-8 (2, 3 and 4 bytes), a quote and Go's escaped < >.
VOCAB = (
    "The", " llama", " grazes", " near", " the", " café", ",", " naïve", " and", " calm",
    ";", " 日本", "語", " text", " flows", " <br>", " past", " \"quoted\"", " words", " 🦙",
    " résumé", ".", "\n", " Über", " 😊", " tokens", "!",
)


def go_json(value: object) -> str:
    """Encode like Go's encoding/json: compact, UTF-8 kept, HTML characters escaped."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        if char in text:
            text = text.replace(char, escaped)
    return text


VOCAB_JSON = tuple(go_json(token) for token in VOCAB)


@functools.lru_cache(maxsize=8)
def _utc_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def rfc3339(ns: int) -> str:
    """Format epoch nanoseconds like Go's time.RFC3339Nano in UTC (trailing zeros trimmed)."""
    second, frac = divmod(ns, NS)
    if frac == 0:
        return _utc_second(second) + "Z"
    return f"{_utc_second(second)}.{frac:09d}".rstrip("0") + "Z"


def words(text: object) -> int:
    """Count words in a prompt, message content or OpenAI content-part list."""
    if isinstance(text, str):
        return len(text.split())
    if isinstance(text, list):
        return sum(words(part.get("text")) for part in text if isinstance(part, dict))
    return 0


def split_cuts(data: bytes, rng: random.Random) -> list[bytes]:
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
def embedding(text: str, dims: int, seed: int, normalize: bool) -> tuple[float, ...]:
    rng = random.Random(zlib.crc32(text.encode()) ^ seed)
    vector = [rng.uniform(-1.0, 1.0) for _ in range(dims)]
    scale = 1.0 / (math.sqrt(sum(x * x for x in vector)) or 1.0) if normalize else 2.0
    return tuple(round(x * scale, 8) for x in vector)
