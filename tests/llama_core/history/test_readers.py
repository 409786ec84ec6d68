"""Tests for the read functions of llama_core.history.readers: rollups, extent, late rows."""

from __future__ import annotations

import dataclasses
import random
import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from llama_core.history.readers import (
    connect_readonly,
    earliest_since_id,
    energy_by_day,
    extent,
    rollup_durations,
    rollup_models,
)
from llama_core.record import RequestRecord
from tests.history_files import write_history

T0 = 1_700_000_000.0
TTFT = (0.1, 0.5, 1.0)
DURATION = (1.0, 5.0)


def varied(n: int, seed: int = 3) -> list[RequestRecord]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ttft = rng.choice([None, 0.05, 0.1, 0.3, 0.7, 2.0])
        out.append(RequestRecord(
            started_at=T0 + rng.uniform(0, 100), endpoint="/api/chat",
            model=rng.choice(["a:latest", "b:latest"]), status=200,
            error_type=rng.choice([None, None, "timeout"]),
            prompt_tokens=rng.choice([None, 7]), generated_tokens=rng.choice([None, 11]),
            ttft_s=ttft, duration_s=rng.choice([0.5, 1.0, 3.0, 9.0]),
            queue_wait_s=rng.choice([0.0, 0.25]),
            tokens_per_second=rng.choice([None, 20.0, 40.0]),
        ))
        load = rng.choice([None, 0.004, 2.0])
        # What the proxy's accounting decides: milliseconds of "load" for a model in memory
        # are not a load. The readers count the stored decision, never the duration.
        out[-1].load_duration_s = load
        out[-1].loaded_model = load == 2.0
    return out


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[sqlite3.Connection, list[RequestRecord]]]:
    records = varied(400)
    write_history(tmp_path / "h.db", records)
    with closing(connect_readonly(tmp_path / "h.db")) as conn:
        yield conn, records


def le_index(value: float, bounds: tuple[float, ...]) -> int:
    return next((i for i, b in enumerate(bounds) if value <= b), len(bounds))


def test_rollup_models_matches_counting_by_hand(db: tuple) -> None:
    conn, records = db
    step = 10.0
    first, last = int(T0 // step), int((T0 + 100) // step)
    rows = rollup_models(conn, first, last, step, ttft_bounds=TTFT)
    got = {(r["bucket"], r["model"], r["ttft_le"]): r for r in rows}
    want: dict[tuple, list[RequestRecord]] = {}
    for r in records:
        key = (int(r.started_at // step), r.model,
               None if r.ttft_s is None else le_index(r.ttft_s, TTFT))
        want.setdefault(key, []).append(r)
    assert set(got) == set(want)
    for key, group in want.items():
        row = got[key]
        assert row["requests"] == len(group)
        assert row["errors"] == sum(r.error_type is not None for r in group)
        assert row["prompt_tokens"] == sum(r.prompt_tokens or 0 for r in group)
        assert row["generated_tokens"] == sum(r.generated_tokens or 0 for r in group)
        assert row["busy_s"] == pytest.approx(sum(r.duration_s for r in group))
        assert row["queue_wait_s"] == pytest.approx(sum(r.queue_wait_s for r in group))
        assert row["tps_count"] == sum(r.tokens_per_second is not None for r in group)
        assert row["tps_sum"] == pytest.approx(sum(r.tokens_per_second or 0 for r in group))
        loaded = [r.load_duration_s for r in group if r.loaded_model]
        assert row["loads"] == len(loaded)
        assert row["load_s"] == pytest.approx(sum(loaded))


def test_rollup_durations_counts_le_buckets_with_inclusive_bounds(tmp_path: Path) -> None:
    base = RequestRecord(started_at=T0, endpoint="/api/chat", model="m", status=200)
    durations = [0.5, 1.0, 1.0000001, 5.0, 6.0, 60.0]
    write_history(tmp_path / "h.db", [dataclasses.replace(base, duration_s=d) for d in durations])
    with closing(connect_readonly(tmp_path / "h.db")) as conn:
        rows = rollup_durations(conn, int(T0 // 60), int(T0 // 60), 60.0,
                                duration_bounds=DURATION)
    assert {r["duration_le"]: r["requests"] for r in rows} == {0: 2, 1: 2, 2: 2}
    assert Counter(le_index(d, DURATION) for d in durations) == Counter({0: 2, 1: 2, 2: 2})


def test_buckets_are_half_open_and_empty_ones_have_no_rows(tmp_path: Path) -> None:
    base = RequestRecord(started_at=T0, endpoint="/api/chat", model="m", status=200)
    step = 60.0
    start = (T0 // step) * step
    write_history(tmp_path / "h.db", [dataclasses.replace(base, started_at=t)
                              for t in (start, start + step - 0.001, start + step)])
    with closing(connect_readonly(tmp_path / "h.db")) as conn:
        b = int(start // step)
        rows = rollup_models(conn, b, b + 3, step, ttft_bounds=TTFT)
    assert {r["bucket"]: r["requests"] for r in rows} == {b: 2, b + 1: 1}


def test_extent_and_rows_written_after_an_id(tmp_path: Path) -> None:
    write_history(tmp_path / "h.db", [])
    with closing(connect_readonly(tmp_path / "h.db")) as conn:
        assert extent(conn) == {"max_id": 0, "min_ts": None}
        assert earliest_since_id(conn, 0) is None
    base = RequestRecord(started_at=T0 + 50, endpoint="/api/chat", model="m", status=200)
    write_history(tmp_path / "h.db", [base, dataclasses.replace(base, started_at=T0 + 10),
                              dataclasses.replace(base, started_at=T0 + 30)])
    with closing(connect_readonly(tmp_path / "h.db")) as conn:
        assert extent(conn) == {"max_id": 3, "min_ts": T0 + 10}
        assert earliest_since_id(conn, 1) == T0 + 10  # the late row
        assert earliest_since_id(conn, 2) == T0 + 30
        assert earliest_since_id(conn, 3) is None


@pytest.mark.parametrize("bounds", [(), (1.0, 0.5), (1.0, 1.0), (1.0, float("inf"))])
def test_bad_bounds_and_steps_are_refused(db: tuple, bounds: tuple) -> None:
    conn, _ = db
    with pytest.raises(ValueError):
        rollup_models(conn, 0, 1, 10.0, ttft_bounds=bounds)
    with pytest.raises(ValueError):
        rollup_durations(conn, 0, 1, 0.0, duration_bounds=DURATION)


def test_energy_by_day_sums_the_rows_that_carry_joules(tmp_path: Path) -> None:
    day = T0 - T0 % 86400
    records = [
        RequestRecord(started_at=day + 10, endpoint="/api/chat", model="a", status=200,
                      generated_tokens=100, energy_j=50.0),
        RequestRecord(started_at=day + 20, endpoint="/api/chat", model="a", status=200,
                      generated_tokens=None, energy_j=5.0),  # joules without a token count
        RequestRecord(started_at=day + 30, endpoint="/api/chat", model="b", status=200,
                      generated_tokens=40, energy_j=None),  # not metered: left out
        RequestRecord(started_at=day + 86400 + 5, endpoint="/api/chat", model="a", status=200,
                      generated_tokens=10, energy_j=2.5),
    ]
    write_history(tmp_path / "h.db", records)
    with closing(connect_readonly(tmp_path / "h.db")) as conn:
        assert energy_by_day(conn, day, day + 2 * 86400) == [
            {"day": day, "model": "a", "requests": 2, "joules": 55.0, "generated_tokens": 100},
            {"day": day + 86400, "model": "a", "requests": 1, "joules": 2.5,
             "generated_tokens": 10},
        ]
        assert energy_by_day(conn, day + 86400, day + 2 * 86400)[0]["joules"] == 2.5
        assert energy_by_day(conn, day, day + 10) == []  # half open: the row at +10 is out
