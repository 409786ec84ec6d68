"""addons/request_body.py: a body read as Ollama's Go decoder reads it, and a byte-exact splice."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from addons.request_body import append_field, go_fold, go_string, go_view


@pytest.mark.parametrize(("raw", "model"), [
    (b'{"model":"llama3.2"}', "llama3.2"),
    (b'{"Model":"llama3.2"}', "llama3.2"),  # Go matches keys without regard to case
    (b'{"MODEL":"x","model":"llama3.2"}', "llama3.2"),  # the last duplicate wins
    (b'{"model":"x","Model":"llama3.2"}', "llama3.2"),
    (b'  \n{"model":"llama3.2"} trailing garbage', "llama3.2"),  # only the first value
    (b'{"model":"llama3.2"}{"model":"other"}', "llama3.2"),
    (b'{"model":"llama\\ud83d"}', "llama\ufffd"),  # a lone surrogate escape: U+FFFD
    (b'{"model":"llama\xff"}', "llama\ufffd"),  # a byte that is not UTF-8: U+FFFD
    (b'{"model":"m","seed":' + b"9" * 5000 + b"}", "m"),  # longer than Python's int limit
    (b'{"model":"m","x":1e400}', "m"),
])
def test_the_model_is_the_one_go_reads(raw: bytes, model: str) -> None:
    view = go_view(raw)
    assert view is not None and view["model"] == model


@pytest.mark.parametrize("raw", [
    b"", b"   ", b"\xef\xbb\xbf{\"model\":\"x\"}", b"[1]", b'"model"', b"{", b"NaN",
])
def test_what_go_refuses_has_no_view(raw: bytes) -> None:
    assert go_view(raw) is None


@pytest.mark.parametrize(("raw", "view"), [
    # Nested values are cleaned too; a body without a surrogate's source is left as decoded.
    (b'{"messages":[{"content":"a\\ud83d"}]}', {"messages": [{"content": "a\ufffd"}]}),
    (b'{"messages":[{"content":"a\\uDE00b"}]}', {"messages": [{"content": "a\ufffdb"}]}),
    (b'{"options":{"stop":["caf\xc3\xa9","\xff"]}}',
     {"options": {"stop": ["caf\u00e9", "\ufffd"]}}),
    (b'{"prompt":"caf\\u00e9 \\ud83d\\ude00"}', {"prompt": "caf\u00e9 \U0001f600"}),
    (b'{"prompt":"caf\xc3\xa9"}', {"prompt": "caf\u00e9"}),
    (b'{"Prompt":"x","KEEP_ALIVE":0}', {"prompt": "x", "keep_alive": 0}),
])
def test_every_string_is_as_go_holds_it(raw: bytes, view: dict) -> None:
    assert go_view(raw) == view


def test_duplicate_objects_merge_as_go_fills_a_map() -> None:
    view = go_view(b'{"options":{"a":1},"Options":{"b":2},"stream_options":{"include_usage":false}'
                   b',"stream_options":{"Include_Usage":true}}')
    assert view == {"options": {"a": 1, "b": 2}, "stream_options": {"include_usage": True}}


def test_go_folding_covers_the_special_letters() -> None:
    assert go_fold("ſtream") == "stream"  # U+017F folds to s
    assert go_fold("\u212aeep_alive") == "keep_alive"  # the Kelvin sign folds to k
    assert go_string("a\ud83db") == "a\ufffdb"


@pytest.mark.parametrize(("raw", "spliced"), [
    (b'{"model":"m","stream":true}', b'{"model":"m","stream":true,"x":{"y":true}}'),
    (b'{}', b'{"x":{"y":true}}'),
    (b'{ }', b'{ "x":{"y":true}}'),
    (b' {"model":"m\\ud83d","n":1e400} tail\xff',
     b' {"model":"m\\ud83d","n":1e400,"x":{"y":true}} tail\xff'),
])
def test_a_field_is_added_without_touching_the_clients_bytes(raw: bytes, spliced: bytes) -> None:
    assert append_field(raw, "x", {"y": True}) == spliced


def test_no_splice_where_there_is_no_object() -> None:
    assert append_field(b"[1,2]", "x", 1) is None
    assert append_field(b"not json", "x", 1) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                  max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6), st.binary(max_size=20))
def test_a_spliced_body_reads_as_the_body_plus_the_field(body: dict, tail: bytes) -> None:
    raw = json.dumps(body).encode() + b" " + tail
    spliced = append_field(raw, "stream_options", {"include_usage": True})
    assert spliced is not None and spliced.endswith(tail)
    view, with_field = go_view(raw), go_view(spliced)
    assert view is not None and with_field is not None
    merged = dict(view.get("stream_options") or {}) if isinstance(
        view.get("stream_options"), dict) else {}
    assert with_field == {**view, "stream_options": {**merged, "include_usage": True}}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_read_or_refused_never_raised(raw: bytes) -> None:
    view = go_view(raw)
    assert view is None or isinstance(view, dict)
    assert append_field(raw, "x", 1) is None or isinstance(append_field(raw, "x", 1), bytes)
