"""The Ollama simulator as a process (``python scripts/ollama_sim.py``), to kill and restart."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SIM = ROOT / "scripts" / "ollama_sim.py"


class SimProcess:
    """One simulator process; ``start()`` again after ``kill()`` listens on the same port."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.port = 0
        self.process: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._drain: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SimProcess:
        process = subprocess.Popen(
            [sys.executable, str(SIM), "--port", str(self.port), *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.process = process
        assert process.stdout is not None
        line = process.stdout.readline()  # "ollama-sim listening on http://HOST:PORT", or EOF
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"simulator did not start: {line!r}")
        self.port = int(line.split()[-1].rsplit(":", 1)[1])
        # Keep reading its output, so that a chatty simulator never blocks on a full pipe.
        self._drain = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._drain.start()
        return self

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line)

    def kill(self, signal: str = "KILL") -> None:
        """Kill it as a crash would (KILL) or stop it as a restart would (TERM)."""
        assert self.process is not None
        if signal == "KILL":
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(timeout=15)
        self.stop()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait(timeout=15)
        if self._drain is not None:
            self._drain.join(timeout=5)
            self._drain = None
        if process.stdout is not None:
            process.stdout.close()

    def control(self, path: str, method: str = "GET") -> object:
        request = urllib.request.Request(self.url + path, method=method, data=None)
        with urllib.request.urlopen(request, timeout=15) as r:
            return json.loads(r.read())

    def connections(self) -> int:
        value = self.control("/_sim/connections")
        assert isinstance(value, dict)
        return int(value["connections"])

    def reports(self) -> list[dict]:
        value = self.control("/_sim/reports")
        assert isinstance(value, list)
        return value


@contextmanager
def run_sim(*args: str) -> Iterator[SimProcess]:
    sim = SimProcess(*args)
    try:
        yield sim.start()
    finally:
        sim.stop()
