"""scripts/up's supervisor: the whole stack up and down, and clear refusals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from tests.support.logs import LogReader
from tests.support.ports import free_ports, time_wait_port

ROOT = Path(__file__).resolve().parents[2]
SUPERVISE = ROOT / "scripts" / "supervise.py"


def config_file(tmp_path: Path, ports: list[int], healthd_extra: str = "") -> Path:
    listen, metrics, dash, health = ports
    path = tmp_path / "llama-metrics.yml"
    path.write_text(
        f"proxy:\n  listen_port: {listen}\n  metrics_port: {metrics}\n"
        f"  history_path: {tmp_path / 'history.db'}\n  inventory_interval_seconds: 1\n"
        f"dashboard:\n  port: {dash}\n  proxy_metrics_url: http://127.0.0.1:{metrics}\n"
        f"  history_path: {tmp_path / 'history.db'}\n  healthd_url: http://127.0.0.1:{health}\n"
        f"  narrative_model: ''\n"
        f"healthd:\n  port: {health}\n  proxy_metrics_url: http://127.0.0.1:{metrics}\n"
        f"  proxy_url: http://127.0.0.1:{listen}\n  dashboard_url: http://127.0.0.1:{dash}\n"
        f"  history_path: {tmp_path / 'history.db'}\n"
        f"  state_path: {tmp_path / 'healthd.json'}\n{healthd_extra}",
        encoding="utf-8",
    )
    return path


@contextmanager
def supervise(*args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, str(SUPERVISE), *args], cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)
        if process.stdout is not None:
            process.stdout.close()


def test_the_demo_stack_keeps_to_its_own_directory_and_outlives_the_simulator(
    tmp_path: Path,
) -> None:
    ports = free_ports(4)
    # Start, stop, start: a port a stopped server left in TIME_WAIT is free for the next one.
    ports[2] = time_wait_port()
    demo = tmp_path / "demo"
    # The health daemon checks every second and alerts at the first failure: the outage
    # reaches it within the test.
    config = config_file(tmp_path, ports, "  interval_seconds: 1\n  alert_after_checks: 1\n")
    with supervise("--demo", "--config", str(config), "--data-dir", str(demo),
                   "--sim-restart", "0") as up:
        assert up.stdout is not None
        out = LogReader(up.stdout)
        ready = out.wait_for("llama-metrics is up", 90)
        assert up.poll() is None
        children = psutil.Process(up.pid).children(recursive=True)
        assert len(children) >= 5  # simulator, proxy, dashboard, healthd, traffic
        for url in (f"http://127.0.0.1:{ports[1]}/health", f"http://127.0.0.1:{ports[2]}/",
                    f"http://127.0.0.1:{ports[3]}/health/live"):
            with urllib.request.urlopen(url, timeout=10) as r:
                assert r.status == 200
        out.wait_for(f"-m healthd check --config {demo / 'llama-metrics.yml'}", 5, ready)

        # The simulator stops: an outage the stack reports, not the end of the stack.
        up.send_signal(signal.SIGUSR1)
        down = out.wait_for("is down: clients get 502", 30, ready)
        assert up.poll() is None
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[1]}/health", timeout=10) as r:
            assert json.load(r)["upstream_up"] is False
        out.wait_for("alert firing: ollama", 30, ready)  # the health daemon saw it
        up.send_signal(signal.SIGUSR1)
        out.wait_for("is back", 30, down)

        up.send_signal(signal.SIGINT)
        assert up.wait(60) == 0
        out.close()
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"left running: {alive}"

    # Its history, health state and logs are in the demo directory; the configured ones
    # (the "real" files here) were never made.
    assert (demo / "history.db").is_file() and (demo / "healthd-state.json").is_file()
    assert not (tmp_path / "history.db").exists() and not (tmp_path / "healthd.json").exists()
    proxy_log = (demo / "logs" / "proxy.log").read_text(encoding="utf-8")
    # Every connection is in the proxy's log, none on the terminal.
    assert "client connect" in proxy_log and "client connect" not in out.text
    assert "history in " + str(demo / "history.db") in proxy_log
    assert "Streaming response" not in out.text


def test_a_bad_setting_names_the_key_and_starts_nothing(tmp_path: Path) -> None:
    env = {"LLAMA_METRICS_PROXY_METRICS_PORT": "eighty"}
    with supervise("--config", str(config_file(tmp_path, free_ports(4))), env=env) as up:
        out, _ = up.communicate(timeout=60)
    assert up.returncode == 2
    assert "proxy.metrics_port" in out and "'eighty'" in out


def test_nginx_on_every_interface_without_a_token_is_refused(tmp_path: Path) -> None:
    env = {"LLAMA_METRICS_PROXY_LISTEN_HOST": "0.0.0.0"}
    with supervise("--proxies", "2", "--config", str(config_file(tmp_path, free_ports(4))),
                   env=env) as up:
        out, _ = up.communicate(timeout=60)
    assert up.returncode == 2
    assert "proxy.listen_host='0.0.0.0'" in out and "security.access_token" in out


def test_a_taken_port_is_named(tmp_path: Path) -> None:
    ports = free_ports(4)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports[2]))
        taken.listen()
        with supervise("--config", str(config_file(tmp_path, ports)), "--data-dir",
                       str(tmp_path)) as up:
            out, _ = up.communicate(timeout=60)
    assert up.returncode == 1
    holder = f"pid {os.getpid()} ({psutil.Process().name()})"
    assert f"cannot start the dashboard: 127.0.0.1:{ports[2]} is already in use by {holder}" in out
