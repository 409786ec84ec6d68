"""llama_core/exposition.py: instruments and families built from catalogue entries."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from llama_core import catalogue, exposition


def test_instruments_show_no_created_series() -> None:
    registry = CollectorRegistry()
    requests = exposition.counter(catalogue.REQUESTS, registry)
    ttft = exposition.histogram(catalogue.TTFT, registry)
    exposition.counter(catalogue.HISTORY_DROPPED, registry).inc()
    requests.labels("/api/chat", "m", "200", "alice").inc(2)
    ttft.labels("/api/chat", "m").observe(0.3)
    text = generate_latest(registry).decode()
    assert "_created" not in text
    assert registry.get_sample_value(catalogue.REQUESTS.name, {
        "endpoint": "/api/chat", "model": "m", "status": "200", "client": "alice"}) == 2
    assert registry.get_sample_value(catalogue.TTFT.bucket, {
        "endpoint": "/api/chat", "model": "m", "le": "0.5"}) == 1
    assert registry.get_sample_value(catalogue.HISTORY_DROPPED.name) == 1
    assert f"# HELP {catalogue.REQUESTS.name} {catalogue.REQUESTS.help}\n" in text


def test_a_name_registered_twice_is_refused() -> None:
    registry = CollectorRegistry()
    exposition.counter(catalogue.REQUESTS, registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        exposition.counter(catalogue.REQUESTS, registry)


def test_an_entry_of_another_type_is_refused() -> None:
    registry = CollectorRegistry()
    with pytest.raises(ValueError, match="ollama_proxy_queue_depth is a gauge, not a counter"):
        exposition.counter(catalogue.QUEUE_DEPTH, registry)
    with pytest.raises(ValueError, match="is a counter, not a histogram"):
        exposition.histogram_family(catalogue.REQUESTS)


def test_info_takes_exactly_its_labels() -> None:
    registry = CollectorRegistry()
    with pytest.raises(ValueError, match="takes labels"):
        exposition.info(catalogue.BUILD, registry, {"version": "1"})
    exposition.info(catalogue.BUILD, registry, {"version": "1", "python": "3", "mitmproxy": "12"})
    assert registry.get_sample_value(catalogue.BUILD.name, {
        "version": "1", "python": "3", "mitmproxy": "12"}) == 1


def test_families() -> None:
    up = exposition.gauge_family(catalogue.UPSTREAM_UP, 1)
    assert (up.name, up.documentation, [s.value for s in up.samples]) == (
        catalogue.UPSTREAM_UP.name, catalogue.UPSTREAM_UP.help, [1])
    depth = exposition.gauge_family(catalogue.QUEUE_DEPTH)
    depth.add_metric(["high"], 3)
    assert depth.samples[0].labels == {"priority": "high"}
    ticks = exposition.counter_family(catalogue.DASHBOARD_LIVE_TICKS, 4)
    assert [(s.name, s.value) for s in ticks.samples] == [(catalogue.DASHBOARD_LIVE_TICKS.name, 4)]
