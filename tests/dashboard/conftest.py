"""Fixtures for the dashboard: a fake proxy whose /metrics is the real collectors' output.

``FakeProxy`` builds the proxy's own metric classes (``ProxyMetrics``, the inventory,
resource and admission collectors) into a registry and answers the dashboard's GETs from it
(it is the dashboard's HTTP transport), so names and label sets are the catalogue's, not a
copy of them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry, generate_latest

from addons.admission import AdmissionCollector
from addons.inventory import InventoryCollector, InventoryState, LoadedModel
from addons.metrics import ProxyMetrics
from addons.resources import ResourceCollector
from dashboard import create_app
from dashboard.http_client import Request, Response
from llama_core.record import RequestRecord
from llama_core.sampler import GpuSample, ResourceSample

PROXY = "http://proxy.test:8001"
HEALTHD = "http://healthd.test:8080"
T0 = 1_790_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeProxy:
    """The proxy's metrics port (and a health daemon) behind a ``Transport``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.metrics = ProxyMetrics(self.registry, version="9.9.9")
        self.inventory = SimpleNamespace(state=InventoryState(up=True, version="0.12.6"))
        self.resources = SimpleNamespace(last=ResourceSample(
            cpu_percent=12.5, memory_used_bytes=4_000_000_000,
            memory_total_bytes=16_000_000_000))
        self.depth = {"high": 0, "normal": 0, "low": 0}
        self.registry.register(InventoryCollector(self.inventory))  # type: ignore[arg-type]
        self.registry.register(ResourceCollector(self.resources))
        self.registry.register(AdmissionCollector(
            SimpleNamespace(depth=lambda p: self.depth[p])))  # type: ignore[arg-type]
        self.recent: list[dict[str, Any]] = []
        self.reachable = True
        self.health: tuple[int, bytes] | None = None  # None: nothing listens there
        self.urls: list[str] = []
        self.requests: list[Request] = []

    def observe(self, **fields: Any) -> RequestRecord:
        fields.setdefault("loaded_model", fields.get("load_duration_s") is not None)
        record = RequestRecord(**{"started_at": T0, "endpoint": "/api/chat",
                                  "model": "llama3.2:latest", "status": 200, **fields})
        self.metrics.observe(record, record.model)
        row = dataclasses.asdict(record)
        del row["prompt"], row["response"]
        self.recent.insert(0, row)
        return record

    def load(self, name: str, size: int, vram: int) -> None:
        loaded = dict(self.inventory.state.loaded)
        loaded[name] = LoadedModel(name=name, size=size, size_vram=vram)
        self.inventory.state = dataclasses.replace(self.inventory.state, loaded=loaded)

    def gpu(self, utilization: float, used: int, total: int) -> None:
        self.resources.last = dataclasses.replace(self.resources.last, gpus=[GpuSample(
            index=0, name="NVIDIA Test", utilization_percent=utilization,
            memory_used_bytes=used, memory_total_bytes=total)])

    def send(self, request: Request) -> Response:
        url = request.url
        self.urls.append(url)
        self.requests.append(request)
        if url.startswith(HEALTHD):
            if self.health is None:
                raise ConnectionRefusedError(111, "Connection refused")
            return Response(url, *self.health)
        if not url.startswith(PROXY) or not self.reachable:
            raise ConnectionRefusedError(111, "Connection refused")
        parts = urlsplit(url)
        if parts.path == "/metrics":
            return Response(url, 200, generate_latest(self.registry))
        if parts.path == "/requests":
            limit = int(parse_qs(parts.query).get("limit", ["100"])[0])
            return Response(url, 200, json.dumps(self.recent[:limit]).encode())
        return Response(url, 404, b'{"error": "not found"}')


@pytest.fixture
def fake_proxy() -> FakeProxy:
    return FakeProxy()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings(tmp_path: Path) -> dict[str, Any]:
    return {"proxy_metrics_url": PROXY, "healthd_url": HEALTHD,
            "history_path": str(tmp_path / "history.db")}


@pytest.fixture
def app(fake_proxy: FakeProxy, clock: Clock, settings: dict[str, Any]) -> Iterator[Flask]:
    app = create_app({"TESTING": True, "SETTINGS": settings, "TRANSPORT": fake_proxy.send,
                      "CLOCK": clock, "AUTOSTART": False})
    yield app
    app.extensions["llama_metrics"].stop()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
