"""The proxy refuses to start half-configured: exit status 2 and the setting named."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from addons.service import repeated_options
from tests.support.processes import ADDON, MITMDUMP, ROOT

pytestmark = pytest.mark.e2e


def start(*settings: str) -> subprocess.CompletedProcess[str]:
    args = [str(MITMDUMP), "--mode", "reverse:http://127.0.0.1:9", "--listen-host", "127.0.0.1",
            "-p", "0", "-s", str(ADDON)]
    for setting in settings:
        args += ["--set", setting]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()),
                               "LLAMA_METRICS_CONFIG": str(ROOT / "config" / "llama-metrics.yml")})


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        (("metrics_port=99999",), "proxy.metrics_port='99999' (from command line)"),
        (("max_concurrency=many",), "proxy.max_concurrency='many'"),
        (("history_path=", "history_path=/tmp/x.db"), "option given more than once: history_path"),
        (("metrics_port=0", "history_path=/proc/llama-metrics/history.db"), "history_path"),
        (("metrics_port=0", "upstream_timeout_seconds=-1"), "upstream_timeout_seconds='-1'"),
        (("metrics_port=0", "upstream_connect_retry_seconds=soon"),
         "upstream_connect_retry_seconds='soon'"),
        (("upstream_timeout_seconds=1", "upstream_timeout_seconds=2"),
         "option given more than once: upstream_timeout_seconds"),
    ],
)
def test_bad_settings_stop_the_start(settings: tuple[str, ...], named: str) -> None:
    result = start(*settings)
    assert result.returncode == 2, result.stdout + result.stderr
    assert named in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("argv", "repeated"),
    [
        (["--set", "a=1", "--set", "a=2"], []),  # not ours
        (["--set", "max_queue=1", "--set=max_queue=2"], ["max_queue"]),
        (["--set", "metrics_port=1", "-p", "3", "--set", "history_path="], []),
    ],
)
def test_repeated_options(argv: list[str], repeated: list[str]) -> None:
    assert repeated_options(argv) == repeated
