"""Tests for healthd/daemon.py: the scheduled service over HTTP, alerts out, state kept."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from healthd import config
from healthd.daemon import Daemon
from tests.healthd.conftest import StubServer, fetch, fetch_json


def services(stub: StubServer) -> None:
    stub.routes.update({
        "/api/version": (200, {"version": "0.12.6"}),
        "/api/ps": (200, {"models": []}),
        "/health": (200, {"status": "ok", "version": "0.1.0", "upstream_up": True}),
        "/metrics": (200, "ollama_proxy_active_requests{model=\"x\"} 0\n"),
        "/api/generate": (200, {"response": "Degraded: the dashboard is down.", "done": True}),
        "/hook": (200, "ok"),
    })


def settings(make_settings: Callable[..., config.Settings], stub: StubServer, closed_url: str,
             state: Path) -> config.Settings:
    return make_settings(
        port=0, upstream=stub.url, proxy_metrics_url=stub.url, proxy_url=stub.url,
        dashboard_url=closed_url, history_path="", check_intervals={"resources": 0},
        state_path=str(state), webhooks=[{"url": stub.url + "/hook", "format": "generic"}],
        alert_after_checks=1, summary_model="llama3.2")


def test_daemon_runs_checks_serves_them_and_alerts_once_across_a_restart(
    make_settings: Callable[..., config.Settings], stub: StubServer, closed_url: str,
    tmp_path: Path,
) -> None:
    services(stub)
    s = settings(make_settings, stub, closed_url, tmp_path / "alerts.json")

    daemon = Daemon(s)
    daemon.start()
    try:
        assert daemon.monitor.wait_ready(timeout=10)
        status, health = fetch_json(daemon.url + "/health")
        assert status == 200 and health["overall"] == "degraded"
        assert list(health["checks"]) == ["ollama", "proxy", "proxy_e2e", "dashboard"]
        assert fetch_json(daemon.url + "/health/ready")[0] == 200
        [hook] = stub.wait_for("/hook", 1)
        assert (hook.json()["check"], hook.json()["event"]) == ("dashboard", "firing")
        [generate] = stub.wait_for("/api/generate", 1)  # the AI summary job, straight to Ollama
        assert generate.json()["model"] == "llama3.2"
    finally:
        daemon.stop()

    again = Daemon(s)
    again.start()
    try:
        assert again.monitor.wait_ready(timeout=10)
        assert again.sender.wait_idle(timeout=10)
        status, alerts = fetch_json(again.url + "/alerts")
        assert [(a["check"], a["state"]) for a in alerts["active"]] == [("dashboard", "firing")]
        _, _, metrics = fetch(again.url + "/metrics")
        assert 'healthd_webhook_deliveries_total{result="ok"} 0.0' in metrics.decode()
        assert 'healthd_check_status{check="dashboard"} 1.0' in metrics.decode()
    finally:
        again.stop()
    assert len(stub.requests_to("/hook")) == 1  # not notified again after the restart
