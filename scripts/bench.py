#!/usr/bin/env python3
"""Benchmark: the same load direct to the simulator, through plain mitmdump, through our proxy.

One invocation starts the Ollama simulator, a plain ``mitmdump`` reverse proxy with streaming
on (``stream_large_bodies=1``) and no addon, and ``mitmdump -s addons/llama_metrics.py`` (once
as started by default, once with history on and ``max_concurrency`` set), then runs each load
against each target in interleaved rounds, with ratios against plain mitmdump and differences
against direct:

- throughput: the workloads of ``bench_wrk`` (32-token streams, small ``/api/embed`` answers,
  100-token streams), run by wrk where installed (``apt-get install wrk``), against plain
  mitmdump and ours with the default configuration (history on), with the queue off and on
  (``max_concurrency``): requests/s, their ratio, each process's CPU per request and the
  addon's share of it, and time to first token at concurrency 1; with ``--floor`` also
  ``scripts/floor_addon.py``, the least an addon can do to time each token; with ``--quiet``
  also ``scripts/quiet_plain.py``, plain mitmdump without its log line per streamed message
  (which ours leaves out), and each ratio against it too; with ``--no-history`` also ours with
  history off, what moving the history writer out of the proxy's process could give back at
  most; with ``--control`` also a second plain mitmdump, which says how far apart two ratios
  read on this machine when nothing differs; with ``--fresh`` every target, plain included, is
  a new process each round; the targets run in a round's order, reversed every other round;
- latency: time to first token and inter-token latency (p50, p99) of paced streams at each
  concurrency of ``--levels`` (1, 16, 64, 256), added over direct;
- streams: ``--streams`` (500) streams at once, each checked to its end against the same answer
  direct, with the resident memory of the proxy process before, at the peak and settled.

The memory slope over a long steady load is ``scripts/bench_soak.py``.

    .venv/bin/python scripts/bench.py                 # about six minutes on 2 cores
    .venv/bin/python scripts/bench.py --quick         # a smoke run
    .venv/bin/python scripts/bench.py --only throughput --rounds 5   # issue 12's table
    .venv/bin/python scripts/bench.py --only throughput --before /tmp/before  # and another tree
    .venv/bin/python scripts/bench.py --only throughput --floor  # and the floor addon
    .venv/bin/python scripts/bench.py --only throughput --quiet  # and against a quiet plain
    .venv/bin/python scripts/bench.py --only throughput --no-history  # and ours, history off
    .venv/bin/python scripts/bench.py --only throughput --fresh --control  # on a shared machine
    .venv/bin/python scripts/bench.py --only latency --levels 1,64
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
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import bench_wrk
import psutil
from bench_streams import Latency, latency, many
from prometheus_client.parser import text_string_to_metric_families

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@dataclass
class Target:
    url: str
    process: psutil.Process
    lines: list[str] = field(default_factory=list)  # its output so far

    def cpu_seconds(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    def metrics_url(self, timeout: float = 30) -> str:
        """Our proxy's metrics endpoint, from the line it logs once it serves there."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if m := re.search(r"metrics on (http://127\.0\.0\.1:\d+)/metrics", line):
                    return m.group(1)
            time.sleep(0.05)
        raise RuntimeError("no metrics line in:\n" + "".join(self.lines))


@contextmanager
def service(args: list[str], ready: str, name: str,
            env: dict[str, str] | None = None) -> Iterator[Target]:
    """Start a process and wait for a line matching ``ready`` (its group 1 is the port); ``env``
    is added to this process's environment."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
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
        yield Target(f"http://127.0.0.1:{port[0]}", psutil.Process(proc.pid), lines)
    finally:
        stop(proc, reader)


def stop(proc: subprocess.Popen[str], reader: threading.Thread) -> None:
    """SIGTERM, SIGKILL after 10 s; then drain and close its output."""
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
    except (aiohttp.ClientError, TimeoutError):  # the total timeout is a bare TimeoutError
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


def scrape(metrics: str) -> dict[str, float]:
    """Our proxy's /metrics, summed over labels by sample name."""
    with urllib.request.urlopen(metrics + "/metrics", timeout=10) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def throughput_targets(args: argparse.Namespace) -> list[str]:
    """Plain mitmdump first (the baseline), with ``--quiet`` plain without its streaming log
    line, with ``--floor`` the floor addon, then ours with the queue off and on, and, with
    ``--before``, the same two of the other tree."""
    before = ["before", "before+queue"] if args.before else []
    floor = ["floor"] if args.floor else []
    quiet = ["quiet"] if args.quiet else []
    nohist = ["nohist"] if args.no_history else []
    control = ["plain2"] if args.control else []
    return ["mitmdump", *control, *quiet, *floor, *nohist, "ours", "ours+queue", *before]


Command = tuple[list[str], dict[str, str] | None]  # a service's argv, and what it adds to env


def throughput_commands(args: argparse.Namespace, sim: str, tmp: str) -> dict[str, Command]:
    """How to start each target of ``throughput_targets``, by name."""
    def ours(name: str, *extra: str, root: Path = ROOT) -> list[str]:
        return mitmdump(sim, "-s", str(root / "addons/llama_metrics.py"), "--set",
                        "metrics_port=0", "--set", f"history_path={tmp}/history-{name}.db",
                        *extra)

    queue = ("--set", f"max_concurrency={args.concurrency}")
    commands: dict[str, Command] = {
        "mitmdump": (mitmdump(sim, "--set", "stream_large_bodies=1"), None),
        "plain2": (mitmdump(sim, "--set", "stream_large_bodies=1"), None),
        "quiet": (mitmdump(sim, "--set", "stream_large_bodies=1", "-s",
                           "scripts/quiet_plain.py"), None),
        "floor": (mitmdump(sim, "-s", "scripts/floor_addon.py"), None),
        "nohist": (mitmdump(sim, "-s", "addons/llama_metrics.py", "--set", "metrics_port=0",
                            "--set", "history_path="), None),
        "ours": (ours("ours"), None),
        "ours+queue": (ours("queue", *queue), None),
    }
    if args.before is not None:
        before = args.before.resolve()
        env = {"PYTHONPATH": str(before)}
        commands["before"] = (ours("before", root=before), env)
        commands["before+queue"] = (ours("before-queue", *queue, root=before), env)
    return {name: commands[name] for name in throughput_targets(args)}


def start_all(stack: ExitStack, commands: dict[str, Command]) -> dict[str, Target]:
    """Each service of ``commands`` started, to be stopped with ``stack``."""
    return {name: stack.enter_context(service(argv, LISTENING, name, env=env))
            for name, (argv, env) in commands.items()}


def compared_trees(args: argparse.Namespace) -> list[str]:
    """The targets compared with plain mitmdump, ours first, each once: a tree with a queue
    variant (ours, before) stands for both, its ``+queue`` target in the queue rows."""
    others = [t for t in throughput_targets(args)[1:] if not t.endswith("+queue")]
    return ["ours", *(t for t in others if t != "ours")]


def round_order(targets: list[str], round_no: int) -> list[str]:
    """The targets in the order of one round: as given, and reversed every other round, so
    that no target always runs first or last after the others (a machine that slows down or
    speeds up within a round then weighs on each the same over an even number of rounds)."""
    return list(reversed(targets)) if round_no % 2 else list(targets)


def throughput_round(args: argparse.Namespace, urls: dict[str, Target], round_no: int,
                     runs: dict[tuple[str, str], list[dict[str, float]]],
                     ttfts: dict[str, Result]) -> None:
    """One round of ``throughput``: each workload against each target, then TTFT of each."""
    targets = round_order(throughput_targets(args), round_no)
    for name in args.workloads:
        for target in targets:
            where = urls[target]
            cpu = where.cpu_seconds()
            run = bench_wrk.load(where.url, bench_wrk.WORKLOADS[name], seconds=args.seconds,
                                 concurrency=args.concurrency)
            runs[(name, target)].append({
                "rps": run.rate, "requests": run.requests, "errors": run.errors,
                "cpu_us": 1e6 * (where.cpu_seconds() - cpu) / max(1, run.requests)})
    for target in targets:
        # Paced like a real model (the simulator's X-Sim-Token-Rate), so the first token
        # travels alone rather than in a burst of the whole answer.
        ttfts[target].add(asyncio.run(load(
            urls[target].url, concurrency=1, requests=args.ttft_requests, tokens=5,
            stream=True, headers={"X-Sim-Token-Rate": "200"})))


def throughput(args: argparse.Namespace, urls: dict[str, Target],
               start: Callable[[ExitStack], dict[str, Target]] | None = None) -> dict[str, Any]:
    """Each workload against plain mitmdump and ours (queue off, on), interleaved in rounds;
    and time to first token at concurrency 1. With ``start``, every target is a new process
    each round (what ``start`` returns, stopped at the round's end)."""
    targets = throughput_targets(args)
    runs: dict[tuple[str, str], list[dict[str, float]]] = {
        (w, t): [] for w in args.workloads for t in targets}
    ttfts = {t: Result() for t in targets}
    for round_no in range(args.rounds):
        with ExitStack() as round_stack:
            if start is not None:
                urls = {**urls, **start(round_stack)}
            throughput_round(args, urls, round_no, runs, ttfts)
        print(f"throughput round {round_no + 1}/{args.rounds} done (load average "
              f"{os.getloadavg()[0]:.2f})", file=sys.stderr)
    report: dict[str, Any] = {"workloads": {}, "ttft_p50_ms": {}, "load_average": os.getloadavg()}
    for name in args.workloads:
        plain = runs[(name, "mitmdump")]
        plain_cpu = statistics.median(p["cpu_us"] for p in plain)
        quiet = runs.get((name, "quiet"))
        for queue in ("", "+queue"):
            row: dict[str, Any] = {}
            for tree in compared_trees(args):
                target = tree + queue if (name, tree + queue) in runs else tree
                ours = runs[(name, target)]
                ratios = [o["rps"] / p["rps"] for o, p in zip(ours, plain, strict=True)]
                ours_cpu = statistics.median(o["cpu_us"] for o in ours)
                row[tree] = {
                    "rps": statistics.median(o["rps"] for o in ours),
                    "ratio": statistics.median(ratios), "ratio_min": min(ratios),
                    "ratio_max": max(ratios), "cpu_us": ours_cpu,
                    "addon_cpu_us": ours_cpu - plain_cpu,
                    "errors": sum(r["errors"] for r in ours),
                    "rounds": [o["rps"] for o in ours],
                    "cpu_rounds": [o["cpu_us"] for o in ours],
                }
                if quiet is not None:  # the same against plain without its streaming line
                    row[tree]["ratio_quiet"] = statistics.median(
                        o["rps"] / q["rps"] for o, q in zip(ours, quiet, strict=True))
                    row[tree]["addon_cpu_us_quiet"] = ours_cpu - statistics.median(
                        q["cpu_us"] for q in quiet)
            report["workloads"][f"{name}{' queue' if queue else ''}"] = {
                "plain_rps": statistics.median(p["rps"] for p in plain),
                "plain_cpu_us": plain_cpu, "plain_rounds": [p["rps"] for p in plain],
                "plain_cpu_rounds": [p["cpu_us"] for p in plain],
                "plain_errors": sum(p["errors"] for p in plain), **row}
    for target, r in ttfts.items():
        report["ttft_p50_ms"][target] = 1000 * statistics.median(r.ttfts)
        report.setdefault("ttft_errors", {})[target] = r.errors
    return report


def print_throughput(args: argparse.Namespace, report: dict[str, Any]) -> None:
    print(f"\nthroughput: {'wrk' if bench_wrk.have_wrk() else 'aiohttp (wrk not installed)'}"
          f", {args.rounds} rounds x {args.seconds:g} s per workload and target at concurrency "
          f"{args.concurrency}, targets interleaved (each round's order the last's reversed); "
          "plain mitmdump: --set stream_large_bodies=1, no addon; ours: -s "
          "addons/llama_metrics.py, default configuration (history on), "
          f"'queue': max_concurrency={args.concurrency}"
          + (f"; before: the same from {args.before}" if args.before else "")
          + ("; nohist: ours with history_path= (history off)" if args.no_history else "")
          + ("; plain2: a second plain mitmdump" if args.control else "")
          + ("; every target a new process each round" if args.fresh else ""))
    print("req/s: median over rounds; ratio: median of the rounds' ours/plain (min-max); cpu: "
          "the proxy process's CPU us per request, median; addon: ours minus plain"
          + ("; vs quiet, addon q: the same against plain without its streaming log line "
             "(scripts/quiet_plain.py)" if args.quiet else ""))
    quiet_head = f"{'vs quiet':>9}{'addon q':>8}" if args.quiet else ""
    print(f"{'workload':<17}{'tree':<7}{'plain req/s':>12}{'req/s':>9}{'ratio':>7}{'min-max':>11}"
          f"{'target':>7}{'plain cpu':>10}{'cpu':>7}{'addon':>7}{'errors':>7}{quiet_head}")
    for name, r in report["workloads"].items():
        target = 0.97 if name.startswith("stream100") else 0.95
        for tree in compared_trees(args):
            t = r[tree]
            quiet = (f"{t['ratio_quiet']:>9.2f}{t['addon_cpu_us_quiet']:>8.0f}"
                     if "ratio_quiet" in t else "")
            print(f"{name:<17}{tree:<7}{r['plain_rps']:>12.1f}{t['rps']:>9.1f}{t['ratio']:>7.2f}"
                  f"{t['ratio_min']:>6.2f}-{t['ratio_max']:.2f}{target:>7.2f}"
                  f"{r['plain_cpu_us']:>10.0f}{t['cpu_us']:>7.0f}{t['addon_cpu_us']:>7.0f}"
                  f"{t['errors'] + r['plain_errors']:>7}{quiet}")
    t = report["ttft_p50_ms"]
    print(f"TTFT p50 at concurrency 1 ({args.ttft_requests} streams of 5 tokens at 200 tokens/s "
          "per round), ms: plain " + f"{t['mitmdump']:.3f}; " + ", ".join(
              f"{name} {t[name]:.3f} ({t[name] - t['mitmdump']:+.3f})"
              for name in throughput_targets(args)[1:]) + "; target: at most +0.100")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in report['load_average'])}")


def sweep_rate(args: argparse.Namespace, concurrency: int) -> float:
    """Tokens/s per stream at a concurrency: ``--sweep-rate``, slowed so that all streams
    together stay under ``--sweep-chunks`` a second. Past that, on 2 shared cores, the simulator
    falls behind its pacing and sends the late tokens back to back, and the gaps measure that."""
    return min(args.sweep_rate, args.sweep_chunks / concurrency)


def sweep(args: argparse.Namespace, urls: dict[str, Target]) -> dict[str, dict[str, Any]]:
    """TTFT and inter-token latency of paced streams at each concurrency, targets interleaved."""
    totals = {(c, t): Latency() for c in args.levels for t in urls}
    for round_no in range(args.sweep_rounds):
        for c in args.levels:
            for target, where in urls.items():
                requests = max(args.sweep_per_client * c, args.sweep_min)
                totals[(c, target)].add(asyncio.run(latency(
                    where.url, concurrency=c, requests=requests, tokens=args.sweep_tokens,
                    token_rate=sweep_rate(args, c))))
        print(f"latency round {round_no + 1}/{args.sweep_rounds} done", file=sys.stderr)
    report: dict[str, dict[str, Any]] = {}
    for (c, target), r in totals.items():
        report.setdefault(str(c), {})[target] = {
            "token_rate": sweep_rate(args, c), "requests": r.requests, "errors": r.errors,
            "ttft_p50_ms": 1000 * pct(r.ttfts, 0.5), "ttft_p99_ms": 1000 * pct(r.ttfts, 0.99),
            "itl_p50_ms": 1000 * pct(r.itls, 0.5), "itl_p99_ms": 1000 * pct(r.itls, 0.99),
        }
    return report


def print_sweep(args: argparse.Namespace, report: dict[str, dict[str, Any]]) -> None:
    print(f"\nlatency: streamed /api/chat answers of {args.sweep_tokens} tokens paced at "
          f"{args.sweep_rate:g} tokens/s (X-Sim-Token-Rate; slower where all streams together "
          f"would pass {args.sweep_chunks:g} a second), {args.sweep_per_client} per client and "
          f"at least {args.sweep_min} per round, {args.sweep_rounds} rounds; ms; '+direct': "
          "added over direct at the same concurrency")
    cols = ("ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms")
    print(f"{'conc':>5}{'tok/s':>6}  {'target':<10}{'TTFT p50':>10}{'+direct':>9}{'TTFT p99':>10}"
          f"{'+direct':>9}{'ITL p50':>9}{'+direct':>9}{'ITL p99':>9}{'+direct':>9}"
          f"{'requests':>9}{'errors':>7}")
    for c, rows in report.items():
        base = rows["direct"]
        for target, r in rows.items():
            cells = "".join(f"{r[k]:>{10 if k.startswith('ttft') else 9}.2f}"
                            f"{r[k] - base[k]:>+9.2f}" for k in cols)
            print(f"{c:>5}{r['token_rate']:>6.1f}  {target:<10}{cells}{r['requests']:>9}"
                  f"{r['errors']:>7}")


def streams(args: argparse.Namespace, urls: dict[str, Target],
            metrics: str) -> dict[str, dict[str, Any]]:
    """``--streams`` at once through each target; each answer checked against direct's."""
    report: dict[str, dict[str, Any]] = {}
    reference: dict[int, str] = {}
    for target, where in urls.items():
        # A few first, so that what is loaded or cached once is in "before" and not in the peak.
        asyncio.run(many(where.url, count=10, tokens=2, token_rate=args.streams_rate,
                         process=None, settle=0))
        counted = scrape(metrics)["ollama_proxy_requests_total"] if target == "proxy" else 0.0
        r = asyncio.run(many(where.url, count=args.streams, tokens=args.streams_tokens,
                             token_rate=args.streams_rate,
                             process=None if target == "direct" else where.process,
                             settle=args.settle))
        if target == "direct":
            reference = r.contents
        same = sum(1 for i, text in r.contents.items() if reference.get(i) == text)
        report[target] = {
            "complete": r.complete, "same_as_direct": same, "max_open": r.max_open,
            "seconds": r.seconds, "rss_before_mb": r.rss_before_mb,
            "rss_peak_mb": r.rss_peak_mb, "rss_settled_mb": r.rss_settled_mb,
        }
        if target == "proxy":
            deadline = time.monotonic() + 30
            while scrape(metrics)["ollama_proxy_requests_total"] - counted < args.streams \
                    and time.monotonic() < deadline:
                time.sleep(0.1)
            report[target]["counted"] = scrape(metrics)["ollama_proxy_requests_total"] - counted
        print(f"{args.streams} streams through {target} done", file=sys.stderr)
    return report


def print_streams(args: argparse.Namespace, report: dict[str, dict[str, Any]]) -> None:
    print(f"\n{args.streams} streams at once (half /api/chat, half /v1/chat/completions), "
          f"{args.streams_tokens} tokens each at {args.streams_rate:g} tokens/s; RSS of the "
          f"proxy process in MB: before, peak (every 50 ms), settled ({args.settle:g} s after "
          "the last ended and the client hung up)")
    print(f"{'target':<10}{'complete':>9}{'= direct':>9}{'max open':>9}{'seconds':>9}"
          f"{'RSS before':>11}{'peak':>8}{'settled':>9}{'peak-before':>12}")
    for target, r in report.items():
        print(f"{target:<10}{r['complete']:>9}{r['same_as_direct']:>9}{r['max_open']:>9}"
              f"{r['seconds']:>9.1f}{r['rss_before_mb']:>11.1f}{r['rss_peak_mb']:>8.1f}"
              f"{r['rss_settled_mb']:>9.1f}{r['rss_peak_mb'] - r['rss_before_mb']:>12.1f}")
    if "proxy" in report:
        print(f"our proxy counted {report['proxy']['counted']:.0f} of them in requests_total")


def workloads(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names or any(n not in bench_wrk.WORKLOADS for n in names):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected workloads of {', '.join(bench_wrk.WORKLOADS)}")
    return names


def levels(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected concurrencies >= 1, e.g. 1,16")
    return values


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds (3)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="seconds of each throughput run (10)")
    parser.add_argument("--workloads", type=workloads, default=list(bench_wrk.WORKLOADS),
                        help=f"throughput workloads ({','.join(bench_wrk.WORKLOADS)})")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--ttft-requests", type=int, default=200, help="at concurrency 1")
    parser.add_argument("--levels", type=levels, default=[1, 16, 64, 256],
                        help="concurrencies of the latency sweep (1,16,64,256)")
    parser.add_argument("--sweep-rounds", type=int, default=2)
    parser.add_argument("--sweep-tokens", type=int, default=10)
    parser.add_argument("--sweep-rate", type=float, default=20.0, help="tokens/s (20)")
    parser.add_argument("--sweep-chunks", type=float, default=1280.0,
                        help="at most this many tokens/s over all streams of a level (1280)")
    parser.add_argument("--sweep-per-client", type=int, default=3,
                        help="requests per client per round (3)")
    parser.add_argument("--sweep-min", type=int, default=30,
                        help="requests per level per round at the least (30)")
    parser.add_argument("--streams", type=int, default=500, help="streams at once (500)")
    parser.add_argument("--streams-tokens", type=int, default=100)
    parser.add_argument("--streams-rate", type=float, default=5.0,
                        help="tokens/s (5: answers of 20 s, longer than opening 500 takes)")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds after the streams before the settled RSS (5)")
    parser.add_argument("--only", choices=("throughput", "latency", "streams"), action="append",
                        help="run only these parts (all three by default)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--json", help="write the numbers to this file too")
    parser.add_argument("--floor", action="store_true",
                        help="throughput: also run mitmdump -s scripts/floor_addon.py (a "
                             "callable per chunk that only reads the clock: the floor)")
    parser.add_argument("--quiet", action="store_true",
                        help="throughput: also run plain mitmdump -s scripts/quiet_plain.py "
                             "(without its log line per streamed message, as ours), and the "
                             "ratios against it")
    parser.add_argument("--no-history", action="store_true",
                        help="throughput: also run ours with history off (history_path=): "
                             "the most a history writer in another process could give back")
    parser.add_argument("--control", action="store_true",
                        help="throughput: also run a second plain mitmdump (plain2), "
                             "the same as the first: what a ratio reads with no difference")
    parser.add_argument("--fresh", action="store_true",
                        help="throughput: start every target anew each round, plain mitmdump "
                             "too (two processes of one program can differ by a few percent "
                             "for as long as they run)")
    parser.add_argument("--before", type=Path, metavar="DIR",
                        help="throughput: also run the proxy of another checkout (say, "
                             "`git worktree add /tmp/before <commit>`) beside ours")
    args = parser.parse_args(argv)
    if args.before is not None and not (args.before / "addons/llama_metrics.py").is_file():
        parser.error(f"--before {args.before}: no addons/llama_metrics.py there")
    if args.quick:
        args.rounds, args.seconds, args.ttft_requests = 2, 4.0, 50
        args.sweep_rounds, args.sweep_per_client, args.sweep_min = 1, 1, 10
        args.streams, args.streams_tokens, args.settle = 100, 20, 1.0
    parts = args.only or ["throughput", "latency", "streams"]

    report: dict[str, Any] = {}
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        sim_target = stack.enter_context(service(
            simulator(100), r"http://127\.0\.0\.1:(\d+)", "simulator"))
        sim = sim_target.url
        urls = {
            "direct": sim_target,
            "mitmdump": stack.enter_context(service(
                mitmdump(sim, "--set", "stream_large_bodies=1"), LISTENING, "mitmdump")),
            "proxy": stack.enter_context(service(
                mitmdump(sim, "-s", "addons/llama_metrics.py", "--set", "metrics_port=0",
                         "--set", "history_path="), LISTENING, "proxy")),
        }
        if "streams" in parts:  # first, so "before" is a fresh process's memory
            report["streams"] = streams(args, urls, urls["proxy"].metrics_url())
        if "throughput" in parts:
            commands = throughput_commands(args, sim, tmp)
            if args.fresh:  # throughput() starts them, plain mitmdump too, every round
                report["throughput"] = throughput(
                    args, urls, start=lambda round_stack: start_all(round_stack, commands))
            else:
                commands.pop("mitmdump")  # the one started above
                started = start_all(stack, commands)
                report["throughput"] = throughput(args, {**urls, **started})
        if "latency" in parts:
            report["latency"] = sweep(args, urls)

    if "throughput" in report:
        print_throughput(args, report["throughput"])
    if "latency" in report:
        print_sweep(args, report["latency"])
    if "streams" in report:
        print_streams(args, report["streams"])
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
