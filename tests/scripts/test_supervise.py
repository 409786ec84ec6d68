"""scripts/up's supervisor: the whole stack up and down, and clear refusals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from tests.support.ports import free_ports

ROOT = Path(__file__).resolve().parents[2]
SUPERVISE = ROOT / "scripts" / "supervise.py"


def config_file(tmp_path: Path, ports: list[int]) -> Path:
    listen, metrics, dash, health = ports
    path = tmp_path / "llama-metrics.yml"
    path.write_text(
        f"proxy:\n  listen_port: {listen}\n  metrics_port: {metrics}\n"
        f"  history_path: {tmp_path / 'history.db'}\n"
        f"dashboard:\n  port: {dash}\n  proxy_metrics_url: http://127.0.0.1:{metrics}\n"
        f"  history_path: {tmp_path / 'history.db'}\n  healthd_url: http://127.0.0.1:{health}\n"
        f"  narrative_model: ''\n"
        f"healthd:\n  port: {health}\n  proxy_metrics_url: http://127.0.0.1:{metrics}\n"
        f"  proxy_url: http://127.0.0.1:{listen}\n  dashboard_url: http://127.0.0.1:{dash}\n"
        f"  history_path: {tmp_path / 'history.db'}\n"
        f"  state_path: {tmp_path / 'healthd.json'}\n",
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


def test_the_demo_stack_comes_up_answers_and_stops_cleanly(tmp_path: Path) -> None:
    ports = free_ports(4)
    with supervise("--demo", "--config", str(config_file(tmp_path, ports))) as up:
        assert up.stdout is not None
        lines: list[str] = []
        ready = threading.Event()

        def read() -> None:
            assert up.stdout is not None
            for line in up.stdout:
                lines.append(line)
                if "llama-metrics is up" in line:
                    ready.set()
            ready.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert ready.wait(90) and up.poll() is None, "".join(lines)
        children = psutil.Process(up.pid).children(recursive=True)
        assert len(children) >= 5  # simulator, proxy, dashboard, healthd, traffic
        for url in (f"http://127.0.0.1:{ports[1]}/health", f"http://127.0.0.1:{ports[2]}/",
                    f"http://127.0.0.1:{ports[3]}/health/live"):
            with urllib.request.urlopen(url, timeout=10) as r:
                assert r.status == 200
        up.send_signal(signal.SIGINT)
        assert up.wait(60) == 0
        reader.join(10)
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"left running: {alive}"


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
        with supervise("--config", str(config_file(tmp_path, ports))) as up:
            out, _ = up.communicate(timeout=60)
    assert up.returncode == 1
    assert f"cannot start the dashboard: 127.0.0.1:{ports[2]} is already in use" in out
