#!/usr/bin/env python3
"""Drive Ollama, directly or through the proxy, with a scheduled open-loop load and summarise it.

Requests arrive at the times a pattern schedules, whether or not earlier ones have finished
(open loop); ``--concurrency`` caps how many are in flight, and the time a request waits for a
slot is measured and reported apart from its own latency. Examples (see docs/load.md)::

    .venv/bin/python scripts/load.py --rate 5 --duration 30
    .venv/bin/python scripts/load.py --pattern burst --burst 20 --every 5 --duration 60
    .venv/bin/python scripts/load.py --pattern ramp --rate 1 --rate-to 20 --duration 60
    .venv/bin/python scripts/load.py --pattern spike --rate 2 --spike-factor 10 \\
        --spike-seconds 5 --duration 30 --json summary.json

It stops by itself after ``--duration`` seconds or ``--requests`` requests and waits for the
requests in flight; Ctrl-C stops at once and still prints the summary (exit status 130).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from llama_core.security import load_security
from llama_core.settings import ConfigError

logger = logging.getLogger("load")

PATTERNS = ("constant", "burst", "ramp", "spike")
WORDS = ("llama", "alpaca", "river", "mountain", "quiet", "explain", "why", "the", "sky",
         "is", "blue", "token", "stream", "model", "cache", "latency", "a", "of", "and")

# ---------------------------------------------------------------------------------------------
# Schedules: arrival times in seconds from the start, ascending


def piecewise(segments: Sequence[tuple[float, float]]) -> list[float]:
    """Arrivals for a piecewise-constant rate: (seconds, requests/s) segments, back to back.

    Arrival i comes when the expected count reaches i (the first at 0), so a segment of rate r
    and length d holds r*d arrivals give or take one, evenly spaced 1/r apart.
    """
    times: list[float] = []
    start = 0.0
    done = 0.0  # expected arrivals before this segment
    for seconds, rate in segments:
        if seconds < 0 or rate < 0:
            raise ValueError(f"segment ({seconds}, {rate}) must not be negative")
        end = done + rate * seconds
        i = math.ceil(done - 1e-9)
        while i < end - 1e-9:
            times.append(start + (i - done) / rate)
            i += 1
        start, done = start + seconds, end
    return times


def constant(rate: float, duration: float) -> list[float]:
    """``rate`` requests per second, evenly spaced, over ``duration`` seconds."""
    return piecewise([(duration, rate)])


def burst(size: int, period: float, duration: float) -> list[float]:
    """``size`` requests at once at 0, ``period``, 2*``period``, ... before ``duration``."""
    if size < 1 or period <= 0:
        raise ValueError("a burst needs a size >= 1 and a period > 0")
    return [k * period for k in range(math.ceil(duration / period - 1e-9)) for _ in range(size)]


def ramp(rate_from: float, rate_to: float, duration: float) -> list[float]:
    """A rate rising (or falling) linearly from ``rate_from`` to ``rate_to`` over ``duration``."""
    if rate_from < 0 or rate_to < 0 or duration <= 0:
        raise ValueError("ramp rates must be >= 0 and the duration > 0")
    # Expected count N(t) = r0*t + a*t^2 with a = (r1-r0)/(2D); arrival i at N(t) = i, solved in
    # the form that stays exact when a is 0 or r0 is 0.
    a = (rate_to - rate_from) / (2 * duration)
    total = rate_from * duration + a * duration * duration
    times = []
    i = 0
    while i < total - 1e-9:
        root = math.sqrt(max(rate_from * rate_from + 4 * a * i, 0.0))
        times.append(0.0 if i == 0 else 2 * i / (rate_from + root))
        i += 1
    return times


def spike(rate: float, factor: float, spike_seconds: float, duration: float) -> list[float]:
    """``rate`` throughout, ``factor`` times it for ``spike_seconds`` in the middle."""
    if factor < 0 or not 0 <= spike_seconds <= duration:
        raise ValueError("the spike factor must be >= 0 and the spike fit in the duration")
    before = (duration - spike_seconds) / 2
    return piecewise([(before, rate), (spike_seconds, rate * factor),
                      (duration - before - spike_seconds, rate)])


# ---------------------------------------------------------------------------------------------
# Summary maths


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100), interpolated linearly between ranks; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(slots=True)
class Result:
    """One request sent: its error kind (None when it succeeded) and what was measured."""

    error: str | None
    wait: float  # seconds queued for a concurrency slot
    duration: float  # sent to last byte
    ttft: float | None = None  # sent to first content chunk, streams only
    tokens: int | None = None  # eval_count / completion_tokens as the server reported them
    prompt_tokens: int | None = None  # prompt_eval_count / prompt_tokens, likewise

    @property
    def tokens_per_s(self) -> float | None:
        """Generation rate seen by the client; for a stream, of the tokens after the first."""
        if not self.tokens:
            return None
        if self.ttft is None:
            return self.tokens / self.duration if self.duration > 0 else None
        span = self.duration - self.ttft
        return (self.tokens - 1) / span if span > 0 and self.tokens > 1 else None


def spread(values: Sequence[float]) -> dict[str, float | None]:
    return {f"p{q}": percentile(values, q) for q in (50, 95, 99)}


def summarize(results: Sequence[Result], elapsed: float, scheduled: int) -> dict[str, Any]:
    """The numbers of a run: counts, errors by kind, achieved rate and latency percentiles."""
    ok = [r for r in results if r.error is None]
    waits = [r.wait for r in results]
    return {
        "scheduled": scheduled,
        "requests": len(results),
        "ok": len(ok),
        "errors": dict(sorted(Counter(r.error for r in results if r.error).items())),
        "elapsed_s": elapsed,
        "rate": len(results) / elapsed if elapsed > 0 else 0.0,
        "waited": sum(1 for w in waits if w > 0),
        "wait_s": spread(waits),
        "ttft_s": spread([r.ttft for r in ok if r.ttft is not None]),
        "duration_s": spread([r.duration for r in ok]),
        "tokens": sum(r.tokens or 0 for r in ok),
        "prompt_tokens": sum(r.prompt_tokens or 0 for r in ok),
        "tokens_per_s": spread([t for r in ok if (t := r.tokens_per_s) is not None]),
    }


def render(summary: dict[str, Any]) -> str:
    """The summary as a plain-text table."""
    def num(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
        return "-" if value is None else f"{value * scale:.{digits}f}"

    errors = sum(summary["errors"].values())
    kinds = ", ".join(f"{kind}: {n}" for kind, n in summary["errors"].items())
    lines = [
        f"requests  {summary['requests']} of {summary['scheduled']} scheduled in "
        f"{summary['elapsed_s']:.1f} s ({summary['rate']:.2f}/s)",
        f"ok        {summary['ok']}",
        f"errors    {errors}" + (f" ({kinds})" if kinds else ""),
        f"waited    {summary['waited']} for a concurrency slot",
        f"tokens    {summary['tokens']} generated, {summary['prompt_tokens']} in prompts",
        "",
        f"{'':<16}{'p50':>10}{'p95':>10}{'p99':>10}",
    ]
    for label, key, scale, digits in (("queue wait ms", "wait_s", 1000, 1),
                                      ("TTFT ms", "ttft_s", 1000, 1),
                                      ("duration ms", "duration_s", 1000, 1),
                                      ("tokens/s", "tokens_per_s", 1, 1)):
        row = summary[key]
        lines.append(f"{label:<16}" + "".join(f"{num(row[p], scale, digits):>10}"
                                              for p in ("p50", "p95", "p99")))
    return "\n".join(lines)


def parse_sizes(text: str) -> dict[int, float]:
    """``--prompt-words``: one size (``20``) or a weighted mix (``20=3,2000=1``)."""
    sizes: dict[int, float] = {}
    for name, weight in parse_weights(text, "--prompt-words").items():
        if not name.isdigit():
            raise ValueError(f"--prompt-words {name!r}: a size is a whole number of words >= 0")
        sizes[int(name)] = weight
    return sizes


def parse_weights(text: str, what: str) -> dict[str, float]:
    """``a=3,b=1`` (a bare ``a`` weighs 1) into {name: weight}; ValueError naming ``what``."""
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, raw = part.partition("=")
        try:
            weight = float(raw) if raw else 1.0
        except ValueError:
            raise ValueError(f"{what} {part!r}: the weight must be a number") from None
        if not name.strip() or not weight >= 0 or weight == math.inf:
            raise ValueError(f"{what} {part!r}: expected NAME=WEIGHT with a weight >= 0")
        weights[name.strip()] = weight
    if not weights or not sum(weights.values()) > 0:
        raise ValueError(f"{what} {text!r}: expected NAME=WEIGHT,... with some weight > 0")
    return weights


# ---------------------------------------------------------------------------------------------
# Requests


@dataclass(frozen=True, slots=True)
class Plan:
    """One request, drawn from the seeded mix before the run starts."""

    at: float
    model: str
    priority: str | None
    stream: bool
    openai: bool
    fault: str | None
    prompt: str


def draw(times: Sequence[float], args: argparse.Namespace) -> list[Plan]:
    rng = random.Random(args.seed)

    def pick(weights: dict[str, float]) -> str:
        return rng.choices(list(weights), list(weights.values()))[0]

    sizes: list[int] = list(args.prompt_words)
    size_weights = list(args.prompt_words.values())
    plans = []
    for at in times:
        openai = args.endpoint == "openai" or (args.endpoint == "mix" and rng.random() < 0.5)
        fault = args.fault if rng.random() < args.fault_fraction else None
        # One size draws nothing, so a seed sends the same mix as before sizes could be mixed.
        words = sizes[0] if len(sizes) == 1 else rng.choices(sizes, size_weights)[0]
        prompt = " ".join(rng.choice(WORDS) for _ in range(words))
        plans.append(Plan(at, pick(args.models), pick(args.priorities) if args.priorities else None,
                          rng.random() < args.stream, openai, fault, prompt))
    return plans


def request_of(plan: Plan, max_tokens: int | None) -> tuple[str, dict[str, Any], dict[str, str]]:
    """Path, JSON body and headers of a chat request in Ollama's or OpenAI's API."""
    body: dict[str, Any] = {"model": plan.model, "stream": plan.stream,
                            "messages": [{"role": "user", "content": plan.prompt}]}
    if plan.openai and plan.stream:
        body["stream_options"] = {"include_usage": True}
    if max_tokens is not None:
        if plan.openai:
            body["max_tokens"] = max_tokens
        else:
            body["options"] = {"num_predict": max_tokens}
    headers = {}
    if plan.priority:
        headers["X-Priority"] = plan.priority
    if plan.fault:
        headers["X-Sim-Fault"] = plan.fault
    return ("/v1/chat/completions" if plan.openai else "/api/chat"), body, headers


class _StreamError(Exception):
    """The response began well but carried an error, a bad line or no proper end."""


async def _read_stream(response: aiohttp.ClientResponse, openai: bool, sent: float,
                       result: Result) -> None:
    ended = False
    async for raw in response.content:
        line = raw.strip()
        if openai:
            if not line.startswith(b"data:"):
                continue
            line = line.removeprefix(b"data:").strip()
            if line == b"[DONE]":
                ended = True
                continue
        if not line:
            continue
        try:
            chunk = json.loads(line)
        except ValueError:
            raise _StreamError("malformed line") from None
        if not isinstance(chunk, dict) or "error" in chunk:
            raise _StreamError(str(chunk))
        if openai:
            choices = chunk.get("choices") or [{}]
            content = (choices[0].get("delta") or {}).get("content")
            usage = chunk.get("usage") or {}
            if "completion_tokens" in usage:
                result.tokens = usage["completion_tokens"]
                result.prompt_tokens = usage.get("prompt_tokens")
        else:
            content = (chunk.get("message") or {}).get("content") or chunk.get("response")
            if chunk.get("done"):
                ended = True
                result.tokens = chunk.get("eval_count")
                result.prompt_tokens = chunk.get("prompt_eval_count")
        if content and result.ttft is None:
            result.ttft = time.perf_counter() - sent
    if not ended:
        raise _StreamError("the stream ended without its final chunk")


async def send(session: aiohttp.ClientSession, base: str, plan: Plan, max_tokens: int | None,
               result: Result) -> None:
    """Make the request and fill in result: error kind, TTFT, duration, tokens."""
    path, body, headers = request_of(plan, max_tokens)
    sent = time.perf_counter()
    try:
        async with session.post(base + path, json=body, headers=headers) as response:
            if response.status != 200:
                await response.read()
                result.error = f"status {response.status}"
            elif plan.stream:
                await _read_stream(response, plan.openai, sent, result)
            else:
                value = json.loads(await response.read())
                usage = value.get("usage") or {}
                result.tokens = usage.get("completion_tokens", value.get("eval_count"))
                result.prompt_tokens = usage.get("prompt_tokens", value.get("prompt_eval_count"))
    except TimeoutError:
        result.error = "timeout"
    except (aiohttp.ClientError, ConnectionError):
        result.error = "connection"
    except (_StreamError, ValueError, AttributeError):
        result.error = "stream"
    finally:
        result.duration = time.perf_counter() - sent


# ---------------------------------------------------------------------------------------------
# The run


class Progress:
    """One status line on stderr: redrawn in place on a terminal, every few seconds otherwise."""

    def __init__(self, out: TextIO, total: int, duration: float | None) -> None:
        self.out, self.total, self.duration = out, total, duration
        self.tty = out.isatty()
        self.interval = 0.2 if self.tty else 5.0

    def line(self, sent: int, ok: int, errors: int, running: int, waiting: int,
             elapsed: float) -> str:
        fraction = sent / self.total if self.total else 1.0
        if self.duration:
            fraction = max(fraction, min(elapsed / self.duration, 1.0))
        bar = "#" * round(20 * fraction)
        return (f"[{bar:<20}] {sent}/{self.total} sent  {ok} ok  {errors} errors  "
                f"{running} in flight  {waiting} waiting  {elapsed:.1f}s")

    def show(self, text: str) -> None:
        self.out.write(f"\r{text}\x1b[K" if self.tty else text + "\n")
        self.out.flush()

    def end(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()


async def run(url: str, plans: Sequence[Plan], *, concurrency: int, timeout: float,
              max_tokens: int | None, progress: Progress, stop: asyncio.Event,
              headers: dict[str, str] | None = None) -> tuple[list[Result], float]:
    """Send each plan at its time, at most ``concurrency`` at once; stop early when stop is set."""
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(concurrency)
    results: list[Result] = []
    waiting = sent = 0
    start = loop.time()
    connector = aiohttp.TCPConnector(limit=concurrency)
    client_timeout = aiohttp.ClientTimeout(total=timeout)

    async def one(session: aiohttp.ClientSession, plan: Plan) -> None:
        nonlocal waiting, sent
        queued = loop.time()
        waited = slots.locked()  # only a full house counts as waiting, not the loop's jitter
        waiting += 1
        try:
            await slots.acquire()
        finally:
            waiting -= 1
        sent += 1
        result = Result(None, loop.time() - queued if waited else 0.0, 0.0)
        try:
            await send(session, url, plan, max_tokens, result)
        except asyncio.CancelledError:
            result.error = "cancelled"
            raise
        finally:
            results.append(result)
            slots.release()

    def report() -> None:
        ok = sum(1 for r in results if r.error is None)
        progress.show(progress.line(sent, ok, len(results) - ok, sent - len(results), waiting,
                                    loop.time() - start))

    async def ticker() -> None:
        while True:
            report()
            await asyncio.sleep(progress.interval)

    tasks: set[asyncio.Task[None]] = set()
    halt = asyncio.create_task(stop.wait())
    tick = asyncio.create_task(ticker())
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout,
                                     headers=headers) as session:
        for plan in plans:
            delay = start + plan.at - loop.time()
            if delay > 0:
                await asyncio.wait([halt], timeout=delay)
            if stop.is_set():
                break
            tasks.add(asyncio.create_task(one(session, plan)))
        pending = {t for t in tasks if not t.done()}
        while pending and not stop.is_set():
            await asyncio.wait(pending | {halt}, return_when=asyncio.FIRST_COMPLETED)
            pending = {t for t in pending if not t.done()}
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    elapsed = loop.time() - start
    tick.cancel()
    halt.cancel()
    await asyncio.gather(tick, halt, return_exceptions=True)
    report()
    progress.end()
    return results, elapsed


def schedule(args: argparse.Namespace) -> list[float]:
    duration = args.duration
    if duration is None:
        if args.pattern == "constant":
            duration = args.requests / args.rate
        elif args.pattern == "burst":
            duration = math.ceil(args.requests / args.burst) * args.every
        else:
            raise ValueError(f"--pattern {args.pattern} needs --duration")
    if args.pattern == "constant":
        times = constant(args.rate, duration)
    elif args.pattern == "burst":
        times = burst(args.burst, args.every, duration)
    elif args.pattern == "ramp":
        times = ramp(args.rate, args.rate_to, duration)
    else:
        times = spike(args.rate, args.spike_factor, args.spike_seconds, duration)
    return times[: args.requests] if args.requests is not None else times


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction from 0 to 1")
    return value


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(prog="load.py", description=doc.split("\n", 1)[0])
    add = parser.add_argument
    add("--url", default="http://127.0.0.1:11435", help="Ollama or the proxy (the proxy)")
    add("--pattern", choices=PATTERNS, default="constant")
    add("--rate", type=float, default=2.0,
        help="requests/s: constant; where ramp starts; spike's base rate (2)")
    add("--rate-to", type=float, default=10.0, help="ramp: requests/s at the end (10)")
    add("--burst", type=int, default=10, help="burst: requests at once (10)")
    add("--every", type=float, default=5.0, help="burst: seconds between bursts (5)")
    add("--spike-factor", type=float, default=5.0, help="spike: times the base rate (5)")
    add("--spike-seconds", type=float, default=5.0, help="spike: its length, centred (5)")
    add("--duration", type=float, help="seconds of arrivals (10 unless --requests is given)")
    add("--requests", type=int, help="stop after this many requests")
    add("--concurrency", type=int, default=16, help="most requests in flight at once (16)")
    add("--timeout", type=float, default=120.0, help="seconds one request may take (120)")
    add("--prompt-words", default="20",
        help="words in each prompt, or a weighted mix of sizes, e.g. 20=3,2000=1 (20)")
    add("--max-tokens", type=int, help="num_predict / max_tokens of each request")
    add("--stream", dest="stream", action="store_const", const=1.0, default=1.0,
        help="stream every answer (the default)")
    add("--no-stream", dest="stream", action="store_const", const=0.0)
    add("--stream-fraction", dest="stream", type=_fraction, help="stream this share of answers")
    add("--models", default="llama3.2", help="weighted mix, e.g. llama3.2=3,qwen3=1")
    add("--priorities", default="", help="X-Priority mix, e.g. high=1,normal=8,low=1 (none)")
    add("--endpoint", choices=("native", "openai", "mix"), default="native",
        help="/api/chat, /v1/chat/completions, or half each (native)")
    add("--fault-fraction", type=_fraction, default=0.0,
        help="share of requests that ask the simulator for a fault with X-Sim-Fault (0)")
    add("--fault", default="status:500", help="the X-Sim-Fault asked for (status:500)")
    add("--seed", type=int, default=1, help="seed of the request mix (1)")
    add("--json", type=Path, help="also write the summary to this file as JSON")
    add("--config", help="YAML configuration: its security.access_token (or "
        "LLAMA_METRICS_SECURITY_ACCESS_TOKEN), when set, is sent as Authorization: Bearer")
    args = parser.parse_args(argv)
    try:
        args.headers = load_security(config=args.config).headers()
    except ConfigError as exc:
        parser.error(str(exc))
    try:
        args.models = parse_weights(args.models, "--models")
        args.priorities = parse_weights(args.priorities, "--priorities") \
            if args.priorities else {}
        args.prompt_words = parse_sizes(args.prompt_words)
        for name in ("rate", "rate_to", "spike_factor"):
            if not 0 <= getattr(args, name) < math.inf:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0")
        if args.concurrency < 1 or args.timeout <= 0:
            raise ValueError("--concurrency must be >= 1, --timeout > 0")
        if args.requests is not None and args.requests < 1:
            raise ValueError("--requests must be >= 1")
        if args.duration is None and args.requests is None:
            args.duration = 10.0
        if args.duration is not None and not 0 < args.duration < math.inf:
            raise ValueError("--duration must be > 0")
        if args.pattern == "constant" and args.duration is None and args.rate <= 0:
            raise ValueError("--requests with a constant pattern needs --rate > 0")
        args.times = schedule(args)
    except ValueError as exc:
        parser.error(str(exc))
    return args


async def _main(args: argparse.Namespace) -> tuple[list[Result], float, bool]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    plans = draw(args.times, args)
    progress = Progress(sys.stderr, len(plans), args.duration)
    results, elapsed = await run(args.url.rstrip("/"), plans, concurrency=args.concurrency,
                                 timeout=args.timeout, max_tokens=args.max_tokens,
                                 progress=progress, stop=stop, headers=args.headers)
    return results, elapsed, stop.is_set()


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    try:
        results, elapsed, stopped = asyncio.run(_main(args))
    except KeyboardInterrupt:  # before the loop's own handler was in place: nothing was sent
        return 130
    summary = {"pattern": args.pattern, "url": args.url, "stopped": stopped,
               **summarize(results, elapsed, len(args.times))}
    print(render(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 130 if stopped else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
