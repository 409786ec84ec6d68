"""Real processes for end-to-end tests: mitmdump with our addon, the dashboard, healthd.

Each is started on port 0 (or a port a test chose), read by a ``LogReader`` and waited on by
the line in which it says where it listens; each is stopped by the test that started it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support.logs import LogReader
from tests.support.waits import poll

ROOT = Path(__file__).resolve().parents[2]
MITMDUMP = Path(sys.executable).with_name("mitmdump")
ADDON = ROOT / "addons" / "llama_metrics.py"
CONFIG = str(ROOT / "config" / "llama-metrics.yml")
# What every started process gets: nothing of the test runner's environment leaks in.
ENV = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "PYTHONUNBUFFERED": "1",
       "LLAMA_METRICS_CONFIG": CONFIG}
LISTENING = r"listening at 127\.0\.0\.1:(\d+)"
METRICS_ON = r"metrics on http://127\.0\.0\.1:(\d+)/metrics"
DASHBOARD_READY = r"dashboard on (http://[^\s]+)"
HEALTHD_READY = r"healthd on (http://127\.0\.0\.1:\d+)"


def spawn(args: list[str], env: dict[str, str] | None = None,
          preexec: Callable[[], None] | None = None, cwd: Path = ROOT) -> subprocess.Popen[str]:
    """``args`` with its stdout and stderr in one pipe, in ``ENV`` plus ``env``."""
    return subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**ENV, **(env or {})}, preexec_fn=preexec)


def terminate(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it does not go within ``timeout``."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def stop_process(process: subprocess.Popen[str], output: LogReader,
                 timeout: float = 10.0) -> None:
    """``terminate`` it; then drain and close its output."""
    terminate(process, timeout)
    output.close()


class Child:
    """A started process and its output; ``stop()`` ends both."""

    stop_timeout = 10.0

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self.process = process
        self.output = LogReader(process.stdout)

    @property
    def lines(self) -> list[str]:
        return self.output.lines

    @property
    def log(self) -> str:
        return self.output.text

    def stop(self) -> None:
        stop_process(self.process, self.output, self.stop_timeout)


class Proxy(Child):
    """A running ``mitmdump -s addons/llama_metrics.py``; ports are whatever it bound."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        super().__init__(process)
        self.headers: dict[str, str] = {}  # for /metrics: the access token, when one is set
        self.port = 0
        self.metrics_port = 0

    def wait_ready(self, timeout: float = 30) -> None:
        """Until it has logged both its ports; RuntimeError with its log if it ends first."""
        listening = self.output.wait_match(LISTENING, timeout)
        metrics = self.output.wait_match(METRICS_ON, timeout)
        if listening is None or metrics is None:
            raise RuntimeError("mitmdump did not start:\n" + self.log)
        self.port, self.metrics_port = int(listening[1][1]), int(metrics[1][1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

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
        re-scrapes (a short HTTP round trip each time) until the count is there. The caller
        asserts on the scrape it gets, whether the count arrived or not.
        """
        def counted(samples: dict) -> bool:
            return sum(v for (n, _), v in samples.items()
                       if n == "ollama_proxy_requests_total") >= requests

        return poll(self.scrape, counted, timeout, interval=0.002)

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float = 15.0) -> dict:
        """Scrape until ``predicate(samples)`` holds (for state polled in the background)."""
        def ask() -> tuple[dict, bool]:
            samples = self.scrape()
            return samples, predicate(samples)

        samples, ok = poll(ask, lambda answer: answer[1], timeout, interval=0.02)
        assert ok, f"{self.metrics_url}/metrics: condition not met in {timeout}s"
        return samples

    def value(self, name: str, **labels: str) -> float:
        return self.scrape().get(("ollama_proxy_" + name, tuple(sorted(labels.items()))), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """Sum over every series of ``name`` whose labels include ``labels``."""
        want = set(labels.items())
        return sum(
            v for (n, lab), v in self.scrape().items()
            if n == "ollama_proxy_" + name and want <= set(lab)
        )


@contextmanager
def run_proxy(upstream: str, *extra: str, env: dict[str, str] | None = None, port: int = 0,
              preexec: Callable[[], None] | None = None) -> Iterator[Proxy]:
    """Start mitmdump in reverse mode in front of ``upstream``; stop it afterwards.

    ``extra`` are mitmdump arguments (``"--set", "name=value"``); ``port`` is where it
    listens (0: a free one); ``preexec`` runs in the child before exec.
    """
    defaults = {"metrics_port": "0", "history_path": "", "flow_detail": "0"}
    for arg in extra:  # mitmproxy refuses an option given twice: ours override the defaults
        defaults.pop(arg.split("=", 1)[0], None)
    args = [
        str(MITMDUMP), "--mode", f"reverse:{upstream}", "--listen-host", "127.0.0.1",
        "-p", str(port), "-s", str(ADDON), *extra,
    ]
    for name, value in defaults.items():
        args += ["--set", f"{name}={value}"]
    proxy = Proxy(spawn(args, env, preexec))
    if token := (env or {}).get("LLAMA_METRICS_SECURITY_ACCESS_TOKEN"):
        proxy.headers["Authorization"] = f"Bearer {token}"
    try:
        proxy.wait_ready()
        yield proxy
    finally:
        proxy.stop()


class Service(Child):
    """``python -m dashboard`` or ``python -m healthd``, ready once it logs where it listens."""

    stop_timeout = 15.0

    def __init__(self, args: list[str], ready: str, env: dict[str, str] | None = None) -> None:
        super().__init__(spawn([sys.executable, "-m", *args], env))
        self.url = ""
        self._ready = ready

    def wait_ready(self, timeout: float = 30) -> None:
        """Until the ``ready`` line names its URL; RuntimeError with its log if it ends first."""
        found = self.output.wait_match(self._ready, timeout)
        if found is None:
            raise RuntimeError(f"{self.process.args!r} did not start:\n{self.log}")
        self.url = found[1][1].rstrip("/")

    def get(self, path: str) -> tuple[int, Any]:
        """Status and JSON body of a GET; an error status is an answer too."""
        assert self.process.poll() is None, f"{self.url} exited:\n{self.log[-3000:]}"
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            with e:
                return e.code, json.loads(e.read())

    def poll(self, path: str, check: Callable[[int, Any], bool], timeout: float = 30) -> Any:
        """GET ``path`` until ``check(status, body)`` holds; the last body, or AssertionError.

        Each service polls its dependencies on its own interval; nothing crosses the process
        boundary to wait on, so this asks again every 100 ms.
        """
        def ask() -> tuple[int, Any, bool]:
            status, body = self.get(path)
            return status, body, check(status, body)

        status, body, ok = poll(ask, lambda answer: answer[2], timeout, interval=0.1)
        assert ok, (f"{path}: condition not met in {timeout}s; last answer {status} "
                    f"{json.dumps(body)[:2000]}")
        return body


@contextmanager
def run_service(args: list[str], ready: str,
                env: dict[str, str] | None = None) -> Iterator[Service]:
    service = Service(args, ready, env)
    try:
        service.wait_ready()
        yield service
    finally:
        service.stop()


def dashboard_args(*args: str) -> list[str]:
    return ["dashboard", "--port", "0", *args]


def run_dashboard(*args: str, env: dict[str, str] | None = None) -> Any:
    return run_service(dashboard_args(*args), DASHBOARD_READY, env)


def run_healthd(config: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return run_service(["healthd", "--port", "0", "--config", str(config), *args],
                       HEALTHD_READY, env)
