"""Usage injection: the client receives exactly the recorded stream without the usage event."""

from __future__ import annotations

import json
import random
import zlib

import pytest

from addons.codings import CodingError, zstd
from addons.usage import (
    UsageEventFilter,
    injected_body,
    wants_injected_usage,
    with_usage,
    without_usage,
)
from tests import fixtures
from tests.addons.test_streams import random_splits

OPTION = b'"stream_options":{"include_usage":true}'


def filtered(data: list[bytes]) -> tuple[bytes, UsageEventFilter]:
    f = UsageEventFilter()
    out = b"".join(f.feed(piece) for piece in data) + f.flush()
    return out, f


@pytest.mark.parametrize("seed", range(40))
def test_usage_event_is_removed_and_everything_else_kept(seed: int) -> None:
    with_usage_body = fixtures.load("09-v1-chat-completions-stream.json").body
    start = with_usage_body.rindex(b"data: {", 0, -20)
    usage_event = with_usage_body[start : -len(b"data: [DONE]\n\n")]
    assert b'"usage"' in usage_event
    out, f = filtered(random_splits(with_usage_body, random.Random(seed)))
    assert out == with_usage_body.replace(usage_event, b"")
    assert f.removed == 1


@pytest.mark.parametrize("seed", range(10))
def test_stream_without_usage_passes_unchanged(seed: int) -> None:
    body = fixtures.load("10-v1-chat-completions-stream-nousage.json").body
    out, f = filtered(random_splits(body, random.Random(seed)))
    assert out == body and f.removed == 0


def test_content_mentioning_usage_is_not_removed() -> None:
    event = {"choices": [{"index": 0, "delta": {"content": '"usage" is a word'}}]}
    body = f"data: {json.dumps(event)}\n\n".encode()
    assert filtered([body])[0] == body


@pytest.mark.parametrize(
    ("body", "wanted"),
    [
        ({"model": "m", "stream": True}, True),
        ({"model": "m", "stream": True, "stream_options": {"include_usage": False}}, True),
        ({"model": "m", "stream": True, "stream_options": {"include_usage": True}}, False),
        ({"model": "m", "stream": False}, False),
        ({"model": "m"}, False),  # OpenAI routes do not stream by default
        ({"model": "m", "stream": True, "stream_options": "weird"}, False),
        (["not", "an", "object"], False),
    ],
)
def test_which_requests_get_usage_injected(body: object, wanted: bool) -> None:
    assert wants_injected_usage(body) is wanted


def test_with_usage_only_inserts_bytes_before_the_closing_brace() -> None:
    # Python's json would turn the lone surrogate, 1e400 and the duplicate key into something
    # else; the proxy never re-serialises, so Go reads everything but the new key unchanged.
    raw = (b'{"model":"m","stream":true,"prompt":"\\ud83d cut","options":{"seed":1e400},'
           b'"options":{"x":12345678901234567890123},"stream_options":{"x":1}} trailing')
    out = with_usage(raw)
    assert out == raw.replace(b'{"x":1}}', b'{"x":1},"stream_options":{"include_usage":true}}')


def test_with_usage_keeps_invalid_utf8_and_leading_space() -> None:
    raw = b' \n{"model":"\xff\xfe","stream":true}'
    assert with_usage(raw) == b' \n{"model":"\xff\xfe","stream":true,' + OPTION + b"}"
    assert with_usage(b'{"stream":true}') == b'{"stream":true,' + OPTION + b"}"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model":"m","stream":false}',
        b'{"model":"m","stream":true,"stream_options":{"include_usage":true}}',
        b'{"model":"m","Stream":true,"STREAM_OPTIONS":{"Include_Usage":true}}',  # Go folds case
        b'{"stream":true,"stream_options":{"include_usage":true},"stream_options":{}}',  # merged
        b'{"stream":true,"stream":false}',  # the last wins
        b'{"stream":true,"stream_options":{"include_usage":"yes"}}',  # Go refuses it: 400
        b"[1,2]",
        b"\xef\xbb\xbf{}",  # a BOM: Go refuses the body
        b'{"stream":true',
        b"",
    ],
)
def test_with_usage_leaves_alone_what_needs_no_injection(raw: bytes) -> None:
    assert with_usage(raw) is None


def test_go_rules_for_stream_options() -> None:
    # null resets the pointer; a later object sets include_usage again
    assert with_usage(b'{"stream":true,"stream_options":{"include_usage":true},'
                      b'"stream_options":null}') is not None
    assert with_usage(b'{"Stream":true}') == b'{"Stream":true,' + OPTION + b"}"


def test_zstd_body_is_decoded_changed_and_encoded_again() -> None:
    raw = b'{"model":"m","stream":true}'
    out = injected_body(zstd.compress(raw), "zstd")
    assert out is not None
    assert zstd.decompress(out) == b'{"model":"m","stream":true,' + OPTION + b"}"
    assert injected_body(b"not zstd", "zstd") is None
    assert injected_body(raw, "compress") is None  # a coding the proxy cannot write back
    assert injected_body(raw, "") == b'{"model":"m","stream":true,' + OPTION + b"}"


# Ollama's /v1/completions writer with include_usage (middleware/openai.go, 0.6.0-0.32.15).
ZERO = b',"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}'
HEAD = b'data: {"id":"cmpl-42","object":"text_completion","created":1755800000,"choices":['
META = b'"model":"llama3.2","system_fingerprint":"fp_ollama"'
PLAIN = (
    HEAD + b'{"text":"Hello","index":0,"finish_reason":null}],' + META + b"}\n\n"
    + HEAD + b'{"text":"!","index":0,"finish_reason":null}],' + META + b"}\n\n"
    + HEAD + b'{"text":"","index":0,"finish_reason":"stop"}],' + META + b"}\n\n"
    + b"data: [DONE]\n\n"
)
INJECTED = (
    HEAD + b'{"text":"Hello","index":0,"finish_reason":null}],' + META + ZERO + b"}\n\n"
    + HEAD + b'{"text":"!","index":0,"finish_reason":null}],' + META + ZERO + b"}\n\n"
    + HEAD + b'{"text":"","index":0,"finish_reason":"stop"}],' + META + ZERO + b"}\n\n"
    + HEAD + b"]," + META
    + b',"usage":{"prompt_tokens":26,"completion_tokens":2,"total_tokens":28}}\n\n'
    + b"data: [DONE]\n\n"
)


@pytest.mark.parametrize("seed", range(30))
def test_completions_zero_usage_on_every_chunk_is_cut(seed: int) -> None:
    out, f = filtered(random_splits(INJECTED, random.Random(seed)))
    assert out == PLAIN
    assert (f.removed, f.cut) == (1, 3)


def test_completions_error_chunk_without_done_is_cut_too() -> None:
    # An error mid-stream becomes an empty chunk, then EOF: no usage event, no [DONE].
    injected = INJECTED.split(b"\n\n")[0] + b"\n\n" + HEAD + (
        b'{"text":"","index":0,"finish_reason":null}],' + META + ZERO + b"}\n\n")
    out, f = filtered([injected])
    assert out == PLAIN.split(b"\n\n")[0] + b"\n\n" + HEAD + (
        b'{"text":"","index":0,"finish_reason":null}],' + META + b"}\n\n")
    assert (f.removed, f.cut) == (0, 2)


def test_a_usage_key_that_is_not_last_is_left() -> None:
    line = b'data: {"usage":{"prompt_tokens":0},"choices":[{"text":"a"}]}'
    assert without_usage(line) is line
    nested = b'data: {"choices":[{"text":"a","usage":{"prompt_tokens":0}}]}'
    assert without_usage(nested) is nested


def test_encoded_stream_is_decoded_for_the_filter() -> None:
    z = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    gz = z.compress(INJECTED) + z.flush()
    f = UsageEventFilter("gzip")
    out = b"".join(f.feed(gz[i:i + 7]) for i in range(0, len(gz), 7)) + f.flush()
    assert out == PLAIN and f.decodes
    with pytest.raises(CodingError):
        UsageEventFilter("compress")
