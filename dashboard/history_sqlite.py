"""History from the proxy's SQLite file: time-bucketed series and per-model tables, cached.

SQL counts the requests of each time bucket into the catalogue's latency buckets: from the
file's per-minute and per-half-hour rollup (``llama_core.history.readers.rollup_series``) when
the step is whole minutes and the file has one (schema 3), else from the rows (``rollup_models``
and ``rollup_durations``). This module folds those counts into chart points and keeps the points
of closed buckets, which cannot change, so that a steady page reads only its open bucket. A
closed bucket is read again when rows arrive late for it (a request is written when it finishes,
so a long one lands after its start bucket closed), when retention pruned it, or when the file
was replaced. Host and GPU series come from the file's machine samples (schema 5,
``readers.sample_buckets``), read anew each time; per-model series from ``history_charts``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llama_core.catalogue import DURATION_BUCKETS, TTFT_BUCKETS
from llama_core.history import readers as history
from llama_core.history import rollup as history_rollup

from . import history_charts
from .snapshot import SERIES
from .stats import cumulative, histogram_quantile, ratio
from .windows import WINDOWS, SourceError, Window

logger = logging.getLogger(__name__)

# Chart series from the machine samples (schema 5), averaged per bucket; the GPU's are left
# out where the window has no GPU sample.
MACHINE_SERIES = ("cpu_percent", "memory_percent", "gpu_utilization_percent",
                  "gpu_memory_percent")
GPU_SERIES = ("gpu_utilization_percent", "gpu_memory_percent")


@dataclass(slots=True)
class ModelAgg:
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    ttft_s: float = 0.0
    tps_sum: float = 0.0
    tps_count: int = 0
    loads: int = 0
    load_s: float = 0.0
    ttft_hist: list[float] = field(default_factory=lambda: [0.0] * (len(TTFT_BUCKETS) + 1))

    def add(self, other: ModelAgg) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.prompt_tokens += other.prompt_tokens
        self.generated_tokens += other.generated_tokens
        self.ttft_s += other.ttft_s
        self.tps_sum += other.tps_sum
        self.tps_count += other.tps_count
        self.loads += other.loads
        self.load_s += other.load_s
        for i, count in enumerate(other.ttft_hist):
            self.ttft_hist[i] += count

    def row(self, model: str) -> dict[str, Any]:
        ttft = cumulative(TTFT_BUCKETS, self.ttft_hist)
        ttft_count = ttft[-1][1]
        return {
            "model": model,
            "requests": self.requests,
            "errors": self.errors,
            "prompt_tokens": self.prompt_tokens,
            "generated_tokens": self.generated_tokens,
            "tokens_per_second": ratio(self.tps_sum, self.tps_count),
            "ttft_p95": histogram_quantile(0.95, ttft),
            "ttft_mean": ratio(self.ttft_s, ttft_count),
            "ttft_seconds": self.ttft_s,
            "loads": self.loads,
            "load_seconds": self.load_s,
        }


@dataclass(slots=True)
class BucketAgg:
    busy_s: float = 0.0
    queue_wait_s: float = 0.0
    duration_hist: list[float] = field(
        default_factory=lambda: [0.0] * (len(DURATION_BUCKETS) + 1)
    )
    models: dict[str, ModelAgg] = field(default_factory=dict)

    def point(self, ts: float, seconds: float) -> dict[str, Any]:
        every = ModelAgg()
        for model in self.models.values():
            every.add(model)
        ttft = cumulative(TTFT_BUCKETS, every.ttft_hist)
        duration = cumulative(DURATION_BUCKETS, self.duration_hist)
        values: dict[str, Any] = {
            "requests_per_second": every.requests / seconds,
            "prompt_tokens_per_second": every.prompt_tokens / seconds,
            "generated_tokens_per_second": every.generated_tokens / seconds,
            "error_rate": ratio(every.errors, every.requests),
            "ttft_p50": histogram_quantile(0.5, ttft),
            "ttft_p95": histogram_quantile(0.95, ttft),
            "duration_p50": histogram_quantile(0.5, duration),
            "duration_p95": histogram_quantile(0.95, duration),
            # Time-averaged requests in flight / waiting (Little's law over the bucket).
            "active_requests": self.busy_s / seconds,
            "queue_depth": self.queue_wait_s / seconds,
        }
        return {"ts": ts, **{key: values.get(key) for key in SERIES}}


def fold(model_rows: list[dict[str, Any]], duration_rows: list[dict[str, Any]]
         ) -> dict[int, BucketAgg]:
    """Rows of ``rollup_models`` and ``rollup_durations`` as one aggregate per bucket."""
    buckets: dict[int, BucketAgg] = {}
    for row in model_rows:
        agg = buckets.setdefault(row["bucket"], BucketAgg())
        model = agg.models.get(row["model"])
        if model is None:
            model = agg.models[row["model"]] = ModelAgg()
        model.requests += row["requests"]
        model.errors += row["errors"]
        model.prompt_tokens += row["prompt_tokens"]
        model.generated_tokens += row["generated_tokens"]
        model.ttft_s += row["ttft_s"]
        model.tps_sum += row["tps_sum"]
        model.tps_count += row["tps_count"]
        model.loads += row["loads"]
        model.load_s += row["load_s"]
        if row["ttft_le"] is not None:
            model.ttft_hist[row["ttft_le"]] += row["requests"]
        agg.busy_s += row["busy_s"]
        agg.queue_wait_s += row["queue_wait_s"]
    for row in duration_rows:
        agg = buckets.setdefault(row["bucket"], BucketAgg())
        agg.duration_hist[row["duration_le"]] += row["requests"]
    return buckets


def fold_rollup(rows: list[dict[str, Any]]) -> dict[int, BucketAgg]:
    """Rows of ``rollup_series`` as one aggregate per bucket, the same as ``fold`` gives."""
    buckets: dict[int, BucketAgg] = {}
    for row in rows:
        agg = buckets.setdefault(row["bucket"], BucketAgg())
        model = ModelAgg(
            requests=row["requests"], errors=row["errors"],
            prompt_tokens=row["prompt_tokens"], generated_tokens=row["generated_tokens"],
            ttft_s=row["ttft_s"], tps_sum=row["tps_sum"], tps_count=row["tps_count"],
            loads=row["loads"], load_s=row["load_s"], ttft_hist=list(row["ttft_hist"]),
        )
        agg.models.setdefault(row["model"], ModelAgg()).add(model)
        agg.busy_s += row["busy_s"]
        agg.queue_wait_s += row["queue_wait_s"]
        for i, count in enumerate(row["duration_hist"]):
            agg.duration_hist[i] += count
    return buckets


@dataclass(slots=True)
class _StepCache:
    lock: threading.Lock = field(default_factory=threading.Lock)
    file_id: tuple[int, int] | None = None
    through_id: int = 0
    min_ts: float | None = None
    closed: dict[int, BucketAgg] = field(default_factory=dict)


class SqliteHistory:
    """Reads ``path`` (read-only, a fresh connection per call) and caches closed buckets."""

    name = "sqlite"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._caches = {w.step: _StepCache() for w in WINDOWS.values()}
        self.queries = 0  # buckets read from the file, for tests and the benchmark

    def _connect(self) -> tuple[sqlite3.Connection, tuple[int, int]]:
        try:
            conn = history.connect_readonly(self.path)
            stat = os.stat(self.path)
        except (history.HistoryError, OSError) as exc:
            raise SourceError(str(exc)) from exc
        return conn, (stat.st_dev, stat.st_ino)

    def _buckets(self, window: Window, now: float) -> dict[int, BucketAgg]:
        """Every non-empty bucket of ``window``: cached closed ones, the rest read now."""
        step = window.step
        first, last = window.buckets(now)
        cache = self._caches[step]
        with cache.lock:
            conn, file_id = self._connect()
            try:
                extent = history.extent(conn)
                if (file_id != cache.file_id or extent["max_id"] < cache.through_id
                        or extent["min_ts"] is None):
                    cache.closed.clear()  # another file, rewritten, or emptied
                    cache.file_id = file_id
                elif extent["max_id"] > cache.through_id and cache.closed:
                    late = history.earliest_since_id(conn, cache.through_id)
                    if late is not None:
                        self._forget(cache, lambda b: b >= int(late // step))
                if extent["min_ts"] != cache.min_ts and extent["min_ts"] is not None:
                    # Retention deleted the oldest rows: buckets that held some are stale.
                    pruned_to = int(extent["min_ts"] // step)
                    self._forget(cache, lambda b: b <= pruned_to and bool(cache.closed[b].models))
                    cache.min_ts = extent["min_ts"]
                self._forget(cache, lambda b: b < first)
                missing = [b for b in range(first, last + 1) if b not in cache.closed]
                fresh: dict[int, BucketAgg] = {}
                rolled_up = step % history_rollup.ROLLUP_SPANS[0] == 0 and history.has_rollup(conn)
                for lo, hi in _runs(missing):
                    self.queries += hi - lo + 1
                    found = (fold_rollup(history.rollup_series(conn, lo, hi, step)) if rolled_up
                             else _from_rows(conn, lo, hi, step))
                    for b in range(lo, hi + 1):
                        fresh[b] = found.get(b) or BucketAgg()
            except sqlite3.Error as exc:
                raise SourceError(f"cannot read history {self.path}: {exc}") from exc
            finally:
                conn.close()
            for b, agg in fresh.items():
                if (b + 1) * step <= now:
                    cache.closed[b] = agg
            cache.through_id = extent["max_id"]
            return {**{b: cache.closed[b] for b in range(first, last + 1)
                       if b in cache.closed}, **fresh}

    @staticmethod
    def _forget(cache: _StepCache, stale: Any) -> None:
        for b in [b for b in cache.closed if stale(b)]:
            del cache.closed[b]

    def history(self, window: Window, now: float) -> dict[str, Any]:
        buckets = self._buckets(window, now)
        machine, kept = self._machine(window, now)
        first, last = window.buckets(now)
        columns: dict[str, list[Any]] = {"ts": [], **{key: [] for key in SERIES}}
        aggs, seconds = [], []
        for b in range(first, last + 1):
            start = b * window.step
            length = max(min(window.step, now - start) if b == last else window.step, 1e-9)
            agg = buckets.get(b) or BucketAgg()
            point = agg.point(float(start), length)
            point.update({key: (machine.get(b) or {}).get(key) for key in MACHINE_SERIES})
            for key, values in columns.items():
                values.append(point[key])
            aggs.append(agg)
            seconds.append(length)
        if not any(value is not None for key in GPU_SERIES for value in columns[key]):
            for key in GPU_SERIES:  # no GPU (or none sampled in the window): absent, not empty
                del columns[key]
        answer: dict[str, Any] = {
            "series": columns,
            "by_model": _by_model(aggs, seconds),
            "models": self._model_rows(buckets.values()),
            "unavailable": [] if kept else list(MACHINE_SERIES),
        }
        if not kept:
            answer["unavailable_reason"] = (
                "not in this history file (a proxy of schema 5 or later keeps machine samples)")
        return answer

    def _machine(self, window: Window, now: float) -> tuple[dict[int, dict[str, Any]], bool]:
        """Machine samples averaged per bucket, and whether the file keeps them at all."""
        first, last = window.buckets(now)
        conn, _ = self._connect()
        try:
            if not history.has_samples(conn):
                return {}, False
            return history.sample_buckets(conn, first, last, window.step), True
        except sqlite3.Error as exc:
            raise SourceError(f"cannot read history {self.path}: {exc}") from exc
        finally:
            conn.close()

    def models(self, window: Window, now: float) -> list[dict[str, Any]]:
        return self._model_rows(self._buckets(window, now).values())

    @staticmethod
    def _model_rows(buckets: Any) -> list[dict[str, Any]]:
        merged: dict[str, ModelAgg] = {}
        for agg in buckets:
            for name, model in agg.models.items():
                merged.setdefault(name, ModelAgg()).add(model)
        return [merged[name].row(name) for name in sorted(merged)]

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """The latest ``limit`` requests, newest first, shaped like the proxy's /requests."""
        conn, _ = self._connect()
        try:
            rows = history.recent_requests(conn, limit)
        except sqlite3.Error as exc:
            raise SourceError(f"cannot read history {self.path}: {exc}") from exc
        finally:
            conn.close()
        out = []
        for row in rows:
            item = {k: v for k, v in row.items() if k not in ("id", "ts", "prompt", "response")}
            out.append({"started_at": row["ts"], **item})
        return out

    def baseline_tps(self, since: float, until: float) -> dict[str, float]:
        # A day-long baseline falls inside the 24h window, whose closed buckets are cached.
        window = WINDOWS["24h"]
        buckets = self._buckets(window, until)
        inside = [agg for b, agg in buckets.items()
                  if b * window.step >= since and (b + 1) * window.step <= until]
        return {row["model"]: row["tokens_per_second"] for row in self._model_rows(inside)
                if row["tokens_per_second"] is not None}

    def prewarm(self) -> None:
        for name in ("24h", "7d", "30d"):
            try:
                self._buckets(WINDOWS[name], time.time())
            except SourceError as exc:
                logger.info("history not prewarmed: %s", exc)
                return


def _by_model(aggs: list[BucketAgg], seconds: list[float]) -> dict[str, Any]:
    """The per-model series the live charts draw, for the same buckets as the points."""
    tokens = [{name: float(m.generated_tokens) for name, m in agg.models.items()}
              for agg in aggs]
    ttft = [{name: cumulative(TTFT_BUCKETS, m.ttft_hist) for name, m in agg.models.items()
             if any(m.ttft_hist)} for agg in aggs]
    return {
        "tokens_by_model": history_charts.rate_series(tokens, seconds),
        "ttft_p95_by_model": history_charts.quantile_series(ttft, 0.95),
    }


def _from_rows(conn: sqlite3.Connection, first: int, last: int, step: int
               ) -> dict[int, BucketAgg]:
    models = history.rollup_models(conn, first, last, step, ttft_bounds=TTFT_BUCKETS)
    durations = history.rollup_durations(conn, first, last, step,
                                         duration_bounds=DURATION_BUCKETS)
    return fold(models, durations)


def _runs(buckets: list[int]) -> list[tuple[int, int]]:
    """Sorted bucket indexes as (first, last) runs of consecutive ones."""
    runs: list[tuple[int, int]] = []
    for b in buckets:
        if runs and runs[-1][1] == b - 1:
            runs[-1] = (runs[-1][0], b)
        else:
            runs.append((b, b))
    return runs
