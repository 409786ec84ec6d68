"""History files for tests: filled directly (as a proxy's writer would have), and read back."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from llama_core.history.readers import connect_readonly, recent_requests
from llama_core.history.schema import COLUMNS, HistoryError, record_to_row
from llama_core.history.writer import HistoryWriter
from llama_core.record import RequestRecord


def write_history(path: Path, records: list[RequestRecord]) -> None:
    """A history file as the proxy writes it, filled in one transaction.

    The rows go in without the writer's rollup: readers count such rows themselves.
    """
    writer = HistoryWriter(path, retention_days=1e6)  # test times lie far in the past
    writer.start()
    writer.close()
    names = [name for name, _, _ in COLUMNS]
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.executemany(
            f"INSERT INTO requests ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
            [[record_to_row(r)[n] for n in names] for r in records],
        )


def read_rows(path: Path, limit: int = 1000) -> list[dict[str, Any]]:
    """The ``limit`` newest rows of a history file; none while the file is not there yet."""
    try:
        conn = connect_readonly(path)
    except HistoryError:
        return []
    with closing(conn):
        return recent_requests(conn, limit)


def row_count(path: Path) -> int:
    """Rows in a history file (0 while the file is not there yet)."""
    try:
        conn = connect_readonly(path)
    except HistoryError:
        return 0
    with closing(conn):
        return int(conn.execute("SELECT COUNT(*) AS n FROM requests").fetchone()["n"])
