"""Writing request history: the proxy's batched background writer, pruning and migration.

The proxy submits one ``RequestRecord`` per finished request to a ``HistoryWriter``, which
writes them in batches from its own thread (``insert_rows``: the rows and their rollup in one
transaction), prunes expired rows, and on open creates the file or migrates it to
``SCHEMA_VERSION``. The schema and the readers are in ``addons.history``.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from addons.history import (
    COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    HistoryError,
    check_columns,
    record_to_row,
)
from addons.history_rollup import (
    PRUNE_ROLLUP,
    ROLLUP_ADD,
    ROLLUP_SCHEMA,
    ROLLUP_SPANS,
    ROLLUP_THROUGH,
    ROLLUP_THROUGH_KEPT,
)
from llama_core.record import RequestRecord

logger = logging.getLogger(__name__)

_INSERT = "INSERT INTO requests ({}) VALUES ({})".format(
    ", ".join(name for name, _, _ in COLUMNS), ", ".join(f":{name}" for name, _, _ in COLUMNS)
)
_PRUNE = "DELETE FROM requests WHERE id IN (SELECT id FROM requests WHERE ts < ? LIMIT ?)"
_BUSY_TIMEOUT_S = 5.0


def _add_to_rollup(conn: sqlite3.Connection) -> None:
    """Sum the rows written since the last call into the rollup (inside the caller's
    transaction, so that the two never disagree)."""
    for statement in ROLLUP_ADD:
        conn.execute(statement)
    conn.execute(ROLLUP_THROUGH)


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
            conn.execute(SCHEMA[0])
            check_columns(conn, path)  # a foreign 'requests' table survives IF NOT EXISTS
            for statement in (*SCHEMA[1:], *ROLLUP_SCHEMA):
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

    def _read_only(self) -> Path | None:
        # The first of our files that exists and that we may not write (a missing one is
        # created). SQLite gives a -shm it creates the mode the database has at that moment.
        for file in self._files():
            if file.exists() and not os.access(file, os.W_OK):
                return file
        return None

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
            if (locked := self._read_only()) is not None:
                # A connection opened before a chmod would go on writing: respect the mode.
                raise PermissionError(f"history file {locked} is not writable (read-only)")
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
                conn.execute(PRUNE_ROLLUP, (span, int(cutoff) // span))
            conn.execute(ROLLUP_THROUGH_KEPT)
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

