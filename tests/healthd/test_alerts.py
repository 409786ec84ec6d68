"""Tests for healthd/alerts.py and alert_store.py: the state machine on an injected clock."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest

from healthd.alert_store import AlertStore
from healthd.alerts import AlertManager, Notification
from healthd.results import CheckResult, Status


class Clock:
    def __init__(self, now: float = 1_790_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def result(status: Status, name: str = "ollama", detail: str = "") -> CheckResult:
    return CheckResult(name=name, status=status, detail=detail or f"{name} {status.label}",
                       duration_s=0.01, checked_at=0.0)


FAIL, PASS, WARN = result(Status.CRITICAL), result(Status.OK), result(Status.WARN)


def events(notes: list[Notification]) -> list[tuple[str, bool]]:
    return [(n.event, n.repeat) for n in notes]


def test_pending_then_firing_after_n_consecutive_failures() -> None:
    clock = Clock()
    alerts = AlertManager(after=3, clock=clock)
    assert alerts.observe(FAIL) == []
    assert alerts.active()[0]["state"] == "pending"
    clock.now += 30
    assert alerts.observe(FAIL) == []
    clock.now += 30
    [note] = alerts.observe(FAIL)
    assert (note.event, note.check, note.severity, note.failures) == ("firing", "ollama",
                                                                      "critical", 3)
    assert note.started_at == clock.now - 60 and note.fired_at == clock.now
    assert alerts.counts() == {"pending": 0, "firing": 1}


def test_a_pass_while_pending_clears_without_notification() -> None:
    alerts = AlertManager(after=2, clock=Clock())
    assert alerts.observe(FAIL) == [] and alerts.observe(PASS) == []
    assert alerts.active() == []
    assert [e["event"] for e in alerts.recent()] == ["cleared", "pending"]
    assert alerts.observe(FAIL) == []  # the count starts again
    assert events(alerts.observe(FAIL)) == [("firing", False)]


def test_one_notification_per_transition_and_repeats_on_the_interval() -> None:
    clock = Clock()
    alerts = AlertManager(after=1, repeat_s=3600, clock=clock)
    assert events(alerts.observe(FAIL)) == [("firing", False)]
    for _ in range(5):  # still failing within the repeat interval: deduplicated
        clock.now += 600
        assert alerts.observe(FAIL) == []
    clock.now += 600  # 3600 s since the firing notification
    assert events(alerts.observe(FAIL)) == [("firing", True)]
    clock.now += 60
    assert alerts.observe(FAIL) == []
    [resolved] = alerts.observe(PASS)
    assert (resolved.event, resolved.resolved_at, resolved.started_at) == (
        "resolved", clock.now, clock.now - 3660)
    assert alerts.observe(PASS) == [] and alerts.active() == []
    assert [e["event"] for e in alerts.recent()] == ["resolved", "repeat", "firing", "pending"]


def test_no_repeat_when_interval_is_zero() -> None:
    clock = Clock()
    alerts = AlertManager(after=1, repeat_s=0, clock=clock)
    alerts.observe(FAIL)
    clock.now += 10 * 86400
    assert alerts.observe(FAIL) == []


def test_escalation_from_warn_to_critical_notifies_once() -> None:
    alerts = AlertManager(after=1, clock=Clock())
    assert [n.severity for n in alerts.observe(WARN)] == ["warn"]
    [note] = alerts.observe(FAIL)
    assert (note.event, note.escalated, note.severity) == ("firing", True, "critical")
    assert alerts.observe(FAIL) == [] and alerts.observe(WARN) == []


def test_minimum_severity_critical_ignores_warnings() -> None:
    alerts = AlertManager(after=1, min_severity=Status.CRITICAL, clock=Clock())
    assert alerts.observe(WARN) == [] and alerts.active() == []
    assert events(alerts.observe(FAIL)) == [("firing", False)]
    assert events(alerts.observe(WARN)) == [("resolved", False)]


def test_checks_are_independent() -> None:
    alerts = AlertManager(after=2, clock=Clock())
    alerts.observe(result(Status.WARN, "dashboard"))
    alerts.observe(FAIL)
    assert [n.check for n in alerts.observe(FAIL)] == ["ollama"]
    assert [(a["check"], a["state"]) for a in alerts.active()] == [
        ("ollama", "firing"), ("dashboard", "pending")]


def test_alert_history_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / "alerts.json"
    clock = Clock()
    first = AlertManager(after=1, repeat_s=3600, store=AlertStore(path), clock=clock)
    assert events(first.observe(FAIL)) == [("firing", False)]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind

    clock.now += 60
    second = AlertManager(after=1, repeat_s=3600, store=AlertStore(path), clock=clock)
    assert [(a["check"], a["state"]) for a in second.active()] == [("ollama", "firing")]
    assert second.observe(FAIL) == []  # already notified before the restart
    clock.now += 3600
    assert events(second.observe(FAIL)) == [("firing", True)]
    assert events(second.observe(PASS)) == [("resolved", False)]
    saved = json.loads(path.read_text())
    assert saved["version"] == 1 and saved["alerts"]["ollama"]["state"] == "resolved"
    assert [e["event"] for e in saved["history"]] == ["pending", "firing", "repeat", "resolved"]


def test_restart_forgets_alerts_of_checks_no_longer_configured(tmp_path: Path) -> None:
    path = tmp_path / "alerts.json"
    AlertManager(after=1, store=AlertStore(path), clock=Clock()).observe(FAIL)
    again = AlertManager(after=1, store=AlertStore(path), checks=["proxy"], clock=Clock())
    assert again.active() == []


@pytest.mark.parametrize("content", ["{not json", '["a list"]', '{"version": 99}'])
def test_unreadable_state_starts_empty_and_is_replaced(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "alerts.json"
    path.write_text(content)
    with caplog.at_level(logging.WARNING, logger="healthd.alert_store"):
        alerts = AlertManager(after=1, store=AlertStore(path), clock=Clock())
    assert alerts.active() == [] and "starting empty" in caplog.text
    alerts.observe(FAIL)
    assert json.loads(path.read_text())["alerts"]["ollama"]["state"] == "firing"


def test_unwritable_state_is_logged_once_and_alerts_still_work(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = AlertStore(blocker / "alerts.json")  # a directory that is a file
    alerts = AlertManager(after=1, store=store, clock=Clock())
    with caplog.at_level(logging.ERROR, logger="healthd.alert_store"):
        assert events(alerts.observe(FAIL)) == [("firing", False)]
        alerts.observe(PASS)
    assert caplog.text.count("cannot write alert state") == 1
