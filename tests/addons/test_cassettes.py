"""The cassette format: round trip, non-UTF-8 bytes, redaction, errors that name the line."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from addons import cassettes
from addons.cassettes import Chunk, Interaction, Request, Response


def interaction(**overrides: object) -> Interaction:
    values: dict = dict(
        request=Request("POST", "/api/chat?x=1", [("Content-Type", "application/json"),
                                                 ("Authorization", "Bearer sk-secret-1")],
                        b'{"model":"m"}'),
        response=Response(200, "OK", [("content-type", "application/x-ndjson"),
                                      ("Set-Cookie", "session=secret-2")],
                          [Chunk(0.01, b'{"a":"\xc3'), Chunk(0.02, b'\xa9"}\n')]),
        start=1.5, started_at=1700000000.25,
    )
    values.update(overrides)
    return Interaction(**values)


def test_round_trip_keeps_every_byte_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    original = interaction()
    assert cassettes.write(path, [original, interaction(response=None, error="refused")]) == 2
    first, second = cassettes.read(path)
    assert first.request.body == original.request.body
    assert first.request.path == "/api/chat?x=1"
    assert [(c.offset, c.data) for c in first.response.chunks] == [
        (0.01, b'{"a":"\xc3'), (0.02, b'\xa9"}\n')]
    assert first.response.body == '{"a":"é"}\n'.encode()
    assert (first.start, first.started_at) == (1.5, 1700000000.25)
    assert second.response is None and second.error == "refused"
    line = json.loads(path.read_text().splitlines()[0])
    # A chunk cut inside a UTF-8 sequence is not text: it is written as base64.
    assert "base64" in line["response"]["chunks"][0] and "text" not in line["response"]["chunks"][0]
    assert line["request"]["body"] == '{"model":"m"}'


def test_secrets_are_never_written(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    headers = [("Authorization", "s1"), ("proxy-authorization", "s2"), ("Cookie", "s3"),
               ("X-Api-Key", "s4"), ("api-key", "s5"), ("X-Auth-Token", "s6"),
               ("Accept", "keep-me")]
    cassettes.write(path, [interaction(request=Request("GET", "/", headers, b""))])
    text = path.read_text()
    for secret in ("s1", "s2", "s3", "s4", "s5", "s6", "sk-secret-1", "secret-2"):
        assert f'"{secret}"' not in text and secret + '"' not in text
    (read,) = cassettes.read(path)
    assert dict(read.request.headers)["Accept"] == "keep-me"
    assert dict(read.request.headers)["X-Auth-Token"] == cassettes.REDACTED


def test_a_new_cassette_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "c.jsonl"
    cassettes.write(path, [interaction()])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.mark.parametrize("line, message", [
    ("{", "line 2: "),
    ('{"version": 9}', "version 9"),
    ('{"version": 1, "request": {"method": "GET", "path": "/", "headers": [["a"]]}}',
     "request.headers"),
    ('{"version": 1, "request": {"method": "GET", "path": "/"}, "response": {"status": 9}}',
     "response.status"),
    ('{"version": 1, "request": {"method": "GET", "path": "/"}, '
     '"response": {"status": 200, "chunks": [{"offset": -1}]}}', "offset"),
    ('{"version": 1, "request": {"method": "GET", "path": "/", "body_base64": "%%"}}', "base64"),
])
def test_a_bad_line_is_named(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(cassettes.dumps(interaction()) + line + "\n")
    with pytest.raises(ValueError, match=message):
        cassettes.read(path)


@pytest.mark.parametrize("content_type, body, pieces", [
    ("application/x-ndjson", b'{"a":1}\n{"b":2}\n', [b'{"a":1}\n', b'{"b":2}\n']),
    ("application/x-ndjson", b'{"a":1}\n{"b"', [b'{"a":1}\n', b'{"b"']),
    ("text/event-stream", b"data: 1\n\ndata: [DONE]\n\n", [b"data: 1\n\n", b"data: [DONE]\n\n"]),
    ("text/event-stream; charset=utf-8", b"data: 1\r\n\r\ndata: 2\r\n\r\n",
     [b"data: 1\r\n\r\n", b"data: 2\r\n\r\n"]),
    ("application/json", b'{"x": 1}\n', [b'{"x": 1}\n']),
    ("text/plain", b"", []),
])
def test_natural_chunks(content_type: str, body: bytes, pieces: list[bytes]) -> None:
    assert cassettes.natural_chunks(body, content_type) == pieces


def test_spread_places_offsets_evenly_between_first_and_last_byte() -> None:
    chunks = cassettes.spread([b"a", b"b", b"c"], 0.5, 1.5)
    assert [c.offset for c in chunks] == [0.5, 1.0, 1.5]


def test_json_bodies_match_whatever_their_spelling() -> None:
    assert cassettes.normalised_body(b'{"a": 1, "b": [2]}') == cassettes.normalised_body(
        b'{"b":[2],"a":1}')
    assert cassettes.normalised_body(b"not json") == b"not json"
    assert cassettes.normalised_body(b"  ") is None
