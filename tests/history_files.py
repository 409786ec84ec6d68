"""History files for tests, with rows inserted directly (as a proxy's writer would have)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from llama_core.history.schema import COLUMNS, record_to_row
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
