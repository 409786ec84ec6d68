"""A non-streamed answer's JSON, read without building its embedding vectors.

An ``/api/embed`` answer is almost all numbers: 768 floats for one input of nomic-embed-text
(about 9 KB), which ``json.loads`` turns into 768 Python floats the proxy never looks at, only
to read the three counts after them (65 µs of the event loop's time per answer on the
benchmark machine, most of what the addon spent on such a request). ``loads_answer`` cuts each
vector out before parsing: the bytes between ``"embeddings":[`` and the ``]]`` that closes it
(``/api/embed``), or between ``"embedding":[`` and its ``]`` (``/api/embeddings``, and each
item of ``/v1/embeddings``), become an empty list, and the rest is parsed as it is.

A vector is cut only when it cannot be anything else: the key with its quotes and colon cannot
occur inside a JSON string (Go, like every encoder, writes a quote in a string as ``\\"``), and
the cut bytes must be only what numbers, commas, brackets and whitespace are made of, so no
string, object or key is ever inside what is skipped. When that does not hold, or the rest does
not parse, the whole body is parsed as before (``json.loads``): the answer is read the same
either way, except that what the cut skipped is checked only for its characters, not parsed:
a broken number (``1.2.3``) or misplaced brackets inside a vector (``[1],[2]]``) pass as a
vector would. The counts read are still the server's own; such a body is just not counted as
malformed.
"""

from __future__ import annotations

import json

# (the key and its list's opening bracket, what closes that list): numbers have no brackets,
# so the first closing run after the key is the list's end.
_VECTORS = ((b'"embeddings":[', b"]]"), (b'"embedding":[', b"]"))
_NUMBER_BYTES = b"0123456789.-+eE,[] \t\r\n"
# Below this a body is parsed whole: cutting would cost more than it saves.
MIN_CUT = 2048


def loads_answer(body: bytes | bytearray) -> object:
    """``json.loads(body)``, with any embedding vector in it read as ``[]``."""
    if len(body) >= MIN_CUT:
        cut = _without_vectors(bytes(body))
        if cut is not None:
            try:
                return json.loads(cut)
            except ValueError:
                pass  # not what it looked like: the whole body decides
    return json.loads(body)


def _without_vectors(body: bytes) -> bytes | None:
    """The body with its vectors' contents cut out; None when it has none to cut (or one of
    them is not plain numbers)."""
    cut = False
    for key, close in _VECTORS:
        at = body.find(key)
        if at < 0:
            continue
        pieces: list[bytes] = []
        done = 0
        while at >= 0:
            start = at + len(key) - 1  # the list's "["
            stop = body.find(close, start)
            if stop < 0:
                return None
            end = stop + len(close)
            if body[start:end].translate(None, _NUMBER_BYTES):
                return None  # something other than numbers: not ours to skip
            pieces += (body[done:start], b"[]")
            done = end
            at = body.find(key, end)
        pieces.append(body[done:])
        body = b"".join(pieces)
        cut = True
    return body if cut else None
