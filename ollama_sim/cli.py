"""The command line of ``python -m ollama_sim`` and ``scripts/ollama_sim.py``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

import ollama_sim
from ollama_sim.models import DEFAULT_MODELS
from ollama_sim.server import DEFAULT_KEEP_ALIVE, DEFAULT_PORT, DEFAULT_TOKENS, SimServer


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ollama_sim.py", description=(ollama_sim.__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port ({DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--token-rate", type=float, default=0.0,
                        help="tokens per second per stream (0: as fast as possible)")
    parser.add_argument("--ttft", type=float, default=0.0,
                        help="seconds of prompt evaluation before the first token")
    parser.add_argument("--load-delay", type=float, default=0.0,
                        help="seconds to load a model on first use")
    parser.add_argument("--tokens", type=int, default=DEFAULT_TOKENS,
                        help=f"tokens a model generates before it stops ({DEFAULT_TOKENS})")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help="comma-separated model names")
    parser.add_argument("--fault", default=None, help="fault for every request (see module doc)")
    parser.add_argument("--seed", type=int, default=0, help="seed for text, cuts and vectors")
    parser.add_argument("--keep-alive", type=float, default=DEFAULT_KEEP_ALIVE,
                        help="seconds a model stays loaded after use (300)")
    parser.add_argument("--cassette", default=None,
                        help="serve the recorded interactions of this cassette instead")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="cassette timing: 2 plays twice as fast, 0 without waiting (1)")
    parser.add_argument("--version", default=ollama_sim.VERSION, dest="ollama_version",
                        help="the Ollama release whose wire behaviour to imitate "
                             f"({ollama_sim.VERSION}; see ollama_sim/versions.py)")
    parser.add_argument("--origins", default="",
                        help="OLLAMA_ORIGINS: comma-separated extra CORS origins, * for all")
    parser.add_argument("--log-level", default="WARNING", help="logging level (WARNING)")
    args = parser.parse_args(argv)
    try:
        args.server = SimServer(
            host=args.host, port=args.port, token_rate=args.token_rate, ttft=args.ttft,
            load_delay=args.load_delay, tokens=args.tokens, models=args.models.split(","),
            fault=args.fault, seed=args.seed, keep_alive=args.keep_alive,
            cassette=args.cassette, speed=args.speed, version=args.ollama_version,
            origins=args.origins.split(","))
    except ValueError as exc:
        parser.error(str(exc))
    return args


async def _serve(server: SimServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await server.astart()
    print(f"ollama-sim listening on {server.url}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.astop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator until Ctrl-C or SIGTERM; return the exit status."""
    args = _parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_serve(args.server))
    except OSError as exc:
        print(f"ollama-sim: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
