"""Tests for healthd/summary.py: the rule-based summary, and the AI one against the simulator."""

from __future__ import annotations

from typing import Any

import pytest

from healthd.results import CheckResult, Status
from healthd.summary import AiSummarizer, rule_summary
from llama_core import traffic
from tests.healthd.conftest import StubServer
from tests.support.sim import sim_fixture

REPORT = {"overall": "degraded", "checks": {
    "ollama": {"status": "ok", "detail": "Ollama 0.12.6", "duration_s": 0.01},
    "dashboard": {"status": "warn", "detail": "dashboard: connection refused"},
}}


def res(name: str, status: Status, detail: str = "fine") -> CheckResult:
    return CheckResult(name=name, status=status, detail=detail, duration_s=0, checked_at=0)


@pytest.mark.parametrize("results, text", [
    ([], "No checks have run yet."),
    ([res("a", Status.OK), res("b", Status.OK)], "Healthy: all 2 checks ok."),
    ([res("a", Status.OK), res("dash", Status.WARN, "down")],
     "Degraded: dash warn (down). 1 other check(s) ok."),
    ([res("z", Status.WARN, "slow"), res("ollama", Status.CRITICAL, "refused")],
     "Unhealthy: ollama critical (refused); z warn (slow)."),
])
def test_rule_summary(results: list[CheckResult], text: str) -> None:
    assert rule_summary(results) == text


sim = sim_fixture(tokens=12, seed=3)


def test_ai_summary_from_the_model_on_ollama(sim: Any, stub: StubServer) -> None:
    stub.routes["/metrics"] = (200, "ollama_proxy_active_requests{model=\"a\"} 0\n"
                                    "ollama_proxy_queue_depth{priority=\"high\"} 0\n")
    ai = AiSummarizer(sim.url, "llama3.2", timeout=10, proxy_metrics_url=stub.url,
                      clock=lambda: 123.0).summarize(REPORT)
    assert ai["model"] == "llama3.2" and ai["at"] == 123.0
    assert ai["text"] and "skipped" not in ai and "error" not in ai
    report = sim.reports[-1]
    assert (report["endpoint"], report["model"], report["stream"]) == (
        "/api/generate", "llama3.2", False)


def test_ai_summary_skipped_under_load(stub: StubServer, closed_url: str) -> None:
    stub.routes["/metrics"] = (200, "# TYPE ollama_proxy_active_requests gauge\n"
                                    "ollama_proxy_active_requests{model=\"a\"} 1\n"
                                    "ollama_proxy_active_requests{model=\"b\"} 1\n"
                                    "ollama_proxy_queue_depth{priority=\"low\"} 3\n")
    ai = AiSummarizer(closed_url, "llama3.2", proxy_metrics_url=stub.url, max_active=4)
    assert ai.summarize(REPORT)["skipped"] == (
        "proxy busy: 2 active and 3 queued request(s), limit 4")


def test_ai_summary_skipped_when_load_is_unknown(closed_url: str) -> None:
    ai = AiSummarizer(closed_url, "m", proxy_metrics_url=closed_url).summarize(REPORT)
    assert ai["skipped"].startswith("proxy load unknown (could not reach")


def test_ai_summary_is_time_limited(stub: StubServer) -> None:
    stub.hang.add("/api/generate")
    ai = AiSummarizer(stub.url, "m", timeout=0.2).summarize(REPORT)
    assert ai["error"] == f"{stub.url}/api/generate timed out after 0.2 s"
    [seen] = stub.requests_to("/api/generate")
    body = seen.json()
    assert body["stream"] is False and body["options"]["num_predict"] == 200
    assert "dashboard: connection refused" in body["prompt"]
    assert {k.lower(): v for k, v in seen.headers.items()}[traffic.HEADER.lower()] == "healthd"


def test_ai_summary_reports_a_missing_model(stub: StubServer) -> None:
    stub.routes["/api/generate"] = (404, {"error": "model 'm' not found"})
    ai = AiSummarizer(stub.url, "m").summarize(REPORT)
    assert ai["error"] == f"m on {stub.url} answered 404: model 'm' not found"
