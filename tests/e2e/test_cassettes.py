"""Cassettes end to end: recorded by a real mitmdump, converted from a flow file, served by the
simulator and replayed through a real mitmdump with scripts/replay.py."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from addons import cassettes
from ollama_sim import SimServer
from scripts import cassette, replay
from tests import fixtures
from tests.support.processes import ROOT, Proxy, run_proxy
from tests.support.waits import poll

pytestmark = pytest.mark.e2e
FIXTURE_CASSETTE = ROOT / "tests" / "cassettes" / "ollama-recorded.jsonl"
SECRET = "Bearer sk-cassette-secret-0123456789"


def send(port: int, method: str, path: str, body: object = None,
         headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_lines(path: Path, count: int, timeout: float = 15.0) -> list[cassettes.Interaction]:
    """The writer appends off the event loop: poll the file until ``count`` lines are there."""
    # Only whole lines: a long one may be on disk in part until the writer flushes.
    poll(lambda: path.read_bytes().count(b"\n") if path.exists() else 0,
         lambda lines: lines >= count, timeout, 0.02)
    return cassettes.read(path) if path.exists() else []


REQUESTS: list[tuple[str, str, Any, dict[str, str]]] = [
    ("POST", "/api/chat", {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]},
     {"Authorization": SECRET, "Cookie": "session=sk-cookie-secret"}),
    ("POST", "/api/generate", {"model": "llama3.2", "prompt": "hi", "stream": False}, {}),
    # The proxy asks upstream for usage and hides it: recorded is what the client sent and got.
    ("POST", "/v1/chat/completions",
     {"model": "qwen3", "messages": [{"role": "user", "content": "hi"}], "stream": True}, {}),
    ("GET", "/api/tags", None, {"X-Api-Key": "sk-api-key-secret"}),
    ("GET", "/no/such/path", None, {}),
]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One proxy run that records a cassette and, beside it, a ``mitmdump -w`` flow file."""
    tmp = tmp_path_factory.mktemp("record")
    cassette, flows = tmp / "rec" / "run.jsonl", tmp / "flows.mitm"
    with SimServer(port=0, tokens=12, seed=3) as sim, run_proxy(
        sim.url, f"--set=record_path={cassette}", "-w", str(flows),
        "--set", "store_streamed_bodies=true",
    ) as proxy:
        got = [send(proxy.port, *r) for r in REQUESTS]
        interactions = wait_lines(cassette, len(REQUESTS))
        log = proxy.log
    yield {"cassette": cassette, "flows": flows, "got": got, "interactions": interactions,
           "log": log, "tmp": tmp}


def test_the_proxy_records_every_flow_as_the_client_got_it(recorded: dict[str, Any]) -> None:
    interactions = recorded["interactions"]
    assert len(interactions) == len(REQUESTS)
    by_path = {i.request.path: i for i in interactions}
    for (method, path, body, _), (status, data) in zip(REQUESTS, recorded["got"], strict=True):
        rec = by_path[path]
        assert rec.request.method == method
        assert rec.response is not None and rec.response.status == status
        assert rec.response.body == data
        if body is not None:  # as the client sent it, not as the proxy forwarded it
            assert json.loads(rec.request.body) == body
        offsets = [c.offset for c in rec.response.chunks]
        assert offsets == sorted(offsets) and all(o >= 0 for o in offsets)
    chat = by_path["/api/chat"].response
    assert chat is not None and len(chat.chunks) == 13  # 12 tokens and the final chunk
    sse = by_path["/v1/chat/completions"].response
    assert sse is not None and b'"usage"' not in sse.body and sse.body.endswith(b"[DONE]\n\n")
    starts = [by_path[p].start for _, p, _, _ in REQUESTS]
    assert starts == sorted(starts) and starts[0] == 0.0
    assert "Traceback" not in recorded["log"]


def test_the_recording_holds_no_secret_and_is_private(recorded: dict[str, Any]) -> None:
    path: Path = recorded["cassette"]
    text = path.read_text(encoding="utf-8")
    for secret in ("sk-cassette-secret", "sk-cookie-secret", "sk-api-key-secret"):
        assert secret not in text
    chat = next(i for i in recorded["interactions"] if i.request.path == "/api/chat")
    assert cassettes.header(chat.request.headers, "authorization") == cassettes.REDACTED
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_mitmdump_flow_file_converts(recorded: dict[str, Any]) -> None:
    out = recorded["tmp"] / "from-flows.jsonl"
    assert cassette.main(["from-flows", str(recorded["flows"]), "-o", str(out)]) == 0
    converted = cassettes.read(out)
    assert [(i.request.method, i.request.path) for i in converted] == [
        (m, p) for m, p, _, _ in REQUESTS]
    for interaction, (status, data) in zip(converted, recorded["got"], strict=True):
        assert interaction.response is not None and interaction.response.status == status
        assert interaction.response.body == data
        offsets = [c.offset for c in interaction.response.chunks]
        assert offsets == sorted(offsets) and all(o >= 0 for o in offsets)
    chat = converted[0].response
    assert chat is not None and [c.data for c in chat.chunks] == chat.body.splitlines(True)
    sse = converted[2].response
    assert sse is not None and all(c.data.endswith(b"\n\n") for c in sse.chunks)


# -- the recordings in tests/fixtures, served by the simulator, replayed through the proxy ----


@pytest.fixture(scope="module")
def cassette_proxy() -> Iterator[Proxy]:
    with SimServer(port=0, cassette=FIXTURE_CASSETTE, speed=0) as sim, run_proxy(
        sim.url
    ) as proxy:
        yield proxy


def test_the_fixture_cassette_is_the_recordings() -> None:
    interactions = cassettes.read(FIXTURE_CASSETTE)
    assert len(interactions) == len(fixtures.ALL)
    for interaction, name in zip(interactions, fixtures.ALL, strict=True):
        rec = fixtures.load(name)
        assert (interaction.request.method, interaction.request.path) == (rec.method, rec.path)
        assert interaction.response is not None and interaction.response.body == rec.body
        assert interaction.response.status == rec.status


def test_replayed_byte_for_byte_with_the_recorded_counts(
    cassette_proxy: Proxy, capsys: pytest.CaptureFixture[str]
) -> None:
    interactions = cassettes.read(FIXTURE_CASSETTE)
    expected = replay.expected_deltas(interactions)
    # The replay's expectations agree with what the recordings' servers reported.
    generated = sum(v for (n, _), v in expected.items() if n.endswith("generated_tokens_total"))
    prompt = sum(v for (n, _), v in expected.items() if n.endswith("prompt_tokens_total"))
    assert generated == sum(e.generated_tokens or 0 for e in fixtures.EXPECTED.values())
    assert prompt == sum(e.prompt_tokens or 0 for e in fixtures.EXPECTED.values())

    rc = replay.main([str(FIXTURE_CASSETTE), "--target", cassette_proxy.url,
                      "--metrics", cassette_proxy.metrics_url, "--pace", "fast"])
    out = capsys.readouterr().out
    assert rc == 0, out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary == {"responses_ok": 16, "responses": 16, "metrics_differing": 0}


def test_replay_at_original_pace_matches_too(cassette_proxy: Proxy) -> None:
    interactions = cassettes.read(FIXTURE_CASSETTE)
    before = cassette_proxy.scrape()
    results = replay.replay(interactions, cassette_proxy.url, pace="original")
    assert [r.describe() for r in results if not r.ok] == []
    after = replay.scrape_after(cassette_proxy.metrics_url, before, len(interactions))
    assert replay.observed_deltas(before, after) == {
        k: v for k, v in replay.expected_deltas(interactions).items() if v}


def test_replay_reports_a_body_that_differs(
    cassette_proxy: Proxy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (first, *_) = cassettes.read(FIXTURE_CASSETTE)
    assert first.response is not None
    first.response.chunks[-1].data = first.response.chunks[-1].data.replace(b"true", b"TRUE")
    changed = tmp_path / "changed.jsonl"
    cassettes.write(changed, [first])
    rc = replay.main([str(changed), "--target", cassette_proxy.url])
    assert rc == 1
    assert "MISMATCH POST /api/chat" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["missing.jsonl", "--target", "http://127.0.0.1:9"],
    [str(FIXTURE_CASSETTE), "--target", "ftp://x"],
    [str(FIXTURE_CASSETTE), "--target", "http://127.0.0.1:9", "--pace", "slow"],
    [str(FIXTURE_CASSETTE), "--target", "http://127.0.0.1:9", "--header", "nocolon"],
])
def test_replay_refuses_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        replay.main(argv)
    assert exc.value.code == 2


# -- the simulator as a cassette player --------------------------------------------------------


def timed_cassette(path: Path, offsets: list[float]) -> Path:
    chunks = [cassettes.Chunk(o, f'{{"n":{n}}}\n'.encode()) for n, o in enumerate(offsets)]
    cassettes.write(path, [cassettes.Interaction(
        cassettes.Request("POST", "/api/chat", [], b'{"model":"m"}'),
        cassettes.Response(200, "OK", [("content-type", "application/x-ndjson")], chunks))])
    return path


async def read_chunks(url: str) -> tuple[list[tuple[float, bytes]], float]:
    """Each HTTP chunk with its arrival, measured from the moment the request went out."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        began = time.perf_counter()
        async with session.post(url + "/api/chat", data=b'{"model":"m"}') as response:
            arrived: list[tuple[float, bytes]] = []
            buffer = b""
            async for data, end in response.content.iter_chunks():
                buffer += data
                if end and buffer:  # aiohttp may also mark the final, empty chunk's end
                    arrived.append((time.perf_counter() - began, buffer))
                    buffer = b""
            return arrived, began


@pytest.mark.parametrize("speed, offsets", [
    (4.0, [0.0, 0.2, 0.4, 0.8]),  # 0.2 s in all
    (10_000.0, [0.0, 1000.0]),  # unscaled, the test would run into its timeout
    (0.0, [0.0, 5000.0]),  # no waiting at all
])
def test_the_simulator_sends_each_chunk_at_its_scaled_offset(
    tmp_path: Path, speed: float, offsets: list[float]
) -> None:
    cassette = timed_cassette(tmp_path / "t.jsonl", offsets)
    with SimServer(port=0, cassette=cassette, speed=speed) as sim:
        arrived, _ = asyncio.run(read_chunks(sim.url))
    assert [data for _, data in arrived] == [f'{{"n":{n}}}\n'.encode() for n in range(len(offsets))]
    if speed:  # never early: a lower bound, which no slow machine can break
        for (at, _), offset in zip(arrived, offsets, strict=True):
            assert at >= offset / speed - 0.01


def test_the_simulator_matches_by_body_then_in_recorded_order(tmp_path: Path) -> None:
    def answer(text: str, body: bytes) -> cassettes.Interaction:
        return cassettes.Interaction(
            cassettes.Request("POST", "/api/generate", [], body),
            cassettes.Response(200, "OK", [("content-type", "application/json"),
                                           ("content-length", "2")],
                               [cassettes.Chunk(0.0, text.encode())]))
    path = tmp_path / "m.jsonl"
    cassettes.write(path, [answer("A", b'{"model":"a"}'), answer("B", b'{"model":"b"}')])
    with SimServer(port=0, cassette=path, speed=0) as sim:
        port = int(sim.url.rsplit(":", 1)[1])
        assert send(port, "POST", "/api/generate", {"model": "b"}) == (200, b"B")
        assert send(port, "POST", "/api/generate", {"other": 1}) == (200, b"A")
        assert send(port, "POST", "/api/generate", {"other": 2}) == (200, b"B")  # the last again
        status, body = send(port, "GET", "/api/ps")
    assert status == 404 and "no recorded interaction for GET /api/ps" in json.loads(body)["error"]

    # What the proxy adds to an OpenAI stream on its way (stream_options) does not hide the
    # recorded request: the second one answers, not the next in order.
    openai = [answer(text, json.dumps({"model": "m", "stream": True, "n": n}).encode())
              for n, text in ((1, "1"), (2, "2"))]
    for one in openai:
        one.request.path = "/v1/chat/completions"
    cassettes.write(path, openai)
    with SimServer(port=0, cassette=path, speed=0) as sim:
        port = int(sim.url.rsplit(":", 1)[1])
        asked = {"model": "m", "stream": True, "n": 2,
                 "stream_options": {"include_usage": True}}
        assert send(port, "POST", "/v1/chat/completions", asked) == (200, b"2")


def test_an_unusable_record_path_stops_the_start() -> None:
    from tests.e2e.test_startup import start

    result = start("metrics_port=0", "history_path=", "record_path=/proc/llama-metrics/r.jsonl")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "record_path '/proc/llama-metrics/r.jsonl' cannot be used" in (
        result.stdout + result.stderr)
