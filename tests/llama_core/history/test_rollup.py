"""Tests for the history rollup: kept with the rows, equal to counting them, migrated, pruned."""

from __future__ import annotations

import dataclasses
import math
import random
import sqlite3
from collections import defaultdict
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from llama_core.history.readers import (
    connect_readonly,
    has_rollup,
    recent_requests,
    rollup_durations,
    rollup_models,
    rollup_series,
)
from llama_core.history.rollup import ROLLUP_DURATION_BOUNDS, ROLLUP_TTFT_BOUNDS
from llama_core.history.schema import (
    ADDED_IN,
    COLUMNS,
    LEGACY_COLUMNS,
    SCHEMA_VERSION,
    record_to_row,
)
from llama_core.history.writer import HistoryWriter
from llama_core.record import RequestRecord

T0 = 1_699_999_200.0  # a whole half hour
SUMS = ("requests", "errors", "prompt_tokens", "generated_tokens", "busy_s", "queue_wait_s",
        "ttft_s", "tps_sum", "tps_count", "loads", "load_s")


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def varied(n: int, span_s: float, seed: int = 7) -> list[RequestRecord]:
    rng = random.Random(seed)
    records = [RequestRecord(
        started_at=T0 + rng.uniform(0, span_s), endpoint="/api/chat",
        model=rng.choice(["a:latest", "b:latest", "c:latest"]), status=200,
        error_type=rng.choice([None, None, None, "timeout"]),
        prompt_tokens=rng.choice([None, rng.randint(1, 900)]),
        generated_tokens=rng.choice([None, rng.randint(1, 900)]),
        ttft_s=rng.choice([None, rng.lognormvariate(-1.5, 1.2), 0.25, 2560.0, 5000.0]),
        duration_s=rng.choice([rng.lognormvariate(0.5, 1.5), 1.0, 0.005, 4000.0]),
        queue_wait_s=rng.choice([0.0, rng.uniform(0, 2)]),
        tokens_per_second=rng.choice([None, rng.uniform(5, 90)]),
        load_duration_s=rng.choice([None, 0.004, 0.25, rng.uniform(0.3, 9)]),
    ) for _ in range(n)]
    for record in records:  # the proxy's decision, as its default threshold draws it
        record.loaded_model = (record.load_duration_s or 0.0) >= 0.25
    return records


def write_through(path: Path, records: list[RequestRecord], **kwargs: Any) -> None:
    writer = HistoryWriter(path, batch_size=37, retention_days=1e6, **kwargs)
    for record in records:
        assert writer.submit(record)
    writer.start()
    assert writer.close()
    assert writer.dropped == 0


def insert_outside(path: Path, records: list[RequestRecord]) -> None:
    """Rows as a tool other than the writer would add them: not in the rollup yet."""
    names = [name for name, _, _ in COLUMNS]
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.executemany(
            f"INSERT INTO requests ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
            [[record_to_row(r)[n] for n in names] for r in records],
        )


def from_rows(conn: sqlite3.Connection, first: int, last: int, step: int
              ) -> tuple[dict[tuple[int, str], dict[str, Any]], dict[int, list[int]]]:
    models: dict[tuple[int, str], dict[str, Any]] = {}
    for row in rollup_models(conn, first, last, step, ttft_bounds=ROLLUP_TTFT_BOUNDS):
        got = models.setdefault((row["bucket"], row["model"]), {
            **dict.fromkeys(SUMS, 0), "ttft_hist": [0] * (len(ROLLUP_TTFT_BOUNDS) + 1)})
        for key in SUMS:
            got[key] += row[key]
        if row["ttft_le"] is not None:
            got["ttft_hist"][row["ttft_le"]] += row["requests"]
    durations: dict[int, list[int]] = defaultdict(lambda: [0] * (len(ROLLUP_DURATION_BOUNDS) + 1))
    for row in rollup_durations(conn, first, last, step, duration_bounds=ROLLUP_DURATION_BOUNDS):
        durations[row["bucket"]][row["duration_le"]] += row["requests"]
    return models, dict(durations)


def from_rollup(conn: sqlite3.Connection, first: int, last: int, step: int
                ) -> tuple[dict[tuple[int, str], dict[str, Any]], dict[int, list[int]]]:
    models: dict[tuple[int, str], dict[str, Any]] = {}
    durations: dict[int, list[int]] = defaultdict(lambda: [0] * (len(ROLLUP_DURATION_BOUNDS) + 1))
    for row in rollup_series(conn, first, last, step):
        assert (row["bucket"], row["model"]) not in models
        models[row["bucket"], row["model"]] = {
            **{key: row[key] for key in SUMS}, "ttft_hist": row["ttft_hist"]}
        for i, count in enumerate(row["duration_hist"]):
            durations[row["bucket"]][i] += count
    return models, dict(durations)


def assert_same(path: Path, step: int, first: int, last: int) -> None:
    with closing(connect_readonly(path)) as conn:
        rows_models, rows_durations = from_rows(conn, first, last, step)
        models, durations = from_rollup(conn, first, last, step)
    assert rows_models  # the comparison compares something
    assert models.keys() == rows_models.keys()
    for key, expected in rows_models.items():
        got = dict(models[key])
        assert got.pop("ttft_hist") == expected.pop("ttft_hist"), key
        assert got == pytest.approx(expected, rel=1e-9), key  # ints compare exactly
    assert durations == rows_durations


@pytest.mark.parametrize("step", [60, 300, 1800, 7200])
def test_the_rollup_written_with_each_batch_equals_counting_the_rows(
        tmp_path: Path, step: int) -> None:
    path = tmp_path / "h.db"
    write_through(path, varied(1500, span_s=6 * 3600))
    assert_same(path, step, int(T0 // step) - 1, int((T0 + 7 * 3600) // step))


def test_requests_on_and_next_to_minute_boundaries_land_where_the_rows_say(
        tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    edges = [T0 + 60 * k + d for k in range(1, 40, 7)
             for d in (0.0, -1e-6, 1e-6)]
    edges += [math.nextafter(T0 + 60 * k, 0.0) for k in range(1, 40)]
    write_through(path, [RequestRecord(started_at=ts, endpoint="/api/chat", model="m",
                                       status=200, duration_s=0.5) for ts in edges])
    assert_same(path, 60, int(T0 // 60) - 1, int(T0 // 60) + 41)


def test_a_batch_whose_rollup_fails_is_not_written_at_all(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    write_through(path, varied(10, span_s=60))
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TRIGGER no_rollup BEFORE UPDATE ON rollup_state"
                     " BEGIN SELECT RAISE(ABORT, 'rollup refused'); END")
    writer = HistoryWriter(path, retention_days=1e6)
    writer.submit(varied(1, span_s=60, seed=9)[0])
    writer.start()
    writer.close()
    assert writer.dropped == 1 and writer.committed == 0
    with closing(connect_readonly(path)) as conn:
        assert conn.execute("SELECT COUNT(*) AS n FROM requests").fetchone()["n"] == 10
        assert conn.execute("SELECT SUM(requests) AS n FROM rollup WHERE span = 60"
                            ).fetchone()["n"] == 10


def test_rows_written_by_others_are_counted_and_then_rolled_up(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    write_through(path, varied(300, span_s=3600))
    insert_outside(path, varied(200, span_s=3600, seed=8))
    first, last = int(T0 // 300) - 1, int((T0 + 3700) // 300)
    assert_same(path, 300, first, last)  # the 200 are summed from the rows
    write_through(path, varied(5, span_s=3600, seed=11))  # the writer takes them in
    with closing(connect_readonly(path)) as conn:
        state = conn.execute("SELECT through_id FROM rollup_state").fetchone()
        assert state["through_id"] == 505
        total = conn.execute("SELECT SUM(requests) AS n FROM rollup GROUP BY span").fetchall()
        assert [row["n"] for row in total] == [505, 505]
    assert_same(path, 300, first, last)


def make_v1(path: Path, records: list[RequestRecord], version: int = 1) -> None:
    """A file as llama-metrics 1 left it: rows, their indexes, user_version 1, no rollup.

    With ``version=2``: as llama-metrics 2 left it, with its rollup (loads at 0.25 s)."""
    write_through(path, [])
    with closing(sqlite3.connect(path)) as conn, conn:
        for name in [n for n, _, _ in COLUMNS if n not in LEGACY_COLUMNS]:
            conn.execute(f"ALTER TABLE requests DROP COLUMN {name}")
        if version == 1:
            conn.execute("DROP TABLE rollup")
            conn.execute("DROP TABLE rollup_state")
        conn.execute(f"PRAGMA user_version = {version}")
        conn.executemany(
            f"INSERT INTO requests ({', '.join(LEGACY_COLUMNS)})"
            f" VALUES ({', '.join('?' * len(LEGACY_COLUMNS))})",
            [[record_to_row(r)[n] for n in LEGACY_COLUMNS] for r in records],
        )


@pytest.mark.parametrize("version", [1, 2])
def test_an_old_file_gets_the_load_decision_its_rollup_made(tmp_path: Path, version: int) -> None:
    path = tmp_path / "h.db"
    base = RequestRecord(started_at=T0 + 5, endpoint="/api/chat", model="m", status=200)
    loads = [None, 0.004, 0.25, 0.5, 3.0]
    make_v1(path, [dataclasses.replace(base, load_duration_s=s) for s in loads], version)
    for _ in range(2):  # unmigrated, read from its rows; then migrated by the writer
        with closing(connect_readonly(path)) as conn:
            rows = rollup_models(conn, int(T0 // 60), int(T0 // 60), 60,
                                 ttft_bounds=ROLLUP_TTFT_BOUNDS)
            assert [(r["loads"], r["load_s"]) for r in rows] == [(3, 3.75)]
            assert [r["loaded_model"] for r in recent_requests(conn, 10)] == [
                True, True, True, False, False]
        write_through(path, [])
    with closing(connect_readonly(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()["user_version"] == SCHEMA_VERSION
        [row] = rollup_series(conn, int(T0 // 60), int(T0 // 60), 60)
        assert (row["loads"], row["load_s"]) == (3, 3.75)


def test_a_version_3_file_gains_the_columns_of_4_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    base = RequestRecord(started_at=T0 + 5, endpoint="/api/chat", model="m", status=200,
                         generated_tokens=7, load_duration_s=1.0, loaded_model=True)
    write_through(path, [base])
    with closing(sqlite3.connect(path)) as conn, conn:
        for name in ADDED_IN[4]:
            conn.execute(f"ALTER TABLE requests DROP COLUMN {name}")
        conn.execute("PRAGMA user_version = 3")
    with closing(connect_readonly(path)) as conn:  # not migrated yet: read as it is
        [row] = recent_requests(conn, 10)
        assert row["generated_tokens"] == 7 and row["loaded_model"] is True
        assert "client" not in row
    client = dataclasses.replace(base, started_at=T0 + 6, client="alice", energy_j=2.5,
                                 cached_prompt_tokens=3)
    write_through(path, [client])
    with closing(connect_readonly(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()["user_version"] == SCHEMA_VERSION
        rows = recent_requests(conn, 10)
        assert [(r["client"], r["energy_j"], r["cached_prompt_tokens"]) for r in rows] == [
            ("alice", 2.5, 3), (None, None, None)]
        [minute] = rollup_series(conn, int(T0 // 60), int(T0 // 60), 60)
        assert minute["loads"] == 2


def test_a_version_1_file_is_read_from_rows_and_migrated_by_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    make_v1(path, varied(400, span_s=7200))
    with closing(connect_readonly(path)) as conn:
        assert not has_rollup(conn)
        assert len(rollup_models(conn, int(T0 // 60), int(T0 // 60), 60,
                                 ttft_bounds=ROLLUP_TTFT_BOUNDS)) > 0
    write_through(path, varied(50, span_s=7200, seed=12))  # opening it migrates
    with closing(connect_readonly(path)) as conn:
        assert has_rollup(conn)
        assert conn.execute("PRAGMA user_version").fetchone()["user_version"] == SCHEMA_VERSION
        assert conn.execute("SELECT COUNT(*) AS n FROM requests").fetchone()["n"] == 450
        assert conn.execute("SELECT through_id FROM rollup_state").fetchone()["through_id"] == 450
    for step in (60, 1800):
        assert_same(path, step, int(T0 // step) - 1, int((T0 + 7300) // step))


def test_pruning_takes_whole_spans_from_rows_and_rollup_alike(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    clock = FakeClock(T0)
    records = varied(600, span_s=4 * 3600)
    writer = HistoryWriter(path, retention_days=1.0, prune_interval=86400.0, clock=clock)
    writer.prune_chunk = 50
    for record in records:
        writer.submit(record)
    writer.start()
    try:
        assert writer.flush()
        clock.now = T0 + 86400 + 2 * 3600 + 900  # cut at T0 + 2 h 15 min, a half hour inside
        assert writer.flush()
    finally:
        writer.close()
    cutoff = T0 + 2 * 3600  # whole half hours: the half hour cut into is kept
    kept = [r for r in records if r.started_at >= cutoff]
    assert writer.pruned == len(records) - len(kept) > 0
    with closing(connect_readonly(path)) as conn:
        spans = conn.execute("SELECT span, MIN(start) * span AS since, SUM(requests) AS n"
                             " FROM rollup GROUP BY span").fetchall()
    assert [(row["span"], row["n"]) for row in spans] == [(60, len(kept)), (1800, len(kept))]
    assert cutoff <= spans[0]["since"] < cutoff + 600 and spans[1]["since"] == cutoff
    assert_same(path, 1800, int(T0 // 1800), int((T0 + 5 * 3600) // 1800))


def test_after_pruning_everything_new_rows_are_still_rolled_up(tmp_path: Path) -> None:
    # Emptying the table lets SQLite give out the old ids again: they must not be skipped.
    path = tmp_path / "h.db"
    clock = FakeClock(T0)
    writer = HistoryWriter(path, retention_days=1.0, prune_interval=86400.0, clock=clock)
    for record in varied(20, span_s=600):
        writer.submit(record)
    writer.start()
    try:
        assert writer.flush()
        clock.now = T0 + 3 * 86400
        assert writer.flush() and writer.pruned == 20
        for record in varied(5, span_s=600, seed=4):
            writer.submit(record)
        assert writer.flush()
    finally:
        writer.close()
    with closing(connect_readonly(path)) as conn:
        assert conn.execute("SELECT SUM(requests) AS n FROM rollup WHERE span = 60"
                            ).fetchone()["n"] == 5


@pytest.mark.parametrize("step", [0, 30, 90, -60])
def test_steps_that_are_not_whole_minutes_are_refused(tmp_path: Path, step: int) -> None:
    path = tmp_path / "h.db"
    write_through(path, [])
    with closing(connect_readonly(path)) as conn, pytest.raises(ValueError, match="minutes"):
        rollup_series(conn, 0, 1, step)
