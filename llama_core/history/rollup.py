"""The history rollup: per-minute and per-half-hour sums per model, its tables and its SQL.

The writer (``llama_core.history.database.insert_rows``) adds each batch to it in the batch's
transaction and prunes it with the rows; the readers (``readers.rollup_series``) read it,
adding the rows not yet rolled up. Both sides take their SQL from here, so they cannot
disagree. A model load is the row's stored ``loaded_model`` (the proxy decided it once).
"""

from __future__ import annotations

import logging

from llama_core.catalogue import DURATION_BUCKETS, TTFT_BUCKETS

logger = logging.getLogger(__name__)


def bucket_index_sql(column: str, bounds: tuple[float, ...], lo: int = 0,
                      hi: int | None = None) -> str:
    """SQL for the index of the first bound >= column (len(bounds) = +Inf), by bisection."""
    hi = len(bounds) if hi is None else hi
    if lo == hi:
        return str(lo)
    mid = (lo + hi) // 2
    return (
        f"CASE WHEN {column} <= {bounds[mid]!r} THEN {bucket_index_sql(column, bounds, lo, mid)}"
        f" ELSE {bucket_index_sql(column, bounds, mid + 1, hi)} END"
    )


# -- The rollup: per minute (and per half hour) and model, what the dashboard charts need ---
# Kept by the writer in the transaction that inserts the rows, so reading a month is reading
# 1,440 half hours per model instead of every request. The histogram bounds are the proxy's
# own metric buckets, so a quantile from the rollup is the one the rows would give; changing
# them needs a new schema version whose migration rebuilds the rollup.
ROLLUP_SPANS = (60, 1800)  # seconds; each divides the next, so both agree on every bucket
ROLLUP_TTFT_BOUNDS: tuple[float, ...] = TTFT_BUCKETS
ROLLUP_DURATION_BOUNDS: tuple[float, ...] = DURATION_BUCKETS

# (column, SQL aggregate over requests rows): summed again when spans are merged.
_ROLLUP_SUMS: tuple[tuple[str, str], ...] = (
    ("requests", "COUNT(*)"),
    ("errors", "COUNT(error_type)"),
    ("prompt_tokens", "COALESCE(SUM(prompt_tokens), 0)"),
    ("generated_tokens", "COALESCE(SUM(generated_tokens), 0)"),
    ("busy_s", "TOTAL(duration_s)"),
    ("queue_wait_s", "TOTAL(queue_wait_s)"),
    ("ttft_s", "TOTAL(ttft_s)"),
    ("tps_sum", "TOTAL(tokens_per_second)"),
    ("tps_count", "COUNT(tokens_per_second)"),
    ("loads", "COUNT(CASE WHEN loaded_model THEN 1 END)"),
    ("load_s", "TOTAL(CASE WHEN loaded_model THEN load_duration_s END)"),
    *((f"ttft_{i}", f"SUM(t = {i})") for i in range(len(ROLLUP_TTFT_BOUNDS) + 1)),
    *((f"duration_{i}", f"SUM(d = {i})") for i in range(len(ROLLUP_DURATION_BOUNDS) + 1)),
)
_ROLLUP_NAMES = tuple(name for name, _ in _ROLLUP_SUMS)
ROLLUP_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS rollup (span INTEGER NOT NULL, start INTEGER NOT NULL,"
    " model TEXT NOT NULL, "
    + ", ".join(f"{name} {'REAL' if name.endswith(('_s', '_sum')) else 'INTEGER'} NOT NULL"
                for name in _ROLLUP_NAMES)
    + ", PRIMARY KEY (span, start, model)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS rollup_state"
    " (id INTEGER PRIMARY KEY CHECK (id = 0), through_id INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO rollup_state (id, through_id) VALUES (0, 0)",
)


def _not_rolled_up(span: int) -> str:
    """SQL: the rows not yet in the rollup (id > through_id), summed per span and model.

    Minute m holds m * 60 <= ts < (m + 1) * 60 exactly, as the row queries bound a bucket:
    the division is corrected where rounding carried it across a boundary."""
    return (
        f"SELECT {span} AS span, minute / {span // 60} AS start, model, "
        + ", ".join(f"{sql} AS {name}" for name, sql in _ROLLUP_SUMS)
        + " FROM (SELECT *, m - (m * 60 > ts) + ((m + 1) * 60 <= ts) AS minute FROM ("
        " SELECT CAST(ts / 60 AS INTEGER) AS m, ts, model, error_type, prompt_tokens,"
        " generated_tokens, duration_s, queue_wait_s, ttft_s, tokens_per_second,"
        " load_duration_s, loaded_model, CASE WHEN ttft_s IS NULL THEN -1 ELSE "
        + bucket_index_sql("ttft_s", ROLLUP_TTFT_BOUNDS) + " END AS t, "
        + bucket_index_sql("duration_s", ROLLUP_DURATION_BOUNDS) + " AS d"
        " FROM requests WHERE id > (SELECT through_id FROM rollup_state)))"
        " GROUP BY start, model"
    )


ROLLUP_ADD = tuple(
    f"INSERT INTO rollup (span, start, model, {', '.join(_ROLLUP_NAMES)})"
    f" SELECT * FROM ({_not_rolled_up(span)}) WHERE true"
    " ON CONFLICT (span, start, model) DO UPDATE SET "
    + ", ".join(f"{name} = {name} + excluded.{name}" for name in _ROLLUP_NAMES)
    for span in ROLLUP_SPANS
)
ROLLUP_THROUGH = "UPDATE rollup_state SET through_id = (SELECT COALESCE(MAX(id), 0) FROM requests)"
# After a prune: a deleted highest id can be given out again, so it must not count as added.
ROLLUP_THROUGH_KEPT = (
    "UPDATE rollup_state SET through_id ="
    " MIN(through_id, (SELECT COALESCE(MAX(id), 0) FROM requests))"
)
PRUNE_ROLLUP = "DELETE FROM rollup WHERE span = ? AND start < ?"


def _rollup_read(span: int) -> str:
    return (
        "SELECT start / :per AS bucket, model, "
        + ", ".join(f"SUM({name}) AS {name}" for name in _ROLLUP_NAMES)
        + f" FROM (SELECT start, model, {', '.join(_ROLLUP_NAMES)} FROM rollup"
        f" WHERE span = {span} AND start >= :lo AND start < :hi UNION ALL"
        f" SELECT start, model, {', '.join(_ROLLUP_NAMES)} FROM ({_not_rolled_up(span)})"
        " WHERE start >= :lo AND start < :hi)"
        " GROUP BY bucket, model"
    )


ROLLUP_READ = {span: _rollup_read(span) for span in ROLLUP_SPANS}
