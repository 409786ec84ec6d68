"""The proxy refuses to start half-configured: exit status 2 and the setting named."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

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
        (("llama_config=a.yml", "llama_config=b.yml"), "option given more than once: llama_config"),
        (("store_prompts=maybe",), "proxy.store_prompts='maybe' (from command line)"),
        (("load_threshold_seconds=-1",), "proxy.load_threshold_seconds='-1'"),
        (("metrics_port=0", "record_path=/proc/llama-metrics/r.jsonl"), "record_path"),
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


def test_the_options_are_listed_with_their_types_and_defaults() -> None:
    """``mitmdump --options`` shows each addon's options as mitmproxy's own: typed, defaulted."""
    # The listing is of defaults; the --set keeps this run from opening data/history.db.
    result = subprocess.run([str(MITMDUMP), "-s", str(ADDON), "--set", "history_path=",
                             "--options"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    assert result.returncode == 0, result.stdout + result.stderr
    listing = result.stdout
    for line in ("metrics_port: 8001", "max_queue: 100", "store_prompts: false",
                 "load_threshold_seconds: '0.25'", "llama_config: ''"):
        assert f"\n{line}\n" in listing, line
    comments = " ".join(listing.replace("\n#", "\n").split())
    assert "Port for /metrics, /health and /requests (0 = any free port). Type int." in comments
