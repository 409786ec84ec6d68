"""Dependencies go down and come back; the dashboard and the health daemon ride it out.

Everything is a real process on its own port: the simulator (in-process, restarted on its
port), mitmdump, Debian's Prometheus (scraping the proxy), ``python -m healthd`` and
``python -m dashboard`` (reading history from Prometheus). The proxy, Ollama and Prometheus
are stopped in turn: both services keep answering, JSON that shows the outage, and show the
dependency up again once it is back, without being restarted themselves.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml

from ollama_sim import SimServer
from tests.reliability.stack import start_proxy
from tests.support.ports import free_port, free_ports
from tests.support.processes import (
    DASHBOARD_READY,
    HEALTHD_READY,
    Service,
    dashboard_args,
    terminate,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("prometheus") is None,
                       reason="needs Debian's prometheus (apt-get install prometheus)"),
]


class Stack:
    """The processes of one test, each restartable on the port it had."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.sim_port, self.port, self.metrics_port, self.prometheus_port = free_ports(4)
        self.sim: Any = None
        self._proxy: Any = None
        self.prometheus: subprocess.Popen[bytes] | None = None
        self.config = tmp / "llama-metrics.yml"
        self.config.write_text(yaml.safe_dump({
            "proxy": {"inventory_interval_seconds": 0.2, "history_path": ""},
            "dashboard": {"push_interval_seconds": 0.2, "request_timeout_seconds": 2,
                          "narrative_model": ""},
            "healthd": {
                "interval_seconds": 1, "timeout_seconds": 2,
                "upstream": self.sim_url, "proxy_url": f"http://127.0.0.1:{self.port}",
                "proxy_metrics_url": f"http://127.0.0.1:{self.metrics_port}",
                "prometheus_url": self.prometheus_url, "dashboard_url": "",
                "history_path": "", "state_path": "", "alert_after_checks": 1,
                "check_intervals": {"resources": 0},
            },
        }))
        prometheus_yml = tmp / "prometheus.yml"
        prometheus_yml.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "llama-metrics-proxy", "static_configs": [
                {"targets": [f"127.0.0.1:{self.metrics_port}"]}]}],
        }))
        self.prometheus_args = [
            str(shutil.which("prometheus")), f"--config.file={prometheus_yml}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.prometheus_port}", "--log.level=warn"]

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    def start_sim(self) -> None:
        self.sim = SimServer(port=self.sim_port, tokens=8, seed=3)
        self.sim.start()

    def stop_sim(self) -> None:
        if self.sim is not None:
            self.sim.stop()
            self.sim = None

    def start_proxy(self) -> None:
        running = start_proxy(self.sim_url, f"llama_config={self.config}", port=self.port,
                              metrics_port=self.metrics_port)
        running.__enter__()
        self._proxy = running

    def stop_proxy(self) -> None:
        if self._proxy is not None:
            running, self._proxy = self._proxy, None
            running.__exit__(None, None, None)

    def start_prometheus(self) -> None:
        log = (self.tmp / "prometheus.log").open("ab")
        with log:
            self.prometheus = subprocess.Popen(self.prometheus_args, stdout=log,
                                               stderr=subprocess.STDOUT)

    def stop_prometheus(self) -> None:
        if self.prometheus is not None:
            terminate(self.prometheus, timeout=15)
            self.prometheus = None


def check(health: dict[str, Any], name: str) -> str:
    return str(health["checks"].get(name, {}).get("status"))


def healthd_sees(healthd: Service, condition: Callable[[dict[str, Any]], bool]) -> dict:
    """/health until ``condition(report)``: 200 while healthy or degraded, 503 unhealthy."""
    return healthd.poll("/health", lambda status, body: status in (200, 503)
                        and isinstance(body, dict) and condition(body))


def snapshot_shows(dashboard: Service, condition: Callable[[dict[str, Any]], bool]) -> dict:
    body = dashboard.poll("/api/snapshot", lambda status, body: status == 200
                          and condition(body["status"]))
    return dict(body["status"])


def test_dashboard_and_healthd_show_each_outage_and_recover_alone(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    with ExitStack() as cleanup:
        stack.start_sim()
        cleanup.callback(stack.stop_sim)
        stack.start_prometheus()
        cleanup.callback(stack.stop_prometheus)
        # Each starts while the others do (a few seconds each on a busy machine).
        healthd_port = free_port()
        healthd = Service(["healthd", "--config", str(stack.config), "--port",
                           str(healthd_port)], HEALTHD_READY)
        cleanup.callback(healthd.stop)
        dashboard = Service(dashboard_args(
            "--config", str(stack.config), "--proxy-metrics",
            f"http://127.0.0.1:{stack.metrics_port}", "--prometheus", stack.prometheus_url,
            "--healthd", f"http://127.0.0.1:{healthd_port}"), DASHBOARD_READY)
        cleanup.callback(dashboard.stop)
        stack.start_proxy()
        cleanup.callback(stack.stop_proxy)
        healthd.wait_ready()
        dashboard.wait_ready()
        all_ok = ("ollama", "proxy", "proxy_e2e", "prometheus")

        healthd_sees(healthd, lambda h: all(check(h, n) == "ok" for n in all_ok))
        snapshot_shows(dashboard, lambda s: s["proxy"]["reachable"] and s["ollama"]["up"])
        dashboard.poll("/api/history?window=15m", lambda status, body: status == 200
                       and body["source"] == "prometheus")

        # The proxy goes away (with it the upstream's state, which the proxy reports).
        stack.stop_proxy()
        snap = snapshot_shows(dashboard, lambda s: not s["proxy"]["reachable"])
        assert snap["proxy"]["error"] and snap["ollama"]["up"] is None
        report = healthd_sees(healthd, lambda h: check(h, "proxy") == "critical"
                              and check(h, "proxy_e2e") == "critical")
        assert report["overall"] == "unhealthy" and check(report, "ollama") == "ok"
        assert healthd.get("/health/live")[0] == 200
        status, body = dashboard.get("/api/requests")  # no proxy, no history file: says so
        assert status == 503 and "recent requests unavailable" in body["error"]
        stack.start_proxy()
        snapshot_shows(dashboard, lambda s: s["proxy"]["reachable"] and s["ollama"]["up"])
        healthd_sees(healthd, lambda h: all(check(h, n) == "ok" for n in all_ok))
        assert dashboard.get("/api/requests")[0] == 200

        # Ollama goes away behind a running proxy.
        stack.stop_sim()
        snapshot_shows(dashboard, lambda s: s["proxy"]["reachable"]
                       and s["ollama"]["up"] is False)
        # Reported once, by the ollama check: the end-to-end probe gets the proxy's 502, and
        # leaves the outage to it.
        report = healthd_sees(healthd, lambda h: check(h, "ollama") == "critical"
                              and h["checks"]["proxy_e2e"]["data"].get("upstream_down"))
        assert check(report, "proxy") == "ok" and report["overall"] == "unhealthy"
        assert check(report, "proxy_e2e") == "ok"
        # The dashboard asks healthd on its own clock: it may first show a report in which
        # only proxy_e2e has failed yet, so wait for the one that names Ollama.
        snapshot_shows(dashboard, lambda s: s["healthd"]["status"] == "unhealthy"
                       and "ollama: critical" in s["healthd"]["detail"])
        stack.start_sim()
        snapshot_shows(dashboard, lambda s: s["ollama"]["up"] is True)
        healthd_sees(healthd, lambda h: all(check(h, n) == "ok" for n in all_ok))

        # Prometheus goes away: the dashboard's history source and a healthd check.
        stack.stop_prometheus()
        status, body = dashboard.get("/api/history?window=15m")
        assert status == 503 and body["error"].startswith(f"prometheus {stack.prometheus_url}")
        report = healthd_sees(healthd, lambda h: check(h, "prometheus") == "warn")
        assert report["overall"] == "degraded" and "Prometheus" in (
            report["checks"]["prometheus"]["detail"])
        snapshot_shows(dashboard, lambda s: s["proxy"]["reachable"])
        stack.start_prometheus()
        dashboard.poll("/api/history?window=15m", lambda status, body: status == 200)
        report = healthd_sees(healthd, lambda h: all(check(h, n) == "ok" for n in all_ok))
        assert report["overall"] == "healthy"

        # Neither service was restarted, nor logged a crash.
        for service in (healthd, dashboard):
            assert service.process.poll() is None
            assert "Traceback" not in service.log, service.log[-3000:]
