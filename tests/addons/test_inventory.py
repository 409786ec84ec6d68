"""Tests for addons/inventory.py against a real little HTTP server that answers like Ollama."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from addons.inventory import (
    InventoryCollector,
    InventoryPoller,
    LoadedModel,
    normalize_model,
    parse_ps,
    parse_tags,
)
from addons.upstream_client import Request, Response, UpstreamClient
from tests import fixtures

LOGGER = "addons.inventory"
TAGS_FIXTURE = "15-api-tags-nostream.json"
FIXTURE_NAMES = {
    "qwen3:latest", "qwen3:14b", "qwen2.5vl:7b",
    "mistral-small3.1:latest", "llava:latest", "llama3.2:latest",
}


def recorded_tags_body() -> bytes:
    """The /api/tags body recorded from a real Ollama (tests/fixtures/ollama-recorded)."""
    return fixtures.load(TAGS_FIXTURE).body


def ps_body(*names: str) -> bytes:
    models = [
        {
            "name": name,
            "model": name,
            "size": 6_000_000_000 + i,
            "digest": "a" * 64,
            "details": {
                "parent_model": "", "format": "gguf", "family": "qwen3",
                "families": ["qwen3"], "parameter_size": "14.8B", "quantization_level": "Q4_K_M",
            },
            "expires_at": "2025-06-05T00:36:53.123456789Z",
            "size_vram": 5_000_000_000 + i,
        }
        for i, name in enumerate(names)
    ]
    return json.dumps({"models": models}).encode()


SMALL_TAGS = json.dumps({"models": [{"name": "llama3:latest", "model": "llama3:latest"}]}).encode()


class FakeOllama:
    """Serves fixed bodies for /api/version, /api/ps and /api/tags; can stop and come back."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes]] = {
            "/api/version": (200, b'{"version":"0.9.0"}'),
            "/api/ps": (200, ps_body()),
            "/api/tags": (200, SMALL_TAGS),
        }
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        routes = self.routes

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                status, body = routes.get(self.path, (404, b"404 page not found"))
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        # Port 0 the first time; the same port again to play "Ollama is back".
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        # A short poll interval so that shutdown() returns at once.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None


@pytest.fixture
def ollama() -> Iterator[FakeOllama]:
    server = FakeOllama()
    server.start()
    yield server
    server.stop()


def registry_for(poller: InventoryPoller) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(InventoryCollector(poller))
    return registry


def value(registry: CollectorRegistry, metric: str, /, **labels: str) -> float | None:
    return registry.get_sample_value(f"ollama_proxy_{metric}", labels)


def loaded_series(registry: CollectorRegistry) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for family in registry.collect():
        for s in family.samples:
            if "model" in s.labels:
                found.setdefault(s.name, set()).add(s.labels["model"])
    return found


# -- state and series --------------------------------------------------------------------------


def test_nothing_before_the_first_poll(ollama: FakeOllama) -> None:
    poller = InventoryPoller(ollama.url)
    registry = registry_for(poller)
    assert (poller.up, poller.version, poller.loaded, poller.known) == (None, None, {}, frozenset())
    assert list(registry.collect()) == []


def test_poll_reads_version_loaded_and_recorded_tags(ollama: FakeOllama) -> None:
    ollama.routes["/api/tags"] = (200, recorded_tags_body())
    ollama.routes["/api/ps"] = (200, ps_body("qwen3:14b", "gemma3:1b"))
    poller = InventoryPoller(ollama.url + "/")
    registry = registry_for(poller)
    poller.poll_once()

    assert poller.up is True
    assert poller.version == "0.9.0"
    assert poller.known == FIXTURE_NAMES | {"gemma3:1b"}  # ps names count as known too
    assert poller.loaded["qwen3:14b"] == LoadedModel(
        name="qwen3:14b", size=6_000_000_000, size_vram=5_000_000_000,
        expires_at="2025-06-05T00:36:53.123456789Z",
        parameter_size="14.8B", quantization_level="Q4_K_M",
    )

    assert value(registry, "upstream_up") == 1
    assert value(registry, "upstream_info", version="0.9.0") == 1
    assert value(registry, "model_loaded", model="qwen3:14b") == 1
    assert value(registry, "model_loaded", model="gemma3:1b") == 1
    assert value(registry, "model_vram_bytes", model="gemma3:1b") == 5_000_000_001
    assert value(registry, "model_size_bytes", model="qwen3:14b") == 6_000_000_000
    assert value(registry, "model_loaded", model="llava:latest") is None  # on disk, not loaded


def test_unloaded_model_disappears_on_the_next_poll(ollama: FakeOllama) -> None:
    ollama.routes["/api/ps"] = (200, ps_body("llama3:latest", "gemma3:1b"))
    poller = InventoryPoller(ollama.url)
    registry = registry_for(poller)
    poller.poll_once()
    assert loaded_series(registry)["ollama_proxy_model_loaded"] == {"llama3:latest", "gemma3:1b"}

    ollama.routes["/api/ps"] = (200, ps_body("llama3:latest"))
    poller.poll_once()
    assert loaded_series(registry) == {
        f"ollama_proxy_model_{kind}": {"llama3:latest"}
        for kind in ("loaded", "vram_bytes", "size_bytes", "expires_at_seconds")
    }
    assert not poller.is_known("gemma3:1b")  # known is the last good poll, not every name ever

    ollama.routes["/api/ps"] = (200, b'{"models":null}')
    poller.poll_once()
    assert loaded_series(registry) == {}
    assert value(registry, "upstream_up") == 1


def test_down_warns_once_keeps_known_and_back_logs_once(
    ollama: FakeOllama, caplog: pytest.LogCaptureFixture
) -> None:
    ollama.routes["/api/ps"] = (200, ps_body("llama3:latest"))
    poller = InventoryPoller(ollama.url, timeout=1.0)
    registry = registry_for(poller)
    poller.poll_once()
    caplog.clear()

    ollama.stop()
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        for _ in range(4):
            poller.poll_once()
    assert poller.up is False
    assert poller.loaded == {}
    assert poller.known == {"llama3:latest"}
    assert poller.version == "0.9.0"  # the last version seen, until a poll says otherwise
    assert value(registry, "upstream_up") == 0
    assert loaded_series(registry) == {}
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].getMessage().startswith(f"upstream {ollama.url} is down: /api/version: ")
    assert all(r.levelno == logging.DEBUG for r in caplog.records if r is not warnings[0])

    caplog.clear()
    ollama.start()  # same port
    with caplog.at_level(logging.INFO, logger=LOGGER):
        for _ in range(3):
            poller.poll_once()
    assert poller.up is True
    assert value(registry, "model_loaded", model="llama3:latest") == 1
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert caplog.records[0].getMessage().startswith(f"upstream {ollama.url} is back")


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        ("/api/ps", 200, b'{"models": [{"name": "llama3"'),  # cut off
        ("/api/tags", 200, b"<html>not ollama</html>"),
        ("/api/tags", 200, b'{"models": 3}'),
        ("/api/version", 200, b"[]"),
        ("/api/version", 200, b'{"version": 9}'),
        ("/api/version", 200, b"\xff\xfe"),
        ("/api/ps", 500, b'{"error": "boom"}'),
    ],
)
def test_malformed_or_failing_answer_counts_as_down(
    ollama: FakeOllama, caplog: pytest.LogCaptureFixture, path: str, status: int, body: bytes
) -> None:
    poller = InventoryPoller(ollama.url)
    poller.poll_once()
    ollama.routes[path] = (status, body)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        poller.poll_once()
    assert poller.up is False
    assert poller.known == {"llama3:latest"}
    assert [r.getMessage().split(": ")[1] for r in caplog.records] == [path]


def test_malformed_json_does_not_kill_the_thread(
    ollama: FakeOllama, caplog: pytest.LogCaptureFixture
) -> None:
    ollama.routes["/api/ps"] = (200, b"{oops")
    poller = InventoryPoller(ollama.url, interval=0.01)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        poller.start()
        try:
            assert poller.wait_for_poll(3, timeout=5.0)
            assert poller.up is False
            ollama.routes["/api/ps"] = (200, ps_body("llama3:latest"))
            seen = poller.polls
            assert poller.wait_for_poll(seen + 2, timeout=5.0)
        finally:
            poller.stop()
    assert poller.up is True
    assert set(poller.loaded) == {"llama3:latest"}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_stop_is_immediate_between_polls(ollama: FakeOllama) -> None:
    poller = InventoryPoller(ollama.url, interval=60.0)
    poller.start()
    assert poller.wait_for_poll(1, timeout=5.0)
    began = time.perf_counter()
    poller.stop()
    assert time.perf_counter() - began < 1.0
    assert not any(t.name == "inventory-poller" for t in threading.enumerate())
    assert poller.polls == 1


def test_environment_proxy_is_not_used(
    ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    poller = InventoryPoller(ollama.url)
    poller.poll_once()
    assert poller.up is True


def test_injected_transport_failure_is_down_not_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    def send(request: Request) -> Response:
        raise TimeoutError("timed out")

    poller = InventoryPoller("http://ollama.invalid:11434", timeout=2.0,
                             client=UpstreamClient(send))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        poller.poll_once()
    assert poller.up is False
    assert poller.polls == 1
    assert [r.getMessage() for r in caplog.records] == [
        "upstream http://ollama.invalid:11434 is down: /api/version: could not reach "
        "http://ollama.invalid:11434/api/version: timed out after 2 s"]


# -- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "known"),
    [
        ("llama3.2", True),
        ("llama3.2:latest", True),
        ("qwen3", True),
        ("qwen3:14b", True),
        ("QWEN3:14B", True),
        ("registry.ollama.ai/library/llava:latest", True),
        ("library/mistral-small3.1", True),
        ("qwen3:8b", False),
        ("llama3", False),
        ("hf.co/someone/llama3.2", False),
        ("", False),
    ],
)
def test_is_known_with_and_without_latest(ollama: FakeOllama, model: str, known: bool) -> None:
    ollama.routes["/api/tags"] = (200, recorded_tags_body())
    poller = InventoryPoller(ollama.url)
    poller.poll_once()
    assert poller.is_known(model) is known


def test_normalize_keeps_a_registry_port_apart_from_the_tag() -> None:
    assert normalize_model("localhost:5000/me/llama3") == "localhost:5000/me/llama3:latest"
    assert normalize_model("localhost:5000/me/llama3:8b") == "localhost:5000/me/llama3:8b"


def test_parsers_skip_entries_without_a_name() -> None:
    body = b'{"models": [{"size": 1}, "x", {"model": "a:1", "size": true, "details": 3}]}'
    assert parse_tags(body) == {"a:1"}
    assert parse_ps(body) == {"a:1": LoadedModel(name="a:1")}


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2025-06-05T00:36:53.123456789Z", 1749083813.123456),
        ("2024-06-04T14:38:31.83753-07:00", 1717537111.83753),
        ("0001-01-01T00:00:00Z", None),  # Go's zero time
        ("2318-08-20T00:00:00Z", None),  # keep_alive -1: "never"
        ("not a time", None),
        (None, None),
    ],
)
def test_expires_at_as_unix_time(stamp: str | None, expected: float | None) -> None:
    from addons.inventory import epoch_seconds

    got = epoch_seconds(stamp)
    assert got == (pytest.approx(expected) if expected is not None else None)
