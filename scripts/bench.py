#!/usr/bin/env python3
"""Benchmark: the same load direct to the simulator, through plain mitmdump, through our proxy.

One invocation starts the Ollama simulator, a plain ``mitmdump`` reverse proxy with streaming
on (``stream_large_bodies=1``) and no addon, and ``mitmdump -s addons/llama_metrics.py`` (once
as started by default, once with history on and ``max_concurrency`` set), then runs each load
against each target in interleaved rounds and prints throughput and time to first token, with
ratios against plain mitmdump and differences against direct.

    .venv/bin/python scripts/bench.py                 # about two minutes on 2 cores
    .venv/bin/python scripts/bench.py --quick         # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@dataclass
class Target:
    url: str
    process: psutil.Process

    def cpu_seconds(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)


@contextmanager
def service(args: list[str], ready: str, name: str) -> Iterator[Target]:
    """Start a process and wait for a line matching ``ready`` (its group 1 is the port)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    found = threading.Event()
    port: list[str] = []
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if not port and (m := re.search(ready, line)):
                port.append(m.group(1))
                found.set()
        found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not found.wait(60) or not port:
            raise RuntimeError(f"{name} did not start:\n{''.join(lines)}")
        yield Target(f"http://127.0.0.1:{port[0]}", psutil.Process(proc.pid))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()


def simulator(tokens: int) -> list[str]:
    return [sys.executable, "scripts/ollama_sim.py", "--port", "0", "--token-rate", "0",
            "--ttft", "0", "--tokens", str(tokens)]


def mitmdump(upstream: str, *extra: str) -> list[str]:
    return [str(BIN / "mitmdump"), "--mode", f"reverse:{upstream}", "--listen-host", "127.0.0.1",
            "-p", "0", "--set", "flow_detail=0", "--set", "connection_strategy=lazy", *extra]


LISTENING = r"listening at 127\.0\.0\.1:(\d+)"


@dataclass
class Result:
    requests: int = 0
    errors: int = 0
    chunks: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # of the proxy process, where there is one
    ttfts: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)  # requests/s of each run

    def add(self, other: Result) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.chunks += other.chunks
        self.seconds += other.seconds
        self.cpu_seconds += other.cpu_seconds
        self.ttfts += other.ttfts
        self.rates.append(other.requests / other.seconds)


async def one_request(session: aiohttp.ClientSession, url: str, tokens: int, stream: bool,
                      result: Result, headers: dict[str, str] | None = None) -> None:
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "Count to ten."}],
            "stream": stream, "options": {"num_predict": tokens}}
    start = time.perf_counter()
    first = None
    chunks = 0
    try:
        async with session.post(url + "/api/chat", json=body, headers=headers) as response:
            if stream:
                async for line in response.content:
                    if line.strip():
                        chunks += 1
                        if first is None:
                            first = time.perf_counter()
            else:
                await response.read()
                first = time.perf_counter()
                chunks = 1
            ok = response.status == 200
    except aiohttp.ClientError:
        ok = False
    result.requests += 1
    result.errors += 0 if ok else 1
    result.chunks += chunks
    if first is not None:
        result.ttfts.append(first - start)


async def load(url: str, *, concurrency: int, requests: int, tokens: int, stream: bool,
               headers: dict[str, str] | None = None) -> Result:
    result = Result()
    remaining = requests
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await one_request(session, url, tokens, stream, Result())  # warm the connection

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await one_request(session, url, tokens, stream, result, headers)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - start
    return result


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=400, help="streamed requests per run")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=100, help="tokens per streamed answer")
    parser.add_argument("--ttft-requests", type=int, default=200, help="at concurrency 1")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--json", help="write the numbers to this file too")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.requests, args.ttft_requests = 1, 60, 30

    targets = ["direct", "mitmdump", "proxy", "proxy+history+queue"]
    totals = {(t, kind): Result() for t in targets for kind in ("stream", "json", "ttft")}
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        sim_target = stack.enter_context(service(
            simulator(args.tokens), r"http://127\.0\.0\.1:(\d+)", "simulator"))
        sim = sim_target.url
        urls = {
            "direct": sim_target,
            "mitmdump": stack.enter_context(service(
                mitmdump(sim, "--set", "stream_large_bodies=1"), LISTENING, "mitmdump")),
            "proxy": stack.enter_context(service(
                mitmdump(sim, "-s", "addons/llama_metrics.py", "--set", "metrics_port=0",
                         "--set", "history_path="), LISTENING, "proxy")),
            "proxy+history+queue": stack.enter_context(service(
                mitmdump(sim, "-s", "addons/llama_metrics.py", "--set", "metrics_port=0",
                         "--set", f"history_path={tmp}/history.db",
                         "--set", f"max_concurrency={args.concurrency}"), LISTENING, "proxy")),
        }
        for round_no in range(args.rounds):
            for target in targets:
                url = urls[target].url
                runs = {
                    "stream": load(url, concurrency=args.concurrency, requests=args.requests,
                                   tokens=args.tokens, stream=True),
                    "json": load(url, concurrency=args.concurrency, requests=args.requests,
                                 tokens=args.tokens, stream=False),
                    # Paced like a real model (the simulator's X-Sim-Token-Rate), so the first
                    # token travels alone rather than in a burst of the whole answer.
                    "ttft": load(url, concurrency=1, requests=args.ttft_requests, tokens=5,
                                 stream=True, headers={"X-Sim-Token-Rate": "200"}),
                }
                for kind, run in runs.items():
                    cpu = urls[target].cpu_seconds()
                    result = asyncio.run(run)
                    result.cpu_seconds = urls[target].cpu_seconds() - cpu
                    totals[(target, kind)].add(result)
            print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)

    report: dict[str, dict[str, float]] = {}
    for target in targets:
        s, j, t = (totals[(target, k)] for k in ("stream", "json", "ttft"))
        report[target] = {
            "stream_rps": statistics.median(s.rates),
            "stream_chunks_per_s": s.chunks / s.seconds,
            "stream_cpu_ms_per_request": 1000 * s.cpu_seconds / s.requests,
            "json_rps": statistics.median(j.rates),
            "json_cpu_ms_per_request": 1000 * j.cpu_seconds / j.requests,
            "ttft_p50_ms": 1000 * statistics.median(t.ttfts),
            "ttft_p99_ms": 1000 * pct(t.ttfts, 0.99),
            "stream_ttft_p50_ms": 1000 * statistics.median(s.ttfts),
            "errors": s.errors + j.errors + t.errors,
        }
    base, plain = report["direct"], report["mitmdump"]
    print(f"\nload: {args.rounds} rounds x {args.requests} streamed and {args.requests} "
          f"non-streamed /api/chat requests of {args.tokens} tokens at concurrency "
          f"{args.concurrency}; {args.ttft_requests} streamed requests of 5 tokens at 200 "
          f"tokens/s at concurrency 1 for time to first token")
    print("req/s: median over rounds; cpu: the proxy process's CPU ms per request (for direct,"
          " the simulator's); 'vs mitmdump': throughput ratio, and for cpu plain/ours")
    header = (f"{'target':<21}{'stream req/s':>13}{'ratio':>7}{'cpu ms':>8}{'ratio':>7}"
              f"{'chunks/s':>10}{'json req/s':>11}{'ratio':>7}{'cpu ms':>8}{'ratio':>7}"
              f"{'TTFT p50':>10}{'+direct':>9}{'TTFT p99':>10}{'+direct':>9}{'errors':>7}")
    print(header)
    for target in targets:
        r = report[target]
        print(f"{target:<21}{r['stream_rps']:>13.1f}{r['stream_rps'] / plain['stream_rps']:>7.2f}"
              f"{r['stream_cpu_ms_per_request']:>8.2f}"
              f"{plain['stream_cpu_ms_per_request'] / r['stream_cpu_ms_per_request']:>7.2f}"
              f"{r['stream_chunks_per_s']:>10.0f}{r['json_rps']:>11.1f}"
              f"{r['json_rps'] / plain['json_rps']:>7.2f}{r['json_cpu_ms_per_request']:>8.2f}"
              f"{plain['json_cpu_ms_per_request'] / r['json_cpu_ms_per_request']:>7.2f}"
              f"{r['ttft_p50_ms']:>10.2f}{r['ttft_p50_ms'] - base['ttft_p50_ms']:>+9.2f}"
              f"{r['ttft_p99_ms']:>10.2f}{r['ttft_p99_ms'] - base['ttft_p99_ms']:>+9.2f}"
              f"{r['errors']:>7.0f}")
    print("TTFT in ms, at concurrency 1")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
