#!/usr/bin/env python3
"""Soak: a steady mixed load for minutes through our proxy and plain mitmdump, RSS sampled.

One invocation starts the Ollama simulator (tokens paced at ``--token-rate``), a plain
``mitmdump`` reverse proxy with streaming on (``stream_large_bodies=1``, no addon) and our proxy
as ``scripts/up`` runs it (``mitmdump -s addons/llama_metrics.py``, history on, to a temporary
file), then sends both the same closed-loop load for ``--soak-minutes``: native and OpenAI
chat, streamed and not, generate, embeddings, an injected upstream 500, a client that leaves
mid-stream and a never-seen model name each cycle (the label guard's path). Our ``/metrics``
is scraped every 15 s as Prometheus would. Each proxy's resident set size is sampled every
``--sample-seconds``; the memory slope is the least-squares fit in MB/hour over the samples
after the first fifth of the run (allocator and cache warm-up). At the end, our proxy's
``requests_total`` must equal the requests it was sent.

    .venv/bin/python scripts/bench_soak.py --soak-minutes 10
    .venv/bin/python scripts/bench_soak.py --quick          # one minute, a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from scripts.bench import LISTENING, Target, mitmdump, scrape, service

MB = 1024 * 1024
SCRAPE_EVERY = 15.0


@dataclass
class Tally:
    """What one target was sent and what came back wrong (beyond the faults we asked for)."""

    sent: int = 0
    unexpected: Counter[str] = field(default_factory=Counter)
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds, RSS bytes)


def cycle(worker: int, n: int) -> tuple[str, dict[str, Any], dict[str, str], int, str]:
    """Request ``n`` of a worker: path, body, headers, the status we expect, and how to read it.

    How to read: "stream" (to the end), "json", or "leave" (first line, then hang up).
    """
    prompt = f"worker {worker} request {n}: tell me about llamas"
    chat = {"model": "llama3.2", "messages": [{"role": "user", "content": prompt}]}
    kind = n % 10
    if kind in (0, 1, 2):
        return "/api/chat", {**chat, "stream": True}, {}, 200, "stream"
    if kind == 3:
        return "/api/generate", {"model": "qwen3", "prompt": prompt, "stream": False}, {}, 200, \
            "json"
    if kind in (4, 5):  # no include_usage: the proxy asks upstream and strips the extra chunk
        return "/v1/chat/completions", {**chat, "stream": True}, {}, 200, "stream"
    if kind == 6:
        return "/v1/chat/completions", {**chat, "stream": False}, {}, 200, "json"
    if kind == 7:
        return "/api/embed", {"model": "nomic-embed-text", "input": prompt}, {}, 200, "json"
    if kind == 8:
        if n % 20 == 8:
            return "/api/chat", {**chat, "stream": True}, {"X-Sim-Fault": "status:500"}, 500, \
                "json"
        return "/api/chat", {**chat, "stream": True}, {"X-Sim-Tokens": "200"}, 200, "leave"
    # A model name never seen before: the upstream's 404, and a label the guard must bound.
    return "/api/chat", {**chat, "model": f"soak-{worker}-{n}"}, {}, 404, "json"


async def one(session: aiohttp.ClientSession, url: str, worker: int, n: int,
              tally: Tally) -> None:
    path, body, headers, status, read = cycle(worker, n)
    tally.sent += 1
    try:
        async with session.post(url + path, json=body, headers=headers) as response:
            if read == "leave":
                await response.content.readline()
                response.close()  # hang up mid-stream
            elif read == "stream":
                lines = [line async for line in response.content if line.strip()]
                last = lines[-1] if lines else b""
                if b'"done":true' not in last and b"[DONE]" not in last:
                    tally.unexpected["stream without its end"] += 1
            else:
                await response.read()
            if response.status != status:
                tally.unexpected[f"status {response.status} for {path}"] += 1
    except (aiohttp.ClientError, TimeoutError) as exc:
        tally.unexpected[type(exc).__name__] += 1


async def drive(targets: dict[str, Target], tallies: dict[str, Tally], seconds: float,
                workers: int, sample_every: float, metrics: str) -> None:
    """The same closed-loop load on every target until ``seconds`` pass; RSS sampled meanwhile."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    end = start + seconds

    async def worker(name: str, session: aiohttp.ClientSession, number: int) -> None:
        n = 0
        while loop.time() < end:
            await one(session, targets[name].url, number, n, tallies[name])
            n += 1

    async def sampler() -> None:
        last_scrape = start
        while loop.time() < end:
            now = loop.time()
            for name, target in targets.items():
                tallies[name].samples.append((now - start, target.rss()))
            if now - last_scrape >= SCRAPE_EVERY:
                last_scrape = now
                await loop.run_in_executor(None, scrape, metrics)
            await asyncio.sleep(sample_every)

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as a, \
            aiohttp.ClientSession(timeout=timeout) as b:
        sessions = dict(zip(targets, (a, b), strict=True))
        await asyncio.gather(sampler(), *(worker(name, sessions[name], i)
                                          for name in targets for i in range(workers)))
    for name, target in targets.items():
        tallies[name].samples.append((loop.time() - start, target.rss()))


def history_rows(path: Path) -> int:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        return int(db.execute("SELECT count(*) FROM requests").fetchone()[0])


def slope_mb_per_hour(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS over time, in MB per hour."""
    if len(samples) < 3:
        return float("nan")
    fit = statistics.linear_regression([t for t, _ in samples], [rss / MB for _, rss in samples])
    return fit.slope * 3600


def summarise(tally: Tally, seconds: float) -> dict[str, Any]:
    settled = [(t, rss) for t, rss in tally.samples if t >= seconds / 5]
    return {
        "requests": tally.sent,
        "unexpected": dict(tally.unexpected),
        "rss_start_mb": tally.samples[0][1] / MB,
        "rss_after_warmup_mb": settled[0][1] / MB,
        "rss_end_mb": tally.samples[-1][1] / MB,
        "rss_peak_mb": max(rss for _, rss in tally.samples) / MB,
        "slope_mb_per_hour": slope_mb_per_hour(settled),
        "slope_last_half_mb_per_hour": slope_mb_per_hour(
            [(t, rss) for t, rss in tally.samples if t >= seconds / 2]),
        "slope_all_mb_per_hour": slope_mb_per_hour(tally.samples),
        "samples": tally.samples,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--soak-minutes", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="one minute, for a smoke run")
    parser.add_argument("--workers", type=int, default=8, help="closed-loop clients per target")
    parser.add_argument("--token-rate", type=float, default=100.0,
                        help="tokens/s of each simulated answer (100)")
    parser.add_argument("--tokens", type=int, default=20, help="tokens per answer (20)")
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--json", help="write the numbers (and every RSS sample) here too")
    args = parser.parse_args(argv)
    if args.quick:
        args.soak_minutes = 1.0
    if not args.soak_minutes > 0 or args.workers < 1 or not args.sample_seconds > 0:
        parser.error("--soak-minutes and --sample-seconds must be > 0, --workers >= 1")
    seconds = args.soak_minutes * 60
    tallies = {"mitmdump": Tally(), "proxy": Tally()}
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        sim = stack.enter_context(service(
            [sys.executable, "scripts/ollama_sim.py", "--port", "0", "--token-rate",
             str(args.token_rate), "--tokens", str(args.tokens)],
            r"http://127\.0\.0\.1:(\d+)", "simulator")).url
        targets = {
            "mitmdump": stack.enter_context(service(
                mitmdump(sim, "--set", "stream_large_bodies=1"), LISTENING, "mitmdump")),
            "proxy": stack.enter_context(service(
                mitmdump(sim, "-s", "addons/llama_metrics.py", "--set", "metrics_port=0",
                         "--set", f"history_path={tmp}/history.db"), LISTENING, "proxy")),
        }
        metrics = targets["proxy"].metrics_url()
        print(f"soak: {args.soak_minutes:g} min, {args.workers} clients per target",
              file=sys.stderr)
        asyncio.run(drive(targets, tallies, seconds, args.workers, args.sample_seconds,
                          metrics))
        deadline = time.monotonic() + 30
        while True:  # the last responses are counted (and written) a moment after the client
            counted = scrape(metrics).get("ollama_proxy_requests_total", 0.0)
            rows = history_rows(Path(tmp) / "history.db")
            if min(counted, rows) >= tallies["proxy"].sent or time.monotonic() > deadline:
                break
            time.sleep(0.2)

    report = {name: summarise(tally, seconds) for name, tally in tallies.items()}
    report["proxy"].update(counted=counted, history_rows=rows)
    print(f"\nsoak: {args.soak_minutes:g} min of {args.workers} closed-loop clients per target, "
          f"answers of {args.tokens} tokens at {args.token_rate:g} tokens/s; RSS every "
          f"{args.sample_seconds:g} s, in MB; slope: least squares after the first fifth, over "
          "the last half, over all")
    print(f"{'target':<10}{'requests':>10}{'unexpected':>11}{'RSS start':>11}{'settled':>9}"
          f"{'end':>8}{'peak':>8}{'MB/hour':>9}{'last half':>10}{'all':>8}")
    for name, r in report.items():
        print(f"{name:<10}{r['requests']:>10}{sum(r['unexpected'].values()):>11}"
              f"{r['rss_start_mb']:>11.1f}{r['rss_after_warmup_mb']:>9.1f}{r['rss_end_mb']:>8.1f}"
              f"{r['rss_peak_mb']:>8.1f}{r['slope_mb_per_hour']:>+9.2f}"
              f"{r['slope_last_half_mb_per_hour']:>+10.2f}{r['slope_all_mb_per_hour']:>+8.2f}")
    for name, r in report.items():
        if r["unexpected"]:
            print(f"{name}: unexpected {r['unexpected']}")
    print(f"our proxy counted {counted:.0f} of {tallies['proxy'].sent} requests in "
          f"requests_total and wrote {rows} history rows")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    clean = not any(r["unexpected"] for r in report.values())
    ok = clean and counted == rows == tallies["proxy"].sent
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
