"""Real processes for end-to-end tests: mitmdump with our addon, waited on by its own log lines."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
MITMDUMP = Path(sys.executable).with_name("mitmdump")
ADDON = ROOT / "addons" / "llama_metrics.py"


class Proxy:
    """A running ``mitmdump -s addons/llama_metrics.py``; ports are whatever it bound."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.headers: dict[str, str] = {}  # for /metrics: the access token, when one is set
        self.lines: list[str] = []
        self.port = 0
        self.metrics_port = 0
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if m := re.search(r"listening at 127\.0\.0\.1:(\d+)", line):
                self.port = int(m.group(1))
            if m := re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", line):
                self.metrics_port = int(m.group(1))
            if self.port and self.metrics_port:
                self._ready.set()
        self._ready.set()  # the process ended: stop waiting

    def wait_ready(self, timeout: float = 30) -> None:
        if not self._ready.wait(timeout) or not (self.port and self.metrics_port):
            raise RuntimeError("mitmdump did not start:\n" + self.log)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics, keyed by name and sorted labels."""
        request = urllib.request.Request(self.metrics_url + "/metrics", headers=self.headers)
        with urllib.request.urlopen(request, timeout=10) as r:
            text = r.read().decode()
        samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return samples

    def wait_counted(self, requests: float, timeout: float = 10.0) -> dict:
        """Scrape until ``requests_total`` reaches ``requests``; returns that scrape.

        A client that read a Content-Length body to its end may get there a moment before
        mitmproxy's response hook counted it; no event crosses the process boundary, so this
        re-scrapes (a short HTTP round trip each time) until the count is there.
        """
        deadline = time.monotonic() + timeout
        while True:
            samples = self.scrape()
            done = sum(v for (n, _), v in samples.items() if n == "ollama_proxy_requests_total")
            if done >= requests or time.monotonic() > deadline:
                return samples
            time.sleep(0.002)

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float = 15.0) -> dict:
        """Scrape until ``predicate(samples)`` holds (for state polled in the background)."""
        deadline = time.monotonic() + timeout
        while True:
            samples = self.scrape()
            if predicate(samples):
                return samples
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met in {timeout}s")
            time.sleep(0.02)

    def value(self, name: str, **labels: str) -> float:
        return self.scrape().get(("ollama_proxy_" + name, tuple(sorted(labels.items()))), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """Sum over every series of ``name`` whose labels include ``labels``."""
        want = set(labels.items())
        return sum(
            v for (n, lab), v in self.scrape().items()
            if n == "ollama_proxy_" + name and want <= set(lab)
        )


def stop_process(
    process: subprocess.Popen[str], reader: threading.Thread, timeout: float = 10.0
) -> None:
    """SIGTERM, SIGKILL if it does not go within ``timeout``; then drain and close its output."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    reader.join(timeout=5)
    if process.stdout is not None:
        process.stdout.close()


@contextmanager
def run_proxy(upstream: str, *extra: str, env: dict[str, str] | None = None) -> Iterator[Proxy]:
    """Start mitmdump in reverse mode in front of ``upstream``; stop it afterwards."""
    defaults = {"metrics_port": "0", "history_path": "", "flow_detail": "0"}
    for arg in extra:  # mitmproxy refuses an option given twice: ours override the defaults
        defaults.pop(arg.split("=", 1)[0], None)
    args = [
        str(MITMDUMP), "--mode", f"reverse:{upstream}", "--listen-host", "127.0.0.1",
        "-p", "0", "-s", str(ADDON), *extra,
    ]
    for name, value in defaults.items():
        args += ["--set", f"{name}={value}"]
    process = subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "PYTHONUNBUFFERED": "1",
             "LLAMA_METRICS_CONFIG": str(ROOT / "config" / "llama-metrics.yml"), **(env or {})},
    )
    proxy = Proxy(process)
    if token := (env or {}).get("LLAMA_METRICS_SECURITY_ACCESS_TOKEN"):
        proxy.headers["Authorization"] = f"Bearer {token}"
    try:
        proxy.wait_ready()
        yield proxy
    finally:
        stop_process(process, proxy._reader)
