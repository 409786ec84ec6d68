"""Request history in SQLite: the schema, the record<->row mapping, and the read functions.

The proxy writes the file through ``addons.history_writer``; the dashboard and the health
daemon read it through ``connect_readonly`` and the query functions below. The rollup's SQL is
in ``addons.history_rollup``. The schema is documented in ``docs/history.md``.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from addons.history_rollup import (
    ROLLUP_DURATION_BOUNDS,
    ROLLUP_READ,
    ROLLUP_SPANS,
    ROLLUP_TTFT_BOUNDS,
    bucket_index_sql,
)
from llama_core.record import RequestRecord

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2 added the rollup; addons.history_writer migrates from 1

# (column, SQL type, RequestRecord field): the one place where a record meets a row.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("ts", "REAL NOT NULL", "started_at"),
    ("endpoint", "TEXT NOT NULL", "endpoint"),
    ("model", "TEXT NOT NULL", "model"),
    ("status", "INTEGER NOT NULL", "status"),
    ("error_type", "TEXT", "error_type"),
    ("priority", "TEXT NOT NULL", "priority"),
    ("stream", "INTEGER NOT NULL", "stream"),
    ("prompt_tokens", "INTEGER", "prompt_tokens"),
    ("generated_tokens", "INTEGER", "generated_tokens"),
    ("usage_reported", "INTEGER NOT NULL", "usage_reported"),
    ("ttft_s", "REAL", "ttft_s"),
    ("duration_s", "REAL NOT NULL", "duration_s"),
    ("queue_wait_s", "REAL NOT NULL", "queue_wait_s"),
    ("tokens_per_second", "REAL", "tokens_per_second"),
    ("load_duration_s", "REAL", "load_duration_s"),
    ("prompt_eval_duration_s", "REAL", "prompt_eval_duration_s"),
    ("request_bytes", "INTEGER NOT NULL", "request_bytes"),
    ("response_bytes", "INTEGER NOT NULL", "response_bytes"),
    ("prompt", "TEXT", "prompt"),
    ("response", "TEXT", "response"),
)
_BOOL_COLUMNS = frozenset({"stream", "usage_reported"})

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS requests (id INTEGER PRIMARY KEY, "
    + ", ".join(f"{name} {sqltype}" for name, sqltype, _ in COLUMNS)
    + ")",
    "CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts)",
    "CREATE INDEX IF NOT EXISTS requests_model_ts ON requests (model, ts)",
)  # the requests table; the rollup's tables are ROLLUP_SCHEMA in addons.history_rollup


def _checked_bounds(bounds: tuple[float, ...]) -> tuple[float, ...]:
    values = tuple(float(b) for b in bounds)
    if not values or any(not math.isfinite(b) for b in values) or list(values) != sorted(
        set(values)
    ):
        raise ValueError(f"bucket bounds must be finite and increasing, got {bounds!r}")
    return values


class HistoryError(Exception):
    """The history database cannot be opened: missing, not a database, or a newer schema."""


def record_to_row(record: RequestRecord) -> dict[str, Any]:
    """The column values for one record, keyed by column name."""
    row = {name: getattr(record, field) for name, _, field in COLUMNS}
    for name in _BOOL_COLUMNS:
        row[name] = int(row[name])
    return row


def row_to_record(row: Mapping[str, Any]) -> RequestRecord:
    """The record stored in one row (a dict or ``sqlite3.Row``); ``id`` is ignored."""
    values = {field: row[name] for name, _, field in COLUMNS}
    for name in _BOOL_COLUMNS:
        values[name] = bool(values[name])
    return RequestRecord(**values)


def _dict_row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> dict[str, Any]:
    row = {column[0]: value for column, value in zip(cursor.description, values, strict=True)}
    for name in row.keys() & _BOOL_COLUMNS:
        if row[name] is not None:
            row[name] = bool(row[name])
    return row


def check_columns(conn: sqlite3.Connection, path: Path) -> None:
    found = [row[1] for row in conn.execute("PRAGMA table_info(requests)")]
    if not found:
        raise HistoryError(f"history {path} has no 'requests' table (not written to yet?)")
    if found != ["id", *(name for name, _, _ in COLUMNS)]:
        raise HistoryError(f"history {path}: table 'requests' is not llama-metrics history")


def connect_readonly(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open an existing history file read-only; rows come back as dicts."""
    resolved = Path(path).absolute()
    if not resolved.is_file():
        raise HistoryError(f"history {resolved} does not exist (the proxy creates it)")
    try:
        conn = sqlite3.connect(f"{resolved.as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise HistoryError(f"cannot open history {resolved}: {exc}") from exc
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise HistoryError(
                f"history {resolved} has schema version {version}; this llama-metrics reads up "
                f"to {SCHEMA_VERSION}: upgrade llama-metrics"
            )
        check_columns(conn, resolved)
    except sqlite3.Error as exc:
        conn.close()
        raise HistoryError(f"cannot read history {resolved}: {exc}") from exc
    except HistoryError:
        conn.close()
        raise
    conn.row_factory = _dict_row
    return conn


def _query(
    conn: sqlite3.Connection, sql: str, params: tuple[Any, ...] | dict[str, Any]
) -> list[dict[str, Any]]:
    cursor = conn.cursor()
    cursor.row_factory = _dict_row  # whatever connection the caller brings
    try:
        return cursor.execute(sql, params).fetchall()
    finally:
        cursor.close()


def _model_filter(model: str | None) -> tuple[str, tuple[Any, ...]]:
    return ("", ()) if model is None else (" AND model = ?", (model,))


def recent_requests(conn: sqlite3.Connection, limit: int = 100) -> list[dict[str, Any]]:
    """The ``limit`` most recent requests, newest first."""
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    return _query(conn, "SELECT * FROM requests ORDER BY ts DESC, id DESC LIMIT ?", (limit,))


def requests_since(
    conn: sqlite3.Connection, since_ts: float, *, model: str | None = None
) -> list[dict[str, Any]]:
    """Requests that started at or after ``since_ts`` (epoch seconds), oldest first."""
    where, params = _model_filter(model)
    sql = f"SELECT * FROM requests WHERE ts >= ?{where} ORDER BY ts, id"
    return _query(conn, sql, (since_ts, *params))


def totals(
    conn: sqlite3.Connection, since_ts: float, *, model: str | None = None
) -> dict[str, int]:
    """Counts since ``since_ts``: requests, errors (rows with an error_type) and tokens."""
    where, params = _model_filter(model)
    sql = (
        "SELECT COUNT(*) AS requests, COUNT(error_type) AS errors,"
        " COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens,"
        " COALESCE(SUM(generated_tokens), 0) AS generated_tokens"
        f" FROM requests WHERE ts >= ?{where}"
    )
    return _query(conn, sql, (since_ts, *params))[0]


def window_averages(
    conn: sqlite3.Connection, since_ts: float, until_ts: float, *, model: str | None = None
) -> dict[str, Any]:
    """Averages over requests that started in [since_ts, until_ts): for baselines and checks.

    Keys: requests, errors, error_rate, ttft_s, duration_s, tokens_per_second (each average
    over the rows that have the value; None when none does).
    """
    where, params = _model_filter(model)
    sql = (
        "SELECT COUNT(*) AS requests, COUNT(error_type) AS errors,"
        " AVG(ttft_s) AS ttft_s, AVG(duration_s) AS duration_s,"
        " AVG(tokens_per_second) AS tokens_per_second"
        f" FROM requests WHERE ts >= ? AND ts < ?{where}"
    )
    row = _query(conn, sql, (since_ts, until_ts, *params))[0]
    row["error_rate"] = row["errors"] / row["requests"] if row["requests"] else None
    return row

# -- Read functions for the dashboard ------------------------------------------------------
# Added for dashboard/ (issue 4); every read of the history file stays in this module.


def _per_bucket(
    conn: sqlite3.Connection, sql: str, first: int, last: int, step_s: float
) -> list[dict[str, Any]]:
    # One statement per bucket over the ts index: grouping a whole month by a computed
    # bucket makes SQLite sort every row, which costs more than the scan itself.
    if not step_s > 0:
        raise ValueError(f"step_s must be > 0, got {step_s}")
    rows: list[dict[str, Any]] = []
    cursor = conn.cursor()
    cursor.row_factory = _dict_row
    try:
        for bucket in range(first, last + 1):
            found = cursor.execute(sql, (bucket, bucket * step_s, (bucket + 1) * step_s))
            rows.extend(found.fetchall())
    finally:
        cursor.close()
    return rows


def rollup_models(
    conn: sqlite3.Connection, first: int, last: int, step_s: float, *,
    ttft_bounds: tuple[float, ...], load_threshold_s: float = 0.25,
) -> list[dict[str, Any]]:
    """Requests of time buckets ``first..last`` counted by bucket, model and TTFT bucket.

    Bucket ``b`` holds the rows with ``b * step_s <= ts < (b + 1) * step_s`` (aligned to the
    epoch, so a bucket always covers the same seconds). ``ttft_le`` indexes ``ttft_bounds``
    (``len(ttft_bounds)`` above the last; None for rows without a first token). Sums per
    group: requests, errors, prompt_tokens, generated_tokens, busy_s (durations),
    queue_wait_s, ttft_s, tps_sum and tps_count (tokens_per_second), loads and load_s: rows
    whose ``load_duration_s`` is at least ``load_threshold_s`` (the server reports a few
    milliseconds of "load" for a model already in memory; the proxy's
    ``load_threshold_seconds``, 0.25 s by default, draws the same line for
    ``model_loads_total``). Empty buckets have no rows.
    """
    threshold = float(load_threshold_s)
    if not (math.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"load_threshold_s must be >= 0, got {load_threshold_s}")
    ttft_le = bucket_index_sql("ttft_s", _checked_bounds(ttft_bounds))
    sql = (
        "SELECT ? AS bucket, model,"
        f" CASE WHEN ttft_s IS NULL THEN NULL ELSE {ttft_le} END AS ttft_le,"
        " COUNT(*) AS requests, COUNT(error_type) AS errors,"
        " COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens,"
        " COALESCE(SUM(generated_tokens), 0) AS generated_tokens,"
        " SUM(duration_s) AS busy_s, SUM(queue_wait_s) AS queue_wait_s,"
        " COALESCE(SUM(ttft_s), 0.0) AS ttft_s,"
        " COALESCE(SUM(tokens_per_second), 0.0) AS tps_sum,"
        " COUNT(tokens_per_second) AS tps_count,"
        f" COUNT(CASE WHEN load_duration_s >= {threshold!r} THEN 1 END) AS loads,"
        f" COALESCE(SUM(CASE WHEN load_duration_s >= {threshold!r}"
        " THEN load_duration_s END), 0.0) AS load_s"
        " FROM requests WHERE ts >= ? AND ts < ? GROUP BY model, ttft_le"
    )
    return _per_bucket(conn, sql, first, last, step_s)


def rollup_durations(
    conn: sqlite3.Connection, first: int, last: int, step_s: float, *,
    duration_bounds: tuple[float, ...],
) -> list[dict[str, Any]]:
    """Requests of time buckets ``first..last`` counted by bucket and duration bucket.

    Rows: bucket, duration_le (index into ``duration_bounds``; ``len`` above the last),
    requests. Buckets as in ``rollup_models``.
    """
    duration_le = bucket_index_sql("duration_s", _checked_bounds(duration_bounds))
    sql = (
        f"SELECT ? AS bucket, {duration_le} AS duration_le, COUNT(*) AS requests"
        " FROM requests WHERE ts >= ? AND ts < ? GROUP BY duration_le"
    )
    return _per_bucket(conn, sql, first, last, step_s)


def extent(conn: sqlite3.Connection) -> dict[str, Any]:
    """``max_id`` (0 when empty) and ``min_ts`` (None when empty): what changed since a read."""
    # Two statements: SQLite answers a lone MIN or MAX from an index, not both together.
    max_id = _query(conn, "SELECT COALESCE(MAX(id), 0) AS v FROM requests", ())[0]["v"]
    min_ts = _query(conn, "SELECT MIN(ts) AS v FROM requests", ())[0]["v"]
    return {"max_id": max_id, "min_ts": min_ts}


def earliest_since_id(conn: sqlite3.Connection, after_id: int) -> float | None:
    """The earliest ``ts`` among rows written after row ``after_id`` (None: no such rows)."""
    # NOT INDEXED: walk the rowid range of the new rows, not the ts index from its start.
    sql = "SELECT MIN(ts) AS ts FROM requests NOT INDEXED WHERE id > ?"
    row = _query(conn, sql, (after_id,))[0]
    return row["ts"]


def has_rollup(conn: sqlite3.Connection) -> bool:
    """Whether the file has the rollup (schema 2); a version 1 file has only rows."""
    version: int = _query(conn, "PRAGMA user_version", ())[0]["user_version"]
    return version >= 2


def rollup_series(
    conn: sqlite3.Connection, first: int, last: int, step_s: int
) -> list[dict[str, Any]]:
    """Time buckets ``first..last`` of ``step_s`` (whole minutes) from the rollup, per model.

    Read from the coarsest of ``ROLLUP_SPANS`` that divides ``step_s``.
    Rows: bucket, model, the sums of ``rollup_models`` (requests, errors, prompt_tokens,
    generated_tokens, busy_s, queue_wait_s, ttft_s, tps_sum, tps_count, loads, load_s, loads
    counted from ``LOAD_THRESHOLD_S``), and ``ttft_hist`` and ``duration_hist``: counts per
    ``ROLLUP_TTFT_BOUNDS`` / ``ROLLUP_DURATION_BOUNDS`` bucket (le, the last one above the
    last bound; ttft only for rows with one). Buckets are those of ``rollup_models``: row
    ``ts`` in ``[b * step_s, (b + 1) * step_s)``. Rows written by something other than the
    writer (not yet rolled up) are summed from the rows. Needs ``has_rollup``.
    """
    if not (step_s > 0 and step_s % ROLLUP_SPANS[0] == 0):
        raise ValueError(f"step_s must be a positive number of whole minutes, got {step_s}")
    span = max(span for span in ROLLUP_SPANS if step_s % span == 0)
    per = int(step_s) // span
    found = _query(conn, ROLLUP_READ[span],
                   {"per": per, "lo": first * per, "hi": (last + 1) * per})
    ttft = [f"ttft_{i}" for i in range(len(ROLLUP_TTFT_BOUNDS) + 1)]
    duration = [f"duration_{i}" for i in range(len(ROLLUP_DURATION_BOUNDS) + 1)]
    for row in found:
        row["ttft_hist"] = [row.pop(name) for name in ttft]
        row["duration_hist"] = [row.pop(name) for name in duration]
    return found
