"""The websocket through a real HTTP server: hello with the recent points, then each tick."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from tests.dashboard.conftest import FakeProxy
from tests.support import websocket


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
    ws = websocket.connect(f"ws://127.0.0.1:{server.server_port}/ws")
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


def test_the_test_client_keeps_a_message_that_came_with_the_handshake() -> None:
    """The dashboard sends its hello at once: on a quick connection it travels in the same
    read as the 101. (simple_websocket's own client would hold it until more bytes came.)"""
    hello = b'{"type":"hello"}'
    done = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(4096)
                found = re.search(rb"Sec-WebSocket-Key: *(\S+)", request, re.IGNORECASE)
                assert found is not None, request
                accept = base64.b64encode(hashlib.sha1(
                    found.group(1) + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
                conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept
                             + b"\r\n\r\n" + bytes([0x81, len(hello)]) + hello)
                done.wait(10)  # nothing more until the client has read it

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        ws = websocket.connect(f"ws://127.0.0.1:{listener.getsockname()[1]}/ws")
        try:
            assert ws.receive(timeout=5) == hello.decode()
        finally:
            done.set()
            ws.close()
            thread.join(5)
