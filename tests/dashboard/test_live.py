"""Tests for the live view: rates and quantiles from scrape deltas, gauges, status, feed."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from dashboard import settings as dashboard_settings
from dashboard.http_client import Client
from dashboard.live import LiveState
from tests.dashboard.conftest import HEALTHD, PROXY, T0, Clock, FakeProxy


def make(fake: FakeProxy, clock: Clock, **changes: Any) -> LiveState:
    settings = {**dashboard_settings.defaults(), "proxy_metrics_url": PROXY, "healthd_url": HEALTHD,
                **changes}
    return LiveState(settings, client=Client(fake.send), clock=clock)


def test_rates_and_quantiles_come_from_the_window_between_scrapes(
    fake_proxy: FakeProxy, clock: Clock
) -> None:
    live = make(fake_proxy, clock, rate_window_seconds=10.0)
    for _ in range(3):  # long before either window: must not count
        fake_proxy.observe(started_at=T0 - 200, ttft_s=5.0, duration_s=50.0, stream=True,
                           prompt_tokens=1, generated_tokens=1)
    first = live.tick()
    assert first["point"]["requests_per_second"] is None  # one scrape: no rate yet
    assert first["point"]["ttft_p95"] is None  # finished over a minute ago
    clock.now += 10
    for i in range(10):
        fake_proxy.observe(ttft_s=0.3, duration_s=1.2, prompt_tokens=100, generated_tokens=40,
                           stream=True,
                           error_type="timeout" if i < 2 else None, status=500 if i < 2 else 200)
    point = live.tick()["point"]
    assert point["requests_per_second"] == pytest.approx(1.0)
    assert point["prompt_tokens_per_second"] == pytest.approx(100.0)
    assert point["generated_tokens_per_second"] == pytest.approx(40.0)
    assert point["error_rate"] == pytest.approx(0.2)
    # Latency over the eight streamed answers of the last minute (the two errors are apart).
    assert point["ttft_p50"] == point["ttft_p95"] == pytest.approx(0.3)
    assert point["duration_p50"] == point["duration_p95"] == pytest.approx(1.2)
    clock.now += 61  # past the rate window and the latency minute
    point = live.tick()["point"]
    assert point["requests_per_second"] == 0.0 and point["ttft_p95"] is None
    assert point["error_rate"] is None
    assert len(live.series()) == 3


def test_gauges_models_loaded_and_status(fake_proxy: FakeProxy, clock: Clock) -> None:
    fake_proxy.depth["high"] = 2
    fake_proxy.load("llama3.2:latest", size=4_000_000_000, vram=4_000_000_000)
    fake_proxy.load("qwen3:32b", size=20_000_000_000, vram=5_000_000_000)
    fake_proxy.gpu(80.0, used=6_000_000_000, total=8_000_000_000)
    fake_proxy.observe(ttft_s=0.2, duration_s=2.0, generated_tokens=50, tokens_per_second=25.0,
                       load_duration_s=3.0)
    fake_proxy.metrics.active.labels("llama3.2:latest").inc(3)
    snap = make(fake_proxy, clock).tick()
    point, gauges = snap["point"], snap["gauges"]
    assert point["queue_depth"] == 2 and point["active_requests"] == 3
    assert point["cpu_percent"] == 12.5 and point["memory_percent"] == pytest.approx(25.0)
    assert point["gpu_utilization_percent"] == 80.0
    assert point["gpu_memory_percent"] == pytest.approx(75.0)
    assert gauges["gpus"][0]["name"] == "NVIDIA Test"
    assert [(m["model"], m["placement"]) for m in snap["loaded"]] == [
        ("llama3.2:latest", "gpu"), ("qwen3:32b", "partial")]
    assert snap["loaded"][1]["vram_fraction"] == pytest.approx(0.25)
    [model] = snap["models"]
    assert model["model"] == "llama3.2:latest" and model["requests"] == 1
    assert model["tokens_per_second"] == 25.0 and model["loads"] == 1
    assert model["load_seconds"] == 3.0 and 0.1 < model["ttft_p95"] <= 0.25
    assert snap["status"]["ollama"] == {"up": True, "version": "0.12.6",
                                        "proxy_version": "9.9.9"}
    assert snap["status"]["proxy"]["reachable"] is True
    assert snap["requests"][0]["model"] == "llama3.2:latest"
    assert "prompt" not in snap["requests"][0]


def test_no_gpu_means_no_gpu_numbers(fake_proxy: FakeProxy, clock: Clock) -> None:
    snap = make(fake_proxy, clock).tick()
    assert snap["gauges"]["gpus"] == []
    assert snap["point"]["gpu_utilization_percent"] is None


def test_proxy_down_is_a_status_not_an_error(fake_proxy: FakeProxy, clock: Clock) -> None:
    fake_proxy.reachable = False
    snap = make(fake_proxy, clock).tick()
    refused = f"{PROXY}: connection refused"
    assert snap["status"]["proxy"] == {
        "url": PROXY, "reachable": False, "error": refused,
        "proxies": [{"url": PROXY, "reachable": False, "error": refused}]}
    assert snap["status"]["ollama"]["up"] is None
    assert snap["point"]["requests_per_second"] is None and snap["requests"] == []


@pytest.mark.parametrize(("answer", "status", "detail"), [
    (None, "unreachable", "not running at http://healthd.test:8080"),
    ((200, b'{"status": "ok"}'), "ok", None),
    ((503, json.dumps({"status": "degraded", "checks": {"ollama": {"status": "ok"},
                                                        "proxy": {"status": "failing"}}}
                      ).encode()), "degraded", "proxy: failing"),
    ((503, b"<html>"), "unknown", "answered HTTP 503 without a JSON object"),
])
def test_health_daemon_states(fake_proxy: FakeProxy, clock: Clock, answer: Any, status: str,
                              detail: str | None) -> None:
    fake_proxy.health = answer
    health = make(fake_proxy, clock).tick()["status"]["healthd"]
    assert health["status"] == status
    assert (detail is None and health["detail"] is None) or detail in health["detail"]


def test_no_health_daemon_configured(fake_proxy: FakeProxy, clock: Clock) -> None:
    health = make(fake_proxy, clock, healthd_url="").tick()["status"]["healthd"]
    assert health["status"] == "unknown" and "no health daemon" in health["detail"]
    assert not any(url.startswith(HEALTHD) for url in fake_proxy.urls)


def test_health_is_asked_every_few_seconds_not_every_tick(
    fake_proxy: FakeProxy, clock: Clock
) -> None:
    live = make(fake_proxy, clock)
    for _ in range(5):
        live.tick()
        clock.now += 1
    assert sum(url.startswith(HEALTHD) for url in fake_proxy.urls) == 1


def test_wait_next_wakes_on_a_new_snapshot(fake_proxy: FakeProxy, clock: Clock) -> None:
    live = make(fake_proxy, clock)
    live.tick()
    seq = live.seq
    assert live.wait_next(seq, timeout=0.01) == (seq, None)
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(live.wait_next(seq, timeout=10)))
    waiter.start()
    live.tick()
    waiter.join(timeout=10)
    assert got[0][0] == seq + 1 and got[0][1]["ts"] == clock.now


def test_the_poller_thread_ticks_and_stops(fake_proxy: FakeProxy, clock: Clock) -> None:
    live = make(fake_proxy, clock, push_interval_seconds=0.1)
    live.ensure_started()
    try:
        seq, snap = live.wait_next(0, timeout=10)
        assert snap is not None and seq >= 1
    finally:
        live.stop()


def test_a_proxy_without_traffic_reads_zero_not_unknown(
    fake_proxy: FakeProxy, clock: Clock
) -> None:
    live = make(fake_proxy, clock)
    live.tick()
    clock.now += 1
    point = live.tick()["point"]
    assert point["requests_per_second"] == 0.0 and point["active_requests"] == 0.0
    assert point["error_rate"] is None and point["ttft_p50"] is None  # no requests: no ratio


def test_unload_time_is_read_once_the_proxy_exports_it(fake_proxy: FakeProxy,
                                                       clock: Clock) -> None:
    """``model_expires_at_seconds`` is not in the catalogue yet; the dashboard is ready for it."""
    from prometheus_client.core import GaugeMetricFamily

    class Expiry:
        def collect(self) -> Any:
            family = GaugeMetricFamily("ollama_proxy_model_expires_at_seconds", "doc",
                                       labels=["model"])
            family.add_metric(["llama3.2:latest"], clock.now + 300)
            yield family

    fake_proxy.load("llama3.2:latest", size=10, vram=10)
    assert make(fake_proxy, clock).tick()["loaded"][0]["expires_at"] is None
    fake_proxy.registry.register(Expiry())
    assert make(fake_proxy, clock).tick()["loaded"][0]["expires_at"] == clock.now + 300
