"""Tests for dashboard.settings: every key's default, its refusal, OLLAMA_HOST, the CLI exit."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dashboard import create_app
from dashboard import settings as dashboard_settings
from dashboard.__main__ import main
from llama_core.settings import ConfigError

ROOT = Path(__file__).resolve().parents[2]

# One value each key must refuse, and one it must take (with what it becomes).
BAD = {
    "host": "a b",
    "port": "99999",
    "proxy_metrics_url": "ftp://proxy:8001",
    "history_path": "/",  # a directory
    "healthd_url": "localhost:8080",
    "prometheus_url": "http://",
    "ollama_url": "ftp://gpu:11434",
    "narrative_model": "llama 3",
    "narrative_timeout_seconds": "0",
    "narrative_max_active": "-1",
    "narrative_max_queue": "lots",
    "push_interval_seconds": "2",
    "rate_window_seconds": "1",
    "request_timeout_seconds": "0",
    "threads": "1",
}
GOOD = {
    "host": ("0.0.0.0", "0.0.0.0"),
    "port": ("0", 0),
    "proxy_metrics_url": ("http://10.0.0.2:8001/metrics", "http://10.0.0.2:8001"),
    "history_path": ("", ""),
    "healthd_url": ("", ""),
    "prometheus_url": ("http://prom:9090/", "http://prom:9090"),
    "ollama_url": ("gpu:11500", "http://gpu:11500"),
    "narrative_model": ("qwen3:4b", "qwen3:4b"),
    "narrative_timeout_seconds": ("30", 30.0),
    "narrative_max_active": ("0", 0),
    "narrative_max_queue": ("5", 5),
    "push_interval_seconds": ("0.5", 0.5),
    "rate_window_seconds": ("30", 30.0),
    "request_timeout_seconds": ("5", 5.0),
    "threads": ("8", 8),
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """main() reads os.environ: none of the caller's settings may leak in."""
    for name in list(os.environ):
        if name.startswith("LLAMA_METRICS_") or name == "OLLAMA_HOST":
            monkeypatch.delenv(name)


def load(env: dict[str, str] | None = None, argv: list[str] | None = None,
         tmp: Path | None = None, yaml: str | None = None) -> dict[str, Any]:
    args = list(argv or [])
    if yaml is not None and tmp is not None:
        (tmp / "c.yml").write_text(yaml)
        args += ["--config", str(tmp / "c.yml")]
    elif "--config" not in args:
        args += ["--config", str(ROOT / "config" / "llama-metrics.yml")]
    return dashboard_settings.load_settings(args, env=env or {})


def test_every_key_is_covered_here() -> None:
    names = {key.name for key in dashboard_settings.DASHBOARD_KEYS}
    assert names == set(BAD) == set(GOOD)


def test_defaults() -> None:
    s = load()
    assert s == dashboard_settings.defaults()
    assert (s["host"], s["port"]) == ("127.0.0.1", 3001)
    assert s["proxy_metrics_url"] == "http://127.0.0.1:8001"
    assert s["ollama_url"] == "http://127.0.0.1:11434"
    assert s["prometheus_url"] == "" and s["push_interval_seconds"] == 1.0


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_key_refuses_a_bad_value_naming_key_value_and_source(name: str) -> None:
    var = f"LLAMA_METRICS_DASHBOARD_{name.upper()}"
    with pytest.raises(ConfigError) as info:
        load(env={var: BAD[name]})
    message = str(info.value)
    assert f"dashboard.{name}={BAD[name]!r}" in message
    assert f"environment {var}" in message and "expected" in message


@pytest.mark.parametrize("name", sorted(GOOD))
def test_each_key_takes_a_good_value(name: str, tmp_path: Path) -> None:
    raw, parsed = GOOD[name]
    assert load(tmp=tmp_path, yaml=f"dashboard:\n  {name}: '{raw}'\n")[name] == parsed


def test_command_line_flags_win_over_file_and_environment(tmp_path: Path) -> None:
    s = load(
        env={"LLAMA_METRICS_DASHBOARD_PORT": "4000"},
        argv=["--host", "::1", "--port", "4001", "--proxy-metrics", "http://p:9",
              "--history", "h.db", "--healthd", "http://hd:1", "--prometheus", "http://pr:2"],
        tmp=tmp_path, yaml="dashboard:\n  port: 3999\n  history_path: other.db\n",
    )
    assert (s["host"], s["port"], s["history_path"]) == ("::1", 4001, "h.db")
    assert (s["proxy_metrics_url"], s["healthd_url"], s["prometheus_url"]) == (
        "http://p:9", "http://hd:1", "http://pr:2")


def test_ollama_host_is_honoured_like_ollama_does(tmp_path: Path) -> None:
    yaml = "dashboard:\n  ollama_url: http://file:1\n"
    assert load(env={"OLLAMA_HOST": "0.0.0.0:11500"}, tmp=tmp_path, yaml=yaml)[
        "ollama_url"] == "http://127.0.0.1:11500"
    own = {"OLLAMA_HOST": "gpu", "LLAMA_METRICS_DASHBOARD_OLLAMA_URL": "http://mine:2"}
    assert load(env=own, tmp=tmp_path, yaml=yaml)["ollama_url"] == "http://mine:2"
    with pytest.raises(ConfigError, match=r"dashboard.ollama_url='ftp://x' \(from OLLAMA_HOST\)"):
        load(env={"OLLAMA_HOST": "ftp://x"})


def test_unknown_keys_in_file_and_environment_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dashboard.colour"):
        load(tmp=tmp_path, yaml="dashboard:\n  colour: blue\n")
    with pytest.raises(ConfigError, match="LLAMA_METRICS_DASHBOARD_COLOUR"):
        load(env={"LLAMA_METRICS_DASHBOARD_COLOUR": "blue"})


def test_main_exits_2_with_the_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--port", "99999", "--config", str(ROOT / "config" / "llama-metrics.yml")]) == 2
    err = capsys.readouterr().err
    assert "dashboard.port='99999' (from command line)" in err
    assert "expected a port number 0-65535" in err


def test_python_m_dashboard_exits_2_on_a_bad_setting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dashboard", "--prometheus", "prometheus:9090"],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
        env={"PATH": "/usr/bin:/bin", "LLAMA_METRICS_CONFIG": str(ROOT / "config" /
                                                                   "llama-metrics.yml")},
    )
    assert result.returncode == 2, result.stderr
    assert "llama-metrics: bad setting dashboard.prometheus_url='prometheus:9090'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_port_in_use_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config_file = str(ROOT / "config" / "llama-metrics.yml")
        assert main(["--port", str(port), "--config", config_file]) == 1
    assert capsys.readouterr().err == (
        f"llama-metrics: dashboard cannot listen on 127.0.0.1:{port}: Address already in use\n")


def test_create_app_without_test_config_reads_file_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "c.yml").write_text("dashboard:\n  narrative_model: qwen3:4b\n")
    monkeypatch.setenv("LLAMA_METRICS_CONFIG", str(tmp_path / "c.yml"))
    monkeypatch.setenv("LLAMA_METRICS_DASHBOARD_HISTORY_PATH", "")
    settings = create_app().config["SETTINGS"]
    assert settings["narrative_model"] == "qwen3:4b" and settings["history_path"] == ""
    monkeypatch.setenv("LLAMA_METRICS_DASHBOARD_THREADS", "0")
    with pytest.raises(ConfigError, match="dashboard.threads"):
        create_app()
