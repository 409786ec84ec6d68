#!/usr/bin/env python3
"""Benchmark /api/history on a large history file: cold and warm answers per window.

Builds a history database of ``--rows`` requests spread over ``--days`` (through
``llama_core.history.database.insert_rows``, the writer's own path, in one transaction: the
rows and their per-minute rollup), then asks the dashboard's ``/api/history`` through Flask's
test client: once on a fresh app (cold: every bucket is read from the file, the rollup for
steps of whole minutes), then ``--repeat`` times more (warm: closed buckets come from the
cache, the open one is read again), and once after a row arrived late for an old bucket.
Prints milliseconds.

    .venv/bin/python scripts/bench_history.py --rows 1000000
"""

from __future__ import annotations

import argparse
import logging
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

from dashboard import create_app  # noqa: E402
from llama_core.history.database import insert_rows  # noqa: E402
from llama_core.history.schema import COLUMNS, record_to_row  # noqa: E402
from llama_core.history.writer import HistoryWriter  # noqa: E402
from llama_core.record import RequestRecord  # noqa: E402

logger = logging.getLogger(__name__)

MODELS = ("llama3.2:latest", "qwen3:8b", "gemma3:12b", "mistral:7b", "nomic-embed-text:latest")
ERRORS = ("upstream_status", "client_cancelled", "stream_aborted", "timeout")
NAMES = [name for name, _, _ in COLUMNS]


def rows(count: int, days: float, now: float, seed: int) -> Iterator[dict[str, Any]]:
    """``count`` plausible requests, oldest first, over the ``days`` before ``now``."""
    rng = random.Random(seed)
    span = days * 86400.0
    for i in range(count):
        ts = now - span + span * (i + rng.random()) / count
        model = rng.choice(MODELS)
        error = rng.choice(ERRORS) if rng.random() < 0.02 else None
        generated = None if error else rng.randint(1, 800)
        rate = rng.uniform(20, 90)
        load = rng.uniform(1, 8) if rng.random() < 0.01 else None
        ttft = None if error else rng.lognormvariate(-1.6, 0.9) + (load or 0.0)
        duration = (ttft or 0.05) + (generated or 0) / rate
        yield dict(zip(NAMES, (
            ts, "/api/chat", model, 500 if error else 200, error, "normal", 1,
            rng.randint(10, 4000), generated, 1, ttft, duration, 0.0,
            None if error else rate, load, 0.02, 400, 6000, None, None, int(load is not None)),
            strict=True))


def build(path: Path, count: int, days: float, now: float) -> float:
    writer = HistoryWriter(path, retention_days=max(days + 1, 30))
    writer.start()  # the schema, exactly as the proxy creates it
    writer.close()
    started = time.perf_counter()
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        insert_rows(conn, list(rows(count, days, now, seed=1)))
    return time.perf_counter() - started


def timed(client: Any, window: str) -> float:
    started = time.perf_counter()
    response = client.get(f"/api/history?window={window}")
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"/api/history?window={window}: HTTP {response.status_code} "
                         f"{response.get_data(as_text=True)}")
    return elapsed * 1000.0


def make_client(path: Path) -> Any:
    app = create_app({"SETTINGS": {"history_path": str(path),
                                   "proxy_metrics_url": "http://127.0.0.1:9",
                                   "healthd_url": ""},
                      "AUTOSTART": False})
    return app.test_client()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--windows", default="30d,7d,24h,1h,15m")
    parser.add_argument("--path", type=Path, help="database file (default: a temporary one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.path or Path(tmp) / "history.db"
        if path.exists():
            path.unlink()
        now = time.time()
        seconds = build(path, args.rows, args.days, now)
        size = path.stat().st_size / 1e6
        print(f"built {args.rows:,} rows over {args.days:g} days in {seconds:.1f} s "
              f"({size:.0f} MB): {path}")
        print(f"{'window':>7} {'cold ms':>9} {'warm ms: median':>17} {'max':>12}"
              f" {'after a late row ms':>20}   (warm: {args.repeat} calls)")
        for window in args.windows.split(","):
            client = make_client(path)  # a fresh app: nothing cached
            cold = timed(client, window)
            warm = [timed(client, window) for _ in range(args.repeat)]
            late_row = record_to_row(RequestRecord(  # a long request, written now
                started_at=now - 3600 * 3, endpoint="/api/chat", model="late:latest",
                status=200, duration_s=1.0))
            with closing(sqlite3.connect(path, isolation_level=None)) as conn:
                insert_rows(conn, [late_row])
            late = timed(client, window)
            print(f"{window:>7} {cold:9.1f} {statistics.median(warm):17.1f} {max(warm):12.1f}"
                  f" {late:20.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
