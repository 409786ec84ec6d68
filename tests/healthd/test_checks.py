"""Tests for healthd/checks.py: which checks the settings turn on, and a check that raises."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from healthd import config
from healthd.checks import Check, build_checks, run_check
from healthd.results import Status

Make = Callable[..., config.Settings]


@pytest.mark.parametrize("values, names", [
    ({}, ["ollama", "proxy", "proxy_e2e", "dashboard", "resources", "performance"]),
    ({"probe_model": "llama3.2", "prometheus_url": "http://127.0.0.1:9090"},
     ["ollama", "ollama_generate", "proxy", "proxy_e2e", "dashboard", "prometheus",
      "resources", "performance"]),
    ({"proxy_metrics_url": "", "proxy_url": "", "dashboard_url": "", "history_path": "",
      "check_intervals": {"resources": 0}}, ["ollama"]),
    ({"check_intervals": {"ollama": 0, "dashboard": 0, "proxy_e2e": 0}},
     ["proxy", "resources", "performance"]),
])
def test_which_checks_run(make_settings: Make, values: dict[str, Any], names: list[str]) -> None:
    assert [c.name for c in build_checks(make_settings(**values))] == names


def test_intervals_per_check(make_settings: Make) -> None:
    s = make_settings(interval_seconds=20, check_intervals={"performance": 120})
    intervals = {c.name: c.interval_s for c in build_checks(s)}
    assert intervals["ollama"] == 20 and intervals["performance"] == 120


def test_a_check_that_raises_is_critical_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> Any:
        raise KeyError("models")

    with caplog.at_level(logging.ERROR, logger="healthd.checks"):
        result = run_check(Check("ollama", 30, broken), clock=lambda: 42.0)
    assert (result.name, result.status, result.checked_at) == ("ollama", Status.CRITICAL, 42.0)
    assert result.detail == "check failed: KeyError: 'models'"
    assert "check ollama failed unexpectedly" in caplog.text
