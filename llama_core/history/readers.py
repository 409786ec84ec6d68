"""Reading the history file: read-only connections and the queries the dashboard and healthd run.

Every read of the history file is here; the dashboard's adapter (``dashboard.history_sqlite``)
and the health daemon call these functions. A file of schema 1 or 2 (not yet migrated by the
proxy) is read from its rows, with the load decision its rollup made (schema.LEGACY_LOADED_SQL).
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
from collections.abc import Collection
from pathlib import Path
from typing import Any

from llama_core.endpoints import INFERENCE_ENDPOINTS, NO_MODEL
from llama_core.history.rollup import (
    ROLLUP_DURATION_BOUNDS,
    ROLLUP_READ,
    ROLLUP_SPANS,
    ROLLUP_TTFT_BOUNDS,
    bucket_index_sql,
)
from llama_core.history.samples import GPU_BUCKET, HOST_BUCKET, SAMPLE_INTERVAL_S
from llama_core.history.schema import (
    BOOL_COLUMNS,
    LEGACY_LOADED_SQL,
    ROLLUP_SINCE,
    SAMPLES_SINCE,
    SCHEMA_VERSION,
    HistoryError,
    check_columns,
    columns_of,
)

logger = logging.getLogger(__name__)


def _checked_bounds(bounds: tuple[float, ...]) -> tuple[float, ...]:
    values = tuple(float(b) for b in bounds)
    if not values or any(not math.isfinite(b) for b in values) or list(values) != sorted(
        set(values)
    ):
        raise ValueError(f"bucket bounds must be finite and increasing, got {bounds!r}")
    return values


def _dict_row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> dict[str, Any]:
    row = {column[0]: value for column, value in zip(cursor.description, values, strict=True)}
    for name in row.keys() & BOOL_COLUMNS:
        if row[name] is not None:
            row[name] = bool(row[name])
    return row


def _stored_loads(conn: sqlite3.Connection) -> bool:
    """Whether the file stores the load decision (schema 3); else it is derived as of old."""
    return "loaded_model" in columns_of(conn)


def _rows(conn: sqlite3.Connection) -> str:
    """The requests table as SQL, with ``loaded_model`` whatever the file's schema."""
    if _stored_loads(conn):
        return "requests"
    return f"(SELECT *, {LEGACY_LOADED_SQL} AS loaded_model FROM requests)"


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
        check_columns(conn, resolved, legacy=version < SCHEMA_VERSION)
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
    sql = f"SELECT * FROM {_rows(conn)} ORDER BY ts DESC, id DESC LIMIT ?"
    return _query(conn, sql, (limit,))


def requests_since(
    conn: sqlite3.Connection, since_ts: float, *, model: str | None = None
) -> list[dict[str, Any]]:
    """Requests that started at or after ``since_ts`` (epoch seconds), oldest first."""
    where, params = _model_filter(model)
    sql = f"SELECT * FROM {_rows(conn)} WHERE ts >= ?{where} ORDER BY ts, id"
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
    conn: sqlite3.Connection,
    since_ts: float,
    until_ts: float,
    *,
    model: str | None = None,
    inference_only: bool = False,
    leave_out: Collection[str] = (),
) -> dict[str, Any]:
    """Averages over requests that started in [since_ts, until_ts): for baselines and checks.

    Keys: requests, errors, error_rate, ttft_s, duration_s, tokens_per_second (each average
    over the rows that have the value; None when none does). ``inference_only`` keeps the
    inference requests that name a model; ``leave_out`` drops rows with those error types.
    """
    where, params = _model_filter(model)
    more, more_params = _performance_filter(inference_only, leave_out)
    sql = (
        "SELECT COUNT(*) AS requests, COUNT(error_type) AS errors,"
        " AVG(ttft_s) AS ttft_s, AVG(duration_s) AS duration_s,"
        " AVG(tokens_per_second) AS tokens_per_second"
        f" FROM requests WHERE ts >= ? AND ts < ?{where}{more}"
    )
    row = _query(conn, sql, (since_ts, until_ts, *params, *more_params))[0]
    row["error_rate"] = row["errors"] / row["requests"] if row["requests"] else None
    return row


def inference_models(conn: sqlite3.Connection, since_ts: float, until_ts: float) -> list[str]:
    """The models named by inference requests that started in [since_ts, until_ts), sorted."""
    more, params = _performance_filter(True, ())
    sql = f"SELECT DISTINCT model FROM requests WHERE ts >= ? AND ts < ?{more} ORDER BY model"
    return [r["model"] for r in _query(conn, sql, (since_ts, until_ts, *params))]


def last_failure_end(
    conn: sqlite3.Connection, error_types: Collection[str], since_ts: float
) -> float | None:
    """When the last request with one of ``error_types`` that started at or after ``since_ts``
    ended (its start plus its duration), or None when there is none."""
    if not error_types:
        return None
    marks = ", ".join("?" * len(error_types))
    sql = (f"SELECT MAX(ts + duration_s) AS at FROM requests"
           f" WHERE ts >= ? AND error_type IN ({marks})")
    at = _query(conn, sql, (since_ts, *sorted(error_types)))[0]["at"]
    return None if at is None else float(at)


def _performance_filter(
    inference_only: bool, leave_out: Collection[str]
) -> tuple[str, tuple[Any, ...]]:
    where = ""
    params: tuple[Any, ...] = ()
    if inference_only:
        # Only inference requests carry a model name (metadata requests store "").
        endpoints = sorted(INFERENCE_ENDPOINTS)
        where += (f" AND endpoint IN ({', '.join('?' * len(endpoints))})"
                  " AND model NOT IN ('', ?)")
        params += (*endpoints, NO_MODEL)
    if leave_out:
        where += (f" AND (error_type IS NULL OR error_type NOT IN"
                  f" ({', '.join('?' * len(leave_out))}))")
        params += tuple(sorted(leave_out))
    return where, params

# -- Read functions for the dashboard ------------------------------------------------------


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
    ttft_bounds: tuple[float, ...],
) -> list[dict[str, Any]]:
    """Requests of time buckets ``first..last`` counted by bucket, model and TTFT bucket.

    Bucket ``b`` holds the rows with ``b * step_s <= ts < (b + 1) * step_s`` (aligned to the
    epoch, so a bucket always covers the same seconds). ``ttft_le`` indexes ``ttft_bounds``
    (``len(ttft_bounds)`` above the last; None for rows without a first token). Sums per
    group: requests, errors, prompt_tokens, generated_tokens, busy_s (durations),
    queue_wait_s, ttft_s, tps_sum and tps_count (tokens_per_second), loads and load_s: rows
    the proxy decided loaded their model (``loaded_model``, from its
    ``load_threshold_seconds``, as for ``model_loads_total``). Empty buckets have no rows.
    """
    loaded = "loaded_model" if _stored_loads(conn) else LEGACY_LOADED_SQL
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
        f" COUNT(CASE WHEN {loaded} THEN 1 END) AS loads,"
        f" COALESCE(SUM(CASE WHEN {loaded} THEN load_duration_s END), 0.0) AS load_s"
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
    """Whether the file has the current rollup (schema 3); an older file is read from rows.

    (Schema 2's rollup counted loads with a fixed line; its rows are read as that line drew.)
    """
    version: int = _query(conn, "PRAGMA user_version", ())[0]["user_version"]
    return version >= ROLLUP_SINCE


def rollup_series(
    conn: sqlite3.Connection, first: int, last: int, step_s: int
) -> list[dict[str, Any]]:
    """Time buckets ``first..last`` of ``step_s`` (whole minutes) from the rollup, per model.

    Read from the coarsest of ``ROLLUP_SPANS`` that divides ``step_s``.
    Rows: bucket, model, the sums of ``rollup_models`` (requests, errors, prompt_tokens,
    generated_tokens, busy_s, queue_wait_s, ttft_s, tps_sum, tps_count, loads, load_s: the
    stored ``loaded_model``), and ``ttft_hist`` and ``duration_hist``: counts per
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


def has_samples(conn: sqlite3.Connection) -> bool:
    """Whether the file keeps machine samples (schema 5; an older one has no such tables)."""
    version: int = _query(conn, "PRAGMA user_version", ())[0]["user_version"]
    return version >= SAMPLES_SINCE


def sample_buckets(
    conn: sqlite3.Connection, first: int, last: int, step_s: float
) -> dict[int, dict[str, Any]]:
    """Machine samples of time buckets ``first..last`` of ``step_s``, averaged per bucket.

    Keys: ``samples`` (how many), cpu_percent, memory_percent, memory_used_bytes,
    ollama_rss_bytes, ollama_cpu_percent, vram_models_bytes; and, in buckets with GPU samples,
    ``gpus`` (how many), gpu_utilization_percent (the mean over GPUs and samples),
    gpu_memory_percent (used over total of those samples), gpu_power_watts (mean per GPU) and
    gpu_temperature_celsius (the highest). A bucket holds the samples with ``b * step_s <= ts <
    (b + 1) * step_s``; one shorter than ``samples.SAMPLE_INTERVAL_S`` reaches back to a
    whole interval, so that it shows the sample in force rather than a gap. Buckets without
    samples are absent; so is everything in a file of an older schema (``has_samples``).
    """
    if not step_s > 0:
        raise ValueError(f"step_s must be > 0, got {step_s}")
    if not has_samples(conn):
        return {}
    reach = max(0.0, SAMPLE_INTERVAL_S - step_s)
    out: dict[int, dict[str, Any]] = {}
    cursor = conn.cursor()
    cursor.row_factory = _dict_row
    try:
        for bucket in range(first, last + 1):
            span = (bucket * step_s - reach, (bucket + 1) * step_s)
            host = cursor.execute(HOST_BUCKET, span).fetchone()
            if not host["samples"]:
                continue
            gpu = cursor.execute(GPU_BUCKET, span).fetchone()
            host.update({k: v for k, v in gpu.items() if k != "samples"} if gpu["samples"]
                        else {})
            out[bucket] = host
    finally:
        cursor.close()
    return out


# -- Clients and users (schema 4; a file not yet migrated has neither) ---------------------


def has_clients(conn: sqlite3.Connection) -> bool:
    return "client" in columns_of(conn)


def client_tokens_since(conn: sqlite3.Connection, since_ts: float) -> dict[str, int]:
    """Prompt plus generated tokens per client of the requests that started at or after
    ``since_ts``: a day's use against the budgets. Empty for a file without clients."""
    if not has_clients(conn):
        return {}
    sql = (
        "SELECT client, COALESCE(SUM(COALESCE(prompt_tokens, 0)"
        " + COALESCE(generated_tokens, 0)), 0) AS tokens"
        " FROM requests WHERE ts >= ? AND client IS NOT NULL GROUP BY client"
    )
    return {r["client"]: int(r["tokens"]) for r in _query(conn, sql, (since_ts,))}


def client_usage(
    conn: sqlite3.Connection, since_ts: float, until_ts: float, *,
    ttft_bounds: tuple[float, ...], by_user: bool = False,
) -> list[dict[str, Any]]:
    """Requests that started in [since_ts, until_ts) counted by client (and user, with
    ``by_user``) and TTFT bucket, as ``rollup_models`` counts them by model.

    Rows: client (None: no client was identified: no clients file then, or refused), user
    (with ``by_user``; None: not recorded), ttft_le, requests, errors, prompt_tokens,
    generated_tokens. A file not yet migrated to schema 4 has no clients: no rows.
    """
    if not has_clients(conn):
        return []
    ttft_le = bucket_index_sql("ttft_s", _checked_bounds(ttft_bounds))
    group = "client, user" if by_user else "client"
    sql = (
        f"SELECT {group},"
        f" CASE WHEN ttft_s IS NULL THEN NULL ELSE {ttft_le} END AS ttft_le,"
        " COUNT(*) AS requests, COUNT(error_type) AS errors,"
        " COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens,"
        " COALESCE(SUM(generated_tokens), 0) AS generated_tokens"
        f" FROM requests WHERE ts >= ? AND ts < ? GROUP BY {group}, ttft_le"
    )
    return _query(conn, sql, (since_ts, until_ts))
