"""Closed-loop load for scripts/bench.py and scripts/profile_addon.py: the workloads, run by wrk.

wrk (C, one thread) is the load generator where it is installed (Debian: ``apt-get install
wrk``); it costs the shared CPU a fraction of what a Python client does, so more of the
machine is left to the proxy being measured. Without it the same requests are sent by
aiohttp, which is slower and says so.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp


@dataclass(frozen=True)
class Workload:
    name: str
    path: str
    body: dict[str, Any]
    what: str


def chat(tokens: int) -> dict[str, Any]:
    return {"model": "llama3.2", "messages": [{"role": "user", "content": "Count to ten."}],
            "stream": True, "options": {"num_predict": tokens}}


WORKLOADS = {
    w.name: w for w in (
        Workload("stream32", "/api/chat", chat(32), "streamed /api/chat, 32 tokens"),
        Workload("embed", "/api/embed",
                 {"model": "nomic-embed-text", "input": "Why is the sky blue?"},
                 "/api/embed, one input, a 768-float answer (not streamed)"),
        Workload("stream100", "/api/chat", chat(100), "streamed /api/chat, 100 tokens"),
    )
}


@dataclass
class Run:
    requests: int
    errors: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def lua(workload: Workload) -> str:
    body = json.dumps(workload.body).replace("\\", "\\\\").replace("'", "\\'")
    return ("wrk.method = 'POST'\n"
            f"wrk.body = '{body}'\n"
            "wrk.headers['Content-Type'] = 'application/json'\n")


def wrk(url: str, workload: Workload, *, seconds: float, concurrency: int) -> Run:
    """One wrk run of ``seconds`` at ``concurrency`` connections on one thread."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua(workload))
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "30s",
             "-s", f.name, url + workload.path],
            capture_output=True, text=True, timeout=seconds + 60, check=True,
        ).stdout
    finally:
        Path(f.name).unlink()
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", out)
    if m is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    unit = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(3)]
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    if sock := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                         out):
        errors += sum(int(n) for n in sock.groups())
    return Run(int(m.group(1)), errors, float(m.group(2)) * unit)


async def _aiohttp(url: str, workload: Workload, seconds: float, concurrency: int) -> Run:
    requests = errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        start = time.perf_counter()
        deadline = start + seconds

        async def worker() -> None:
            nonlocal requests, errors
            while time.perf_counter() < deadline:
                try:
                    async with session.post(url + workload.path, json=workload.body) as r:
                        await r.read()
                        errors += r.status != 200
                except (aiohttp.ClientError, TimeoutError):
                    errors += 1
                requests += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return Run(requests, errors, time.perf_counter() - start)


def load(url: str, workload: Workload, *, seconds: float, concurrency: int) -> Run:
    """wrk where it is installed, else aiohttp."""
    if have_wrk():
        return wrk(url, workload, seconds=seconds, concurrency=concurrency)
    return asyncio.run(_aiohttp(url, workload, seconds, concurrency))
