"""Tests for the narrative: streamed from an Ollama (the simulator), skipped, time-limited."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from dashboard import create_app
from dashboard.narrative import busy_reason, prompt
from llama_core.traffic import HEADER
from ollama_sim import SimServer
from tests.dashboard.conftest import FakeProxy
from tests.local_http import serving


@pytest.fixture(scope="module")
def ollama() -> Iterator[Any]:
    server = SimServer(port=0, tokens=6, seed=3)
    server.start()
    yield server
    server.stop()


def narrate(fake: FakeProxy, ollama_url: str, **settings: Any) -> list[dict[str, Any]]:
    return narrate_in(fake, ollama_url, **settings)[0]


def narrate_in(fake: FakeProxy, ollama_url: str, **settings: Any
               ) -> tuple[list[dict[str, Any]], Flask]:
    app = create_app({"SETTINGS": {"proxy_metrics_url": "http://proxy.test:8001",
                                   "history_path": "", "ollama_url": ollama_url, **settings},
                      "TRANSPORT": fake.send, "AUTOSTART": False})
    client: FlaskClient = app.test_client()
    response = client.post("/api/narrative")
    assert response.status_code == 200 and response.mimetype == "application/x-ndjson"
    return [json.loads(line) for line in response.get_data(as_text=True).splitlines()], app


def test_streams_from_ollama_directly(fake_proxy: FakeProxy, ollama: Any) -> None:
    ollama.reset()
    fake_proxy.depth["normal"] = 0
    events = narrate(fake_proxy, ollama.url)
    assert events[0] == {"type": "start", "model": "llama3.2", "ollama_url": ollama.url}
    chunks = [e["text"] for e in events if e["type"] == "chunk"]
    assert len(chunks) == 6 and events[-1] == {"type": "done", "tokens": 6}
    [report] = ollama.wait_for_reports(1)
    assert report["endpoint"] == "/api/generate" and report["model"] == "llama3.2"
    assert not any("/api/" in url for url in fake_proxy.urls)  # nothing through the proxy


def test_skipped_under_load_with_the_reason(fake_proxy: FakeProxy, ollama: Any) -> None:
    ollama.reset()
    fake_proxy.metrics.active.labels("llama3.2:latest").inc(5)
    [event] = narrate(fake_proxy, ollama.url, narrative_max_active=2)
    assert event == {"type": "skipped", "reason": "skipped under load: the proxy has 5 requests "
                                                  "in flight (narrative_max_active is 2)"}
    assert ollama.reports == []


def test_skipped_when_off(fake_proxy: FakeProxy) -> None:
    [event], app = narrate_in(fake_proxy, "http://127.0.0.1:9", narrative_model="")
    assert event["type"] == "skipped" and "narrative_model is empty" in event["reason"]
    counted = app.extensions["llama_metrics"].metrics.registry.get_sample_value(
        "dashboard_narratives_total", {"outcome": "skipped"})
    assert counted == 1.0


def test_cut_off_at_the_time_limit(fake_proxy: FakeProxy) -> None:
    slow = SimServer(port=0, tokens=1000, token_rate=10)  # 100 s of tokens
    slow.start()
    try:
        events = narrate(fake_proxy, slow.url, narrative_timeout_seconds=1.0)
    finally:
        slow.stop()
    assert events[-1] == {"type": "error", "error": "stopped after the time limit of 1 s "
                                                    "(narrative_timeout_seconds)"}
    assert sum(e["type"] == "chunk" for e in events) < 100


def test_ollama_errors_are_reported(fake_proxy: FakeProxy, ollama: Any) -> None:
    [event] = narrate(fake_proxy, ollama.url, narrative_model="no-such-model")
    assert event["type"] == "error" and "HTTP 404" in event["error"]
    assert "no-such-model" in event["error"]
    [event] = narrate(fake_proxy, "http://127.0.0.1:9")
    assert event["type"] == "error"
    assert "cannot reach Ollama at http://127.0.0.1:9" in event["error"]


def test_busy_reason_and_prompt_are_plain_functions() -> None:
    snap = {"gauges": {"active_requests": 0.0, "queue_depth": 3.0},
            "point": {"ts": 1.0, "requests_per_second": 2.5, "ttft_p95": None},
            "status": {"ollama": {"up": True, "version": "0.12.6"}}, "loaded": []}
    assert busy_reason(snap, max_active=0, max_queue=5) is None
    assert "3 requests wait" in (busy_reason(snap, max_active=0, max_queue=0) or "")
    assert busy_reason({}, 0, 0) is None  # proxy unknown: not a reason to refuse
    text = prompt(snap, [{"title": "T", "detail": "D", "action": "A", "numbers": {}}])
    assert '"requests_per_second": 2.5' in text and '"title": "T"' in text
    assert "ttft_p95" not in text  # unknown numbers are left out, not sent as null


class _Recording(BaseHTTPRequestHandler):
    """An Ollama that answers every generate at once and remembers its headers."""

    protocol_version = "HTTP/1.1"
    headers_seen: list[dict[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers["Content-Length"]))
        self.headers_seen.append(dict(self.headers))
        body = b'{"response": "fine", "done": false}\n{"done": true, "eval_count": 1}\n'
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_the_narrative_is_marked_as_our_own_traffic(fake_proxy: FakeProxy) -> None:
    """An ``ollama_url`` that is a proxy counts the narrative apart, never as a client's."""
    _Recording.headers_seen = []
    with serving(_Recording) as url:
        events = narrate(fake_proxy, url)
    assert [e["type"] for e in events] == ["start", "chunk", "done"]
    [seen] = _Recording.headers_seen
    assert seen[HEADER] == "dashboard"
