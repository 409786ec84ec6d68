"""Real processes for the reliability tests: mitmdump on chosen ports, the dashboard, healthd.

``tests.support.processes.run_proxy`` takes free ports; an outage test restarts the proxy on the
ports it had, and the read-only test runs it without root's power to ignore file modes, so
these start it themselves (and read its log with the same ``Proxy``).
"""

from __future__ import annotations

import ctypes
import json
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from llama_core.history.readers import connect_readonly
from llama_core.history.schema import HistoryError
from tests.support.processes import ADDON, MITMDUMP, ROOT, Proxy, stop_process

CONFIG = str(ROOT / "config" / "llama-metrics.yml")
ENV = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "PYTHONUNBUFFERED": "1",
       "LLAMA_METRICS_CONFIG": CONFIG}
_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def drop_file_override() -> None:
    """preexec_fn: a root child that obeys file modes like any user (CI runs tests as root).

    Removing CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set before exec
    leaves uid 0 (so it can still read the root-only virtualenv) without the override.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)  # if refused, obeys_file_modes says so


def obeys_file_modes(preexec: Callable[[], None] | None) -> bool:
    """Whether a child started with ``preexec`` is refused writing a file made read-only."""
    probe = ("import os, sys, tempfile\n"
             "fd, name = tempfile.mkstemp(); os.close(fd); os.chmod(name, 0o444)\n"
             "writable = os.access(name, os.W_OK); os.unlink(name)\n"
             "sys.exit(1 if writable else 0)\n")
    try:
        done = subprocess.run([sys.executable, "-c", probe], preexec_fn=preexec, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def rows(path: Path) -> int:
    """Rows in the history file (0 when there is none yet)."""
    try:
        conn = connect_readonly(path)
    except HistoryError:
        return 0
    with closing(conn):
        return int(conn.execute("SELECT COUNT(*) AS n FROM requests").fetchone()["n"])


def until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll a condition across the process boundary (nothing there to wait on)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.05)


@contextmanager
def start_proxy(upstream: str, *sets: str, port: int = 0, metrics_port: int = 0,
                preexec: Callable[[], None] | None = None) -> Iterator[Proxy]:
    """mitmdump with our addon in front of ``upstream``; ``sets`` are ``name=value`` options."""
    args = [str(MITMDUMP), "--mode", f"reverse:{upstream}", "--listen-host", "127.0.0.1",
            "-p", str(port), "-s", str(ADDON), "--set", f"metrics_port={metrics_port}",
            "--set", "flow_detail=0"]
    for item in sets:
        args += ["--set", item]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=ENV, preexec_fn=preexec)
    proxy = Proxy(process)
    try:
        proxy.wait_ready()
        yield proxy
    finally:
        stop_process(process, proxy._reader)


class Service:
    """``python -m dashboard`` or ``python -m healthd``, ready once it logs where it listens."""

    def __init__(self, args: list[str], ready: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", *args], cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, env={**ENV, **(env or {})})
        self.lines: list[str] = []
        self.url = ""
        self._pattern = re.compile(ready)
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if not self.url and (m := self._pattern.search(line)):
                self.url = m.group(1).rstrip("/")
                self._ready.set()
        self._ready.set()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def get(self, path: str) -> tuple[int, Any]:
        """Status and JSON body of a GET; an error status is an answer too."""
        assert self.process.poll() is None, f"{self.url} exited:\n{self.log[-3000:]}"
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            with e:
                return e.code, json.loads(e.read())

    def wait_ready(self, timeout: float = 30) -> None:
        if not self._ready.wait(timeout) or not self.url:
            raise RuntimeError(f"{self.process.args!r} did not start:\n{self.log}")

    def stop(self) -> None:
        stop_process(self.process, self._reader, timeout=15)

    def poll(self, path: str, check: Callable[[int, Any], bool], timeout: float = 30) -> Any:
        """GET ``path`` until ``check(status, body)`` holds; the last body, or AssertionError.

        Each service polls its dependencies on its own interval; nothing crosses the process
        boundary to wait on, so this asks again every 100 ms.
        """
        deadline = time.monotonic() + timeout
        while True:
            status, body = self.get(path)
            if check(status, body):
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"{path}: condition not met in {timeout}s; last answer "
                                     f"{status} {json.dumps(body)[:2000]}")
            time.sleep(0.1)


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


DASHBOARD_READY = r"dashboard on (http://[^\s]+)"
HEALTHD_READY = r"healthd on (http://127\.0\.0\.1:\d+)"


def run_dashboard(*args: str) -> Any:
    return run_service(dashboard_args(*args), DASHBOARD_READY)


def run_healthd(config: Path, *args: str) -> Any:
    return run_service(["healthd", "--port", "0", "--config", str(config), *args],
                       HEALTHD_READY)
