"""Opening the history file for writing: created private, migrated; rows inserted with rollup."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llama_core.history.rollup import ROLLUP_ADD, ROLLUP_SCHEMA, ROLLUP_THROUGH
from llama_core.history.samples import (
    INSERT_GPU_SAMPLE,
    INSERT_SAMPLE,
    SAMPLES_SCHEMA,
    SampleRows,
)
from llama_core.history.schema import (
    ADDED_IN,
    COLUMNS,
    LEGACY_LOADED_SQL,
    ROLLUP_SINCE,
    SCHEMA,
    SCHEMA_VERSION,
    HistoryError,
    check_columns,
    columns_of,
)

logger = logging.getLogger(__name__)

_NAMES = tuple(name for name, _, _ in COLUMNS)
_ONE_ROW = "(" + ", ".join("?" for _ in _NAMES) + ")"
# Rows per INSERT: the largest power of two under this, then halves for the rest of a batch,
# so that a few statements (sqlite3 caches them) take any batch.
_ROWS_PER_INSERT = 128
_BUSY_TIMEOUT_S = 5.0


@functools.cache
def _insert(rows: int) -> str:
    return f"INSERT INTO requests ({', '.join(_NAMES)}) VALUES " + ", ".join([_ONE_ROW] * rows)


def _insert_requests(conn: sqlite3.Connection, rows: list[dict[str, Any]]) -> None:
    """The rows in a few multi-row INSERTs rather than one ``executemany`` step per row.

    sqlite3 gives up the GIL around each step of a statement and takes it back after: one
    step per row made the writer thread and the event loop hand the GIL to each other for
    every request (0.1 to 0.2 ms of the proxy's CPU per request on 2 cores, 2026-12-02 in
    docs/benchmarks.md); one statement of many rows is one hand-over.
    """
    per = max(1, min(_ROWS_PER_INSERT,
                     conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(_NAMES)))
    start = 0
    while start < len(rows):
        n = min(per, len(rows) - start)
        n = 1 << (n.bit_length() - 1)  # a power of two: a handful of distinct statements
        chunk = rows[start:start + n]
        conn.execute(_insert(n), [row[name] for row in chunk for name in _NAMES])
        start += n


def _add_to_rollup(conn: sqlite3.Connection) -> None:
    """Sum the rows written since the last call into the rollup (inside the caller's
    transaction, so that the two never disagree)."""
    for statement in ROLLUP_ADD:
        conn.execute(statement)
    conn.execute(ROLLUP_THROUGH)


def insert_rows(conn: sqlite3.Connection, rows: list[dict[str, Any]],
                samples: Sequence[SampleRows] = ()) -> None:
    """Insert rows (``record_to_row`` dicts) and add them to the rollup, and insert machine
    samples, in one transaction.

    The writer's path for every batch; also for bulk loads (the benchmark)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if rows:
            _insert_requests(conn, rows)
            _add_to_rollup(conn)
        if samples:
            conn.executemany(INSERT_SAMPLE, [s.host for s in samples])
            conn.executemany(INSERT_GPU_SAMPLE, [gpu for s in samples for gpu in s.gpus])
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def file_id(path: Path) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def close_quietly(conn: sqlite3.Connection | None) -> None:
    if conn is not None:
        with contextlib.suppress(sqlite3.Error):
            conn.close()


def _create_private(path: Path) -> None:
    """Create the file (and its directory) for the owner only, before sqlite opens it."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass  # an existing file keeps the mode its owner gave it


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """Append the columns of each later schema that the file lacks.

    Schema 3 stores the load decision: old rows get the line their rollup drew.
    """
    present = set(columns_of(conn))
    for version, names in sorted(ADDED_IN.items()):
        if set(names) <= present:
            continue
        for name, sqltype, _ in COLUMNS:
            if name in names:
                conn.execute(f"ALTER TABLE requests ADD COLUMN {name} {sqltype}")
        if version == 3:
            conn.execute(f"UPDATE requests SET loaded_model = 1 WHERE {LEGACY_LOADED_SQL}")


def _ensure_schema(conn: sqlite3.Connection, path: Path) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise HistoryError(
                f"history {path} has schema version {version}; this llama-metrics reads up to "
                f"{SCHEMA_VERSION}: upgrade llama-metrics or point it at another file"
            )
        if version < SCHEMA_VERSION:
            conn.execute(SCHEMA[0])
            # A foreign 'requests' table survives IF NOT EXISTS; one of before 3 is migrated.
            check_columns(conn, path, legacy=True)
            _add_missing_columns(conn)
            check_columns(conn, path)
            for statement in (*SCHEMA[1:], *ROLLUP_SCHEMA, *SAMPLES_SCHEMA):
                conn.execute(statement)
            if version < ROLLUP_SINCE:
                # From 1 or 2 (or a half-made file): build the rollup from every row, in this
                # same transaction, so that a crash leaves the old version and the next start
                # builds it again. From 3 on the rollup is already the one this version keeps.
                conn.execute("DELETE FROM rollup")
                conn.execute("UPDATE rollup_state SET through_id = 0")
                if version:
                    logger.info("history %s: rebuilding the per-minute rollup (schema %d to %d)",
                                path, version, SCHEMA_VERSION)
            _add_to_rollup(conn)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise



def open_for_writing(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the database for the writer; every failure is HistoryError."""
    conn: sqlite3.Connection | None = None
    try:
        _create_private(path)
        # Opened here, used by the writer thread only: the hand-over is the one crossing.
        conn = sqlite3.connect(
            path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        _ensure_schema(conn, path)
        return conn
    except HistoryError:
        close_quietly(conn)
        raise
    except (sqlite3.Error, OSError) as exc:
        close_quietly(conn)
        raise HistoryError(f"cannot open history {path}: {exc}") from exc
