"""Tests for healthd/monitor.py: when a check last came back, for the performance check."""

from __future__ import annotations

from healthd.checks import Check
from healthd.monitor import Monitor
from healthd.results import CheckResult, Status, ok


def result(status: Status, at: float) -> CheckResult:
    return CheckResult(name="ollama", status=status, detail="", duration_s=0.0, checked_at=at)


def test_recovered_at_is_when_a_failed_check_turned_ok_again() -> None:
    monitor = Monitor([Check("ollama", 1.0, lambda: ok("up"))])
    monitor.record(result(Status.OK, 10.0))
    assert monitor.recovered_at("ollama") is None  # ok from the start: never came back
    monitor.record(result(Status.CRITICAL, 20.0))
    monitor.record(result(Status.CRITICAL, 21.0))
    assert monitor.recovered_at("ollama") is None
    monitor.record(result(Status.OK, 22.0))
    monitor.record(result(Status.OK, 23.0))
    assert monitor.recovered_at("ollama") == 22.0
    monitor.record(result(Status.WARN, 30.0))
    monitor.record(result(Status.OK, 31.0))
    assert monitor.recovered_at("ollama") == 31.0
    assert monitor.recovered_at("proxy") is None
