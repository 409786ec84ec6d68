"""The history file's schema: its version, its columns, and where a record meets a row.

The schema is documented in ``docs/history.md``. The writer (``llama_core.history.database``)
creates and migrates it; the readers (``llama_core.history.readers``) check it.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llama_core.record import RequestRecord

logger = logging.getLogger(__name__)

# 2 added the rollup; 3 added loaded_model (the proxy's decision, stored once) and tpot_s;
# 4 added client, user, cached_prompt_tokens and energy_j; 5 added the machine samples (tables
# samples and gpu_samples, llama_core.history.samples). llama_core.history.database migrates
# from every earlier version.
SCHEMA_VERSION = 5
# The rollup has been what it is since 3: a file of 3 or later is read from it.
ROLLUP_SINCE = 3
SAMPLES_SINCE = 5

# (column, SQL type, RequestRecord field): the one place where a record meets a row. A column
# added by a migration goes last: ALTER TABLE appends, and check_columns compares the order.
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
    ("loaded_model", "INTEGER NOT NULL DEFAULT 0", "loaded_model"),
    ("tpot_s", "REAL", "tpot_s"),
    ("client", "TEXT", "client"),
    ("user", "TEXT", "user"),
    ("cached_prompt_tokens", "INTEGER", "cached_prompt_tokens"),
    ("energy_j", "REAL", "energy_j"),
)
# The columns each migration appends, in COLUMNS order; a file of version v has every column
# but those added after v.
ADDED_IN: dict[int, tuple[str, ...]] = {
    3: ("loaded_model", "tpot_s"),
    4: ("client", "user", "cached_prompt_tokens", "energy_j"),
}
BOOL_COLUMNS = frozenset({"stream", "usage_reported", "loaded_model"})
# Files of schema 1 and 2 have LEGACY_COLUMNS. Before 3, the proxy counted a
# load from load_duration_s >= load_threshold_seconds and the rollup from a fixed 0.25 s;
# the migration and the readers of such files take the rollup's line (what the history said).


def columns_through(version: int) -> tuple[str, ...]:
    """The columns a file of schema ``version`` has, in order."""
    later = {name for v, names in ADDED_IN.items() if v > version for name in names}
    return tuple(name for name, _, _ in COLUMNS if name not in later)


LEGACY_COLUMNS = columns_through(2)
LEGACY_LOAD_THRESHOLD_S = 0.25
LEGACY_LOADED_SQL = f"(COALESCE(load_duration_s, 0) >= {LEGACY_LOAD_THRESHOLD_S!r})"

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS requests (id INTEGER PRIMARY KEY, "
    + ", ".join(f"{name} {sqltype}" for name, sqltype, _ in COLUMNS)
    + ")",
    "CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts)",
    "CREATE INDEX IF NOT EXISTS requests_model_ts ON requests (model, ts)",
)  # the requests table; the rollup's tables are ROLLUP_SCHEMA in llama_core.history.rollup


class HistoryError(Exception):
    """The history database cannot be opened: missing, not a database, or a newer schema."""


def record_to_row(record: RequestRecord) -> dict[str, Any]:
    """The column values for one record, keyed by column name."""
    row = {name: getattr(record, field) for name, _, field in COLUMNS}
    for name in BOOL_COLUMNS:
        row[name] = int(row[name])
    return row


def row_to_record(row: Mapping[str, Any]) -> RequestRecord:
    """The record stored in one row (a dict or ``sqlite3.Row``); ``id`` is ignored.

    A column a file of an older schema lacks is left at the record's default.
    """
    names = set(row.keys())
    values = {field: row[name] for name, _, field in COLUMNS if name in names}
    for name in BOOL_COLUMNS:
        if name in values:
            values[name] = bool(values[name])
    return RequestRecord(**values)


def columns_of(conn: sqlite3.Connection) -> list[str]:
    """The columns of the file's ``requests`` table, in order (empty: no such table)."""
    cursor = conn.cursor()
    cursor.row_factory = None  # tuples, whatever factory the connection has
    try:
        return [row[1] for row in cursor.execute("PRAGMA table_info(requests)")]
    finally:
        cursor.close()


def check_columns(conn: sqlite3.Connection, path: Path, *, legacy: bool = False) -> None:
    """Raise HistoryError unless ``requests`` is llama-metrics history (of an older schema,
    not yet migrated: legacy)."""
    found = columns_of(conn)
    if not found:
        raise HistoryError(f"history {path} has no 'requests' table (not written to yet?)")
    expected = [[*(name for name, _, _ in COLUMNS)]]
    if legacy:
        expected += [list(columns_through(v)) for v in (2, *ADDED_IN) if v < SCHEMA_VERSION]
    if found[1:] not in expected or found[0] != "id":
        raise HistoryError(f"history {path}: table 'requests' is not llama-metrics history")
