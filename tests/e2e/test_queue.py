"""Admission through a real mitmdump: priorities, clients that leave, gauges that end at zero."""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import Proxy, run_proxy
from tests.support.waits import wait_rows

pytestmark = pytest.mark.e2e
LABEL = "llama3.2:latest"
PRIORITIES = ("high", "normal", "low")


def requests_total(samples: dict) -> float:
    return sum(v for (n, _), v in samples.items() if n == "ollama_proxy_requests_total")


def gauge(samples: dict, name: str, **labels: str) -> float:
    return samples.get(("ollama_proxy_" + name, tuple(sorted(labels.items()))), 0.0)


class Client:
    """One raw HTTP/1.1 client, so a test can leave at any moment."""

    def __init__(self, port: int, priority: str, hold: str | None = None,
                 ttft: float | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        body = json.dumps({"model": "llama3.2", "prompt": "hi", "stream": True}).encode()
        extra = f"X-Sim-Hold: {hold}\r\n" if hold else ""
        extra += f"X-Sim-TTFT: {ttft}\r\n" if ttft else ""
        self.sock.sendall(
            f"POST /api/generate HTTP/1.1\r\nHost: x\r\nX-Priority: {priority}\r\n{extra}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )

    def read_until(self, marker: bytes) -> bytes:
        data = b""
        while marker not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def queued_proxy(sim: Any, tmp_path: Path) -> Iterator[tuple[Proxy, Path]]:
    db = tmp_path / "history.db"
    with run_proxy(sim.url, "--set", "max_concurrency=2", "--set", "max_queue=40",
                   "--set", f"history_path={db}") as proxy:
        yield proxy, db


def test_many_clients_priorities_and_leavers_end_with_everything_free(
    queued_proxy: tuple[Proxy, Path], sim: Any
) -> None:
    proxy, db = queued_proxy
    # Two clients take both slots and stay mid-stream until released.
    holders = [Client(proxy.port, "normal", hold=f"slot-{i}") for i in range(2)]
    for h in holders:
        h.read_until(b'"done":false')
    # Each takes a while upstream, so admissions are tens of milliseconds apart.
    waiting = {p: [Client(proxy.port, p, ttft=0.04) for _ in range(6)] for p in ("low", "normal")}
    waiting["high"] = [Client(proxy.port, "high", ttft=0.04) for _ in range(6)]  # arrive last
    samples = proxy.wait_for(lambda s: sum(
        gauge(s, "queue_depth", priority=p) for p in PRIORITIES) == 18)
    assert gauge(samples, "queue_depth", priority="high") == 6

    # Some leave while queued, one holder leaves mid-stream.
    for client in waiting["low"][:3] + waiting["normal"][:2]:
        client.close()
    proxy.wait_for(lambda s: sum(gauge(s, "queue_depth", priority=p) for p in PRIORITIES) == 13)
    holders[0].close()  # frees a slot: the next one goes to a high-priority waiter
    sim.release("slot-1")
    answers = {p: [c.read_until(b'"done":true') for c in waiting[p][-(6 - n):]]
               for p, n in (("high", 0), ("normal", 2), ("low", 3))}
    assert all(b'"done":true' in a for group in answers.values() for a in group)
    holders[1].read_until(b'"done":true')

    samples = proxy.wait_counted(20)
    for p in PRIORITIES:
        assert gauge(samples, "queue_depth", priority=p) == 0
    assert gauge(samples, "active_requests", model=LABEL) == 0
    cancelled = gauge(samples, "errors_total", endpoint="/api/generate", model=LABEL,
                      error_type="client_cancelled", client="")
    assert cancelled == 6  # five left while queued, one mid-stream
    for client in [*holders, *(c for group in waiting.values() for c in group)]:
        client.close()

    # Every admitted high-priority request was let in before every normal and low one.
    rows = wait_rows(db, 20)
    admitted = {p: [r["ts"] + r["queue_wait_s"] for r in rows
                    if r["priority"] == p and r["error_type"] is None and r["queue_wait_s"] > 0]
                for p in PRIORITIES}
    assert len(admitted["high"]) == 6
    assert max(admitted["high"]) < min(admitted["normal"] + admitted["low"])
    assert max(admitted["normal"]) < min(admitted["low"])





def test_waiting_never_blocks_other_flows(queued_proxy: tuple[Proxy, Path], sim: Any) -> None:
    proxy, _ = queued_proxy
    holders = [Client(proxy.port, "normal", hold=f"busy-{i}") for i in range(2)]
    for h in holders:
        h.read_until(b'"done":false')
    queued = Client(proxy.port, "normal")
    proxy.wait_for(lambda s: gauge(s, "queue_depth", priority="normal") == 1)
    # Metadata never waits, and the event loop keeps serving while a request is queued.
    tags = socket.create_connection(("127.0.0.1", proxy.port))
    tags.sendall(b"GET /api/tags HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    reply = b""
    while chunk := tags.recv(65536):
        reply += chunk
    tags.close()
    assert reply.startswith(b"HTTP/1.1 200") and b"llama3.2" in reply
    for i in range(2):
        sim.release(f"busy-{i}")
    assert b'"done":true' in queued.read_until(b'"done":true')
    for c in [*holders, queued]:
        c.close()


def test_history_survives_kill_9_under_load(sim: Any, tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    with run_proxy(sim.url, "--set", f"history_path={db}") as proxy:
        for _ in range(30):
            c = Client(proxy.port, "normal")
            c.read_until(b'"done":true')
            c.close()
        wait_rows(db, 30)
        busy = [Client(proxy.port, "normal") for _ in range(10)]
        proxy.process.kill()  # SIGKILL, with requests in flight
        proxy.process.wait()
        for c in busy:
            c.close()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT count(*) FROM requests").fetchone()[0] >= 30
    finally:
        conn.close()
    assert (db.stat().st_mode & 0o777) == 0o600


def test_inventory_and_machine_series_through_the_proxy(sim: Any) -> None:
    fast = {"LLAMA_METRICS_PROXY_INVENTORY_INTERVAL_SECONDS": "0.2",
            "LLAMA_METRICS_PROXY_RESOURCES_INTERVAL_SECONDS": "0.2"}
    with run_proxy(sim.url, env=fast) as proxy:
        c = Client(proxy.port, "normal")
        c.read_until(b'"done":true')
        c.close()
        samples = proxy.wait_for(
            lambda s: gauge(s, "model_loaded", model=LABEL) == 1
            and gauge(s, "system_memory_total_bytes") > 0
        )
        assert gauge(samples, "upstream_up") == 1
        assert gauge(samples, "model_size_bytes", model=LABEL) > 0
        assert not any(name.startswith("ollama_proxy_gpu_") for name, _ in samples)
