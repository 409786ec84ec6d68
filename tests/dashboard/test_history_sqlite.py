"""Tests for the SQLite history source: bucket cache, late rows, pruning, replaced files."""

from __future__ import annotations

import os
import random
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from dashboard.history_sqlite import SqliteHistory
from dashboard.windows import WINDOWS, SourceError, parse_window
from llama_core.history.writer import HistoryWriter
from llama_core.record import RequestRecord
from llama_core.sampler import GpuSample, ResourceSample
from tests.history_files import write_history

NOW = 1_790_006_400.0 + 100.0  # 100 s into a 2 h bucket
DAY = WINDOWS["24h"]
GIB = 1024**3


def rec(ts: float, **fields: Any) -> RequestRecord:
    return RequestRecord(**{"started_at": ts, "endpoint": "/api/chat", "model": "m:latest",
                            "status": 200, "duration_s": 1.0, **fields})


def requests_in(answer: dict[str, Any], step: float) -> float:
    """Rows counted over the window: rate * bucket length, summed (the open bucket aside)."""
    return round(sum((r or 0) * step for r in answer["series"]["requests_per_second"][:-1]))


def test_closed_buckets_are_read_once(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    write_history(path, [rec(NOW - 3600 * i) for i in range(1, 20)])
    source = SqliteHistory(path)
    first = source.history(DAY, NOW)
    assert source.queries == DAY.points and requests_in(first, DAY.step) == 19
    again = source.history(DAY, NOW + 1)
    assert source.queries == DAY.points + 1  # only the open bucket
    assert again["series"] == {**first["series"], "requests_per_second":
                               again["series"]["requests_per_second"]}


def test_a_late_row_reopens_its_bucket(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    write_history(path, [rec(NOW - 7200)])
    source = SqliteHistory(path)
    assert requests_in(source.history(DAY, NOW), DAY.step) == 1
    # A long request that started two hours ago is written only now.
    write_history(path, [rec(NOW - 7190, duration_s=7000.0)])
    answer = source.history(DAY, NOW)
    assert requests_in(answer, DAY.step) == 2
    assert source.queries < 2 * DAY.points  # not everything again


def test_pruned_rows_leave_the_cache_and_a_replaced_file_is_read_anew(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    write_history(path, [rec(NOW - 80000), rec(NOW - 3600)])
    source = SqliteHistory(path)
    assert requests_in(source.history(DAY, NOW), DAY.step) == 2
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("DELETE FROM requests WHERE ts < ?", (NOW - 50000,))
    assert requests_in(source.history(DAY, NOW), DAY.step) == 1
    os.unlink(path)
    write_history(path, [rec(NOW - 600), rec(NOW - 601), rec(NOW - 602)])
    assert requests_in(source.history(DAY, NOW), DAY.step) == 3


def test_a_missing_or_foreign_file_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        SqliteHistory(tmp_path / "nope.db").history(DAY, NOW)
    (tmp_path / "x.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(SourceError, match="x.db"):
        SqliteHistory(tmp_path / "x.db").history(DAY, NOW)


def test_models_baseline_recent_and_prewarm(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    write_history(path, [
        rec(NOW - 20000, tokens_per_second=40.0), rec(NOW - 10000, tokens_per_second=30.0),
        rec(NOW - 60, tokens_per_second=10.0, load_duration_s=2.0, loaded_model=True,
            ttft_s=2.5),
        rec(NOW - 30, model="other", prompt="text"),
    ])
    source = SqliteHistory(path)
    rows = {r["model"]: r for r in source.models(WINDOWS["15m"], NOW)}
    assert rows["m:latest"]["requests"] == 1 and rows["m:latest"]["loads"] == 1
    assert rows["m:latest"]["ttft_seconds"] == 2.5 and rows["m:latest"]["load_seconds"] == 2.0
    assert source.baseline_tps(NOW - 86400, NOW - 900) == {"m:latest": 35.0}
    recent = source.recent(2)
    assert [r["model"] for r in recent] == ["other", "m:latest"]
    assert "prompt" not in recent[0] and recent[0]["started_at"] == NOW - 30
    source.prewarm()
    assert all(source._caches[WINDOWS[w].step].closed for w in ("24h", "7d", "30d"))


def test_windows_are_the_five_offered() -> None:
    assert list(WINDOWS) == ["15m", "1h", "24h", "7d", "30d"]
    for window in WINDOWS.values():
        first, last = window.buckets(NOW)
        assert last - first + 1 == window.points and window.seconds % window.step == 0
    with pytest.raises(ValueError, match="one of 15m, 1h, 24h, 7d, 30d"):
        parse_window("1w")


def write_v1(path: Path, records: list[RequestRecord]) -> None:
    """A file as llama-metrics 1 left it: rows only, user_version 1."""
    write_history(path, records)
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("DROP TABLE rollup")
        conn.execute("DROP TABLE rollup_state")
        conn.execute("PRAGMA user_version = 1")


def varied(n: int) -> list[RequestRecord]:
    rng = random.Random(5)
    records = [rec(NOW - rng.uniform(0, 29 * 86400), model=rng.choice(["a", "b"]),
                error_type=rng.choice([None, None, "timeout"]),
                prompt_tokens=rng.randint(1, 99), generated_tokens=rng.randint(1, 99),
                ttft_s=rng.choice([None, rng.lognormvariate(-1, 1)]),
                duration_s=rng.lognormvariate(0.5, 1.2), queue_wait_s=rng.uniform(0, 1),
                tokens_per_second=rng.choice([None, rng.uniform(5, 80)]),
                load_duration_s=rng.choice([None, 0.01, rng.uniform(0.25, 5)]))
            for _ in range(n)]
    for record in records:  # the proxy's decision, as its default threshold draws it
        record.loaded_model = (record.load_duration_s or 0.0) >= 0.25
    return records


@pytest.mark.parametrize("name", ["24h", "7d", "30d"])
def test_the_rollup_answers_what_the_rows_answer(tmp_path: Path, name: str) -> None:
    records = varied(3000)
    writer = HistoryWriter(tmp_path / "v2.db", retention_days=1e6, batch_size=100)
    for record in records:
        assert writer.submit(record)
    writer.start()
    writer.close()
    write_v1(tmp_path / "v1.db", records)
    window = WINDOWS[name]
    rolled = SqliteHistory(tmp_path / "v2.db").history(window, NOW)
    scanned = SqliteHistory(tmp_path / "v1.db").history(window, NOW)
    assert sum(r["requests"] for r in scanned["models"]) > 100  # the window holds rows
    assert same(rolled["models"], scanned["models"])
    assert same(rolled["series"], scanned["series"])


def same(got: Any, expected: Any) -> bool:
    """Equal, floats within rounding (sums are added up in another order)."""
    if isinstance(expected, float) and isinstance(got, float):
        return got == pytest.approx(expected, rel=1e-9)
    if isinstance(expected, dict):
        return got.keys() == expected.keys() and all(same(got[k], v) for k, v in expected.items())
    if isinstance(expected, list):
        return len(got) == len(expected) and all(map(same, got, expected))
    return bool(got == expected)


def sampled(path: Path, samples: list[tuple[float, ResourceSample]]) -> None:
    """Machine samples written as the proxy's writer writes them."""
    writer = HistoryWriter(path, retention_days=1e6)
    writer.start()
    try:
        for ts, sample in samples:
            assert writer.submit_sample(sample, ts=ts)
    finally:
        writer.close()


def machine(cpu: float, gpus: list[GpuSample] | None = None) -> ResourceSample:
    return ResourceSample(cpu_percent=cpu, memory_used_bytes=3 * GIB,
                          memory_total_bytes=4 * GIB, gpus=gpus or [])


def test_host_history_comes_from_the_samples_and_gpu_is_absent_without_one(
        tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    hour = WINDOWS["1h"]
    last_start = (NOW // hour.step) * hour.step
    sampled(path, [(last_start - 30, machine(20.0)), (last_start - 15, machine(40.0))])
    answer = SqliteHistory(path).history(hour, NOW)
    series = answer["series"]
    assert answer["unavailable"] == []
    assert series["cpu_percent"][-3:-1] == [20.0, 40.0]
    assert series["memory_percent"][-2] == pytest.approx(75.0)
    assert series["cpu_percent"][0] is None  # no sample then: a gap, not a zero
    assert "gpu_utilization_percent" not in series and "gpu_memory_percent" not in series


def test_gpu_history_where_there_is_a_gpu(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    hour = WINDOWS["1h"]
    last_start = (NOW // hour.step) * hour.step
    card = GpuSample(index=0, name="H200", utilization_percent=85.0,
                     memory_used_bytes=30 * GIB, memory_total_bytes=120 * GIB)
    sampled(path, [(last_start - 15, machine(5.0, [card]))])
    series = SqliteHistory(path).history(hour, NOW)["series"]
    assert series["gpu_utilization_percent"][-2] == 85.0
    assert series["gpu_memory_percent"][-2] == pytest.approx(25.0)
    assert series["gpu_memory_percent"][-3] is None


def test_a_file_of_schema_4_says_it_keeps_no_machine_history(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    write_history(path, [rec(NOW - 600)])
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("DROP TABLE samples")
        conn.execute("DROP TABLE gpu_samples")
        conn.execute("PRAGMA user_version = 4")
    answer = SqliteHistory(path).history(DAY, NOW)
    assert set(answer["unavailable"]) == {"cpu_percent", "memory_percent",
                                          "gpu_utilization_percent", "gpu_memory_percent"}
    assert "schema 5" in answer["unavailable_reason"]
    assert requests_in(answer, DAY.step) == 1  # its requests are read all the same


def test_per_model_series_name_the_busiest_models_and_sum_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    hour = WINDOWS["1h"]
    at = (NOW // hour.step) * hour.step - 15  # the last closed bucket
    tokens = {"a": 60, "b": 45, "c": 30, "d": 15, "e": 15}
    write_history(path, [
        rec(at + i, model=name, stream=True, generated_tokens=n, ttft_s=0.1 * (i + 1))
        for i, (name, n) in enumerate(tokens.items())
    ])
    by_model = SqliteHistory(path).history(hour, NOW)["by_model"]
    rates = by_model["tokens_by_model"]
    assert list(rates) == ["a", "b", "c", "other"]
    assert [rates[m][-2] for m in rates] == pytest.approx([4.0, 3.0, 2.0, 2.0])  # n / 15 s
    assert rates["a"][0] == 0.0  # a bucket without requests generated nothing
    ttft = by_model["ttft_p95_by_model"]
    assert set(ttft) == {"a", "b", "c", "other"}  # one answer each: ties by name
    assert 0.05 < ttft["a"][-2] <= 0.1 and ttft["a"][0] is None
    assert 0.25 < ttft["other"][-2] <= 0.5  # d (0.4 s) and e (0.5 s) merged, not averaged
