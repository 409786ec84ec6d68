"""Counts from the end of a body too big to keep: bytes in, the server's numbers out."""

from __future__ import annotations

import pytest

from addons.tail_counts import Tail, trailing_counts

EMBED_END = (b'0.25,-0.125]],"total_duration":123456789,"load_duration":1234567,'
             b'"prompt_eval_count":4096}')


@pytest.mark.parametrize(
    ("tail", "counts"),
    [
        (EMBED_END, {"total_duration": 123456789, "load_duration": 1234567,
                     "prompt_eval_count": 4096}),
        # /api/generate: the Metrics keys after a long context array
        (b'7,8],"total_duration":5,"prompt_eval_count":26,"eval_count":2,"eval_duration":9}',
         {"total_duration": 5, "prompt_eval_count": 26, "eval_count": 2, "eval_duration": 9}),
        # /v1/embeddings and the OpenAI bodies: a usage object last, a newline after it
        (b'"index":2}],"model":"m","usage":{"prompt_tokens":9000,"total_tokens":9000}}\n',
         {"usage": {"prompt_tokens": 9000, "total_tokens": 9000}}),
        (b'"stop_reason":"end_turn","usage":{"input_tokens":26,"output_tokens":2}}\n',
         {"usage": {"input_tokens": 26, "output_tokens": 2}}),
        (b'"x":1,"usage":{"a":{"cached_tokens":3},"prompt_tokens":5}}',
         {"usage": {"a": {"cached_tokens": 3}, "prompt_tokens": 5}}),
    ],
)
def test_counts_at_the_end_are_read(tail: bytes, counts: dict) -> None:
    assert trailing_counts(tail) == counts


@pytest.mark.parametrize(
    "tail",
    [
        b'0.25,-0.125]]}',  # no counts at all (omitempty: 0 prompt tokens)
        b'{"embedding":[0.1,0.2]}',  # legacy /api/embeddings: never any
        b'"a":{"prompt_eval_count":5}}',  # nested, not the body's own key
        b'"prompt_eval_count":5,"tool_calls":[{"x":1}]}',  # counts, then more keys
        b'"text":"ends like \\",\\"prompt_eval_count\\":5}"}',  # inside a string
        b'"usage":{"prompt_tokens":5}},"more":"x"}',  # usage not last
        b'"usage":{"prompt_tokens":5',  # cut short
        b"",
    ],
)
def test_anything_else_gives_nothing(tail: bytes) -> None:
    assert trailing_counts(tail) is None


def test_tail_keeps_only_the_last_bytes() -> None:
    tail = Tail(size=16)
    for i in range(1000):
        tail.feed(b"%04d," % i)
    assert tail.bytes() == b"6,0997,0998,0999,"[-16:]
    assert len(tail._buf) <= 32
    tail.feed(b"x" * 40 + b"END")
    assert tail.bytes() == (b"x" * 40 + b"END")[-16:]
