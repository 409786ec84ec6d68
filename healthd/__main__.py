"""Command line: ``python -m healthd`` serves; ``python -m healthd check`` reports once.

Exit status: serving ends 0 on SIGTERM/SIGINT and 1 if the port cannot be bound; ``check``
exits 0 healthy, 1 degraded, 2 unhealthy; a bad setting exits 2 before anything runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from types import FrameType

from healthd import config
from healthd.daemon import Daemon, check_once
from healthd.report import exit_code, render
from llama_core.settings import ConfigError

logger = logging.getLogger(__name__)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m healthd",
        description="llama-metrics health daemon: checks Ollama, the proxy, the dashboard, "
        "Prometheus, the machine and request performance; serves the results and sends alerts.",
        epilog="check exits 0 healthy, 1 degraded, 2 unhealthy; a bad setting also exits 2.",
    )
    parser.add_argument("command", nargs="?", choices=("serve", "check"), default="serve",
                        help="serve (the default) or check: run every check once and report")
    parser.add_argument("--host", help="address to bind (healthd.host, default 127.0.0.1)")
    parser.add_argument("--port", help="port to bind (healthd.port, default 8080; 0 = any)")
    parser.add_argument("--config", metavar="FILE",
                        help="YAML configuration (default config/llama-metrics.yml)")
    parser.add_argument("--json", action="store_true", help="check: print the report as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.ERROR if args.command == "check" else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    try:
        settings = config.load(config=args.config,
                               overrides={"host": args.host, "port": args.port})
        if args.command == "serve":
            settings.security.check_listen("healthd.host", settings.host)
    except ConfigError as exc:
        print(f"llama-metrics: {exc}", file=sys.stderr)
        return 2
    if args.command == "check":
        report = check_once(settings)
        print(json.dumps(report, indent=2) if args.json else render(report))
        return exit_code(report)
    return serve(settings)


def serve(settings: config.Settings) -> int:
    daemon = Daemon(settings)
    try:
        daemon.start()
    except OSError as exc:
        print(f"llama-metrics: healthd cannot listen on {settings.host}:{settings.port}: {exc}",
              file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logger.info("stopping on %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        stop.wait()
    finally:
        daemon.stop()
    # A check still running would hold the interpreter's exit until its own timeout (the
    # end-to-end probe may wait minutes for a model to load); the alert state and webhooks
    # are settled by now, so leave at once.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
