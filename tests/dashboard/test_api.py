"""Tests for the JSON API and the page, through Flask's test client."""

from __future__ import annotations

import html as html_module
import json
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from dashboard import create_app
from llama_core import thresholds
from llama_core.record import RequestRecord
from tests.dashboard.conftest import Clock, FakeProxy
from tests.history_files import write_history


def rec(ts: float, **fields: Any) -> RequestRecord:
    return RequestRecord(**{"started_at": ts, "endpoint": "/api/chat", "model": "m:latest",
                            "status": 200, "duration_s": 1.0, **fields})


def test_snapshot_is_what_the_websocket_pushes(client: FlaskClient, fake_proxy: FakeProxy,
                                               app: Flask) -> None:
    fake_proxy.observe(generated_tokens=5)
    body = client.get("/api/snapshot").get_json()
    assert set(body) == {"ts", "status", "window_seconds", "point", "gauges", "models",
                         "loaded", "requests", "states", "latency", "sources"}
    assert body == app.extensions["llama_metrics"].live.snapshot()
    assert body["requests"][0]["generated_tokens"] == 5


def test_not_a_number_never_reaches_json(client: FlaskClient, fake_proxy: FakeProxy) -> None:
    fake_proxy.resources.last = type(fake_proxy.resources.last)(
        cpu_percent=float("nan"), memory_used_bytes=1, memory_total_bytes=2)
    response = client.get("/api/snapshot")
    assert b"NaN" not in response.data
    assert response.get_json()["point"]["cpu_percent"] is None


def test_history_counts_rows_into_buckets(client: FlaskClient, clock: Clock,
                                          settings: dict[str, Any]) -> None:
    clock.now = 1_790_006_400.0 + 7.0  # 7 s into a 15 s bucket of the 1h window
    last_start = clock.now - 7.0
    write_history(Path(settings["history_path"]), [
        rec(last_start - 15, generated_tokens=30, ttft_s=0.3, duration_s=1.2),
        rec(last_start - 14, generated_tokens=30, ttft_s=0.3, duration_s=1.2,
            error_type="timeout", status=500),
        rec(last_start + 1, generated_tokens=14),
        rec(clock.now - 7200, generated_tokens=99),  # outside the hour
    ])
    body = client.get("/api/history?window=1h").get_json()
    assert (body["window"], body["source"], body["step_seconds"]) == ("1h", "sqlite", 15)
    series = body["series"]
    assert len(series["ts"]) == 240 and series["ts"][-1] == last_start
    assert series["requests_per_second"][-2] == pytest.approx(2 / 15)
    assert series["generated_tokens_per_second"][-2] == pytest.approx(60 / 15)
    assert series["error_rate"][-2] == 0.5
    assert 0.25 < series["ttft_p50"][-2] <= 0.5 and 1.0 < series["duration_p95"][-2] <= 1.5
    assert series["active_requests"][-2] == pytest.approx(2.4 / 15)  # busy seconds / bucket
    # The open bucket is divided by the 7 s it has lasted, not by 15.
    assert series["generated_tokens_per_second"][-1] == pytest.approx(14 / 7)
    assert series["requests_per_second"][0] == 0.0 and series["ttft_p50"][0] is None
    # The file keeps machine samples, but none was taken: host empty, GPU absent.
    assert series["cpu_percent"] == [None] * 240 and body["unavailable"] == []
    assert "gpu_utilization_percent" not in series
    assert body["by_model"]["tokens_by_model"]["m:latest"][-2] == pytest.approx(60 / 15)
    [row] = body["models"]
    assert (row["model"], row["requests"], row["errors"], row["generated_tokens"]) == (
        "m:latest", 3, 1, 74)


def test_history_default_window_and_bad_parameters(client: FlaskClient,
                                                   settings: dict[str, Any]) -> None:
    write_history(Path(settings["history_path"]), [])
    assert client.get("/api/history").get_json()["window"] == "1h"
    bad = client.get("/api/history?window=2h")
    assert bad.status_code == 400
    assert bad.get_json() == {"error": "window must be one of 15m, 1h, 24h, 7d, 30d, not '2h'"}
    typo = client.get("/api/history?windw=1h")
    assert typo.status_code == 400 and "unknown parameter 'windw'" in typo.get_json()["error"]


def test_history_without_a_file_is_503_naming_it(client: FlaskClient,
                                                 settings: dict[str, Any]) -> None:
    response = client.get("/api/history?window=24h")
    assert response.status_code == 503
    assert settings["history_path"] in response.get_json()["error"]


def test_no_history_source_configured(fake_proxy: FakeProxy) -> None:
    app = create_app({"SETTINGS": {"history_path": "", "proxy_metrics_url": "http://p:1"},
                      "TRANSPORT": fake_proxy.send, "AUTOSTART": False})
    response = app.test_client().get("/api/history")
    assert response.status_code == 503 and "no history source" in response.get_json()["error"]


def test_models_live_and_over_a_window(client: FlaskClient, fake_proxy: FakeProxy,
                                       clock: Clock, settings: dict[str, Any]) -> None:
    fake_proxy.observe(model="live:latest", prompt_tokens=3)
    fake_proxy.load("live:latest", size=100, vram=50)
    live = client.get("/api/models").get_json()
    assert live["source"] == "proxy" and live["window"] is None
    assert [m["model"] for m in live["models"]] == ["live:latest"]
    assert live["loaded"][0]["placement"] == "partial"
    write_history(Path(settings["history_path"]), [rec(clock.now - 60, model="old:latest")])
    windowed = client.get("/api/models?window=15m").get_json()
    assert windowed["source"] == "sqlite"
    assert [m["model"] for m in windowed["models"]] == ["old:latest"]
    assert client.get("/api/models?window=1y").status_code == 400


def test_requests_from_the_proxy_then_the_history(client: FlaskClient, fake_proxy: FakeProxy,
                                                  clock: Clock, settings: dict[str, Any]
                                                  ) -> None:
    for i in range(3):
        fake_proxy.observe(model=f"m{i}")
    body = client.get("/api/requests?limit=2").get_json()
    assert body["source"] == "proxy" and [r["model"] for r in body["requests"]] == ["m2", "m1"]
    for limit in ("0", "501", "x", "-1"):
        assert client.get(f"/api/requests?limit={limit}").status_code == 400
    fake_proxy.reachable = False
    assert client.get("/api/requests").status_code == 503
    write_history(Path(settings["history_path"]),
                  [rec(clock.now - 5, model="h", prompt="secret", response="secret")])
    body = client.get("/api/requests").get_json()
    assert body["source"] == "history" and body["requests"][0]["model"] == "h"
    assert "prompt" not in body["requests"][0] and "secret" not in str(body)
    assert body["requests"][0]["started_at"] == clock.now - 5


def test_analysis_lists_findings_with_numbers(client: FlaskClient,
                                              fake_proxy: FakeProxy) -> None:
    fake_proxy.depth["normal"] = 4
    body = client.get("/api/analysis").get_json()
    assert "proxy" in body["basis"]  # no history file: the proxy's counters
    [finding] = body["findings"]
    assert finding["kind"] == "queueing" and finding["numbers"]["queue_depth"] == 4


def test_unknown_api_paths_and_methods_answer_json(client: FlaskClient) -> None:
    missing = client.get("/api/nothing/here")
    assert missing.status_code == 404 and "/api/nothing/here" in missing.get_json()["error"]
    wrong = client.post("/api/history")
    assert wrong.status_code == 405 and "error" in wrong.get_json()
    assert client.get("/api/narrative").status_code == 405
    assert client.get("/nothing").status_code == 404  # pages keep HTML errors


def test_page_uses_only_its_own_scripts_and_styles(client: FlaskClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'self'" in csp
    html = page.get_data(as_text=True)
    assert not re.search(r"https?://", html)  # offline: nothing from elsewhere
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    assert "/static/vendor/uplot/uPlot.iife.min.js" in assets
    for asset in assets:
        with client.get(asset) as response:  # a file response holds the file open
            assert response.status_code == 200, asset
    vendor = Path(__file__).resolve().parents[2] / "dashboard" / "static" / "vendor" / "uplot"
    assert "1.6.32" in (vendor / "VERSION").read_text()
    assert "MIT License" in (vendor / "LICENSE").read_text()


def test_page_judges_with_the_shared_thresholds(client: FlaskClient) -> None:
    """The page colours its tiles with llama_core.thresholds.LIVE, which healthd and the alert
    rules also quote."""
    html = client.get("/").get_data(as_text=True)
    found = re.search(r'data-thresholds="([^"]*)"', html)
    assert found is not None
    assert json.loads(html_module.unescape(found.group(1))) == thresholds.as_json()
    assert set(thresholds.as_json()) >= {"error_rate", "ttft_p95", "cpu_percent",
                                         "memory_percent", "gpu_memory_percent"}


def test_page_never_puts_data_into_html(client: FlaskClient) -> None:
    with client.get("/static/dashboard.js") as response:
        script = response.get_data(as_text=True)
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
    assert "document.write" not in script


def test_own_metrics_for_prometheus(client: FlaskClient, fake_proxy: FakeProxy,
                                    app: Flask) -> None:
    client.get("/api/snapshot")
    client.get("/api/history?window=1h")  # 503: no file yet; timed all the same
    client.get("/api/no/such/thing")
    fake_proxy.reachable = False
    app.extensions["llama_metrics"].live.tick()
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    assert "dashboard_proxy_up 0.0" in text
    assert "dashboard_live_ticks_total 2.0" in text
    assert "dashboard_proxy_scrape_failures_total 1.0" in text
    assert 'dashboard_api_request_seconds_count{endpoint="/api/history"} 1.0' in text
    assert 'dashboard_api_request_seconds_count{endpoint="other"} 1.0' in text
    assert "/api/no/such/thing" not in text
    assert 'dashboard_build_info{version="' in text


def test_health_answers_json_like_the_other_services(client: FlaskClient,
                                                     fake_proxy: FakeProxy) -> None:
    from llama_core import version

    fake_proxy.health = (200, b'{"status": "ok"}')
    body = client.get("/health").get_json()
    assert body["status"] == "ok" and body["version"] == version()
    assert body["sources"]["proxy"]["status"] == "ok"
    assert body["sources"]["healthd"]["status"] == "ok"


def test_health_names_an_unreachable_source(app: Flask, fake_proxy: FakeProxy,
                                            clock: Clock) -> None:
    fake_proxy.reachable = False
    response = app.test_client().get("/health")
    body = response.get_json()
    assert response.status_code == 200  # the dashboard serves: liveness is not the proxy's
    assert body["status"] == "degraded"
    assert body["sources"]["proxy"]["status"] == "unreachable"
    assert "connection refused" in body["sources"]["proxy"]["error"]
    assert body["sources"]["healthd"]["status"] == "unreachable"


def test_states_and_per_model_series(client: FlaskClient, fake_proxy: FakeProxy, app: Flask,
                                     clock: Clock) -> None:
    live = app.extensions["llama_metrics"].live
    live.tick()
    clock.now += 10
    for i in range(4):
        fake_proxy.observe(started_at=clock.now - 5, generated_tokens=10, stream=True,
                           ttft_s=0.2, duration_s=1.0, status=500 if i == 0 else 200,
                           error_type="upstream_status" if i == 0 else None)
    fake_proxy.observe(endpoint="/api/tags", model="none", started_at=clock.now - 1)
    snap = live.tick()
    assert snap["states"]["error_rate"] == "warn"  # 1 of 5 failed: 20 %, under 25 %
    assert snap["states"]["ttft_p95"] == "ok"
    assert snap["point"]["tokens_by_model"] == {"llama3.2:latest": pytest.approx(4.0)}
    assert snap["latency"]["counts"]["metadata"] == 1
    # Metadata calls name no model: no "none" row in the Models table.
    assert [m["model"] for m in snap["models"]] == ["llama3.2:latest"]
