#!/usr/bin/env python3
"""Benchmark: throughput with one and with two proxy processes behind Debian's nginx.

One invocation starts the Ollama simulator, two proxies (``mitmdump -s
addons/llama_metrics.py``, history off) and three nginx instances on the shipped
``deploy/nginx/llama-metrics.conf`` (in front of the simulator, of one proxy, of both), then
runs the same load against each target in interleaved rounds: streamed ``/api/chat`` answers
and the same non-streamed, at a concurrency that keeps every process busy. It prints
requests/s, chunks/s, the ratio against nginx in front of one proxy, and the CPU time per
request of each process involved (client, simulator, nginx, proxies), which says where the
ceiling is: on a machine with C cores, throughput cannot pass C seconds of CPU per second
divided by the CPU per request of all processes together.

    .venv/bin/python scripts/bench_scale.py              # about three minutes on 2 cores
    .venv/bin/python scripts/bench_scale.py --quick      # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import nginx_front
import psutil
from bench import stop

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LISTENING = r"listening at 127\.0\.0\.1:(\d+)"
SIM_READY = r"listening on http://127\.0\.0\.1:(\d+)"
TARGETS = ("direct", "proxy", "nginx>sim", "nginx>1 proxy", "nginx>2 proxies")
BASE = "nginx>1 proxy"


@dataclass
class Service:
    """A started process: its URL and the processes whose CPU it uses (nginx: its workers)."""

    name: str
    url: str
    process: psutil.Process

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in [self.process, *self.process.children(recursive=True)]:
            try:
                times = p.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total


@contextmanager
def started(name: str, args: list[str], ready: str | None, port: int = 0) -> Iterator[Service]:
    """Run ``args``; ready when a line matches ``ready`` (group 1: the port) or ``port`` answers."""
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    found = threading.Event()
    lines: list[str] = []
    ports: list[int] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if ready and not ports and (m := re.search(ready, line)):
                ports.append(int(m.group(1)))
                found.set()
        found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        if ready:
            found.wait(60)
        else:
            while proc.poll() is None and time.monotonic() < deadline:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        ports.append(port)
                        break
                time.sleep(0.02)  # nginx prints nothing once it listens
        if not ports:
            raise RuntimeError(f"{name} did not start:\n{''.join(lines)}")
        yield Service(name, f"http://127.0.0.1:{ports[0]}", psutil.Process(proc.pid))
    finally:
        stop(proc, reader)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Run:
    requests: int = 0
    errors: int = 0
    chunks: int = 0
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # process group -> CPU seconds


async def one(session: aiohttp.ClientSession, url: str, tokens: int, stream: bool,
              run: Run) -> None:
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "Count to ten."}],
            "stream": stream, "options": {"num_predict": tokens}}
    chunks, ok = 0, False
    try:
        async with session.post(url + "/api/chat", json=body) as response:
            if stream:
                async for line in response.content:
                    chunks += bool(line.strip())
            else:
                await response.read()
                chunks = 1
            ok = response.status == 200
    except (aiohttp.ClientError, TimeoutError):  # the total timeout is a bare TimeoutError
        pass
    run.requests += 1
    run.errors += not ok
    run.chunks += chunks


async def load(url: str, concurrency: int, requests: int, tokens: int, stream: bool,
               cpu: Callable[[], dict[str, float]]) -> Run:
    """``requests`` requests, ``concurrency`` at a time; ``cpu()`` is read around them only,
    so that the warm-up requests, which ``run.requests`` leaves out, do not count either."""
    run, remaining = Run(), requests
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=120)) as session:
        await asyncio.gather(*(one(session, url, tokens, stream, Run())
                               for _ in range(concurrency)))  # open the connections

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await one(session, url, tokens, stream, run)

        before = cpu()
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        run.seconds = time.perf_counter() - start
        after = cpu()
    run.cpu = {g: after[g] - before[g] for g in after}
    return run


def measure(url: str, groups: dict[str, list[Service]], *, concurrency: int, requests: int,
            tokens: int, stream: bool) -> Run:
    """One load run, with the CPU each group of processes (and this client) spent in it."""
    me = psutil.Process()

    def cpu() -> dict[str, float]:
        times = me.cpu_times()
        machine = psutil.cpu_times()
        # Busy time of every core, without time the hypervisor took (steal) and without
        # guest time, which user time already holds.
        busy = sum(getattr(machine, f, 0.0) for f in ("user", "nice", "system", "irq",
                                                      "softirq"))
        out = {"client": times.user + times.system, "machine": busy}
        out.update({g: sum(s.cpu_seconds() for s in services) for g, services in groups.items()})
        return out

    run = asyncio.run(load(url, concurrency, requests, tokens, stream, cpu))
    # What the rest of the machine took meanwhile (other users of a shared machine).
    run.cpu["others"] = max(0.0, run.cpu.pop("machine") - sum(run.cpu.values()))
    return run


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=400, help="requests per run")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=100, help="tokens per answer")
    parser.add_argument("--nginx-workers", default="auto")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.requests = 1, 80
    nginx = nginx_front.binary()
    if nginx is None:
        print(f"bench_scale: needs nginx (apt-get install {nginx_front.PACKAGE})",
              file=sys.stderr)
        return 1

    runs: dict[tuple[str, str], list[Run]] = {(t, k): [] for t in TARGETS
                                              for k in ("stream", "json")}
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        sim = stack.enter_context(started("simulator", [
            sys.executable, "scripts/ollama_sim.py", "--port", "0", "--token-rate", "0",
            "--ttft", "0", "--tokens", str(args.tokens)], SIM_READY))
        proxies = [stack.enter_context(started(f"proxy {i}", [
            str(BIN / "mitmdump"), "--mode", f"reverse:{sim.url}", "--listen-host", "127.0.0.1",
            "-p", "0", "-s", "addons/llama_metrics.py", "--set", "flow_detail=0",
            "--set", "metrics_port=0", "--set", "history_path="], LISTENING)) for i in (1, 2)]

        def front(name: str, upstreams: list[str]) -> Service:
            port = free_port()
            command = nginx_front.prepare(Path(tmp) / name, f"127.0.0.1:{port}", upstreams,
                                          workers=args.nginx_workers, nginx=nginx)
            return stack.enter_context(started(name, command, None, port))

        def address(s: Service) -> str:
            return s.url.removeprefix("http://")

        fronts = {"nginx>sim": front("sim", [address(sim)]),
                  "nginx>1 proxy": front("one", [address(proxies[0])]),
                  "nginx>2 proxies": front("two", [address(p) for p in proxies])}
        targets = {"direct": (sim.url, {"sim": [sim]}),
                   "proxy": (proxies[0].url, {"sim": [sim], "proxies": proxies[:1]})}
        for name, used in (("nginx>sim", []), ("nginx>1 proxy", proxies[:1]),
                           ("nginx>2 proxies", proxies)):
            targets[name] = (fronts[name].url, {"sim": [sim], "nginx": [fronts[name]],
                                                "proxies": used})
        for round_no in range(args.rounds):
            for target in TARGETS:
                url, groups = targets[target]
                for kind in ("stream", "json"):
                    runs[(target, kind)].append(measure(
                        url, groups, concurrency=args.concurrency, requests=args.requests,
                        tokens=args.tokens, stream=kind == "stream"))
            print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)

    report(args, runs)
    return 0


def report(args: argparse.Namespace, runs: dict[tuple[str, str], list[Run]]) -> None:
    def rps(target: str, kind: str) -> float:
        return statistics.median(r.requests / r.seconds for r in runs[(target, kind)])

    def cpu_ms(target: str, kind: str, group: str) -> float:
        done = sum(r.requests for r in runs[(target, kind)])
        return 1000 * sum(r.cpu.get(group, 0.0) for r in runs[(target, kind)]) / done

    print(f"\nload: {args.rounds} rounds x {args.requests} streamed and {args.requests} "
          f"non-streamed /api/chat requests of {args.tokens} tokens at concurrency "
          f"{args.concurrency}; {os.cpu_count()} CPU cores")
    print("req/s: median over rounds (range in brackets); ratio: against nginx>1 proxy; CPU ms "
          "per streamed request by process (proxies: both together); others: cores the rest of "
          "the machine kept busy meanwhile")
    groups = ("client", "sim", "nginx", "proxies")
    print(f"{'target':<17}{'stream req/s':>22}{'ratio':>7}{'chunks/s':>10}{'json req/s':>22}"
          f"{'ratio':>7}" + "".join(f"{g:>9}" for g in groups) + f"{'total':>8}{'others':>8}"
          f"{'errors':>7}")

    def spread(target: str, kind: str) -> str:
        rates = [r.requests / r.seconds for r in runs[(target, kind)]]
        return f"{rps(target, kind):.1f} [{min(rates):.0f}-{max(rates):.0f}]"

    for target in TARGETS:
        stream_runs = runs[(target, "stream")]
        every = [r for k in ("stream", "json") for r in runs[(target, k)]]
        chunks = sum(r.chunks for r in stream_runs) / sum(r.seconds for r in stream_runs)
        cpus = [cpu_ms(target, "stream", g) for g in groups]
        others = sum(r.cpu["others"] for r in every) / sum(r.seconds for r in every)
        errors = sum(r.errors for r in every)
        print(f"{target:<17}{spread(target, 'stream'):>22}"
              f"{rps(target, 'stream') / rps(BASE, 'stream'):>7.2f}{chunks:>10.0f}"
              f"{spread(target, 'json'):>22}{rps(target, 'json') / rps(BASE, 'json'):>7.2f}"
              + "".join(f"{c:>9.2f}" for c in cpus) + f"{sum(cpus):>8.2f}{others:>8.2f}"
              f"{errors:>7}")
    print("json CPU ms per request (client, sim, nginx, proxies):")
    for target in TARGETS:
        cpus = [cpu_ms(target, "json", g) for g in groups]
        print(f"  {target:<17}" + " ".join(f"{c:.2f}" for c in cpus) + f"  total {sum(cpus):.2f}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
