"""A real Prometheus for a test: started on a free port, asked through its HTTP API, stopped."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support import waits
from tests.support.ports import free_port
from tests.support.processes import terminate


class Prometheus:
    """A running ``prometheus`` on 127.0.0.1:``port``; its HTTP API, polled (nothing else
    crosses the process boundary to wait on)."""

    def __init__(self, binary: str, config: Path, data: Path, port: int, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log
        self._log = log.open("w")
        self.process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={data}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=info"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text()[-4000:]

    def get(self, path: str, **params: str) -> Any:
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:  # a bad query is a 400 with a JSON error
            body = json.loads(e.read())
            e.close()
            return body

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = self.get("/api/v1/query", query=expr)
        assert answer["status"] == "success", f"{expr}: {answer.get('error')}"
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def has(self, expr: str) -> bool:
        """Whether an instant query has a result (a comparison holds)."""
        return bool(self.query(expr))

    def value(self, expr: str) -> float | None:
        """The single value of an instant query, None when it has no result."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def poll(self, check: Callable[[], bool], timeout: float = 15.0) -> bool:
        """Ask until ``check()`` holds (True) or ``timeout`` passes (False). Nothing crosses
        the process boundary to wait on, so this asks the HTTP API again every 50 ms."""
        def asked() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited ({self.process.returncode}):\n{self.log}")
            return check()

        return waits.poll(asked, bool, timeout)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        terminate(self.process, timeout=15)
        self._log.close()


@contextmanager
def run_prometheus(binary: str, config: Path, tmp: Path, port: int = 0,
                   timeout: float = 20) -> Iterator[Prometheus]:
    """``binary`` on ``config``, its data and log in ``tmp``, ready to query; stopped after.

    ``port`` is where it listens (0: a free one; a config that scrapes Prometheus itself
    names its port beforehand).
    """
    server = Prometheus(binary, config, tmp / "data", port or free_port(), tmp / "prometheus.log")
    try:
        assert server.poll(server.ready, timeout), f"prometheus not ready:\n{server.log}"
        yield server
    finally:
        server.stop()
