"""The websocket through a real HTTP server: hello with the recent points, then each tick."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import simple_websocket
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from tests.dashboard.conftest import FakeProxy


@pytest.fixture
def server(app: Flask) -> Iterator[BaseWSGIServer]:
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def receive(ws: Any) -> dict[str, Any]:
    message = ws.receive(timeout=10)
    assert message is not None, "no message within 10 s"
    return json.loads(message)


def test_hello_then_one_snapshot_per_tick(app: Flask, server: BaseWSGIServer,
                                          fake_proxy: FakeProxy) -> None:
    live = app.extensions["llama_metrics"].live
    live.tick()
    ws = simple_websocket.Client.connect(f"ws://127.0.0.1:{server.server_port}/ws")
    try:
        hello = receive(ws)
        assert hello["type"] == "hello" and len(hello["series"]) == 1, hello
        registry = app.extensions["llama_metrics"].metrics.registry
        assert registry.get_sample_value("dashboard_websocket_clients") == 1.0
        assert hello["snapshot"]["status"]["proxy"]["reachable"] is True
        fake_proxy.observe(model="pushed:latest")
        live.tick()
        pushed = receive(ws)
        assert pushed["type"] == "snapshot", pushed
        assert pushed["data"]["requests"][0]["model"] == "pushed:latest", pushed
        assert set(pushed["data"]["point"]) >= {"ts", "requests_per_second", "ttft_p95"}
    finally:
        ws.close()


def test_plain_http_to_the_websocket_path_is_refused(app: Flask) -> None:
    assert app.test_client().get("/ws").status_code == 400
