"""Tests for llama_core.history: schema, batched writer, failures, retention, readers, kill -9."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

from llama_core.history.readers import connect_readonly, recent_requests, requests_since, totals
from llama_core.history.schema import (
    COLUMNS,
    SCHEMA_VERSION,
    HistoryError,
    record_to_row,
    row_to_record,
)
from llama_core.history.writer import HistoryWriter, open_writer
from llama_core.record import RequestRecord

REPO_ROOT = Path(__file__).resolve().parents[3]
T0 = float(int(time.time()))  # recent: the default 30-day retention keeps it
DAY = 86400.0


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def rec(i: int = 0, **changes: Any) -> RequestRecord:
    record = RequestRecord(
        started_at=T0 + i,
        endpoint="/api/chat",
        model="llama3.2:1b",
        status=200,
        stream=True,
        prompt_tokens=10 + i,
        generated_tokens=20 + i,
        usage_reported=True,
        ttft_s=0.125,
        duration_s=1.5,
        queue_wait_s=0.01,
        tokens_per_second=42.5,
        request_bytes=100,
        response_bytes=2000,
    )
    return dataclasses.replace(record, **changes)


VARIED = [
    rec(0),
    rec(1, model="qwen2.5:7b", status=502, error_type="upstream_unreachable", stream=False,
        prompt_tokens=None, generated_tokens=None, usage_reported=False, ttft_s=None,
        tokens_per_second=None),
    rec(2, priority="high", load_duration_s=3.25, prompt_eval_duration_s=0.5,
        prompt="Why is the sky blue? \u00e9\u2603", response="Rayleigh scattering."),
    RequestRecord(started_at=T0 + 3, endpoint="other", model="other", status=404),
]


@contextmanager
def running(path: Path, **kwargs: Any) -> Iterator[HistoryWriter]:
    writer = HistoryWriter(path, **kwargs)
    writer.start()
    try:
        yield writer
    finally:
        writer.close()


def all_records(path: Path) -> list[RequestRecord]:
    with closing(connect_readonly(path)) as conn:
        return [row_to_record(row) for row in requests_since(conn, 0.0)]


def make_db(path: Path) -> None:
    with running(path):
        pass


def execute(path: Path, sql: str) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(sql)


def test_every_record_field_has_one_column() -> None:
    fields = [field.name for field in dataclasses.fields(RequestRecord)]
    assert [field for _, _, field in COLUMNS] == fields
    assert COLUMNS[0][0] == "ts"


@pytest.mark.parametrize("record", VARIED)
def test_record_row_round_trip(record: RequestRecord) -> None:
    row = record_to_row(record)
    assert row["ts"] == record.started_at
    assert row["stream"] in (0, 1)
    assert row_to_record(row) == record


def test_rows_written_are_read_back_equal(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    with running(path) as writer:
        assert all(writer.submit(record) for record in VARIED)
        assert writer.flush()
        assert writer.committed == len(VARIED)
    assert all_records(path) == VARIED
    with closing(connect_readonly(path)) as conn:
        row = recent_requests(conn, limit=1)[0]
    assert row["stream"] is False and row["usage_reported"] is False and row["id"] == 4


def test_close_writes_what_is_queued_without_waiting_for_the_interval(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    writer = HistoryWriter(path, flush_interval=3600.0)
    writer.start()
    for i in range(3):
        writer.submit(rec(i))
    assert writer.close(timeout=5.0)
    assert writer.committed == 3
    assert len(all_records(path)) == 3
    assert writer.close()  # a second close is harmless


def test_rows_are_written_in_batches_of_batch_size(tmp_path: Path) -> None:
    writer = HistoryWriter(tmp_path / "history.db", batch_size=4)
    for i in range(10):
        assert writer.submit(rec(i))
    writer.close()
    assert (writer.committed, writer.batches) == (10, 3)


def test_a_batch_is_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    make_db(path)
    execute(path, "CREATE TRIGGER refuse BEFORE INSERT ON requests WHEN NEW.model = 'poison'"
                  " BEGIN SELECT RAISE(ABORT, 'refused by test'); END")
    drops: list[int] = []
    writer = HistoryWriter(path, batch_size=4, on_drop=drops.append)
    records = [rec(i, model="poison" if i == 2 else "m") for i in range(8)]
    for record in records:
        writer.submit(record)
    writer.close()
    # rows 0 and 1 were inserted before row 2 failed: the whole first batch is rolled back
    assert all_records(path) == records[4:]
    assert (writer.committed, writer.dropped, drops) == (4, 4, [4])


def test_full_queue_drops_and_counts(tmp_path: Path) -> None:
    drops: list[int] = []
    writer = HistoryWriter(tmp_path / "history.db", queue_size=3, on_drop=drops.append)
    assert [writer.submit(rec(i)) for i in range(5)] == [True, True, True, False, False]
    assert (writer.dropped, drops) == (2, [1, 1])
    writer.close()
    assert writer.committed == 3
    assert writer.submit(rec(9)) is False  # closed
    assert (writer.dropped, drops) == (3, [1, 1, 1])


def test_a_failing_on_drop_callback_does_not_reach_the_caller(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(rows: int) -> None:
        raise RuntimeError("callback broke")

    writer = HistoryWriter(tmp_path / "history.db", queue_size=1, on_drop=explode)
    writer.submit(rec(0))
    assert writer.submit(rec(1)) is False
    assert writer.dropped == 1
    assert "on_drop callback failed" in caplog.text
    writer.close()


def test_submit_refuses_what_is_not_a_record(tmp_path: Path) -> None:
    writer = HistoryWriter(tmp_path / "history.db")
    with pytest.raises(TypeError, match="RequestRecord"):
        writer.submit({"model": "x"})  # type: ignore[arg-type]
    writer.close()


def error_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_database_error_drops_batch_logs_once_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "history.db"
    drops: list[int] = []
    with running(path, on_drop=drops.append) as writer:
        execute(path, "CREATE TRIGGER refuse BEFORE INSERT ON requests"
                      " BEGIN SELECT RAISE(ABORT, 'refused by test'); END")
        for i in range(3):
            writer.submit(rec(i))
            assert writer.flush()
        assert (writer.committed, writer.dropped, drops) == (0, 3, [1, 1, 1])
        assert len(error_logs(caplog)) == 1
        assert "refused by test" in error_logs(caplog)[0]

        execute(path, "DROP TRIGGER refuse")
        writer.submit(rec(3))
        assert writer.flush()
        assert (writer.committed, writer.dropped) == (1, 3)
        assert "writing again; 3 rows were dropped" in caplog.text

        writer.submit(rec(4))  # the streak is over: nothing more to say
        assert writer.flush()
        assert caplog.text.count("writing again") == 1
    assert all_records(path) == [rec(3), rec(4)]


def test_file_replaced_by_a_non_database_drops_until_it_is_gone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "history.db"
    with running(path) as writer:
        writer.submit(rec(0))
        assert writer.flush()
        garbage = tmp_path / "garbage"
        garbage.write_bytes(b"this is not a database, " * 100)
        os.replace(garbage, path)
        for i in (1, 2):
            writer.submit(rec(i))
            assert writer.flush()
        assert (writer.committed, writer.dropped) == (1, 2)
        assert len(error_logs(caplog)) == 1
        assert "not a database" in error_logs(caplog)[0]

        path.unlink()
        writer.submit(rec(3))
        assert writer.flush()
        assert (writer.committed, writer.dropped) == (2, 2)
    assert all_records(path) == [rec(3)]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_file_deleted_while_running_is_recreated(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    with running(path) as writer:
        writer.submit(rec(0))
        assert writer.flush()
        path.unlink()
        writer.submit(rec(1))
        assert writer.flush()
        assert (writer.committed, writer.dropped) == (2, 0)
    assert all_records(path) == [rec(1)]


def test_a_file_made_read_only_is_not_written_until_writable_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root ignores file modes, so the mode check is what is replaced here; the real chmod
    # runs against a real mitmdump in tests/reliability/test_history_faults.py.
    path = tmp_path / "history.db"
    read_only: set[Path] = set()
    real_access = os.access
    monkeypatch.setattr("llama_core.history.writer.os.access", lambda file, mode: (
        Path(file) not in read_only and real_access(file, mode)))
    with running(path) as writer:
        writer.submit(rec(0))
        assert writer.flush()
        read_only.add(Path(f"{path}-shm"))  # any of the three files
        writer.submit(rec(1))
        assert writer.flush()
        assert (writer.committed, writer.dropped) == (1, 1)
        read_only.clear()
        writer.submit(rec(2))
        assert writer.flush()
        assert (writer.committed, writer.dropped) == (2, 1)
    assert all_records(path) == [rec(0), rec(2)]


def test_files_are_private_to_the_owner_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "history.db"
    old_umask = os.umask(0)
    try:
        with running(path) as writer:
            writer.submit(rec(0))
            assert writer.flush()
            modes = {
                p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()
            }
    finally:
        os.umask(old_umask)
    assert modes == {name: 0o600 for name in ("history.db", "history.db-wal", "history.db-shm")}
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_expired_rows_are_pruned_by_the_injected_clock(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    clock = FakeClock(T0)
    writer = HistoryWriter(path, retention_days=1.0, prune_interval=2 * DAY, clock=clock)
    writer.prune_chunk = 2  # five expired rows take three small deletes
    for days in (-3, -3, -3, -3, -3, -0.5, -0.5, 0, 1.5):
        writer.submit(rec(started_at=T0 + days * DAY))
    writer.start()
    try:
        assert writer.flush()  # the first prune runs at start
        assert writer.pruned == 5

        clock.now = T0 + 1 * DAY  # rows at -0.5 days are now expired, but no prune is due
        assert writer.flush()
        assert writer.pruned == 5

        clock.now = T0 + 2 * DAY
        assert writer.flush()
        assert writer.pruned == 8
    finally:
        writer.close()
    assert [r.started_at for r in all_records(path)] == [T0 + 1.5 * DAY]


def test_schema_is_created_once_with_version_and_indexes(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    make_db(path)
    make_db(path)
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        indexes = {name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'requests'")}
        plan = " ".join(row[3] for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM requests WHERE model = 'm' AND ts > 0"))
    assert indexes == {"requests_ts", "requests_model_ts"}
    assert "requests_model_ts" in plan


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    make_db(path)
    execute(path, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(HistoryError, match=f"schema version {SCHEMA_VERSION + 1}"):
        HistoryWriter(path).start()
    with pytest.raises(HistoryError, match="upgrade llama-metrics"):
        connect_readonly(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a database at all " * 50, "not a database"),
        (None, "'requests' is not llama-metrics history"),
    ],
)
def test_a_file_that_is_not_history_is_refused(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "history.db"
    if content is None:
        execute(path, "CREATE TABLE requests (id INTEGER PRIMARY KEY, what TEXT)")
    else:
        path.write_bytes(content)
    with pytest.raises(HistoryError, match=message):
        HistoryWriter(path).start()
    with pytest.raises(HistoryError, match=message):
        connect_readonly(path)


def test_connect_readonly_refuses_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="does not exist"):
        connect_readonly(tmp_path / "missing.db")
    (tmp_path / "empty.db").touch()
    with pytest.raises(HistoryError, match="no 'requests' table"):
        connect_readonly(tmp_path / "empty.db")


@pytest.mark.parametrize("path", ["", None])
def test_open_writer_without_a_path_means_disabled(path: str | None) -> None:
    assert open_writer(path) is None


def test_open_writer_returns_a_started_writer(tmp_path: Path) -> None:
    writer = open_writer(str(tmp_path / "history.db"), batch_size=2)
    assert writer is not None
    writer.submit(rec(0))
    assert writer.flush()
    assert writer.close()
    assert writer.committed == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch_size": 0},
        {"queue_size": 0},
        {"flush_interval": 0.0},
        {"retention_days": -1.0},
        {"prune_interval": float("nan")},
    ],
)
def test_bad_settings_are_refused(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        HistoryWriter(tmp_path / "history.db", **kwargs)


def test_an_empty_path_is_refused_by_the_writer() -> None:
    with pytest.raises(ValueError, match="open_writer"):
        HistoryWriter("")


def test_reader_functions(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    records = [
        rec(0, model="a", prompt_tokens=1, generated_tokens=2),
        rec(10, model="b", prompt_tokens=None, generated_tokens=None, status=502,
            error_type="upstream_unreachable"),
        rec(20, model="a", prompt_tokens=3, generated_tokens=4, status=200,
            error_type="stream_aborted"),
        rec(30, model="b", prompt_tokens=5, generated_tokens=6),
    ]
    with running(path) as writer:
        for record in records:
            writer.submit(record)
    with closing(connect_readonly(path)) as conn:
        assert [row_to_record(r) for r in recent_requests(conn, limit=3)] == records[:0:-1]
        assert recent_requests(conn, limit=0) == []
        with pytest.raises(ValueError):
            recent_requests(conn, limit=-1)
        assert [row_to_record(r) for r in requests_since(conn, T0 + 10)] == records[1:]
        assert [row_to_record(r) for r in requests_since(conn, T0, model="a")] == records[::2]
        assert requests_since(conn, T0 + 31) == []
        assert totals(conn, T0 + 10) == {
            "requests": 3, "errors": 2, "prompt_tokens": 8, "generated_tokens": 10,
        }
        assert totals(conn, T0, model="a")["requests"] == 2
        assert totals(conn, T0 + 31) == {
            "requests": 0, "errors": 0, "prompt_tokens": 0, "generated_tokens": 0,
        }
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("DELETE FROM requests")


def test_odd_file_names_work_for_writer_and_reader(tmp_path: Path) -> None:
    path = tmp_path / "my history?mode=rw#1 %20.db"
    with running(path) as writer:
        writer.submit(rec(0))
    assert all_records(path) == [rec(0)]


def test_reader_functions_work_on_a_plain_connection(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    with running(path) as writer:
        writer.submit(rec(0))
    with closing(sqlite3.connect(path)) as conn:
        assert row_to_record(recent_requests(conn)[0]) == rec(0)


def test_kill_9_loses_at_most_the_last_batch(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    batch_size = 200
    child = "tests.llama_core.history.history_child"
    command = [sys.executable, "-m", child, str(path), str(batch_size)]
    with subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        last = 0
        try:
            while last <= 10 * batch_size:
                line = child.stdout.readline()
                assert line, f"child ended early: {child.stderr.read()}"
                last = int(line)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        # the child may have printed more before the kill landed; a line is one atomic write
        last = max([last, *(int(line) for line in child.stdout.read().splitlines())])
    assert child.returncode == -signal.SIGKILL
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        count = conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
    assert last <= count <= last + batch_size


def test_window_averages(tmp_path: Path) -> None:
    from llama_core.history.readers import window_averages

    writer = HistoryWriter(tmp_path / "h.db")
    writer.start()
    for i, (ttft, error) in enumerate([(0.1, None), (0.3, None), (None, "upstream_status")]):
        writer.submit(RequestRecord(started_at=T0 + i, endpoint="/api/chat", model="m:latest",
                                    status=200, ttft_s=ttft, duration_s=1.0 + i,
                                    error_type=error, tokens_per_second=10.0))
    writer.close()
    with closing(connect_readonly(tmp_path / "h.db")) as conn:
        avg = window_averages(conn, T0, T0 + 3)
        assert avg["requests"] == 3 and avg["errors"] == 1
        assert avg["error_rate"] == pytest.approx(1 / 3)
        assert avg["ttft_s"] == pytest.approx(0.2)
        assert avg["duration_s"] == pytest.approx(2.0)
        assert window_averages(conn, T0, T0 + 1)["requests"] == 1
        assert window_averages(conn, T0 + 10, T0 + 20)["error_rate"] is None


def test_performance_reads_keep_inference_answers_that_name_a_model(tmp_path: Path) -> None:
    from llama_core.history.readers import inference_models, last_failure_end, window_averages

    writer = HistoryWriter(tmp_path / "h.db")
    writer.start()
    for i, (endpoint, model, error) in enumerate([
        ("/api/chat", "m:latest", None), ("/v1/chat/completions", "m:latest", "stream_error"),
        ("/api/generate", "n:latest", "upstream_unreachable"), ("/api/chat", "", None),
        ("/api/version", "", "upstream_unreachable"), ("/api/show", "x:latest", None),
    ]):
        writer.submit(RequestRecord(started_at=T0 + i, endpoint=endpoint, model=model,
                                    status=502 if error else 200, duration_s=0.5,
                                    error_type=error))
    writer.close()
    with closing(connect_readonly(tmp_path / "h.db")) as conn:
        assert inference_models(conn, T0, T0 + 10) == ["m:latest", "n:latest"]
        assert inference_models(conn, T0 + 3, T0 + 10) == []
        kept = window_averages(conn, T0, T0 + 10, inference_only=True,
                               leave_out=("upstream_unreachable",))
        assert (kept["requests"], kept["errors"]) == (2, 1)
        assert window_averages(conn, T0, T0 + 10)["requests"] == 6
        assert last_failure_end(conn, ("upstream_unreachable",), T0) == T0 + 4.5
        assert last_failure_end(conn, ("upstream_unreachable",), T0 + 5) is None
        assert last_failure_end(conn, (), T0) is None
