"""Our own traffic through a real mitmdump: the mark is removed, and counted only apart."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from llama_core import traffic
from tests.local_http import serving
from tests.support.processes import Proxy, run_proxy
from tests.support.waits import wait_rows

pytestmark = pytest.mark.e2e
CHAT = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": False}
ANSWER = {"model": "llama3.2", "message": {"role": "assistant", "content": "hello"},
          "done": True, "prompt_eval_count": 4, "eval_count": 2, "eval_duration": 10**8}


class Upstream(BaseHTTPRequestHandler):
    """Ollama enough for the proxy's pollers, and a chat that remembers the headers it got."""

    seen: list[dict[str, str]] = []
    lock = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._json({"version": "0.0.0"} if self.path == "/api/version" else {"models": []})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.lock:
            self.seen.append({k.lower(): v for k, v in self.headers.items()})
        self._json(ANSWER)


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[Proxy, Path]]:
    Upstream.seen = []
    history = tmp_path / "history.db"
    with serving(Upstream) as url, run_proxy(url, "--set", f"history_path={history}") as p:
        yield p, history


def chat(proxy: Proxy, headers: dict[str, str]) -> int:
    request = urllib.request.Request(
        proxy.url + "/api/chat", data=json.dumps(CHAT).encode(), method="POST",
        headers={"Content-Type": "application/json", **headers},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
        return response.status


def recent(proxy: Proxy) -> list[dict[str, Any]]:
    with urllib.request.urlopen(proxy.metrics_url + "/requests", timeout=10) as r:
        found: list[dict[str, Any]] = json.loads(r.read())
        return found


def client_series(samples: dict) -> dict:
    """Every request, token, latency, error and active sample that is not zero."""
    names = ("requests_total", "prompt_tokens_total", "generated_tokens_total", "errors_total",
             "request_duration_seconds_count", "queue_wait_seconds_count", "active_requests",
             "time_to_first_token_seconds_count", "tokens_per_second_count")
    return {key: v for key, v in samples.items()
            if key[0] in {"ollama_proxy_" + n for n in names} and v}


def test_marked_requests_are_counted_apart_and_never_reach_the_upstream_marked(
    proxy: tuple[Proxy, Path]
) -> None:
    p, history = proxy
    for source in sorted(traffic.SOURCES):
        assert chat(p, traffic.header(source)) == 200
    samples = p.wait_for(lambda s: sum(
        v for (n, _), v in s.items() if n == "ollama_proxy_internal_requests_total") == 3)
    for source in traffic.SOURCES:
        labels = (("endpoint", "/api/chat"), ("source", source), ("status", "200"))
        assert samples[("ollama_proxy_internal_requests_total", labels)] == 1
    assert client_series(samples) == {}
    assert all(traffic.HEADER.lower() not in seen for seen in Upstream.seen)
    assert len(Upstream.seen) == 3
    assert recent(p) == []

    # A client request after them: once it is in the history, theirs would be too.
    assert chat(p, {traffic.HEADER: "someone-else"}) == 200  # not ours: client traffic
    samples = p.wait_counted(1)
    assert Upstream.seen[-1].get(traffic.HEADER.lower()) is None
    assert samples[("ollama_proxy_requests_total", (
        ("client", ""), ("endpoint", "/api/chat"), ("model", "llama3.2:latest"),
        ("status", "200")))] == 1
    assert sum(v for (n, _), v in samples.items()
               if n == "ollama_proxy_internal_requests_total") == 3
    assert [r["model"] for r in recent(p)] == ["llama3.2:latest"]
    # The writer writes within its flush interval; the rows are read until the client's is
    # there: the three before it would have been written first.
    assert [r["model"] for r in wait_rows(history, 1)] == ["llama3.2:latest"]
