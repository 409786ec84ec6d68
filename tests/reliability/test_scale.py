"""Thousands of clients that leave, then 1,000 concurrent streams, through one real mitmdump.

Raw asyncio connections make thousands of clients in seconds. After the leavers are gone
(waiting for a first token, queued, mid-stream) the proxy's gauges are back to zero, the
upstream has no connection open, and the proxy holds no more file descriptors than before.
Meanwhile 1,000 streams held open at once all complete with the bytes the simulator sends
directly for the same request, and the token counters grow by exactly what was reported.
"""

from __future__ import annotations

import asyncio
import json
import resource
from collections.abc import Iterator

import pytest

from tests.reliability.sim_process import SimProcess, run_sim
from tests.reliability.wire import (
    LABEL,
    exchange,
    family_delta,
    normalize,
    open_fds,
    requests_total,
    samples_delta,
)
from tests.support.processes import Proxy, run_proxy
from tests.support.waits import wait_until

pytestmark = pytest.mark.e2e
STREAMS = 1000  # concurrent streams, and max_concurrency
FIRST_TOKEN_LEAVERS = 1000
QUEUED_LEAVERS = 500
MID_STREAM_LEAVERS = 500
PROMPTS = [f"prompt number {i}" for i in range(10)]
Client = tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]  # and what it read so far


def body(i: int) -> bytes:
    return json.dumps({"model": "llama3.2", "prompt": PROMPTS[i % len(PROMPTS)]}).encode()


def request(i: int, *headers: str) -> bytes:
    extra = "".join(f"{h}\r\n" for h in headers)
    data = body(i)
    return (f"POST /api/generate HTTP/1.1\r\nHost: x\r\n{extra}"
            f"Content-Length: {len(data)}\r\n\r\n").encode() + data


async def connect(port: int, count: int, headers: tuple[str, ...], until: bytes | None = None
                  ) -> list[Client]:
    """``count`` clients that sent a request; with ``until``, each has read that far."""
    gate = asyncio.Semaphore(100)  # stay within the proxy's listen backlog

    async def one(i: int) -> Client:
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request(i, *headers))
            await writer.drain()
        head = b"" if until is None else await asyncio.wait_for(reader.readuntil(until), 120)
        return reader, writer, head

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def close_all(clients: list[Client]) -> None:
    for _, writer, _ in clients:
        writer.close()
    await asyncio.gather(*(w.wait_closed() for _, w, _ in clients), return_exceptions=True)


async def read_all(clients: list[Client]) -> list[bytes]:
    """Each response, from its first byte to its end (the requests said Connection: close)."""
    async def rest(reader: asyncio.StreamReader, head: bytes) -> bytes:
        return head + await asyncio.wait_for(reader.read(), 120)

    answers = await asyncio.gather(*(rest(r, head) for r, _, head in clients))
    await close_all(clients)
    return list(answers)


def dechunk(raw: bytes) -> tuple[bytes, bytes]:
    """(status line, body) of a chunked HTTP/1.1 response read to its end."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    out = bytearray()
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return head.split(b"\r\n", 1)[0], bytes(out)
        out += rest[:size]
        assert rest[size:size + 2] == b"\r\n"
        rest = rest[size + 2:]


def gauge_sum(samples: dict, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == "ollama_proxy_" + name)


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[SimProcess, Proxy]]:
    # Thousands of sockets: the test may raise its own soft limit to the hard one; the
    # simulator and mitmdump inherit it. Nothing beyond that is changed.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        with run_sim("--tokens", "8", "--seed", "11") as sim, run_proxy(
            sim.url, "--set", f"max_concurrency={STREAMS}", "--set", "max_queue=5000"
        ) as proxy:
            yield sim, proxy
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_leavers_leak_nothing_and_1000_concurrent_streams_are_exact(
    setup: tuple[SimProcess, Proxy]
) -> None:
    sim, proxy = setup
    direct = {}
    for i in range(len(PROMPTS)):  # what the simulator sends for each prompt, directly
        answer = exchange(sim.port, "/api/generate", body(i))
        assert answer.complete
        direct[i] = answer.body
    for i in range(3):  # warm up the proxy's connections and first scrape
        assert exchange(proxy.port, "/api/generate", body(i)).complete
    before = proxy.wait_counted(3)
    baseline_fds = open_fds(proxy.process.pid)
    stream = ("Connection: close", "X-Sim-Hold: load")

    with asyncio.Runner() as runner:
        # Clients that give up while waiting for a first token that would take ten minutes.
        waiting = runner.run(connect(proxy.port, FIRST_TOKEN_LEAVERS, ("X-Sim-TTFT: 600",)))
        wait_until(lambda: sim.connections() == FIRST_TOKEN_LEAVERS, "requests upstream",
                   timeout=60)
        runner.run(close_all(waiting))
        wait_until(lambda: sim.connections() == 0, "upstream connections closed", timeout=60)

        # 1,000 streams at once, each held by the upstream after its first token.
        streams = runner.run(connect(proxy.port, STREAMS, stream, until=b'"done":false}\n'))
        samples = proxy.scrape()
        assert gauge_sum(samples, "active_requests") == STREAMS
        assert sim.connections() == STREAMS

        # Every slot is taken: these queue, and give up.
        queued = runner.run(connect(proxy.port, QUEUED_LEAVERS, ("X-Priority: low",)))
        proxy.wait_for(lambda s: gauge_sum(s, "queue_depth") == QUEUED_LEAVERS, timeout=60)
        runner.run(close_all(queued))
        proxy.wait_for(lambda s: gauge_sum(s, "queue_depth") == 0, timeout=60)

        sim.control("/_sim/release/load", "POST")
        answers = runner.run(read_all(streams))

        # Clients that leave after their first token.
        leaving = runner.run(connect(proxy.port, MID_STREAM_LEAVERS, ("X-Sim-Hold: never",),
                                     until=b'"done":false}\n'))
        runner.run(close_all(leaving))

    for i, raw in enumerate(answers):
        status, received = dechunk(raw)
        assert status == b"HTTP/1.1 200 OK"
        assert normalize(received) == normalize(direct[i % len(PROMPTS)])

    leavers = FIRST_TOKEN_LEAVERS + QUEUED_LEAVERS + MID_STREAM_LEAVERS
    after = proxy.wait_counted(requests_total(before) + leavers + STREAMS, timeout=60)
    assert family_delta(before, after, "errors_total", error_type="client_cancelled") == leavers
    assert family_delta(before, after, "errors_total") == leavers
    assert samples_delta(before, after, "requests_total", endpoint="/api/generate", model=LABEL,
                         status="200") == STREAMS + MID_STREAM_LEAVERS
    final = [json.loads(direct[i % len(PROMPTS)].splitlines()[-1]) for i in range(STREAMS)]
    # A client that left mid-stream had one token, counted from its content (and marked so).
    assert samples_delta(before, after, "generated_tokens_total", model=LABEL) == sum(
        f["eval_count"] for f in final) + MID_STREAM_LEAVERS
    assert samples_delta(before, after, "usage_estimated_total", endpoint="/api/generate",
                         model=LABEL) == MID_STREAM_LEAVERS
    assert samples_delta(before, after, "prompt_tokens_total", model=LABEL) == sum(
        f["prompt_eval_count"] for f in final)
    assert gauge_sum(after, "active_requests") == 0
    assert gauge_sum(after, "queue_depth") == 0
    wait_until(lambda: sim.connections() == 0, "upstream connections closed", timeout=60)
    wait_until(lambda: open_fds(proxy.process.pid) <= baseline_fds + 4, "proxy fds released",
               timeout=60)
    assert exchange(proxy.port, "/api/generate", body(0)).complete  # and it still serves
    assert "Traceback" not in proxy.log
