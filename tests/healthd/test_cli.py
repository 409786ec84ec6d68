"""Tests for ``python -m healthd``: check's exit codes in three set-ups, bad settings, serving."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.healthd.conftest import StubServer, fetch_json, write_config
from tests.support.processes import HEALTHD_READY, Service

ROOT = Path(__file__).resolve().parents[2]


def healthd(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "healthd", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout, env=ENV)


ENV = {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def setup(stub: StubServer, closed_url: str, tmp_path: Path) -> Callable[..., str]:
    """A config file for services on ``stub`` (all fine), with ``broken`` ones on a dead port."""
    stub.routes.update({
        "/api/version": (200, {"version": "0.12.6"}),
        "/api/ps": (200, {"models": [{"name": "llama3.2:latest"}]}),
        "/health": (200, {"status": "ok", "version": "0.1.0", "upstream_up": True}),
        "/api/snapshot": (200, {"requests": 0}),
    })

    def make(*broken: str) -> str:
        values: dict[str, Any] = {
            "upstream": stub.url, "proxy_metrics_url": stub.url, "proxy_url": stub.url,
            "dashboard_url": stub.url, "history_path": "", "check_intervals": {"resources": 0},
            "state_path": str(tmp_path / "never-written.json"),
        }
        values.update({key: closed_url for key in broken})
        return write_config(tmp_path / "config.yml", values)

    return make


def test_check_healthy_exits_0(setup: Callable[..., str], tmp_path: Path) -> None:
    done = healthd("check", "--config", setup())
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("llama-metrics healthd: HEALTHY at ")
    assert re.search(r"^  ok +ollama +Ollama 0\.12\.6 at http://127\.0\.0\.1:\d+, 1 model",
                     done.stdout, re.M)
    assert "summary: Healthy: all 4 checks ok." in done.stdout
    assert not (tmp_path / "never-written.json").exists()  # check sends no alerts


def test_check_degraded_exits_1_as_json(setup: Callable[..., str]) -> None:
    done = healthd("check", "--json", "--config", setup("dashboard_url"))
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["overall"] == "degraded"
    assert report["checks"]["dashboard"]["status"] == "warn"


def test_check_unhealthy_exits_2(setup: Callable[..., str]) -> None:
    done = healthd("check", "--config", setup("upstream", "proxy_url"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout.startswith("llama-metrics healthd: UNHEALTHY")
    assert re.search(r"^  CRITICAL +ollama +could not reach .*connection refused", done.stdout,
                     re.M)
    assert done.stderr == ""


def test_bad_setting_exits_2_with_the_key_named(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yml", {"alert_after_checks": "soon"})
    done = healthd("check", "--config", path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (f"llama-metrics: bad setting healthd.alert_after_checks='soon' "
                           f"(from {path}): expected an integer 1-1000\n")
    done = healthd("--port", "http", "--config", path)  # serving refuses it the same way
    assert done.returncode == 2
    assert "bad setting healthd.port='http' (from command line)" in done.stderr


def test_serve_until_sigterm(setup: Callable[..., str], stub: StubServer) -> None:
    stub.hang.add("/api/version")
    config = setup()
    values = json.loads(Path(config).read_text())["healthd"]
    values["timeout_seconds"] = 60  # a check timeout far beyond the wait below
    write_config(Path(config), values)
    healthd = Service(["healthd", "--port", "0", "--config", config], HEALTHD_READY)
    try:
        healthd.wait_ready()  # waits on the daemon's own log line
        url = healthd.url
        assert fetch_json(url + "/health/live")[0] == 200
        assert fetch_json(url + "/nope")[0] == 404
        with stub.got:  # the Ollama check is under way, and its answer will not come
            assert stub.got.wait_for(lambda: any(s.path == "/api/version" for s in stub.seen),
                                     timeout=30)
        healthd.process.send_signal(signal.SIGTERM)
        # It leaves without waiting out the hanging check's 60 s timeout.
        assert healthd.process.wait(timeout=30) == 0
    finally:
        healthd.stop()
