"""Ollama dies and comes back (same port) while streams are open through a real mitmdump."""

from __future__ import annotations

import json
import socket

import pytest

from tests.reliability.sim_process import SimProcess, run_sim
from tests.reliability.wire import LABEL, exchange, requests_total, samples_delta
from tests.support.processes import Proxy, run_proxy

pytestmark = pytest.mark.e2e
OPEN_STREAMS = 20
BODY = json.dumps({"model": "llama3.2", "prompt": "tell me", "stream": True}).encode()


def open_held_stream(port: int) -> socket.socket:
    """A client mid-stream: it has its first token; the upstream holds the rest."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"POST /api/generate HTTP/1.1\r\nHost: x\r\nX-Sim-Hold: forever\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
    received = b""
    while b'"done":false' not in received:
        chunk = sock.recv(65536)
        assert chunk, "the proxy closed before the first token"
        received += chunk
    return sock


def read_to_end(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    sock.close()
    return data


def test_upstream_restart_cuts_open_streams_visibly_and_the_proxy_recovers() -> None:
    with run_sim("--tokens", "8", "--seed", "3") as sim, run_proxy(sim.url) as proxy:
        assert exchange(proxy.port, "/api/generate", BODY).status == 200
        for signal in ("KILL", "TERM"):  # a crash, then an orderly restart
            restart_with_open_streams(proxy, sim, signal)


def restart_with_open_streams(proxy: Proxy, sim: SimProcess, signal: str) -> None:
    before = proxy.scrape()
    streams = [open_held_stream(proxy.port) for _ in range(OPEN_STREAMS)]
    assert proxy.value("active_requests", model=LABEL) == OPEN_STREAMS

    sim.kill(signal)  # with every stream open mid-way
    for sock in streams:
        tail = read_to_end(sock)
        assert b'"done":true' not in tail
        assert not tail.endswith(b"0\r\n\r\n")  # cut, not a clean end: the client can tell
    down = exchange(proxy.port, "/api/generate", BODY)  # nobody listens on the port now
    assert down.status == 502 and "could not reach Ollama" in down.json()["error"]

    sim.start()  # the same port again
    up = exchange(proxy.port, "/api/generate", BODY)
    assert up.status == 200 and up.complete and b'"done":true' in up.body

    after = proxy.wait_counted(requests_total(before) + OPEN_STREAMS + 2)
    endpoint = "/api/generate"
    assert samples_delta(before, after, "errors_total", endpoint=endpoint, model=LABEL,
                         error_type="stream_aborted") == OPEN_STREAMS
    assert samples_delta(before, after, "errors_total", endpoint=endpoint, model=LABEL,
                         error_type="upstream_unreachable") == 1
    assert samples_delta(before, after, "requests_total", endpoint=endpoint, model=LABEL,
                         status="200") == OPEN_STREAMS + 1
    assert after[("ollama_proxy_active_requests", (("model", LABEL),))] == 0
    assert "Traceback" not in proxy.log
