"""Usage injection: the client receives exactly the recorded stream without the usage event."""

from __future__ import annotations

import json
import random

import pytest

from addons.usage import UsageEventFilter, wants_injected_usage, with_usage
from tests import fixtures
from tests.addons.test_streams import random_splits


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


def test_with_usage_keeps_other_fields() -> None:
    body = {"model": "m", "stream": True, "stream_options": {"x": 1}, "messages": [{"c": "é"}]}
    out = json.loads(with_usage(body))
    assert out == {**body, "stream_options": {"x": 1, "include_usage": True}}
