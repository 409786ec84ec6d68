"""Paths of the stack files and the external tools the stack tests run (promtool, amtool)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
DEPLOY = ROOT / "deploy"
PROMETHEUS_YML = CONFIG / "prometheus.yml"
COMPOSE_PROMETHEUS_YML = DEPLOY / "compose" / "prometheus.yml"
ALERTS_YML = CONFIG / "alerts.yml"
ALERTS_TEST_YML = CONFIG / "alerts_test.yml"
ALERTMANAGER_YML = CONFIG / "alertmanager.yml"
DASHBOARD_JSON = CONFIG / "grafana" / "llama-metrics.json"

# Grafana's built-in variables stand for ranges and intervals in PromQL.
GRAFANA_BUILTINS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def tool(name: str, package: str) -> str:
    """The path of ``name``; skips the test when it is not installed."""
    path = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/local/bin")
    if path is None:
        pytest.skip(f"{name} not installed (Debian package {package}); .ci/run installs it")
    return path


def run(args: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run a checker; the test fails with its output when it exits non-zero."""
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, (
        f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS_YML)["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD_JSON.read_text())
    return data


def dashboard_panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of every panel."""
    return [(p["title"], t["expr"]) for p in dashboard_panels() for t in p["targets"]]


def grafana_promql(expr: str, variables: dict[str, str] | None = None) -> str:
    """The expression as Grafana sends it to Prometheus, its variables interpolated."""
    for name, value in {**GRAFANA_BUILTINS, **(variables or {})}.items():
        expr = expr.replace(name, value)
    return expr


def scrape_config(tmp: Path, proxy_ports: list[int], own_port: int) -> Path:
    """config/prometheus.yml on this test's ports, scraping every 1 s, beside alerts.yml.

    One proxy keeps the shipped target, moved to its metrics port; several get a target each
    with a ``proxy`` label, as the file's comment says to add them. The other targets point
    at closed ports, which must not stop Prometheus.
    """
    config = load_yaml(PROMETHEUS_YML)
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    for job in config["scrape_configs"]:
        if job["job_name"] == "llama-metrics-proxy" and len(proxy_ports) > 1:
            shipped = job["static_configs"]
            assert [s["labels"] for s in shipped] == [{"instance": "local"}], "config changed"
            job["static_configs"] = [
                {"targets": [f"127.0.0.1:{port}"], "labels": {"instance": "local", "proxy": str(i)}}
                for i, port in enumerate(proxy_ports, 1)]
            continue
        port = {"llama-metrics-proxy": proxy_ports[0], "prometheus": own_port}.get(
            job["job_name"]) or free_port()
        for static in job["static_configs"]:
            static["targets"] = [f"127.0.0.1:{port}"]
    for manager in config["alerting"]["alertmanagers"]:
        for static in manager["static_configs"]:
            static["targets"] = [f"127.0.0.1:{free_port()}"]
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    shutil.copy(ALERTS_YML, tmp / "alerts.yml")
    return path
