"""Tests for dashboard.energy: joules per token, watt-hours per day, idle against active."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from addons.energy import EnergyCollector
from addons.metrics import ProxyMetrics
from addons.resources import ResourceCollector
from dashboard import energy, promtext
from llama_core.energy_ledger import EnergyLedger
from llama_core.record import RequestRecord
from llama_core.sampler import GpuSample, ResourceSample

DAY = 86400.0
GPU = "NVIDIA Test"


class Metered:
    """The proxy's real energy, resource and request collectors, fed synthetic polls."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.metrics = ProxyMetrics(self.registry)
        self.ledger = EnergyLedger()
        self.registry.register(EnergyCollector(self.ledger))
        self.resources = SimpleNamespace(last=None)
        self.registry.register(ResourceCollector(self.resources))  # type: ignore[arg-type]
        self.counter = 0.0
        self.t = 0.0

    def poll(self, joules: float, seconds: float = 10.0, watts: float | None = None) -> None:
        self.counter += joules
        self.t += seconds
        gpus = [GpuSample(index=0, name=GPU, energy_joules=self.counter, power_watts=watts)]
        self.ledger.poll(self.t, gpus)
        self.resources.last = ResourceSample(cpu_percent=1.0, memory_used_bytes=1,
                                             memory_total_bytes=2, gpus=gpus)

    def request(self, model: str, client: str, tokens: int) -> None:
        """One request generating ``tokens`` within the next poll's interval."""
        handle = self.ledger.start((model, client), lambda: tokens, self.t + 1)
        self.ledger.finish(handle, self.t + 2, lambda joules: None)
        self.metrics.observe(RequestRecord(
            started_at=time.time(), endpoint="/api/chat", model=model, status=200,
            generated_tokens=tokens, client=client or None), model)

    def scrape(self) -> promtext.Samples:
        return promtext.parse(generate_latest(self.registry).decode())


def test_no_gpu_is_not_metered_and_has_no_numbers() -> None:
    for samples in (None, Metered().scrape()):
        assert energy.live(samples) == {
            "metered": False, "sources": [], "gpu_j": None, "idle_j": None, "active_j": None,
            "power_w": None, "average": None, "models": [], "clients": []}


def test_live_joules_per_token_by_model_and_watts_between_scrapes() -> None:
    proxy = Metered()
    before = proxy.scrape()  # the proxy has not metered an interval yet: no energy series
    proxy.poll(0.0)  # the baseline
    proxy.poll(500.0, watts=50.0)  # 10 s with nothing in flight: idle
    older = proxy.scrape()
    proxy.request("big:latest", "", 30)
    proxy.request("small:latest", "", 10)
    proxy.poll(2000.0, watts=250.0)  # shared 3:1 by tokens
    got = energy.live(proxy.scrape(), older, 40.0)
    assert got["metered"] is True and got["sources"] == ["counter"]
    assert (got["gpu_j"], got["idle_j"], got["active_j"]) == (2500.0, 500.0, 2000.0)
    assert got["power_w"] == 250.0
    assert got["models"] == [
        {"model": "big:latest", "joules": 1500.0, "generated_tokens": 30.0,
         "joules_per_token": 50.0},
        {"model": "small:latest", "joules": 500.0, "generated_tokens": 10.0,
         "joules_per_token": 50.0},
    ]
    assert got["average"] == {"seconds": 40.0, "gpu_w": 50.0, "idle_w": 0.0, "active_w": 50.0}
    assert got["clients"] == []  # no clients file: every request is client ""
    # From a scrape before the first interval, the counters grew from zero.
    assert energy.live(proxy.scrape(), before, 30.0)["average"] == {
        "seconds": 30.0, "gpu_w": 2500.0 / 30, "idle_w": 500.0 / 30, "active_w": 2000.0 / 30}
    # Without an older scrape, or one too recent for the polls to show, there is no average.
    assert energy.live(proxy.scrape())["average"] is None
    assert energy.live(proxy.scrape(), older, energy.MIN_AVERAGE_S - 1)["average"] is None


def test_live_by_client_where_clients_are_named() -> None:
    proxy = Metered()
    proxy.poll(0.0)
    proxy.request("m:latest", "alice", 3)
    proxy.request("m:latest", "ci-bot", 1)
    proxy.poll(400.0)
    got = energy.live(proxy.scrape())
    assert [(c["client"], c["joules"], c["joules_per_token"]) for c in got["clients"]] == [
        ("alice", 300.0, 100.0), ("ci-bot", 100.0, 100.0)]
    assert got["models"][0]["joules_per_token"] == 100.0


def rows() -> list[dict[str, float | str]]:
    return [
        {"day": 0.0, "model": "a", "requests": 2, "joules": 7200.0, "generated_tokens": 3600},
        {"day": 0.0, "model": "b", "requests": 1, "joules": 360.0, "generated_tokens": 0},
        {"day": DAY, "model": "a", "requests": 1, "joules": 3600.0, "generated_tokens": 1800},
    ]


def test_per_day_and_per_model() -> None:
    days = energy.per_day(rows())  # type: ignore[arg-type]
    assert [(d["model"], d["wh"], d["joules_per_token"]) for d in days] == [
        ("a", 2.0, 2.0), ("b", 0.1, None), ("a", 1.0, 2.0)]
    models = energy.per_model(rows(), 2 * DAY)  # type: ignore[arg-type]
    assert models == [
        {"model": "a", "requests": 3, "joules": 10800.0, "generated_tokens": 5400,
         "joules_per_token": 2.0, "wh_per_day": 1.5},
        {"model": "b", "requests": 1, "joules": 360.0, "generated_tokens": 0,
         "joules_per_token": None, "wh_per_day": 0.05},
    ]


def test_a_window_idle_is_the_sampled_total_less_the_requests() -> None:
    gpus = [{"gpu": 0, "name": GPU, "samples": 9, "joules": 36000.0, "seconds": 7200.0},
            {"gpu": 1, "name": GPU, "samples": 1, "joules": 0.0, "seconds": 0.0}]
    got = energy.window(rows(), gpus, 2 * DAY)  # type: ignore[arg-type]
    assert got["metered"] is True
    assert (got["gpu_j"], got["active_j"], got["idle_j"]) == (36000.0, 11160.0, 24840.0)
    assert got["sampled_seconds"] == got["per_day_seconds"] == 7200.0
    assert [g["gpu"] for g in got["gpus"]] == ["0"]  # one sample covers no time
    # Per day over the two hours the samples cover, not the two days of the window: the
    # proxy saw only those.
    assert got["wh_per_day"] == pytest.approx(10.0 * 12)
    assert [(m["model"], m["wh_per_day"]) for m in got["models"]] == [
        ("a", pytest.approx(3.0 * 12)), ("b", pytest.approx(0.1 * 12))]
    assert [(d["day"], d["model"]) for d in got["days"]] == [(DAY, "a"), (0.0, "a"), (0.0, "b")]


def test_a_window_never_has_negative_idle_and_says_when_nothing_was_metered() -> None:
    low = [{"gpu": 0, "name": GPU, "samples": 2, "joules": 100.0, "seconds": 15.0}]
    got = energy.window(rows(), low, DAY)  # type: ignore[arg-type]
    assert got["idle_j"] == 0.0 and got["active_j"] == pytest.approx(11160.0)
    nothing = energy.window([], [], DAY)
    assert nothing["metered"] is False
    assert (nothing["gpu_j"], nothing["active_j"], nothing["idle_j"]) == (None, None, None)
    assert nothing["wh_per_day"] is None and nothing["models"] == []
    # Rows with joules but no GPU samples (a file before schema 5): active, no idle.
    only_rows = energy.window(rows(), [], DAY)  # type: ignore[arg-type]
    assert only_rows["idle_j"] is None and only_rows["wh_per_day"] == pytest.approx(3.1)
