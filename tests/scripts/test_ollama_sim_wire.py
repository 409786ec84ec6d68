"""The simulator's modes from Ollama's source (issue 15): progress, codings, a stopped clock."""

from __future__ import annotations

import json
from typing import Any

import pytest

from addons.codings import decode_all, zstd
from tests.e2e.test_ollama_wire import COMPLETION, exchange
from tests.support.sim import sim_fixture

sim = sim_fixture(tokens=6, seed=3)


def test_a_stopped_clock_gives_the_same_bytes_twice(sim: Any) -> None:
    first = exchange(sim.port, "/v1/completions", COMPLETION)[2]
    assert exchange(sim.port, "/v1/completions", COMPLETION)[2] == first
    assert b'"created":1755800000' in first and b'"id":"cmpl-0"' in first
    native = {"model": "llama3.2", "prompt": "hi"}
    a, b = (exchange(sim.port, "/api/generate", native)[2] for _ in range(2))
    assert a == b and b"_duration" not in a and b'"created_at":"2025-08-21T18:13:20Z"' in a


def test_zstd_bodies_are_read_on_v1_only(sim: Any) -> None:
    raw = zstd.compress(json.dumps(COMPLETION).encode())
    assert exchange(sim.port, "/v1/completions", raw, {"Content-Encoding": "zstd"})[0] == 200
    status, _, body = exchange(sim.port, "/api/generate", zstd.compress(b'{"model":"llama3.2"}'),
                               {"Content-Encoding": "zstd"})
    assert status == 400 and b"invalid character" in body
    status, _, body = exchange(sim.port, "/v1/completions", b"not zstd",
                               {"Content-Encoding": "zstd"})
    assert status == 400 and b"failed to decompress request body" in body


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_answers_in_a_coding(sim: Any, coding: str) -> None:
    status, headers, body = exchange(sim.port, "/v1/completions", COMPLETION,
                                     {"X-Sim-Encoding": coding})
    assert status == 200 and headers["content-encoding"] == coding
    assert decode_all(body, coding).endswith(b"data: [DONE]\n\n")
    assert exchange(sim.port, "/api/chat", {"model": "llama3.2"},
                    {"X-Sim-Encoding": "lzma"})[0] == 400


def test_progress_streams_and_their_bodies(sim: Any) -> None:
    status, headers, body = exchange(sim.port, "/api/pull", {"model": "llama3.2"})
    lines = [json.loads(x) for x in body.splitlines()]
    assert status == 200 and headers["content-type"] == "application/x-ndjson"
    assert lines[0] == {"status": "pulling manifest"} and lines[-1] == {"status": "success"}
    assert lines[2]["completed"] < lines[3]["completed"] <= lines[1]["total"]
    once = exchange(sim.port, "/api/push", {"name": "llama3.2", "stream": False})
    assert once[:1] == (200,) and once[2] == b'{"status":"success"}'
    failed = exchange(sim.port, "/api/create", {"model": "x", "stream": False},
                      {"X-Sim-Fault": "error_in_stream"})
    assert failed[0] == 500 and json.loads(failed[2])["error"].startswith("simulated")
    assert exchange(sim.port, "/api/pull", {})[0] == 400
