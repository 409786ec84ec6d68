"""Tests for healthd/server.py and check_metrics.py: every endpoint over HTTP on a free port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from healthd.alerts import AlertManager
from healthd.check_metrics import make_registry
from healthd.checks import Check
from healthd.monitor import Monitor
from healthd.results import Outcome, Status, ok, warn
from healthd.server import HealthServer
from tests.healthd.conftest import fetch, fetch_json


class Switch:
    """A check whose outcome the test sets."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome

    def __call__(self) -> Outcome:
        return self.outcome


@pytest.fixture
def served() -> Iterator[tuple[Monitor, str, Switch]]:
    proxy = Switch(ok("proxy fine"))
    checks = [Check("ollama", 30, lambda: ok("Ollama 0.12.6", version="0.12.6")),
              Check("proxy", 30, proxy),
              Check("dashboard", 60, lambda: warn("dashboard: connection refused"))]
    monitor = Monitor(checks, alerts=AlertManager(after=1))
    server = HealthServer("127.0.0.1", 0, monitor, make_registry(monitor))
    server.start()
    yield monitor, server.url, proxy
    server.stop()


def samples(url: str) -> dict[tuple[str, tuple], float]:
    status, content_type, body = fetch(url + "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(body.decode()) for s in f.samples}


def test_before_the_first_round(served: tuple[Monitor, str, Switch]) -> None:
    monitor, url, _ = served
    assert fetch_json(url + "/health/live")[0] == 200
    status, health = fetch_json(url + "/health")
    assert status == 503 and health["overall"] == "unknown" and health["ready"] is False
    assert health["pending_checks"] == ["ollama", "proxy", "dashboard"]
    assert fetch_json(url + "/health/ready") == (503, {
        "ready": False, "overall": "unknown", "reason": "waiting for the first round of checks"})
    assert samples(url)[("healthd_ready", ())] == 0


def test_degraded_report(served: tuple[Monitor, str, Switch]) -> None:
    monitor, url, _ = served
    monitor.run_all()
    status, health = fetch_json(url + "/health")
    assert status == 200
    assert set(health) == {"overall", "status", "ready", "checked_at", "checks",
                           "pending_checks", "summary", "alerts"}
    assert health["overall"] == health["status"] == "degraded" and health["ready"] is True
    assert list(health["checks"]) == ["ollama", "proxy", "dashboard"]
    ollama = health["checks"]["ollama"]
    assert set(ollama) == {"status", "detail", "duration_s", "checked_at", "data"}
    assert (ollama["status"], ollama["detail"], ollama["data"]) == (
        "ok", "Ollama 0.12.6", {"version": "0.12.6"})
    assert health["summary"] == {
        "text": "Degraded: dashboard warn (dashboard: connection refused). "
                "2 other check(s) ok.",
        "counts": {"ok": 2, "warn": 1, "critical": 0}, "ai": None}
    assert health["alerts"] == {"pending": 0, "firing": 1}
    assert fetch_json(url + "/health/ready") == (200, {"ready": True, "overall": "degraded"})

    metrics = samples(url)
    assert metrics[("healthd_check_status", (("check", "ollama"),))] == 0
    assert metrics[("healthd_check_status", (("check", "dashboard"),))] == 1
    assert metrics[("healthd_overall_status", ())] == 1
    assert metrics[("healthd_ready", ())] == 1
    assert metrics[("healthd_alerts", (("state", "firing"),))] == 1
    assert ("healthd_check_duration_seconds", (("check", "proxy"),)) in metrics
    assert ("healthd_check_last_run_timestamp_seconds", (("check", "proxy"),)) in metrics


def test_unhealthy_is_503_and_not_ready(served: tuple[Monitor, str, Switch]) -> None:
    monitor, url, proxy = served
    proxy.outcome = Outcome(Status.CRITICAL, "could not reach the proxy")
    monitor.run_all()
    status, health = fetch_json(url + "/health")
    assert status == 503 and health["overall"] == "unhealthy"
    assert health["checks"]["proxy"]["status"] == "critical"
    assert fetch_json(url + "/health/ready")[1]["reason"] == "unhealthy"
    assert samples(url)[("healthd_overall_status", ())] == 2


def test_alerts_endpoint(served: tuple[Monitor, str, Switch]) -> None:
    monitor, url, proxy = served
    proxy.outcome = Outcome(Status.CRITICAL, "down")
    monitor.run("proxy")
    proxy.outcome = ok("up")
    monitor.run("proxy")
    monitor.run("dashboard")
    status, alerts = fetch_json(url + "/alerts")
    assert status == 200
    assert [(a["check"], a["state"]) for a in alerts["active"]] == [("dashboard", "firing")]
    assert [(e["check"], e["event"]) for e in alerts["recent"]] == [
        ("dashboard", "firing"), ("dashboard", "pending"), ("proxy", "resolved"),
        ("proxy", "firing"), ("proxy", "pending")]
    assert len(fetch_json(url + "/alerts?limit=2")[1]["recent"]) == 2


@pytest.mark.parametrize("path, status, error", [
    ("/alerts?limit=0", 400, "limit must be an integer 1-200, not '0'"),
    ("/alerts?limit=many", 400, "limit must be an integer 1-200, not 'many'"),
    ("/nope", 404, "not found: /nope; try /health, /health/live, /health/ready, /metrics, "
                   "/alerts"),
])
def test_api_errors_are_json(served: tuple[Monitor, str, Switch], path: str, status: int,
                             error: str) -> None:
    assert fetch_json(served[1] + path) == (status, {"error": error})


def test_other_methods_are_refused_and_head_has_no_body(
    served: tuple[Monitor, str, Switch]
) -> None:
    url = served[1]
    assert fetch_json(url + "/health", "POST") == (
        405, {"error": "method POST not allowed; use GET"})
    status, content_type, body = fetch(url + "/health/live", "HEAD")
    assert (status, content_type, body) == (200, "application/json", b"")
