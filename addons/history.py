"""Request history in SQLite: the schema, the proxy's background writer, and the readers.

The proxy submits one ``RequestRecord`` per finished request to a ``HistoryWriter``, which
writes them in batches from its own thread. The dashboard and the health daemon read the same
file through ``connect_readonly`` and the query functions below. The schema is documented in
``docs/history.md``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from addons.metrics import DURATION_BUCKETS, TTFT_BUCKETS
from addons.records import RequestRecord

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2 added the rollup; see _ensure_schema for the migration from 1

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

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS requests (id INTEGER PRIMARY KEY, "
    + ", ".join(f"{name} {sqltype}" for name, sqltype, _ in COLUMNS)
    + ")",
    "CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts)",
    "CREATE INDEX IF NOT EXISTS requests_model_ts ON requests (model, ts)",
)
_INSERT = "INSERT INTO requests ({}) VALUES ({})".format(
    ", ".join(name for name, _, _ in COLUMNS), ", ".join(f":{name}" for name, _, _ in COLUMNS)
)
_PRUNE = "DELETE FROM requests WHERE id IN (SELECT id FROM requests WHERE ts < ? LIMIT ?)"
_BUSY_TIMEOUT_S = 5.0

def _bucket_index_sql(column: str, bounds: tuple[float, ...], lo: int = 0,
                      hi: int | None = None) -> str:
    """SQL for the index of the first bound >= column (len(bounds) = +Inf), by bisection."""
    hi = len(bounds) if hi is None else hi
    if lo == hi:
        return str(lo)
    mid = (lo + hi) // 2
    return (
        f"CASE WHEN {column} <= {bounds[mid]!r} THEN {_bucket_index_sql(column, bounds, lo, mid)}"
        f" ELSE {_bucket_index_sql(column, bounds, mid + 1, hi)} END"
    )


def _checked_bounds(bounds: tuple[float, ...]) -> tuple[float, ...]:
    values = tuple(float(b) for b in bounds)
    if not values or any(not math.isfinite(b) for b in values) or list(values) != sorted(
        set(values)
    ):
        raise ValueError(f"bucket bounds must be finite and increasing, got {bounds!r}")
    return values


# -- The rollup: per minute (and per half hour) and model, what the dashboard charts need ---
# Kept by the writer in the transaction that inserts the rows, so reading a month is reading
# 1,440 half hours per model instead of every request. The histogram bounds are the proxy's
# own metric buckets, so a quantile from the rollup is the one the rows would give; changing
# them (or LOAD_THRESHOLD_S) needs a new schema version whose migration rebuilds the rollup.
ROLLUP_SPANS = (60, 1800)  # seconds; each divides the next, so both agree on every bucket
ROLLUP_TTFT_BOUNDS: tuple[float, ...] = TTFT_BUCKETS
ROLLUP_DURATION_BOUNDS: tuple[float, ...] = DURATION_BUCKETS
LOAD_THRESHOLD_S = 0.25  # the proxy's default load_threshold_seconds

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
    ("loads", f"COUNT(CASE WHEN load_duration_s >= {LOAD_THRESHOLD_S!r} THEN 1 END)"),
    ("load_s", f"TOTAL(CASE WHEN load_duration_s >= {LOAD_THRESHOLD_S!r}"
               " THEN load_duration_s END)"),
    *((f"ttft_{i}", f"SUM(t = {i})") for i in range(len(ROLLUP_TTFT_BOUNDS) + 1)),
    *((f"duration_{i}", f"SUM(d = {i})") for i in range(len(ROLLUP_DURATION_BOUNDS) + 1)),
)
_ROLLUP_NAMES = tuple(name for name, _ in _ROLLUP_SUMS)
_ROLLUP_SCHEMA = (
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
        " load_duration_s, CASE WHEN ttft_s IS NULL THEN -1 ELSE "
        + _bucket_index_sql("ttft_s", ROLLUP_TTFT_BOUNDS) + " END AS t, "
        + _bucket_index_sql("duration_s", ROLLUP_DURATION_BOUNDS) + " AS d"
        " FROM requests WHERE id > (SELECT through_id FROM rollup_state)))"
        " GROUP BY start, model"
    )


_ROLLUP_ADD = tuple(
    f"INSERT INTO rollup (span, start, model, {', '.join(_ROLLUP_NAMES)})"
    f" SELECT * FROM ({_not_rolled_up(span)}) WHERE true"
    " ON CONFLICT (span, start, model) DO UPDATE SET "
    + ", ".join(f"{name} = {name} + excluded.{name}" for name in _ROLLUP_NAMES)
    for span in ROLLUP_SPANS
)
_ROLLUP_THROUGH = "UPDATE rollup_state SET through_id = (SELECT COALESCE(MAX(id), 0) FROM requests)"
# After a prune: a deleted highest id can be given out again, so it must not count as added.
_ROLLUP_THROUGH_KEPT = (
    "UPDATE rollup_state SET through_id ="
    " MIN(through_id, (SELECT COALESCE(MAX(id), 0) FROM requests))"
)
_PRUNE_ROLLUP = "DELETE FROM rollup WHERE span = ? AND start < ?"


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


_ROLLUP_READ = {span: _rollup_read(span) for span in ROLLUP_SPANS}


def _add_to_rollup(conn: sqlite3.Connection) -> None:
    """Sum the rows written since the last call into the rollup (inside the caller's
    transaction, so that the two never disagree)."""
    for statement in _ROLLUP_ADD:
        conn.execute(statement)
    conn.execute(_ROLLUP_THROUGH)


def insert_rows(conn: sqlite3.Connection, rows: list[dict[str, Any]]) -> None:
    """Insert rows (``record_to_row`` dicts) and add them to the rollup, in one transaction.

    The writer's path for every batch; also for bulk loads (the benchmark)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(_INSERT, rows)
        _add_to_rollup(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


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


def _file_id(path: Path) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def _close_quietly(conn: sqlite3.Connection | None) -> None:
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
            conn.execute(_SCHEMA[0])
            _check_columns(conn, path)  # a foreign 'requests' table survives IF NOT EXISTS
            for statement in (*_SCHEMA[1:], *_ROLLUP_SCHEMA):
                conn.execute(statement)
            # From 1 (or a half-made file): build the rollup from every row, in this same
            # transaction, so that a crash leaves version 1 and the next start builds it again.
            conn.execute("DELETE FROM rollup")
            conn.execute("UPDATE rollup_state SET through_id = 0")
            if version:
                logger.info("history %s: building the per-minute rollup (schema %d to %d)",
                            path, version, SCHEMA_VERSION)
            _add_to_rollup(conn)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _check_columns(conn: sqlite3.Connection, path: Path) -> None:
    found = [row[1] for row in conn.execute("PRAGMA table_info(requests)")]
    if not found:
        raise HistoryError(f"history {path} has no 'requests' table (not written to yet?)")
    if found != ["id", *(name for name, _, _ in COLUMNS)]:
        raise HistoryError(f"history {path}: table 'requests' is not llama-metrics history")


def _open_for_writing(path: Path) -> sqlite3.Connection:
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
        _close_quietly(conn)
        raise
    except (sqlite3.Error, OSError) as exc:
        _close_quietly(conn)
        raise HistoryError(f"cannot open history {path}: {exc}") from exc


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
        _check_columns(conn, resolved)
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


_WAKE = object()  # put by close() so an idle writer notices at once


class HistoryWriter:
    """Writes submitted records to SQLite in batches from one daemon thread.

    ``submit`` never blocks: when the queue is full the record is dropped and counted. A
    database error drops the batch being written, is logged once per streak of failures,
    and the next batch reconnects. ``committed``, ``dropped``, ``batches`` (transactions
    committed) and ``pruned`` count rows and are safe to read from any thread.
    """

    prune_chunk = 1000  # rows per DELETE, so pruning never holds the write lock for long

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        batch_size: int = 256,
        flush_interval: float = 1.0,
        queue_size: int = 10000,
        retention_days: float = 30.0,
        prune_interval: float = 3600.0,
        on_drop: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not os.fspath(path):
            raise ValueError("history path is empty; use open_writer() for optional history")
        for name, value in (("batch_size", batch_size), ("queue_size", queue_size)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        for name, number in (
            ("flush_interval", flush_interval),
            ("retention_days", retention_days),
            ("prune_interval", prune_interval),
        ):
            if not number > 0:
                raise ValueError(f"{name} must be > 0, got {number}")
        self.path = Path(path)
        self.committed = 0
        self.dropped = 0
        self.batches = 0
        self.pruned = 0
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._retention_s = retention_days * 86400.0
        self._prune_interval = prune_interval
        self._on_drop = on_drop
        self._clock = clock
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._closed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = 0  # rows dropped in the current failure streak
        self._file_ids: dict[Path, tuple[int, int]] = {}  # our database, -wal and -shm files
        self._prune_cutoff: float | None = None
        self._next_prune = -math.inf

    def start(self) -> None:
        """Open the database (raising HistoryError if it cannot) and start writing."""
        if self._thread is not None or self._closed:
            raise RuntimeError(f"history writer for {self.path} was already started or closed")
        conn = self._connect()
        self._thread = threading.Thread(
            target=self._run, args=(conn,), name=f"history-writer {self.path}", daemon=True
        )
        self._thread.start()

    def submit(self, record: RequestRecord) -> bool:
        """Queue one record without blocking; False (and counted) when it had to be dropped."""
        if not isinstance(record, RequestRecord):
            raise TypeError(f"expected a RequestRecord, got {type(record).__name__}")
        with self._lock:
            if not self._closed:
                try:
                    self._queue.put_nowait(record)
                    return True
                except queue.Full:
                    pass
        self._drop(1)
        return False

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until what was submitted before is written and any due pruning is done."""
        if self._thread is None or not self._thread.is_alive():
            return False
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> bool:
        """Write what is queued and stop; False if that took longer than ``timeout``."""
        with self._lock:
            if self._closed:
                return True
            self._closed = True
        self._stop.set()
        if self._thread is None:  # never started: drain in the caller's thread
            self._run(None)
            return True
        try:
            self._queue.put_nowait(_WAKE)
        except queue.Full:
            pass  # the thread is busy with the queue and will see the stop flag
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning(
                "history %s: still writing after %.1fs, %d rows left queued",
                self.path, timeout, self._queue.qsize(),
            )
            return False
        return True

    def _connect(self) -> sqlite3.Connection:
        conn = _open_for_writing(self.path)
        self._file_ids = {}
        for file in self._files():
            with contextlib.suppress(OSError):
                self._file_ids[file] = _file_id(file)
        return conn

    def _files(self) -> tuple[Path, Path, Path]:
        return self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")

    def _file_replaced(self) -> bool:
        # SQLite goes on writing to a deleted file without an error: notice it ourselves.
        try:
            return _file_id(self.path) != self._file_ids.get(self.path)
        except OSError:
            return True

    def _forget_replaced_file(self) -> None:
        # Our -wal would be replayed onto whatever file now has the name: remove it, and
        # our -shm with it, but not files that someone else has put there since.
        for file in self._files()[1:]:
            with contextlib.suppress(OSError):
                if _file_id(file) == self._file_ids.get(file):
                    file.unlink()

    def _drop(self, rows: int) -> None:
        with self._lock:
            self.dropped += rows
        if self._on_drop is not None:
            try:
                self._on_drop(rows)
            except Exception:
                logger.exception("history %s: on_drop callback failed", self.path)

    def _run(self, conn: sqlite3.Connection | None) -> None:
        waiting: list[threading.Event] = []
        try:
            while not (self._stop.is_set() and self._queue.empty()):
                try:
                    batch = self._collect(waiting)
                    if batch:
                        conn = self._write(conn, batch)
                    conn = self._prune(conn)
                    if self._prune_cutoff is None:
                        for event in waiting:
                            event.set()
                        waiting.clear()
                except Exception:
                    logger.exception("history %s: writer loop failed; going on", self.path)
        finally:
            _close_quietly(conn)
            for event in waiting:
                event.set()

    def _collect(self, waiting: list[threading.Event]) -> list[RequestRecord]:
        """Up to batch_size records, waiting at most flush_interval after the first one."""
        batch: list[RequestRecord] = []
        deadline: float | None = None
        while len(batch) < self._batch_size:
            if self._stop.is_set() or self._prune_cutoff is not None:
                timeout = 0.0  # take what is queued now; do not hold up closing or pruning
            elif deadline is None:
                timeout = self._flush_interval  # idle: wake now and then for pruning
            else:
                timeout = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, threading.Event):
                waiting.append(item)
                break
            if isinstance(item, RequestRecord):
                batch.append(item)
                if deadline is None:
                    deadline = time.monotonic() + self._flush_interval
        return batch

    def _write(
        self, conn: sqlite3.Connection | None, batch: list[RequestRecord]
    ) -> sqlite3.Connection | None:
        try:
            if conn is not None and self._file_replaced():
                logger.warning("history %s: file was removed or replaced; reopening", self.path)
                _close_quietly(conn)
                conn = None
                self._forget_replaced_file()
            if conn is None:
                conn = self._connect()
            insert_rows(conn, [record_to_row(record) for record in batch])
        except Exception as exc:
            _close_quietly(conn)
            self._write_failed(exc, len(batch))
            return None
        with self._lock:
            self.committed += len(batch)
            self.batches += 1
        if self._failing:
            logger.warning(
                "history %s: writing again; %d rows were dropped", self.path, self._failing
            )
            self._failing = 0
        return conn

    def _write_failed(self, exc: Exception, rows: int) -> None:
        if not self._failing:
            expected = isinstance(exc, sqlite3.Error | OSError | HistoryError)
            logger.error(
                "history %s: cannot write, dropping rows until it works again: %s",
                self.path, exc, exc_info=not expected,
            )
        self._failing += rows
        self._drop(rows)

    def _prune(self, conn: sqlite3.Connection | None) -> sqlite3.Connection | None:
        """Delete one chunk of expired rows when a prune is due or under way."""
        now = self._clock()
        if self._prune_cutoff is None:
            if now < self._next_prune:
                return conn
            self._next_prune = now + self._prune_interval
            # Whole spans, so that the rollup loses exactly the spans whose rows go.
            span = ROLLUP_SPANS[-1]
            self._prune_cutoff = float(math.floor((now - self._retention_s) / span) * span)
        try:
            if conn is None:
                conn = self._connect()
            deleted = self._prune_chunk(conn, self._prune_cutoff)
        except (sqlite3.Error, HistoryError) as exc:
            if not self._failing:  # else the failing batches already said so
                logger.warning("history %s: pruning failed, will retry: %s", self.path, exc)
            _close_quietly(conn)
            self._prune_cutoff = None
            return None
        with self._lock:
            self.pruned += deleted
        if deleted < self.prune_chunk:
            self._prune_cutoff = None
        return conn


    def _prune_chunk(self, conn: sqlite3.Connection, cutoff: float) -> int:
        conn.execute("BEGIN IMMEDIATE")
        try:
            deleted: int = conn.execute(_PRUNE, (cutoff, self.prune_chunk)).rowcount
            # The rollup's share goes with the first chunk; later ones find nothing to delete.
            for span in ROLLUP_SPANS:
                conn.execute(_PRUNE_ROLLUP, (span, int(cutoff) // span))
            conn.execute(_ROLLUP_THROUGH_KEPT)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return deleted


def open_writer(path: str | os.PathLike[str] | None, **kwargs: Any) -> HistoryWriter | None:
    """A started writer for ``path``, or None when ``path`` is empty (history disabled)."""
    if path is None or not os.fspath(path):
        return None
    writer = HistoryWriter(path, **kwargs)
    writer.start()
    return writer


# -- Read functions for the dashboard ------------------------------------------------------
# Added for dashboard/ (issue 4); every query of the history file stays in this module.


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
    ttft_le = _bucket_index_sql("ttft_s", _checked_bounds(ttft_bounds))
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
    duration_le = _bucket_index_sql("duration_s", _checked_bounds(duration_bounds))
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
    found = _query(conn, _ROLLUP_READ[span],
                   {"per": per, "lo": first * per, "hi": (last + 1) * per})
    ttft = [f"ttft_{i}" for i in range(len(ROLLUP_TTFT_BOUNDS) + 1)]
    duration = [f"duration_{i}" for i in range(len(ROLLUP_DURATION_BOUNDS) + 1)]
    for row in found:
        row["ttft_hist"] = [row.pop(name) for name in ttft]
        row["duration_hist"] = [row.pop(name) for name in duration]
    return found
