"""Fixtures for the health daemon's tests: tiny HTTP servers on free ports, closed ports."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from healthd import config
from tests.support.ports import refusing_port

Reply = tuple[int, Any]  # status, body (bytes, str, or something JSON-encodable)


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class StubServer:
    """A real HTTP server with canned answers per path; records every request it got.

    ``routes[path]`` is a reply, or a list of replies given in turn (the last one repeats).
    A path in ``hang`` is answered only when the test ends (to exercise client timeouts).
    """

    def __init__(self) -> None:
        self.routes: dict[str, Reply | list[Reply]] = {}
        self.hang: set[str] = set()
        self.seen: list[Seen] = []
        self.got = threading.Condition()
        self._release = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                with stub.got:
                    stub.seen.append(Seen(self.command, path, dict(self.headers), body))
                    stub.got.notify_all()
                if path in stub.hang:
                    stub._release.wait(30)
                    return
                status, payload = stub._reply(path)
                data = payload if isinstance(payload, bytes) else (
                    payload.encode() if isinstance(payload, str) else json.dumps(payload).encode())
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,),
                                        daemon=True)

    def _reply(self, path: str) -> Reply:
        with self.got:
            route = self.routes.get(path, (404, {"error": f"stub: no route {path}"}))
            if isinstance(route, list):
                return route.pop(0) if len(route) > 1 else route[0]
            return route

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def requests_to(self, path: str) -> list[Seen]:
        with self.got:
            return [s for s in self.seen if s.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 10.0) -> list[Seen]:
        with self.got:
            self.got.wait_for(lambda: len([s for s in self.seen if s.path == path]) >= count,
                              timeout)
        return self.requests_to(path)

    def start(self) -> StubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = StubServer().start()
    yield server
    server.stop()


@pytest.fixture
def make_stub() -> Iterator[Callable[[], StubServer]]:
    servers: list[StubServer] = []

    def make() -> StubServer:
        servers.append(StubServer().start())
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def closed_url() -> Iterator[str]:
    """A URL whose port is bound but not listening: connections are refused at once."""
    with refusing_port() as port:
        yield f"http://127.0.0.1:{port}"


def write_config(path: Path, healthd: dict[str, Any]) -> str:
    path.write_text(json.dumps({"healthd": healthd}))  # JSON is YAML
    return str(path)


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., config.Settings]:
    """Settings from a file holding exactly ``values`` (nothing from the environment)."""

    def make(**values: Any) -> config.Settings:
        return config.load(config=write_config(tmp_path / "llama-metrics.yml", values), env={})

    return make


def fetch(url: str, method: str = "GET") -> tuple[int, str, bytes]:
    """Status, content type and body of one request (error statuses included)."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers.get("Content-Type", ""), err.read()


def fetch_json(url: str, method: str = "GET") -> tuple[int, Any]:
    status, content_type, body = fetch(url, method)
    assert content_type == "application/json", (url, content_type, body)
    return status, json.loads(body)
