"""``/api/energy`` (dashboard/energy_source.py, views/energy.py): the fake proxy's real energy
collector live, a real history file's joules over a window, and the words without a meter."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from addons.energy import EnergyCollector
from dashboard import create_app
from dashboard.energy_source import NO_METER
from llama_core.energy_ledger import EnergyLedger
from llama_core.history.samples import SAMPLE_INTERVAL_S
from llama_core.history.writer import HistoryWriter
from llama_core.record import RequestRecord
from llama_core.sampler import GpuSample, ResourceSample
from tests.dashboard.conftest import PROXY, T0, Clock, FakeProxy

GPU = "NVIDIA Test"


class MeteredProxy(FakeProxy):
    """The fake proxy with the real energy collector, its ledger fed synthetic polls."""

    def __init__(self) -> None:
        super().__init__()
        self.ledger = EnergyLedger()
        self.registry.register(EnergyCollector(self.ledger))
        self.counter = 0.0
        self.t = 0.0

    def poll(self, joules: float, watts: float = 100.0) -> None:
        self.counter += joules
        self.t += 10.0
        gpus = [GpuSample(index=0, name=GPU, energy_joules=self.counter, power_watts=watts)]
        self.ledger.poll(self.t, gpus)
        self.resources.last = dataclasses.replace(self.resources.last, gpus=gpus)

    def generate(self, model: str, tokens: int) -> None:
        handle = self.ledger.start((model, ""), lambda: tokens, self.t + 1)
        self.ledger.finish(handle, self.t + 2, lambda joules: None)
        self.observe(model=model, generated_tokens=tokens)


@contextmanager
def dashboard(fake: FakeProxy, clock: Clock, history: Path | None
              ) -> Iterator[FlaskClient]:
    app = create_app({"TESTING": True, "TRANSPORT": fake.send, "CLOCK": clock,
                      "AUTOSTART": False, "SETTINGS": {
                          "proxy_metrics_url": PROXY, "healthd_url": "",
                          "history_path": "" if history is None else str(history)}})
    try:
        yield app.test_client()
    finally:
        app.extensions["llama_metrics"].stop()


def write(path: Path, joules: list[tuple[str, int, float]], watts: float | None) -> None:
    """Rows with their joules in the last hour; GPU samples at ``watts`` over 40 minutes."""
    writer = HistoryWriter(path, retention_days=1e6)
    writer.start()
    try:
        for i, (model, tokens, energy_j) in enumerate(joules):
            assert writer.submit(RequestRecord(
                started_at=T0 - 600 + i, endpoint="/api/chat", model=model, status=200,
                generated_tokens=tokens, energy_j=energy_j))
        steps = int(2400 / SAMPLE_INTERVAL_S)
        for n in range(steps + 1):
            gpus = [] if watts is None else [GpuSample(index=0, name=GPU, power_watts=watts)]
            assert writer.submit_sample(ResourceSample(
                cpu_percent=1.0, memory_used_bytes=1, memory_total_bytes=2, gpus=gpus),
                ts=T0 - 2400 + n * SAMPLE_INTERVAL_S)
        assert writer.flush()
    finally:
        writer.close()


def get(client: FlaskClient, query: str = "") -> tuple[int, Any]:
    response = client.get("/api/energy" + query)
    assert response.content_type == "application/json"
    return response.status_code, response.get_json()


def test_live_and_a_windows_energy(tmp_path: Path, clock: Clock) -> None:
    fake = MeteredProxy()
    fake.poll(0.0)
    fake.poll(1000.0)  # idle
    db = tmp_path / "history.db"
    write(db, [("llama3.2:latest", 100, 50.0), ("llama3.2:latest", 300, 150.0),
               ("qwen3:latest", 50, 100.0)], watts=100.0)
    with dashboard(fake, clock, db) as client:
        status, body = get(client, "?window=1h")
        assert status == 200
        assert body["metered"] is True and body["note"] is None
        history, live = body["history"], body["live"]
        assert live["reachable"] is True and live["average"] is None  # one scrape yet
        assert (live["gpu_j"], live["idle_j"], live["active_j"]) == (1000.0, 1000.0, 0.0)
        assert live["power_w"] == 100.0
        # Forty seconds later, another scrape: requests ran, the average is in watts.
        fake.generate("llama3.2:latest", 40)
        fake.poll(2000.0, watts=200.0)
        clock.now += 40
        client.application.extensions["llama_metrics"].live.tick()
        status, body = get(client)
        assert body["history"] is None and body["history_error"] is None  # no window asked
        live = body["live"]
        assert live["models"] == [{"model": "llama3.2:latest", "joules": 2000.0,
                                   "generated_tokens": 40.0, "joules_per_token": 50.0}]
        assert live["average"] == {"seconds": 40.0, "gpu_w": 50.0, "idle_w": 0.0,
                                   "active_w": 50.0}

    assert history["window"] == "1h" and history["source"] == "sqlite"
    assert [(m["model"], m["joules"], m["joules_per_token"]) for m in history["models"]] == [
        ("llama3.2:latest", 200.0, 0.5), ("qwen3:latest", 100.0, 2.0)]
    # Per day over the 40 minutes the samples cover.
    assert history["models"][0]["wh_per_day"] == pytest.approx(200.0 / 3600 * 36)
    # 40 minutes at 100 W, from the samples; the requests' 300 J of it are active.
    assert history["gpu_j"] == pytest.approx(240_000.0)
    assert history["active_j"] == 300.0
    assert history["idle_j"] == pytest.approx(239_700.0)
    assert history["sampled_seconds"] == 2400.0
    assert [d["model"] for d in history["days"]] == ["llama3.2:latest", "qwen3:latest"]


def test_without_a_gpu_the_answer_says_so_in_words(tmp_path: Path, clock: Clock) -> None:
    db = tmp_path / "history.db"
    write(db, [], watts=None)
    with dashboard(FakeProxy(), clock, db) as client:
        status, body = get(client, "?window=24h")
    assert status == 200
    assert body["metered"] is False and body["note"] == NO_METER == (
        "no GPU energy meter on this machine")
    assert body["live"]["metered"] is False and body["live"]["models"] == []
    assert body["history"]["metered"] is False and body["history"]["gpu_j"] is None


def test_an_unreachable_proxy_is_not_called_a_machine_without_a_gpu(clock: Clock) -> None:
    fake = FakeProxy()
    fake.reachable = False
    with dashboard(fake, clock, None) as client:
        status, body = get(client, "?window=1h")
    assert status == 200
    assert body["metered"] is False and body["live"]["reachable"] is False
    assert "unreachable" in body["note"] and body["note"] != NO_METER
    assert body["history"] is None and "history_path" in body["history_error"]


def test_a_missing_history_file_is_an_error_beside_the_live_numbers(
    tmp_path: Path, clock: Clock
) -> None:
    fake = MeteredProxy()
    fake.poll(0.0)
    fake.poll(500.0)
    with dashboard(fake, clock, tmp_path / "absent.db") as client:
        status, body = get(client, "?window=1h")
    assert status == 200 and body["metered"] is True
    assert body["history"] is None and "absent.db" in body["history_error"]


@pytest.mark.parametrize(("query", "words"), [
    ("?window=2h", "window must be one of"), ("?model=x", "unknown parameter 'model'"),
    ("?window=", "window must be one of")])
def test_bad_parameters_are_400_json(clock: Clock, query: str, words: str) -> None:
    with dashboard(FakeProxy(), clock, None) as client:
        status, body = get(client, query)
    assert status == 400 and words in body["error"]
