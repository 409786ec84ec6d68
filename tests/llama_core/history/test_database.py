"""llama_core/history/database.py: rows inserted in multi-row statements, as one by one would."""

from __future__ import annotations

import dataclasses
import random
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from llama_core.history.database import insert_rows, open_for_writing
from llama_core.history.readers import connect_readonly, requests_since, totals
from llama_core.history.schema import record_to_row, row_to_record
from llama_core.record import RequestRecord
from tests.llama_core.history.test_writer import T0, VARIED


def varied(n: int, seed: int) -> list[RequestRecord]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        out.append(dataclasses.replace(
            VARIED[i % len(VARIED)], started_at=T0 + i * 0.37,
            prompt_tokens=rng.choice([None, 0, rng.randint(1, 9999)]),
            duration_s=rng.random() * 30, client=rng.choice([None, "", "team-a"]),
        ))
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 127, 128, 129, 255, 256, 300, 1000])
def test_every_row_lands_in_order_and_in_the_rollup(tmp_path: Path, n: int) -> None:
    records = varied(n, seed=n)
    path = tmp_path / "history.db"
    conn = open_for_writing(path)
    try:
        insert_rows(conn, [record_to_row(r) for r in records[: n // 2]])
        insert_rows(conn, [record_to_row(r) for r in records[n // 2:]])
    finally:
        conn.close()
    with closing(connect_readonly(path)) as read:
        rows = requests_since(read, 0.0)
        assert [row_to_record(row) for row in rows] == records
        assert [row["id"] for row in rows] == list(range(1, n + 1))
        summed = totals(read, 0.0)
    assert summed["requests"] == n


def test_a_small_variable_limit_still_takes_every_row(tmp_path: Path) -> None:
    records = varied(50, seed=7)
    conn = open_for_writing(tmp_path / "history.db")
    try:
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 100)  # under two rows' worth
        insert_rows(conn, [record_to_row(r) for r in records])
        assert conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == 50
    finally:
        conn.close()
