#!/usr/bin/env python3
"""A steady, varied mix of Ollama traffic for the demo (``scripts/up --demo``).

Native and OpenAI-compatible requests, streamed and not, three models, embeddings, priorities
and the occasional failure, at a few requests per second, until stopped. It talks to the
proxy like any client; the failures are asked of the simulator with its ``X-Sim-Fault``
header.

Every ``--busy`` seconds it pauses for ``--quiet`` seconds (and says so on stderr): the
dashboard's narrative is skipped while the proxy is busy, so a quiet spell is when it can be
tried, and the charts show what an idle minute looks like.

With ``--clients FILE`` (the demo's clients file) each request carries one client's key, as
its clients would send it (``Authorization: Bearer``): mostly the chat front end, with the
signed-in user's name in Open WebUI's header, then a CI job and a notebook.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import signal
import sys
from typing import Any

import aiohttp
import yaml

from llama_core.security import load_security
from llama_core.settings import ConfigError

logger = logging.getLogger("demo-traffic")

# Who sends how much of the traffic, and the users of the chat front end.
CLIENT_WEIGHTS = {"open-webui": 5, "ci-bot": 3, "notebook": 2}
USERS = ["sam.k", "ana", "lee"]
USER_HEADER = "X-OpenWebUI-User-Name"

PROMPTS = ["Why is the sky blue?", "Write a haiku about llamas.", "Explain TCP slow start.",
           "What is a monad?", "Summarise the plot of Hamlet in two sentences."]


def pick(rng: random.Random) -> tuple[str, dict[str, Any], dict[str, str]]:
    """One request: path, JSON body, headers."""
    model = rng.choice(["llama3.2", "llama3.2", "qwen3"])
    prompt = rng.choice(PROMPTS)
    headers = {"X-Priority": rng.choice(["normal", "normal", "normal", "high", "low"]),
               "X-Sim-Tokens": str(rng.randint(10, 120))}
    if rng.random() < 0.04:
        headers["X-Sim-Fault"] = rng.choice(["status:500", "error_in_stream", "close_mid_stream"])
    kind = rng.random()
    if kind < 0.35:
        return "/api/chat", {"model": model, "messages": [{"role": "user", "content": prompt}]}, \
            headers
    if kind < 0.5:
        return "/api/generate", {"model": model, "prompt": prompt, "stream": False}, headers
    if kind < 0.6:
        return "/api/embed", {"model": "nomic-embed-text", "input": prompt}, headers
    body = {"model": model, "messages": [{"role": "user", "content": prompt}],
            "stream": kind < 0.9}
    return "/v1/chat/completions", body, headers


def client_keys(path: str) -> dict[str, str]:
    """Client name -> its key, from a clients file whose clients have a plain ``token``."""
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    clients = data.get("clients") or {}
    return {name: str(entry["token"]) for name, entry in clients.items()
            if isinstance(entry, dict) and entry.get("token")}


def as_client(rng: random.Random, keys: dict[str, str]) -> dict[str, str]:
    """The headers of one client's request: its key, and for the chat front end its user."""
    names = list(keys)
    name = rng.choices(names, [CLIENT_WEIGHTS.get(n, 1) for n in names])[0]
    headers = {"Authorization": f"Bearer {keys[name]}"}
    if name == "open-webui":
        headers[USER_HEADER] = rng.choice(USERS)
    return headers


async def one(session: aiohttp.ClientSession, url: str, rng: random.Random,
              keys: dict[str, str] | None = None) -> None:
    path, body, headers = pick(rng)
    if keys:
        headers.update(as_client(rng, keys))
    try:
        async with session.post(url + path, json=body, headers=headers) as response:
            async for _ in response.content.iter_any():
                pass
    except (aiohttp.ClientError, asyncio.TimeoutError) as e:
        logger.debug("%s: %s", path, e)


async def run(url: str, rate: float, concurrency: int, seed: int,
              headers: dict[str, str] | None = None, busy: float = 0.0,
              quiet: float = 0.0, keys: dict[str, str] | None = None) -> None:
    rng = random.Random(seed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    slots = asyncio.Semaphore(concurrency)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
        tasks: set[asyncio.Task[None]] = set()

        async def guarded() -> None:
            async with slots:
                await one(session, url, rng, keys)

        loop_started = loop.time()
        while not stop.is_set():
            if busy > 0 and quiet > 0 and loop.time() - loop_started >= busy:
                print(f"demo-traffic: quiet for {quiet:.0f} s (try the narrative now)",
                      file=sys.stderr, flush=True)
                try:
                    await asyncio.wait_for(stop.wait(), quiet)
                except TimeoutError:
                    pass
                loop_started = loop.time()
                continue
            task = asyncio.create_task(guarded())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            try:  # Poisson arrivals: the wait is the pacing, and a stop ends it at once
                await asyncio.wait_for(stop.wait(), rng.expovariate(rate))
            except TimeoutError:
                pass
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:11435", help="the proxy")
    parser.add_argument("--rate", type=float, default=2.0, help="requests per second")
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--busy", type=float, default=150.0,
                        help="seconds of traffic between quiet spells (0: never quiet)")
    parser.add_argument("--quiet", type=float, default=45.0,
                        help="seconds of no traffic in each quiet spell")
    parser.add_argument("--config", help="YAML configuration (its security.access_token, "
                        "when set, is sent to the proxy unless --clients is given)")
    parser.add_argument("--clients", help="a clients file: each request carries one "
                        "client's key instead")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.concurrency < 1 or args.busy < 0 or args.quiet < 0:
        parser.error("--rate must be > 0, --concurrency >= 1, --busy and --quiet >= 0")
    keys: dict[str, str] | None = None
    try:
        headers = load_security(config=args.config).headers()
        if args.clients:
            keys = client_keys(args.clients)
            headers = {}  # a client's key, never the access token: that marks our own
    except (ConfigError, OSError, KeyError, yaml.YAMLError) as e:
        print(f"demo-traffic: {e}", file=sys.stderr)
        return 2
    if args.clients and not keys:
        print(f"demo-traffic: no client with a plain token in {args.clients}", file=sys.stderr)
        return 2
    asyncio.run(run(args.url.rstrip("/"), args.rate, args.concurrency, args.seed, headers,
                    busy=args.busy, quiet=args.quiet, keys=keys))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
