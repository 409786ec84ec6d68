"""Tests for healthd/webhooks.py: bodies at a real local receiver, retries with injected sleep."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from healthd.alerts import AlertManager, Notification
from healthd.checks import Check
from healthd.config import Webhook
from healthd.monitor import Monitor
from healthd.results import critical
from healthd.webhooks import WebhookSender, resolve_format
from tests.healthd.conftest import StubServer

T0 = 1_790_000_000.0
FIRING = Notification(
    event="firing", repeat=False, escalated=False, check="ollama", severity="critical",
    detail="could not reach http://127.0.0.1:11434/api/version: connection refused",
    started_at=T0, fired_at=T0 + 60, resolved_at=None, failures=3, at=T0 + 60)
RESOLVED = Notification(
    event="resolved", repeat=False, escalated=False, check="ollama", severity="critical",
    detail=FIRING.detail, started_at=T0, fired_at=T0 + 60, resolved_at=T0 + 330, failures=5,
    at=T0 + 330)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def sender(hooks: list[Webhook], **kwargs: Any) -> tuple[WebhookSender, Sleeps]:
    sleeps = Sleeps()
    return WebhookSender(hooks, host="gpu-box", sleep=sleeps, timeout=2.0, **kwargs), sleeps


def test_generic_json_body(stub: StubServer) -> None:
    stub.routes["/hook"] = (204, b"")
    s, _ = sender([Webhook(stub.url + "/hook", "generic")])
    assert s.deliver(FIRING) == {stub.url + "/hook": True}
    [seen] = stub.requests_to("/hook")
    assert seen.method == "POST" and seen.headers["Content-Type"] == "application/json"
    assert seen.json() == {
        "source": "llama-metrics-healthd", "host": "gpu-box", "event": "firing",
        "repeat": False, "escalated": False, "check": "ollama", "severity": "critical",
        "detail": FIRING.detail, "failures": 3, "started_at": T0, "fired_at": T0 + 60,
        "resolved_at": None, "at": T0 + 60,
        "text": "[FIRING] ollama is critical on gpu-box: could not reach "
                "http://127.0.0.1:11434/api/version: connection refused "
                "(failing since 2026-09-21 14:13:20 UTC, 3 checks)",
    }


def test_slack_body_is_text_only(stub: StubServer) -> None:
    stub.routes["/slack"] = (200, "ok")
    s, _ = sender([Webhook(stub.url + "/slack")])  # auto: a URL ending in /slack
    s.deliver(FIRING)
    s.deliver(RESOLVED)
    firing, resolved = (seen.json() for seen in stub.requests_to("/slack"))
    assert firing == {"text": ":red_circle: [FIRING] ollama is critical on gpu-box: could not "
                              "reach http://127.0.0.1:11434/api/version: connection refused "
                              "(failing since 2026-09-21 14:13:20 UTC, 3 checks)"}
    assert resolved == {"text": ":white_check_mark: [RESOLVED] ollama is ok again on gpu-box "
                                "after 5m 30s (was critical: could not reach "
                                "http://127.0.0.1:11434/api/version: connection refused)"}


@pytest.mark.parametrize("hook, default, expected", [
    (Webhook("https://hooks.slack.com/services/T/B/X"), "auto", "slack"),
    (Webhook("https://chat.example/hooks/abc/slack"), "auto", "slack"),
    (Webhook("https://alerts.example/in"), "auto", "generic"),
    (Webhook("https://alerts.example/in"), "slack", "slack"),
    (Webhook("https://hooks.slack.com/x", "generic"), "slack", "generic"),
])
def test_format_per_url_or_by_config(hook: Webhook, default: str, expected: str) -> None:
    assert resolve_format(hook, default) == expected


def test_retries_after_500_with_exponential_backoff(stub: StubServer) -> None:
    stub.routes["/hook"] = [(500, "oops"), (503, "busy"), (429, "slow down"), (200, "ok")]
    s, sleeps = sender([Webhook(stub.url + "/hook")], retries=3, backoff_s=1.5)
    assert s.deliver(FIRING) == {stub.url + "/hook": True}
    bodies = [seen.body for seen in stub.requests_to("/hook")]
    assert len(bodies) == 4 and len(set(bodies)) == 1
    assert sleeps == [1.5, 3.0, 6.0]
    assert (s.delivered, s.failed) == (1, 0)


def test_gives_up_after_the_retries_and_caps_the_backoff(closed_url: str) -> None:
    s, sleeps = sender([Webhook(closed_url + "/hook")], retries=4, backoff_s=1, max_backoff_s=3)
    assert s.deliver(FIRING) == {closed_url + "/hook": False}
    assert sleeps == [1, 2, 3, 3]
    assert (s.delivered, s.failed) == (0, 1)


def test_logs_do_not_show_the_secret_part_of_a_url(
    stub: StubServer, caplog: pytest.LogCaptureFixture
) -> None:
    stub.routes["/services/T0/B0/s3cret"] = [(500, "oops"), (200, "ok")]
    s, _ = sender([Webhook(stub.url + "/services/T0/B0/s3cret")], retries=1)
    with caplog.at_level(logging.INFO, logger="healthd.webhooks"):
        assert s.deliver(FIRING)
    assert f"to {stub.url}/... failed ({stub.url}/... answered 500)" in caplog.text
    assert "s3cret" not in caplog.text


def test_a_client_error_is_not_retried(stub: StubServer) -> None:
    stub.routes["/hook"] = (400, {"error": "bad payload"})
    s, sleeps = sender([Webhook(stub.url + "/hook")], retries=3)
    assert s.deliver(FIRING) == {stub.url + "/hook": False}
    assert len(stub.requests_to("/hook")) == 1 and sleeps == []


def test_every_url_gets_it_even_when_one_fails(stub: StubServer, closed_url: str) -> None:
    stub.routes["/hook"] = (200, "ok")
    s, _ = sender([Webhook(closed_url), Webhook(stub.url + "/hook")], retries=0)
    assert s.deliver(FIRING) == {closed_url: False, stub.url + "/hook": True}


def test_alerts_reach_the_webhook_from_the_background_thread_once(stub: StubServer) -> None:
    """Monitor -> state machine -> sender thread -> receiver; a still-failing check is quiet."""
    stub.routes["/hook"] = (200, "ok")
    s, _ = sender([Webhook(stub.url + "/hook", "generic")])
    down = Check("ollama", 30, lambda: critical("Ollama is down"))
    monitor = Monitor([down], alerts=AlertManager(after=2, repeat_s=0), sender=s)
    s.start()
    try:
        for _ in range(4):
            monitor.run("ollama")
        assert s.wait_idle(timeout=10)
    finally:
        s.close()
    [seen] = stub.requests_to("/hook")
    assert seen.json()["event"] == "firing" and seen.json()["failures"] == 2
