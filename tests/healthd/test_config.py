"""Tests for healthd/config.py: defaults, every key's refusal, environment forms, thresholds."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from healthd import config
from healthd.config import HEALTHD_KEYS, Webhook
from llama_core import thresholds
from llama_core.settings import DEFAULT_CONFIG_FILE, ConfigError
from llama_core.thresholds import Threshold
from tests.healthd.conftest import write_config

# One bad value for every key; the test below fails when a key is added without one.
BAD_VALUES: dict[str, Any] = {
    "host": "bad host",
    "port": 99999,
    "interval_seconds": 0.5,
    "check_intervals": {"no_such_check": 10},
    "timeout_seconds": 0,
    "upstream": "ftp://ollama",
    "probe_model": "two words",
    "probe_timeout_seconds": "soon",
    "proxy_metrics_url": "localhost:8001",
    "proxy_url": "tcp://127.0.0.1:11435",
    "dashboard_url": "http://",
    "prometheus_url": "prometheus",
    "history_path": ["a", "list"],
    "degradation_window_seconds": 10,
    "baseline_seconds": -1,
    "degradation_min_requests": 0,
    "thresholds": {"cpu_percent": {"warn": 99, "critical": 90}},
    "disk_path": {"not": "a path"},
    "webhooks": [{"url": "http://hook", "format": "teams"}],
    "webhook_format": "xml",
    "webhook_timeout_seconds": 0,
    "webhook_retries": 11,
    "webhook_backoff_seconds": 61,
    "alert_after_checks": 0,
    "alert_min_severity": "ok",
    "repeat_interval_seconds": -5,
    "state_path": 42.5,
    "summary_model": "a model",
    "summary_timeout_seconds": 0,
    "summary_interval_seconds": 5,
    "summary_max_active_requests": -1,
}


def test_every_key_has_a_bad_value_and_a_settings_field() -> None:
    names = {k.name for k in HEALTHD_KEYS}
    assert set(BAD_VALUES) == names
    # plus ``security``: the shared section (llama_core.security), loaded beside this one
    assert {f.name for f in dataclasses.fields(config.Settings)} == names | {"security"}


@pytest.mark.parametrize("key", sorted(BAD_VALUES))
def test_bad_value_is_refused_naming_key_value_and_source(key: str, tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yml", {key: BAD_VALUES[key]})
    with pytest.raises(ConfigError) as caught:
        config.load(config=path, env={})
    message = str(caught.value)
    assert caught.value.key == f"healthd.{key}"
    assert f"healthd.{key}=" in message and f"(from {path})" in message
    assert "expected" in message


def test_defaults(make_settings: Any) -> None:
    s = make_settings()
    assert (s.host, s.port, s.interval_seconds) == ("127.0.0.1", 8080, 30.0)
    assert s.upstream == "http://127.0.0.1:11434"
    assert s.proxy_metrics_url == "http://127.0.0.1:8001"
    assert s.proxy_url == "http://127.0.0.1:11435"
    assert s.dashboard_url == "http://127.0.0.1:3001"
    assert s.prometheus_url == "" and s.probe_model == "" and s.summary_model == ""
    assert s.webhooks == () and s.alert_after_checks == 3
    assert s.thresholds == config.DEFAULT_THRESHOLDS == thresholds.HEALTHD_DEFAULTS
    assert s.interval("ollama") == 30.0


def test_environment_forms_and_ollama_host(tmp_path: Path) -> None:
    env = {
        "OLLAMA_HOST": "10.1.2.3",
        "LLAMA_METRICS_HEALTHD_CHECK_INTERVALS": "resources=0,dashboard=10",
        "LLAMA_METRICS_HEALTHD_THRESHOLDS": "cpu_percent.warn=80,ttft_ratio.critical=off",
        "LLAMA_METRICS_HEALTHD_WEBHOOKS": "http://a.example/hook, https://hooks.slack.com/x",
        "LLAMA_METRICS_HEALTHD_PORT": "9090",
    }
    s = config.load(config=write_config(tmp_path / "c.yml", {}), env=env)
    assert s.upstream == "http://10.1.2.3:11434"
    assert s.check_intervals == {"resources": 0.0, "dashboard": 10.0}
    assert s.interval("resources") == 0 and s.interval("dashboard") == 10
    assert s.thresholds["cpu_percent"] == Threshold(80.0, 98.0, unit="%")
    assert s.thresholds["ttft_ratio"] == Threshold(2.0, None, unit="x")
    assert s.webhooks == (Webhook("http://a.example/hook"), Webhook("https://hooks.slack.com/x"))
    assert s.port == 9090


def test_yaml_flow_in_environment(tmp_path: Path) -> None:
    env = {"LLAMA_METRICS_HEALTHD_WEBHOOKS": '[{url: "http://h/x", format: slack}]',
           "LLAMA_METRICS_HEALTHD_THRESHOLDS": "{disk_percent: {critical: 99}}"}
    s = config.load(config=write_config(tmp_path / "c.yml", {}), env=env)
    assert s.webhooks == (Webhook("http://h/x", "slack"),)
    assert s.thresholds["disk_percent"] == Threshold(85.0, 99.0, unit="%")


@pytest.mark.parametrize("var, value", [
    ("LLAMA_METRICS_HEALTHD_CHECK_INTERVALS", "resources"),
    ("LLAMA_METRICS_HEALTHD_CHECK_INTERVALS", "ollama=0.5"),
    ("LLAMA_METRICS_HEALTHD_THRESHOLDS", "cpu_percent.warn=101"),
    ("LLAMA_METRICS_HEALTHD_THRESHOLDS", "tokens_per_second_ratio.warn=0.1"),
    ("LLAMA_METRICS_HEALTHD_WEBHOOKS", "not a url"),
    ("LLAMA_METRICS_HEALTHD_DISK_PATH", "/no/such/directory"),
    ("LLAMA_METRICS_HEALTHD_NO_SUCH_KEY", "1"),
])
def test_bad_environment_values_name_the_variable(var: str, value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="environment"):
        config.load(config=write_config(tmp_path / "c.yml", {}), env={var: value})


def test_command_line_overrides_file(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yml", {"port": 8181, "host": "0.0.0.0"})
    s = config.load(config=path, env={}, overrides={"port": "0", "host": None})
    assert (s.host, s.port) == ("0.0.0.0", 0)
    with pytest.raises(ConfigError, match="from command line"):
        config.load(config=path, env={}, overrides={"port": "http"})


def test_unknown_key_in_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="healthd.intervals"):
        config.load(config=write_config(tmp_path / "c.yml", {"intervals": 3}), env={})


@pytest.mark.parametrize("threshold, value, expected", [
    (Threshold(80, 90), 79.9, None),
    (Threshold(80, 90), 80, "warn"),
    (Threshold(80, 90), 95, "critical"),
    (Threshold(None, 90), 85, None),
    (Threshold(0.5, 0.25, higher_is_worse=False), 0.6, None),
    (Threshold(0.5, 0.25, higher_is_worse=False), 0.4, "warn"),
    (Threshold(0.5, 0.25, higher_is_worse=False), 0.1, "critical"),
])
def test_threshold_levels(threshold: Threshold, value: float, expected: str | None) -> None:
    assert threshold.breached(value) == expected


def test_the_repository_configuration_loads() -> None:
    """config/llama-metrics.yml's healthd section (when it has one) uses only known keys."""
    assert isinstance(config.load(config=str(DEFAULT_CONFIG_FILE), env={}), config.Settings)


def test_thresholds_are_the_one_definition() -> None:
    """healthd judges with llama_core.thresholds' objects: the levels the dashboard shows for
    the same names, and that the alert rules quote (tests/llama_core/test_thresholds.py)."""
    assert set(config.DEFAULT_THRESHOLDS) == set(thresholds.HEALTHD_DEFAULTS)
    for name, threshold in config.DEFAULT_THRESHOLDS.items():
        assert threshold is thresholds.HEALTHD_DEFAULTS[name]
        if name in thresholds.LIVE:  # a number the dashboard also colours
            assert threshold is thresholds.LIVE[name]
    # Every default lies inside what a user may set it to, so the defaults parse.
    assert config.parse_thresholds({
        name: {"warn": t.warn, "critical": t.critical}
        for name, t in thresholds.HEALTHD_DEFAULTS.items()
    }) == thresholds.HEALTHD_DEFAULTS


def test_threshold_override_keeps_direction_and_unit() -> None:
    parsed = config.parse_thresholds({"tokens_per_second_ratio": {"warn": 0.6}})
    assert parsed["tokens_per_second_ratio"] == Threshold(
        0.6, 0.25, higher_is_worse=False, unit="x")
