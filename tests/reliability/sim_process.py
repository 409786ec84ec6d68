"""The Ollama simulator as a process (``python scripts/ollama_sim.py``), to kill and restart."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.logs import LogReader
from tests.support.processes import ROOT, spawn

SIM = ROOT / "scripts" / "ollama_sim.py"


class SimProcess:
    """One simulator process; ``start()`` again after ``kill()`` listens on the same port."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.port = 0
        self.process: subprocess.Popen[str] | None = None
        self.output: LogReader | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SimProcess:
        self.process = spawn([sys.executable, str(SIM), "--port", str(self.port), *self.args])
        assert self.process.stdout is not None
        # Read on as it runs, so that a chatty simulator never blocks on a full pipe.
        self.output = LogReader(self.process.stdout)
        found = self.output.wait_match(r"ollama-sim listening on http://\S+:(\d+)", 30)
        if found is None:
            log = self.output.text
            self.stop()
            raise RuntimeError(f"simulator did not start: {log!r}")
        self.port = int(found[1][1])
        return self

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
        output, self.output = self.output, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait(timeout=15)
        if output is not None:
            output.close()

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
