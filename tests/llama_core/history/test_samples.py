"""Tests for llama_core.history.samples: written, thinned, averaged, pruned, migrated."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

from llama_core.history.readers import (
    connect_readonly,
    has_samples,
    recent_requests,
    rollup_series,
    sample_buckets,
)
from llama_core.history.samples import SAMPLE_INTERVAL_S
from llama_core.history.schema import SCHEMA_VERSION
from llama_core.history.writer import HistoryWriter
from llama_core.record import RequestRecord
from llama_core.sampler import GpuSample, ResourceSample

T0 = 1_699_999_200.0  # a whole half hour
GIB = 1024**3
DAY = 86400.0


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def gpu(index: int, util: float, used_gib: float, total_gib: float = 16.0) -> GpuSample:
    return GpuSample(index=index, name=f"GPU {index}", utilization_percent=util,
                     memory_used_bytes=int(used_gib * GIB), memory_total_bytes=int(total_gib * GIB),
                     temperature_celsius=50.0 + index, power_watts=100.0 + index)


def host(cpu: float, used_gib: float = 8.0, gpus: list[GpuSample] | None = None) -> ResourceSample:
    return ResourceSample(cpu_percent=cpu, memory_used_bytes=int(used_gib * GIB),
                          memory_total_bytes=32 * GIB, ollama_rss_bytes=2 * GIB,
                          ollama_cpu_percent=cpu / 2, gpus=gpus or [])


@contextmanager
def running(path: Path, **kwargs: Any) -> Iterator[HistoryWriter]:
    writer = HistoryWriter(path, retention_days=kwargs.pop("retention_days", 1e6), **kwargs)
    writer.start()
    try:
        yield writer
    finally:
        writer.close()


def buckets(path: Path, first: int, last: int, step: float) -> dict[int, dict[str, Any]]:
    with closing(connect_readonly(path)) as conn:
        return sample_buckets(conn, first, last, step)


def test_samples_are_averaged_per_bucket_with_their_gpus(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with running(path) as writer:
        # Two GPUs, two samples in the first minute; one sample in the second.
        assert writer.submit_sample(host(10.0, 8.0, [gpu(0, 20.0, 4.0), gpu(1, 60.0, 12.0)]),
                                    ts=T0 + 1, vram_models_bytes=3 * GIB)
        assert writer.submit_sample(host(30.0, 16.0, [gpu(0, 40.0, 8.0), gpu(1, 80.0, 8.0)]),
                                    ts=T0 + 31, vram_models_bytes=5 * GIB)
        assert writer.submit_sample(host(50.0, 24.0, [gpu(0, 0.0, 0.0), gpu(1, 0.0, 0.0)]),
                                    ts=T0 + 61)
        assert writer.flush()
        assert writer.samples_committed == 3
    first = int(T0 // 60)
    found = buckets(path, first - 1, first + 2, 60)
    assert set(found) == {first, first + 1}  # buckets without samples are absent
    minute = found[first]
    assert minute["samples"] == 2 and minute["gpus"] == 2
    assert minute["cpu_percent"] == pytest.approx(20.0)
    assert minute["memory_percent"] == pytest.approx(100 * 12 / 32)
    assert minute["gpu_utilization_percent"] == pytest.approx(50.0)
    assert minute["gpu_memory_percent"] == pytest.approx(100 * 32 / 64)  # used / total
    assert minute["gpu_power_watts"] == pytest.approx(100.5)
    assert minute["gpu_temperature_celsius"] == 51.0
    assert minute["vram_models_bytes"] == pytest.approx(4 * GIB)
    assert minute["ollama_rss_bytes"] == pytest.approx(2 * GIB)
    assert found[first + 1]["vram_models_bytes"] is None  # Ollama was not polled yet


def test_without_a_gpu_the_gpu_values_are_absent_not_zero(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with running(path) as writer:
        writer.submit_sample(host(12.0), ts=T0 + 5)
    [minute] = buckets(path, int(T0 // 60), int(T0 // 60), 60).values()
    assert minute["cpu_percent"] == 12.0
    assert not {k for k in minute if k.startswith("gpu")}
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM gpu_samples").fetchone()[0] == 0


def test_one_sample_is_kept_per_interval(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    kept = []
    with running(path) as writer:
        # The proxy polls every 5 s, a little unevenly; one in three is due.
        for at in (0.0, 5.0, 10.1, 14.8, 20.0, 25.0, 29.9, 35.0, 45.0):
            if writer.submit_sample(host(at), ts=T0 + at):
                kept.append(at)
    assert kept == [0.0, 14.8, 29.9, 45.0]
    with closing(sqlite3.connect(path)) as conn:
        stored = [ts - T0 for (ts,) in conn.execute("SELECT ts FROM samples ORDER BY ts")]
    assert stored == pytest.approx(kept)


def test_a_step_shorter_than_the_interval_shows_the_sample_in_force(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with running(path) as writer:
        for i, at in enumerate((0.0, 15.0, 30.0)):
            writer.submit_sample(host(10.0 * (i + 1)), ts=T0 + at)
    step = 5
    first = int(T0 // step)
    found = buckets(path, first, first + 8, step)
    # Every 5 s bucket has a value, the latest sample at most one interval before its end.
    assert [found[b]["cpu_percent"] for b in range(first, first + 9)] == [
        10.0, 10.0, 10.0, 20.0, 20.0, 20.0, 30.0, 30.0, 30.0]
    assert SAMPLE_INTERVAL_S == 3 * step


def test_samples_go_with_the_retention(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    clock = FakeClock(T0)
    writer = HistoryWriter(path, retention_days=1.0, prune_interval=2 * DAY, clock=clock)
    writer.prune_chunk = 2  # five expired samples (ten GPU rows) take several small deletes
    for i, days in enumerate((-3, -3, -3, -3, -3, -0.5, 0)):
        assert writer.submit_sample(host(1.0, gpus=[gpu(0, 1, 1), gpu(1, 1, 1)]),
                                    ts=T0 + days * DAY + i * 60)
    writer.start()
    try:
        assert writer.flush()  # the first prune runs at start
        assert writer.samples_pruned == 5
    finally:
        writer.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 2
        assert conn.execute("SELECT COUNT(*) FROM gpu_samples").fetchone()[0] == 4
        oldest = conn.execute("SELECT MIN(ts) FROM gpu_samples").fetchone()[0]
    assert oldest >= T0 - DAY


def test_a_failing_database_drops_samples_apart_from_requests(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    dropped: list[int] = []
    with running(path, on_drop=dropped.append) as writer:
        with closing(sqlite3.connect(path)) as conn, conn:
            conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON samples"
                         " BEGIN SELECT RAISE(ABORT, 'refused by test'); END")
        # A sample and a request in one batch: the one transaction fails for both.
        writer.submit_sample(host(1.0), ts=T0)
        writer.submit(RequestRecord(started_at=T0, endpoint="/api/chat", model="m", status=200))
        assert writer.flush()
        # history_dropped_total (on_drop) counts request rows only.
        assert (writer.samples_dropped, writer.dropped, dropped) == (1, 1, [1])
        with closing(sqlite3.connect(path)) as conn, conn:
            conn.execute("DROP TRIGGER refuse")
        assert writer.submit_sample(host(2.0), ts=T0 + 60)
        assert writer.flush()
        assert (writer.samples_committed, writer.committed) == (1, 0)


def test_submit_sample_refuses_what_is_not_a_sample(tmp_path: Path) -> None:
    with running(tmp_path / "h.db") as writer, pytest.raises(TypeError, match="ResourceSample"):
        writer.submit_sample({"cpu_percent": 1.0})  # type: ignore[arg-type]


def test_a_version_4_file_gains_the_sample_tables_and_keeps_its_rollup(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    record = RequestRecord(started_at=T0 + 5, endpoint="/api/chat", model="m", status=200,
                           generated_tokens=7)
    with running(path) as writer:
        writer.submit(record)
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("DROP TABLE samples")
        conn.execute("DROP TABLE gpu_samples")
        conn.execute("PRAGMA user_version = 4")
        through = conn.execute("SELECT through_id FROM rollup_state").fetchone()[0]
    with closing(connect_readonly(path)) as conn:  # not migrated yet: no samples to read
        assert not has_samples(conn)
        assert sample_buckets(conn, int(T0 // 60), int(T0 // 60), 60) == {}
        assert len(rollup_series(conn, int(T0 // 60), int(T0 // 60), 60)) == 1
    with running(path) as writer:  # opening it migrates
        writer.submit_sample(host(42.0), ts=T0 + 10)
    with closing(connect_readonly(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()["user_version"] == SCHEMA_VERSION
        assert has_samples(conn)
        assert [r["generated_tokens"] for r in recent_requests(conn, 10)] == [7]
        # 4 to 5 leaves the rollup as it was: no rebuild of a month of rows at start.
        assert conn.execute("SELECT through_id FROM rollup_state").fetchone()[
            "through_id"] == through
        [minute] = rollup_series(conn, int(T0 // 60), int(T0 // 60), 60)
        assert minute["generated_tokens"] == 7
    [sampled] = buckets(path, int(T0 // 60), int(T0 // 60), 60).values()
    assert sampled["cpu_percent"] == 42.0
