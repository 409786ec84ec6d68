"""Streams for scripts/bench.py: paced latency at a given concurrency, and many streams at once.

Both send chat requests that ask the simulator to pace its tokens (``X-Sim-Token-Rate``), so the
time between chunks is the model's and what a proxy adds shows on top of it.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import psutil

MB = 1024 * 1024


@dataclass
class Latency:
    """Client-side timings of paced streams: first token, and the gaps between content chunks."""

    requests: int = 0
    errors: int = 0
    ttfts: list[float] = field(default_factory=list)
    itls: list[float] = field(default_factory=list)

    def add(self, other: Latency) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.ttfts += other.ttfts
        self.itls += other.itls


def chat(index: int, tokens: int, openai: bool) -> tuple[str, dict[str, Any]]:
    """A streamed chat request whose prompt (and so the simulator's answer) depends on index."""
    body: dict[str, Any] = {"model": "llama3.2", "stream": True,
                            "messages": [{"role": "user", "content": f"stream {index}"}]}
    if openai:  # no include_usage: the proxy asks upstream and must strip the extra chunk
        return "/v1/chat/completions", {**body, "max_tokens": tokens}
    return "/api/chat", {**body, "options": {"num_predict": tokens}}


def content_of(line: bytes, openai: bool) -> tuple[str | None, dict[str, Any] | None]:
    """The content of one stream line, and the chunk itself (None for an SSE line without JSON)."""
    if openai:
        line = line.strip()
        if not line.startswith(b"data:") or line == b"data: [DONE]":
            return None, None
        chunk = json.loads(line[5:])
        choices = chunk.get("choices") or [{}]
        return (choices[0].get("delta") or {}).get("content") or None, chunk
    chunk = json.loads(line)
    return (chunk.get("message") or {}).get("content") or None, chunk


async def paced(session: aiohttp.ClientSession, url: str, index: int, tokens: int,
                token_rate: float, result: Latency) -> None:
    path, body = chat(index, tokens, openai=False)
    start = time.perf_counter()
    last = None
    ok = False
    try:
        async with session.post(url + path, json=body,
                                headers={"X-Sim-Token-Rate": str(token_rate)}) as response:
            async for line in response.content:
                if not line.strip():
                    continue
                now = time.perf_counter()
                text, chunk = content_of(line, openai=False)
                if text:
                    if last is None:
                        result.ttfts.append(now - start)
                    else:
                        result.itls.append(now - last)
                    last = now
                ok = bool(chunk and chunk.get("done"))
            ok = ok and response.status == 200
    except (aiohttp.ClientError, TimeoutError, ValueError):
        ok = False
    result.requests += 1
    result.errors += 0 if ok else 1


async def latency(url: str, *, concurrency: int, requests: int, tokens: int,
                  token_rate: float) -> Latency:
    """``requests`` paced streams of ``tokens`` tokens, ``concurrency`` at a time."""
    result = Latency()
    remaining = requests
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=120)) as session:
        # One connection per client opened before the clock runs, as a busy client would have.
        await asyncio.gather(*(paced(session, url, i, 1, token_rate, Latency())
                               for i in range(concurrency)))

        async def worker(k: int) -> None:
            nonlocal remaining
            # Clients start spread over one answer's length, as independent users would; in
            # lockstep every round would begin with all of them at once.
            await asyncio.sleep(k / concurrency * tokens / token_rate)
            while remaining > 0:
                remaining -= 1
                await paced(session, url, remaining, tokens, token_rate, result)

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return result


@dataclass
class Streams:
    """Many streams opened at once: how many ended complete and right, and the proxy's memory."""

    count: int
    complete: int = 0  # ended properly, with every token and nothing extra
    max_open: int = 0  # streams that had begun and not yet ended, at the most
    contents: dict[int, str] = field(default_factory=dict)
    rss_before_mb: float = float("nan")
    rss_peak_mb: float = float("nan")
    rss_settled_mb: float = float("nan")
    seconds: float = 0.0


async def many(url: str, *, count: int, tokens: int, token_rate: float,
               process: psutil.Process | None, settle: float) -> Streams:
    """``count`` streams at once, half native and half OpenAI, each checked to its end.

    Each answer lasts ``tokens / token_rate`` seconds, which should be longer than opening them
    all takes: ``max_open`` says whether they really were all open at once. (Holding each after
    its first token until all have begun, with ``X-Sim-Hold``, would guarantee it, but the
    simulator then sends the held tokens back to back: a burst, not streams.) ``process`` (the
    proxy's) has its RSS sampled every 50 ms while they run, and once more ``settle`` seconds
    after the last ended and the client closed its connections.
    """
    out = Streams(count)
    open_now = 0
    done = asyncio.Event()

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        nonlocal open_now
        openai = i % 2 == 1
        path, body = chat(i, tokens, openai)
        parts: list[str] = []
        began = ended = False
        extra = False
        try:
            headers = {"X-Sim-Token-Rate": str(token_rate)}
            async with session.post(url + path, json=body, headers=headers) as response:
                async for line in response.content:
                    if not line.strip():
                        continue
                    if not began:
                        began = True
                        open_now += 1
                        out.max_open = max(out.max_open, open_now)
                    text, chunk = content_of(line, openai)
                    if text:
                        parts.append(text)
                    if openai:
                        extra |= bool(chunk and chunk.get("usage"))  # never asked for
                        ended |= line.strip() == b"data: [DONE]"
                    else:
                        ended = bool(chunk and chunk.get("done")
                                     and chunk.get("eval_count") == tokens)
                ended = ended and response.status == 200
        except (aiohttp.ClientError, TimeoutError, ValueError):
            ended = False
        finally:
            if began:
                open_now -= 1
        if ended and not extra and len(parts) == tokens:
            out.complete += 1
            out.contents[i] = "".join(parts)

    async def sample() -> None:
        assert process is not None
        while not done.is_set():
            out.rss_peak_mb = max(out.rss_peak_mb, process.memory_info().rss / MB)
            try:
                await asyncio.wait_for(done.wait(), 0.05)
            except TimeoutError:
                pass

    if process is not None:
        out.rss_before_mb = out.rss_peak_mb = process.memory_info().rss / MB
    sampler = asyncio.create_task(sample()) if process is not None else None
    start = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=300)) as session:
        await asyncio.gather(*(one(session, i) for i in range(count)))
    out.seconds = time.perf_counter() - start
    done.set()
    if sampler is not None and process is not None:
        await sampler
        await asyncio.sleep(settle)
        out.rss_settled_mb = process.memory_info().rss / MB
    return out
