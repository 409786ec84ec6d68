"""The proxy's batched background writer of request history and machine samples, and pruning.

The proxy submits one ``RequestRecord`` per finished request to a ``HistoryWriter``, and its
resource poller each ``ResourceSample`` (``submit_sample``, kept one per
``samples.SAMPLE_INTERVAL_S``); the writer writes them in batches from its own thread
(``database.insert_rows``: the rows, their rollup and the samples in one transaction) and
prunes expired rows and samples. Opening (creating or migrating the file)
is ``llama_core.history.database``; the schema is ``schema``, the readers ``readers``.
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

from llama_core.history.database import close_quietly, file_id, insert_rows, open_for_writing
from llama_core.history.rollup import PRUNE_ROLLUP, ROLLUP_SPANS, ROLLUP_THROUGH_KEPT
from llama_core.history.samples import PRUNE as PRUNE_SAMPLES
from llama_core.history.samples import SAMPLE_INTERVAL_S, SampleRows, sample_rows
from llama_core.history.schema import HistoryError, record_to_row
from llama_core.record import RequestRecord
from llama_core.sampler import ResourceSample

logger = logging.getLogger(__name__)

_PRUNE = "DELETE FROM requests WHERE id IN (SELECT id FROM requests WHERE ts < ? LIMIT ?)"

_WAKE = object()  # put by close() so an idle writer notices at once


class HistoryWriter:
    """Writes submitted records to SQLite in batches from one daemon thread.

    ``submit`` never blocks: when the queue is full the record is dropped and counted. A
    database error drops the batch being written, is logged once per streak of failures,
    and the next batch reconnects. ``committed``, ``dropped``, ``batches`` (transactions
    committed) and ``pruned`` count request rows, ``samples_committed``, ``samples_dropped``
    and ``samples_pruned`` machine samples; all are safe to read from any thread.
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
        sample_interval: float = SAMPLE_INTERVAL_S,
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
            ("sample_interval", sample_interval),
        ):
            if not number > 0:
                raise ValueError(f"{name} must be > 0, got {number}")
        self.path = Path(path)
        self.committed = 0
        self.dropped = 0
        self.batches = 0
        self.pruned = 0
        self.samples_committed = 0
        self.samples_dropped = 0
        self.samples_pruned = 0
        self._sample_interval = sample_interval
        self._last_sample_ts = -math.inf
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
        self._full = threading.Event()  # a batch is queued, or flush()/close() wants it now
        self._flushes = 0  # flush() markers queued and not yet taken by the thread
        self._thread: threading.Thread | None = None
        self._failing = 0  # rows dropped in the current failure streak
        self.file_ids: dict[Path, tuple[int, int]] = {}  # our database, -wal and -shm files
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
                except queue.Full:
                    pass
                else:
                    if not self._full.is_set() and self._queue.qsize() >= self._batch_size:
                        self._full.set()
                    return True
        self._drop(1)
        return False

    def submit_sample(self, sample: ResourceSample, *, ts: float | None = None,
                      vram_models_bytes: int | None = None) -> bool:
        """Queue a machine sample (taken at ``ts``, default now) without blocking, if one is due.

        One sample per ``sample_interval`` is kept (a tenth early still counts, so that a
        poll a moment early is not skipped for a whole interval). False when the sample was
        not due, or dropped because the queue is full (counted in ``samples_dropped``, not
        in ``dropped``: those are requests).
        """
        if not isinstance(sample, ResourceSample):
            raise TypeError(f"expected a ResourceSample, got {type(sample).__name__}")
        at = self._clock() if ts is None else ts
        with self._lock:
            if self._closed or at - self._last_sample_ts < 0.9 * self._sample_interval:
                return False
            try:
                self._queue.put_nowait(sample_rows(sample, at, vram_models_bytes))
            except queue.Full:
                self.samples_dropped += 1
                return False
            self._last_sample_ts = at
            return True

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until what was submitted before is written and any due pruning is done."""
        if self._thread is None or not self._thread.is_alive():
            return False
        done = threading.Event()
        with self._lock:
            self._flushes += 1
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            with self._lock:
                self._flushes -= 1
            return False
        self._full.set()
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> bool:
        """Write what is queued and stop; False if that took longer than ``timeout``."""
        with self._lock:
            if self._closed:
                return True
            self._closed = True
        self._stop.set()
        self._full.set()
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
        conn = open_for_writing(self.path)
        self.file_ids = {}
        for file in self._files():
            with contextlib.suppress(OSError):
                self.file_ids[file] = file_id(file)
        return conn

    def _files(self) -> tuple[Path, Path, Path]:
        return self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")

    def _file_replaced(self) -> bool:
        # SQLite goes on writing to a deleted file without an error: notice it ourselves.
        try:
            return file_id(self.path) != self.file_ids.get(self.path)
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
                if file_id(file) == self.file_ids.get(file):
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
            close_quietly(conn)
            for event in waiting:
                event.set()

    def _collect(self, waiting: list[threading.Event]) -> list[RequestRecord | SampleRows]:
        """Up to batch_size records and samples, waiting at most flush_interval after the first.

        The first record or sample wakes the thread; the rest are taken together once the batch
        is full (``submit`` says so), flush_interval after the first, or when ``flush`` or
        ``close`` asks.
        Waking for every record instead cost a thread switch and a GIL hand-over per request,
        on the event loop's time as much as on this thread's.
        """
        batch: list[RequestRecord | SampleRows] = []
        try:
            if self._hurry():
                first = self._queue.get_nowait()
            else:  # idle: wake now and then for pruning
                first = self._queue.get(timeout=self._flush_interval)
        except queue.Empty:
            return batch
        if isinstance(first, threading.Event):
            self._took_flush()
            waiting.append(first)
            return batch
        if isinstance(first, RequestRecord | SampleRows):
            batch.append(first)
            if not self._hurry() and self._queue.qsize() < self._batch_size - 1:
                self._full.wait(self._flush_interval)
            self._full.clear()
        while len(batch) < self._batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, threading.Event):
                self._took_flush()
                waiting.append(item)
                break
            if isinstance(item, RequestRecord | SampleRows):
                batch.append(item)
        return batch

    def _hurry(self) -> bool:
        """Take what is queued now: do not hold up closing, pruning or a flush."""
        return self._stop.is_set() or self._prune_cutoff is not None or self._flushes > 0

    def _took_flush(self) -> None:
        with self._lock:
            self._flushes -= 1

    def _write(
        self, conn: sqlite3.Connection | None, batch: list[RequestRecord | SampleRows]
    ) -> sqlite3.Connection | None:
        records = [item for item in batch if isinstance(item, RequestRecord)]
        samples = [item for item in batch if isinstance(item, SampleRows)]
        try:
            if conn is not None and self._file_replaced():
                logger.warning("history %s: file was removed or replaced; reopening", self.path)
                close_quietly(conn)
                conn = None
                self._forget_replaced_file()
            if (locked := self._read_only()) is not None:
                # A connection opened before a chmod would go on writing: respect the mode.
                raise PermissionError(f"history file {locked} is not writable (read-only)")
            if conn is None:
                conn = self._connect()
            insert_rows(conn, [record_to_row(record) for record in records], samples)
        except Exception as exc:
            close_quietly(conn)
            self._write_failed(exc, len(records), len(samples))
            return None
        with self._lock:
            self.committed += len(records)
            self.samples_committed += len(samples)
            self.batches += 1
        if self._failing:
            logger.warning(
                "history %s: writing again; %d rows were dropped", self.path, self._failing
            )
            self._failing = 0
        return conn

    def _write_failed(self, exc: Exception, rows: int, samples: int = 0) -> None:
        if not self._failing:
            expected = isinstance(exc, sqlite3.Error | OSError | HistoryError)
            logger.error(
                "history %s: cannot write, dropping rows until it works again: %s",
                self.path, exc, exc_info=not expected,
            )
        self._failing += rows + samples
        with self._lock:
            self.samples_dropped += samples
        if rows:
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
            deleted, samples, gpu_rows = self._prune_chunk(conn, self._prune_cutoff)
        except (sqlite3.Error, HistoryError) as exc:
            if not self._failing:  # else the failing batches already said so
                logger.warning("history %s: pruning failed, will retry: %s", self.path, exc)
            close_quietly(conn)
            self._prune_cutoff = None
            return None
        with self._lock:
            self.pruned += deleted
            self.samples_pruned += samples
        # Another chunk is due while any table had a full one (GPU rows outnumber samples).
        if max(deleted, samples, gpu_rows) < self.prune_chunk:
            self._prune_cutoff = None
        return conn


    def _prune_chunk(self, conn: sqlite3.Connection, cutoff: float) -> tuple[int, int, int]:
        """Delete up to prune_chunk expired rows of each table: (requests, samples, GPU)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            deleted: int = conn.execute(_PRUNE, (cutoff, self.prune_chunk)).rowcount
            samples: int = conn.execute(PRUNE_SAMPLES[0], (cutoff, self.prune_chunk)).rowcount
            gpus: int = conn.execute(PRUNE_SAMPLES[1], (cutoff, self.prune_chunk)).rowcount
            # The rollup's share goes with the first chunk; later ones find nothing to delete.
            for span in ROLLUP_SPANS:
                conn.execute(PRUNE_ROLLUP, (span, int(cutoff) // span))
            conn.execute(ROLLUP_THROUGH_KEPT)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return deleted, samples, gpus


def open_writer(path: str | os.PathLike[str] | None, **kwargs: Any) -> HistoryWriter | None:
    """A started writer for ``path``, or None when ``path`` is empty (history disabled)."""
    if path is None or not os.fspath(path):
        return None
    writer = HistoryWriter(path, **kwargs)
    writer.start()
    return writer

