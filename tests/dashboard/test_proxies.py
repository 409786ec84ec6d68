"""Several proxies shown as one: the live view and /api/requests over two fake proxies."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import pytest
from flask import Flask

from dashboard import create_app, proxies
from dashboard import settings as dashboard_settings
from dashboard.http_client import Client, Request, Response
from dashboard.live import LiveState
from tests.dashboard.conftest import HEALTHD, PROXY, T0, Clock, FakeProxy

A, B = "http://proxy-a.test:8001", "http://proxy-b.test:8002"


class TwoProxies:
    """Two ``FakeProxy`` metrics ports behind one ``Transport``, told apart by address."""

    def __init__(self) -> None:
        self.fakes = {A: FakeProxy(), B: FakeProxy()}

    def send(self, request: Request) -> Response:
        for base, fake in self.fakes.items():
            if request.url.startswith(base):
                return fake.send(dataclasses.replace(request, url=PROXY + request.url[len(base):]))
        raise ConnectionRefusedError(111, "Connection refused")


def make(two: TwoProxies, clock: Clock) -> LiveState:
    settings = {**dashboard_settings.defaults(), "proxy_metrics_url": f"{A},{B}",
                "healthd_url": HEALTHD, "rate_window_seconds": 10.0}
    return LiveState(settings, client=Client(two.send), clock=clock)


def traffic(fake: FakeProxy, n: int, start: float = T0) -> None:
    for i in range(n):
        fake.observe(started_at=start + i, ttft_s=0.3, duration_s=1.0, prompt_tokens=10,
                     generated_tokens=7, stream=True)


def test_counters_histograms_and_traffic_gauges_are_summed_machine_gauges_are_not(
    clock: Clock,
) -> None:
    two = TwoProxies()
    a, b = two.fakes[A], two.fakes[B]
    live = make(two, clock)
    live.tick()
    clock.now += 10
    traffic(a, 3)
    traffic(b, 2, start=T0 + 0.5)
    a.metrics.active.labels("llama3.2:latest").inc(1)
    b.metrics.active.labels("llama3.2:latest").inc(2)
    a.depth["high"], b.depth["high"] = 1, 2
    snap = live.tick()
    point = snap["point"]
    assert point["requests_per_second"] == pytest.approx(0.5)  # 5 requests in 10 s
    assert point["generated_tokens_per_second"] == pytest.approx(3.5)
    assert point["ttft_p50"] == pytest.approx(0.3)  # both proxies' requests, all five
    assert point["active_requests"] == 3 and point["queue_depth"] == 3
    # Both proxies see the same machine: 12.5 % and 4 of 16 GB, not twice that.
    assert point["cpu_percent"] == 12.5 and point["memory_percent"] == pytest.approx(25.0)
    [model] = snap["models"]
    assert (model["requests"], model["prompt_tokens"], model["generated_tokens"]) == (5, 50, 35)
    assert snap["status"]["ollama"]["up"] is True
    assert snap["status"]["proxy"]["reachable"] is True and live.proxy_up is True
    assert [p["reachable"] for p in snap["status"]["proxy"]["proxies"]] == [True, True]
    # The feed is both proxies' requests, newest started first.
    assert [r["started_at"] for r in snap["requests"]] == [
        T0 + 2, T0 + 1.5, T0 + 1, T0 + 0.5, T0]


def test_a_proxy_that_drops_out_is_named_and_rates_start_again(clock: Clock) -> None:
    two = TwoProxies()
    a, b = two.fakes[A], two.fakes[B]
    traffic(b, 50)  # b's counters are far ahead: losing them must not read as a reset spike
    live = make(two, clock)
    live.tick()
    clock.now += 10
    traffic(a, 4)
    b.reachable = False
    snap = live.tick()
    assert snap["status"]["proxy"]["reachable"] is True  # a's numbers still show
    assert snap["status"]["proxy"]["error"] == f"{B}: connection refused"
    assert [p["reachable"] for p in snap["status"]["proxy"]["proxies"]] == [True, False]
    assert live.proxy_up is False and live.scrape_failures == 1
    assert snap["point"]["requests_per_second"] is None  # a new set of proxies: no rate yet
    assert snap["models"][0]["requests"] == 4
    clock.now += 10
    traffic(a, 2)
    assert live.tick()["point"]["requests_per_second"] == pytest.approx(0.2)
    b.reachable = True
    clock.now += 10
    snap = live.tick()
    assert snap["point"]["requests_per_second"] is None
    assert snap["models"][0]["requests"] == 56


def test_merge_rules_without_type_lines() -> None:
    def scrape(url: str, **values: float) -> proxies.Scrape:
        return proxies.Scrape(url, {(f"ollama_proxy_{k}", ()): v for k, v in values.items()})

    merged = proxies.merge([
        scrape(A, requests_total=2, requests_created=200, upstream_up=1, queue_depth=1),
        scrape(B, requests_total=3, requests_created=100, upstream_up=0, queue_depth=4),
        proxies.Scrape("http://down.test", error="refused"),
    ])
    assert merged == {
        ("ollama_proxy_requests_total", ()): 5, ("ollama_proxy_requests_created", ()): 100,
        ("ollama_proxy_upstream_up", ()): 1, ("ollama_proxy_queue_depth", ()): 5}
    assert proxies.merge([proxies.Scrape(A, error="refused")]) is None


@pytest.mark.parametrize("value, expected", [
    ("http://a:8001/metrics", "http://a:8001"),
    ("http://a:8001, http://b:8002/metrics", "http://a:8001,http://b:8002"),
    (["http://a:8001", "http://b:8002"], "http://a:8001,http://b:8002"),
])
def test_several_metrics_addresses_are_one_setting(value: Any, expected: str) -> None:
    assert dashboard_settings.parse_metrics_url(value) == expected


@pytest.mark.parametrize("value", ["", "http://a:8001,", "http://a:8001,http://a:8001/metrics",
                                   ["http://a:8001", "ftp://b:8002"], []])
def test_bad_or_repeated_addresses_are_refused(value: Any) -> None:
    with pytest.raises(ValueError):
        dashboard_settings.parse_metrics_url(value)


def test_the_flag_is_repeatable_and_a_bad_one_is_named() -> None:
    flags = ["--proxy-metrics", A, "--proxy-metrics", B]
    settings = dashboard_settings.load_settings(flags, env={})
    assert proxies.split_urls(settings["proxy_metrics_url"]) == [A, B]
    with pytest.raises(dashboard_settings.ConfigError, match="dashboard.proxy_metrics_url"):
        dashboard_settings.load_settings(["--proxy-metrics", A, "--proxy-metrics", A], env={})


@pytest.fixture
def two_app(clock: Clock, tmp_path: Any) -> tuple[Flask, TwoProxies]:
    two = TwoProxies()
    app = create_app({"TESTING": True, "TRANSPORT": two.send, "CLOCK": clock, "AUTOSTART": False,
                      "SETTINGS": {"proxy_metrics_url": f"{A},{B}", "healthd_url": HEALTHD,
                                   "history_path": str(tmp_path / "none.db")}})
    return app, two


def test_recent_requests_of_both_proxies_newest_first(two_app: tuple[Flask, TwoProxies]) -> None:
    app, two = two_app
    traffic(two.fakes[A], 2)
    traffic(two.fakes[B], 2, start=T0 + 0.5)
    two.fakes[B].reachable = False
    body = app.test_client().get("/api/requests?limit=10").get_json()
    assert [r["started_at"] for r in body["requests"]] == [T0 + 1, T0]
    two.fakes[B].reachable = True
    body = app.test_client().get("/api/requests?limit=3").get_json()
    assert body["source"] == "proxy"
    assert [r["started_at"] for r in body["requests"]] == [T0 + 1.5, T0 + 1, T0 + 0.5]


def test_recent_requests_ask_every_proxy_at_once() -> None:
    """A proxy that does not answer costs one timeout, not one per proxy: the request to A
    is answered only once B has been asked too, which asking one after the other never does."""
    asked_b = threading.Event()

    def send(request: Request) -> Response:
        if request.url.startswith(B):
            asked_b.set()
            return Response(request.url, 200, b"[]")
        if not asked_b.wait(request.timeout):
            raise TimeoutError("timed out")
        return Response(request.url, 200, b'[{"model": "m", "finished_at": 1.0}]')

    answers = proxies.recent_requests_of_all(Client(send), [A, B], 5, timeout=10)
    assert answers == [[{"model": "m", "finished_at": 1.0}], []]
