"""Wire-format parsers: recorded bytes in, split anywhere, exact numbers out."""

from __future__ import annotations

import gzip
import json
import random

import pytest

from addons.streams import (
    JsonParser,
    LineBuffer,
    NdjsonParser,
    PassthroughParser,
    SseParser,
    parser_for,
)
from tests import fixtures

INFERENCE = [
    name
    for name in fixtures.ALL
    if fixtures.load(name).status == 200
    and fixtures.load(name).path not in ("/api/tags", "/api/show")
]


def random_splits(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 40))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def feed_all(parser, pieces: list[bytes]) -> None:
    for i, piece in enumerate(pieces):
        parser.feed(piece, float(i))
    parser.finish(float(len(pieces)))


@pytest.mark.parametrize("name", INFERENCE)
@pytest.mark.parametrize("seed", range(25))
def test_recorded_bodies_split_anywhere_give_the_recorded_counts(name: str, seed: int) -> None:
    rec = fixtures.load(name)
    expected = fixtures.EXPECTED[name]
    parser = parser_for(rec.content_type)
    feed_all(parser, random_splits(rec.body, random.Random(seed)))
    stats = parser.stats
    assert stats.malformed == 0
    assert stats.error is None
    assert stats.body_bytes == len(rec.body)
    assert (stats.usage.prompt_tokens if stats.usage else None) == expected.prompt_tokens
    if expected.reported:
        assert stats.usage is not None
        assert stats.usage.generated_tokens == expected.generated_tokens
    if expected.content_chunks is not None:
        assert stats.content_chunks == expected.content_chunks


def test_native_final_chunk_durations_are_seconds() -> None:
    rec = fixtures.load("03-api-chat-stream-toolcalls.json")
    parser = NdjsonParser()
    feed_all(parser, [rec.body])
    usage = parser.stats.usage
    assert usage is not None
    assert usage.load_duration_s == pytest.approx(1.696622425)
    assert usage.eval_duration_s == pytest.approx(3.433220895)
    assert usage.prompt_eval_duration_s == pytest.approx(0.124084719)
    assert parser.stats.done_reason == "stop"


def test_token_times_and_gaps_come_from_arrival_times() -> None:
    parser = NdjsonParser()
    lines = [
        b'{"response":"a","done":false}\n',
        b'{"response":"","done":false}\n',  # no content: not a token
        b'{"response":"b","done":false}\n',
        b'{"response":"c","done":false}\n',
        b'{"response":"","done":true,"eval_count":3}\n',
    ]
    for t, line in zip([1.0, 1.5, 2.0, 4.0, 4.5], lines, strict=True):
        parser.feed(line, t)
    stats = parser.finish(5.0)
    assert (stats.first_token_at, stats.last_token_at) == (1.0, 4.0)
    assert stats.content_chunks == 3
    assert stats.gaps == [1.0, 2.0]
    assert stats.usage is not None and stats.usage.generated_tokens == 3


@pytest.mark.parametrize(
    "line",
    [
        b'{"model":"m","message":{"role":"assistant","content":"hi"},"done":false}',
        b'{"model":"m","response":"hi","done":false}',
        b'{"model":"m","message":{"role":"assistant","content":"","thinking":"hm"},"done":false}',
        b'{"model":"m","message":{"role":"assistant","content":"",'
        b'"tool_calls":[{"function":{"name":"f","arguments":{}}}]},"done":false}',
    ],
)
def test_fast_path_and_full_parse_agree_on_content_chunks(line: bytes) -> None:
    fast, full = NdjsonParser(), NdjsonParser(capture_text=True)  # capturing skips the fast path
    fast.feed(line + b"\n", 1.0)
    full.feed(line + b"\n", 1.0)
    assert fast.stats.content_chunks == full.stats.content_chunks == 1
    empty = NdjsonParser()
    empty.feed(b'{"model":"m","message":{"role":"assistant","content":""},"done":false}\n', 1.0)
    assert empty.stats.content_chunks == 0


@pytest.mark.parametrize("seed", range(10))
def test_whole_lines_count_as_lines_split_anywhere(seed: int) -> None:
    rng = random.Random(seed)
    lines = []
    for _ in range(rng.randint(1, 30)):
        text = rng.choice(["a", "", " é", "\\\"done\\\":false}"])
        key = rng.choice(["message", "response"])
        chunk = {"model": "m", key: {"role": "assistant", "content": text} if key == "message"
                 else text, "done": False}
        lines.append(json.dumps(chunk, separators=(",", ":"), ensure_ascii=False).encode())
    lines.append(b'{"model":"m","done":true,"eval_count":7,"prompt_eval_count":3}')
    body = b"".join(line + b"\n" for line in lines)
    whole, split, kept = NdjsonParser(), NdjsonParser(), NdjsonParser(capture_text=True)
    for i, line in enumerate(lines):  # one chunk a line: the common case
        whole.feed(line + b"\n", float(i))
    feed_all(split, [body[:7], body[7:]] if len(body) > 7 else [body])
    for i, line in enumerate(lines):
        kept.feed(line + b"\n", float(i))
    for parser in (whole, split, kept):
        parser.finish(100.0)
    assert whole.stats.body_bytes == split.stats.body_bytes == len(body)
    assert whole.stats.content_chunks == split.stats.content_chunks == kept.stats.content_chunks
    assert whole.stats.gaps == kept.stats.gaps
    assert whole.stats.first_token_at == kept.stats.first_token_at
    assert whole.stats.usage == split.stats.usage == kept.stats.usage


def test_utf8_split_inside_a_character_is_reassembled() -> None:
    line = json.dumps({"response": "日本 é 🦙", "done": False}, ensure_ascii=False).encode()
    parser = NdjsonParser(capture_text=True)
    for i in range(len(line)):
        parser.feed(line[i : i + 1], float(i))
    parser.feed(b"\n", 99.0)
    stats = parser.finish(100.0)
    assert stats.malformed == 0
    assert stats.text == ["日本 é 🦙"]


def test_malformed_line_and_error_object_are_counted_not_raised() -> None:
    parser = NdjsonParser()
    parser.feed(b'{"response":"a","done":false}\nnot json at all\n', 1.0)
    parser.feed(b'{"error":"model runner crashed"}\n', 2.0)
    stats = parser.finish(3.0)
    assert stats.malformed == 1
    assert stats.error == "model runner crashed"
    assert stats.content_chunks == 1
    assert not stats.done


def test_stream_without_final_chunk_keeps_what_it_saw() -> None:
    parser = NdjsonParser()
    parser.feed(b'{"response":"a","done":false}\n{"response":"b","done":false}\n{"resp', 1.0)
    stats = parser.finish(2.0)
    assert stats.content_chunks == 2
    assert stats.usage is None
    assert stats.malformed == 1  # the cut-off last line
    assert parser.estimates_tokens


def test_sse_error_event_and_done_marker() -> None:
    parser = SseParser()
    parser.feed(b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n', 1.0)
    parser.feed(b'data: {"error":{"message":"boom","type":"api_error"}}\n\ndata: [DONE]\n\n', 2.0)
    stats = parser.finish(3.0)
    assert stats.error == "boom"
    assert stats.done
    assert stats.content_chunks == 1


def test_sse_completions_and_anthropic_messages() -> None:
    completions = SseParser()
    completions.feed(b'data: {"choices":[{"text":"x","index":0}]}\n\n', 1.0)
    completions.feed(
        b'data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":1}}\n\n', 2.0
    )
    assert completions.finish(3.0).usage is not None
    assert completions.stats.content_chunks == 1

    messages = SseParser()
    events = [
        {"type": "message_start", "message": {"usage": {"input_tokens": 7, "output_tokens": 1}}},
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "!"}},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
         "usage": {"output_tokens": 2}},
        {"type": "message_stop"},
    ]
    for i, event in enumerate(events):
        messages.feed(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode(), float(i))
    stats = messages.finish(9.0)
    assert stats.usage is not None
    assert (stats.usage.prompt_tokens, stats.usage.generated_tokens) == (7, 2)
    assert stats.content_chunks == 2 and stats.done and stats.done_reason == "end_turn"


def test_responses_api_stream() -> None:
    parser = SseParser()
    parser.feed(b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta"'
                b',"delta":"Hel"}\n\n', 1.0)
    parser.feed(b'event: response.completed\ndata: {"type":"response.completed","response":'
                b'{"usage":{"input_tokens":3,"output_tokens":5}}}\n\n', 2.0)
    stats = parser.finish(3.0)
    assert stats.content_chunks == 1
    assert stats.usage is not None
    assert (stats.usage.prompt_tokens, stats.usage.generated_tokens) == (3, 5)


def test_gzip_encoded_json_is_decoded() -> None:
    rec = fixtures.load("06-api-generate-nostream.json")
    body = gzip.compress(rec.body)
    parser = parser_for("application/json; charset=utf-8", content_encoding="gzip")
    feed_all(parser, random_splits(body, random.Random(1)))
    assert parser.stats.usage is not None
    assert parser.stats.usage.generated_tokens == 63
    assert parser.stats.body_bytes == len(body)


def test_unknown_encoding_and_types_are_only_counted() -> None:
    parser = parser_for("application/json", content_encoding="br")
    feed_all(parser, [b"\x00\x01garbage"])
    assert parser.stats.usage is None and parser.stats.malformed == 0
    assert isinstance(parser_for("text/plain"), PassthroughParser)
    assert isinstance(parser_for("application/x-ndjson"), NdjsonParser)
    assert isinstance(parser_for("text/event-stream; charset=utf-8"), SseParser)
    assert isinstance(parser_for("application/json"), JsonParser)


def test_json_body_that_is_not_an_object() -> None:
    parser = JsonParser()
    feed_all(parser, [b"[1, 2", b", 3]"])
    assert parser.stats.malformed == 1


@pytest.mark.parametrize(
    ("chunks", "lines", "tail"),
    [
        ([b"a\nb", b"c\n"], [b"a", b"bc"], b""),
        ([b"\n\n"], [b"", b""], b""),
        ([b"abc"], [], b"abc"),
    ],
)
def test_line_buffer(chunks: list[bytes], lines: list[bytes], tail: bytes) -> None:
    buf = LineBuffer()
    out: list[bytes] = []
    for chunk in chunks:
        out.extend(buf.feed(chunk))
    assert out == lines
    assert buf.flush() == tail


# -- issue 15: what real Ollama writes (docs/ollama-wire.md) ----------------------------------


def big_embed(inputs: int, tail: bytes) -> list[bytes]:
    """An /api/embed answer over MAX_JSON_BODY, in 1 MiB pieces, ending with ``tail``."""
    from addons.streams import MAX_JSON_BODY

    vector = b"[" + b",".join([b"-0.012345678"] * 768) + b"]"
    body = b'{"model":"nomic-embed-text","embeddings":[' + vector
    pieces = [body]
    size = len(body)
    while size < MAX_JSON_BODY + (1 << 20):
        piece = (b"," + vector) * 128
        pieces.append(piece)
        size += len(piece)
    pieces.append(tail)
    return pieces


def test_an_answer_over_the_parse_limit_is_counted_from_its_end() -> None:
    parser = parser_for("application/json; charset=utf-8")
    pieces = big_embed(5000, b'],"total_duration":9,"load_duration":1,"prompt_eval_count":5000}')
    feed_all(parser, pieces)
    stats = parser.stats
    assert stats.usage is not None and stats.usage.prompt_tokens == 5000
    assert stats.uncounted is None and stats.malformed == 0
    assert stats.body_bytes == sum(map(len, pieces))
    assert len(parser._body) == 0 and parser._tail is not None  # only the end was kept


def test_openai_embeddings_over_the_limit_read_their_usage() -> None:
    parser = parser_for("application/json")
    end = b'],"model":"m","usage":{"prompt_tokens":77,"total_tokens":77}}\n'
    feed_all(parser, big_embed(10, end))
    assert parser.stats.usage is not None and parser.stats.usage.prompt_tokens == 77


def test_an_answer_over_the_limit_without_counts_is_uncounted_not_zero() -> None:
    parser = parser_for("application/json")
    feed_all(parser, big_embed(10, b"]}"))
    assert parser.stats.usage is None
    assert parser.stats.uncounted == "body_too_large"


def test_an_encoding_not_read_is_uncounted() -> None:
    parser = parser_for("application/json", content_encoding="compress")
    feed_all(parser, [b"\x1f\x9d whatever"])
    assert parser.stats.uncounted == "content_encoding" and parser.stats.usage is None
    broken = parser_for("application/json", content_encoding="zstd")
    feed_all(broken, [b"not zstd at all"])
    assert broken.stats.uncounted == "content_encoding" and broken.stats.malformed == 0


@pytest.mark.parametrize("encoding", ["br", "zstd"])
def test_br_and_zstd_streams_are_decoded(encoding: str) -> None:
    from addons.codings import encode_all

    rec = fixtures.load("01-api-chat-stream.json")
    parser = parser_for(rec.content_type, content_encoding=encoding)
    feed_all(parser, random_splits(encode_all(rec.body, encoding), random.Random(3)))
    assert parser.stats.usage is not None
    assert (parser.stats.usage.prompt_tokens, parser.stats.usage.generated_tokens) == (16, 22)
    assert parser.stats.uncounted is None


COMPLETION = b'data: {"id":"cmpl-1","object":"text_completion","created":1,"choices":['
ZERO_USAGE = b',"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}\n\n'


def test_completions_zero_usage_is_a_placeholder_not_a_count() -> None:
    parser = SseParser()
    chunk = COMPLETION + b'{"text":"Hi","index":0,"finish_reason":null}],"model":"m"' + ZERO_USAGE
    parser.feed(chunk * 3, 1.0)
    stats = parser.finish(2.0)
    # cut before the usage event (an error mid-stream): no report, not a report of 0 tokens
    assert stats.usage is None and stats.content_chunks == 3
    assert parser.ended_early
    parser = SseParser()
    parser.feed(chunk + COMPLETION + b'],"model":"m","usage":{"prompt_tokens":26,'
                b'"completion_tokens":1,"total_tokens":27}}\n\ndata: [DONE]\n\n', 1.0)
    stats = parser.finish(2.0)
    assert stats.usage is not None and (stats.usage.prompt_tokens, stats.usage.generated_tokens) \
        == (26, 1)
    assert not parser.ended_early


@pytest.mark.parametrize(
    ("usage", "prompt", "cached"),
    [
        ({"prompt_tokens": 30, "completion_tokens": 2, "prompt_tokens_details":
          {"cached_tokens": 24}}, 30, 24),
        ({"prompt_tokens": 30, "completion_tokens": 2, "prompt_tokens_details":
          {"cached_tokens": 0}}, 30, 0),  # a server that reports a miss
        ({"prompt_tokens": 30, "completion_tokens": 2}, 30, None),  # Ollama: never reports
        # Responses: Ollama hard-codes 0 (0.14.2-0.32.15): not a measurement
        ({"input_tokens": 26, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 2},
         26, None),
        ({"input_tokens": 26, "input_tokens_details": {"cached_tokens": 20}, "output_tokens": 2},
         26, 20),
        # Anthropic counts cache reads apart from input_tokens
        ({"input_tokens": 6, "cache_read_input_tokens": 20, "cache_creation_input_tokens": 4,
          "output_tokens": 2}, 30, 20),
    ],
)
def test_cached_prompt_tokens(usage: dict, prompt: int, cached: int | None) -> None:
    from addons.reports import openai_usage

    got = openai_usage(usage)
    assert got is not None and (got.prompt_tokens, got.cached_prompt_tokens) == (prompt, cached)


def test_native_final_chunk_never_implies_a_cache_hit() -> None:
    parser = NdjsonParser()
    feed_all(parser, [b'{"message":{"content":"a"},"done":false}\n',
                      b'{"message":{"content":""},"done":true,"eval_count":1}\n'])
    assert parser.stats.usage is not None
    assert parser.stats.usage.prompt_tokens is None
    assert parser.stats.usage.cached_prompt_tokens is None


def test_anthropic_message_start_zero_is_not_the_prompt() -> None:
    # 0.14.0-0.15.4: message_start has the first chunk's count (0), message_delta no input
    parser = SseParser()
    parser.feed(b'event: message_start\ndata: {"type":"message_start","message":{"usage":'
                b'{"input_tokens":0,"output_tokens":0}}}\n\nevent: message_delta\ndata: '
                b'{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":'
                b'{"output_tokens":2}}\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\n',
                1.0)
    stats = parser.finish(2.0)
    assert stats.usage is not None and stats.usage.prompt_tokens is None
    assert stats.usage.generated_tokens == 2 and not parser.ended_early


@pytest.mark.parametrize(
    ("body", "early"),
    [
        (b'{"response":"a","done":false}\n', True),
        (b'{"response":"a","done":false}\n{"response":"","done":true}\n', False),
        (b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n', True),
        (b'data: {"choices":[{"delta":{"content":"a"}}]}\n\ndata: [DONE]\n\n', False),
        (b'event: response.created\ndata: {"type":"response.created"}\n\n', True),
    ],
)
def test_a_stream_that_ends_without_its_last_event(body: bytes, early: bool) -> None:
    parser = parser_for("application/x-ndjson" if body[:1] == b"{" else "text/event-stream")
    feed_all(parser, [body])
    assert parser.ended_early is early
    assert not JsonParser().ended_early and not PassthroughParser().ended_early
