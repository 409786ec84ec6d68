"""One process of scripts/up's stack: started, watched, stopped, its output sorted.

Everything a part prints goes to its log file; the terminal gets its warnings and errors
(everything with ``--verbose``), so that the summary of where each part listens stays
readable while a proxy logs a line for every connection.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from llama_core import traffic

# The level as our processes write it: Python logging's "%(asctime)s %(levelname)s ...",
# gunicorn's "[INFO]", and mitmdump's lines with addons/log_levels.py ("INFO [07:33:50.631]").
LEVEL = re.compile(r"(?:^|[\s\[])(DEBUG|INFO|ALERT|WARNING|ERROR|CRITICAL)(?=[\s\]:])")
# mitmdump's own line format, for the lines it logs before addons/log_levels.py is loaded.
MITM_LINE = re.compile(r"^\[\d\d:\d\d:\d\d\.\d{3}\]")
SHOWN_LEVELS = {"WARNING", "ERROR", "CRITICAL"}


class LineSorter:
    """Decides, line by line, what of one part's output the terminal shows.

    A line with a level is shown when it is a warning or worse; a line without one (a
    traceback's body, a message spanning lines) goes with the line before it; a traceback is
    always shown. A part's first lines, before any level, are shown: they are what it prints
    before its logging is set up, such as why it could not start.
    """

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self._showing = True

    def shows(self, line: str) -> bool:
        if self.verbose:
            return True
        level = LEVEL.search(line[:64])
        if level is not None:
            self._showing = level.group(1) in SHOWN_LEVELS
        elif line.startswith("Traceback"):
            self._showing = True
        elif MITM_LINE.match(line):
            self._showing = False  # mitmdump's start-up chatter, before levels are on
        return self._showing


@dataclass
class Part:
    """One process of the stack and how to tell that it is up."""

    name: str
    args: list[str]
    ready_url: str
    show: str
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    binds: list[tuple[str, int]] = field(default_factory=list)  # (host, port) it listens on
    log_path: Path | None = None
    verbose: bool = False
    process: subprocess.Popen[str] | None = None
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    reader: threading.Thread | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.process = subprocess.Popen(
            self.args, cwd=self.cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env=env, start_new_session=True,
        )
        log: IO[str] | None = None
        if self.log_path is not None:
            # Appended: a part started again (the demo's simulator) keeps its earlier lines.
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = self.log_path.open("a", encoding="utf-8", buffering=1)
        self.reader = threading.Thread(target=self._pump, args=(log,), daemon=True,
                                       name=f"output of {self.name}")
        self.reader.start()

    def _pump(self, log: IO[str] | None) -> None:
        assert self.process is not None and self.process.stdout is not None
        sorter = LineSorter(self.verbose)
        try:
            for raw in self.process.stdout:
                line = raw.rstrip()
                self.lines.append(line)
                if log is not None:
                    log.write(line + "\n")
                if sorter.shows(line):
                    print(f"[{self.name}] {line}", flush=True)
        finally:
            if log is not None:
                log.close()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout: float) -> bool:
        """Poll the part's URL until it answers (any HTTP status) or the process ends."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while time.monotonic() < deadline:
            if not self.running():
                return False
            try:
                # nginx's ready URL goes through a proxy: our probe is not client traffic
                request = urllib.request.Request(self.ready_url,
                                                 headers=traffic.header("scripts"))
                with urllib.request.urlopen(request, timeout=2):
                    return True
            except urllib.error.HTTPError:
                return True  # it answered
            except OSError:
                time.sleep(delay)  # another process: there is no event to wait on
                delay = min(delay * 2, 0.5)
        return False

    def stop(self) -> None:
        if not self.running():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.reader is not None:
            self.reader.join(5)  # its last lines are in the log before the next start
