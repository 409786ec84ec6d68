"""Tests for healthd/degradation.py on a history file written by llama_core.history.writer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from healthd.config import DEFAULT_THRESHOLDS
from healthd.degradation import PerformanceCheck
from healthd.results import Status
from llama_core.history.writer import HistoryWriter
from llama_core.record import RequestRecord

NOW = 1_790_000_000.0
HOUR = 3600.0


def record(
    ts: float, *, model: str = "llama3.2:latest", ttft: float | None = 0.5,
    duration: float = 2.0, tps: float | None = 40.0, error: str | None = None,
) -> RequestRecord:
    return RequestRecord(
        started_at=ts, endpoint="/api/chat" if model != "none" else "/api/version", model=model,
        status=500 if error else 200, error_type=error, ttft_s=ttft, duration_s=duration,
        tokens_per_second=tps, generated_tokens=80 if tps else None)


def fill(path: Path, records: list[RequestRecord]) -> None:
    writer = HistoryWriter(path, clock=lambda: NOW)
    writer.start()
    for r in records:
        assert writer.submit(r)
    assert writer.close()


def baseline(n: int = 20, **kwargs: Any) -> list[RequestRecord]:
    """``n`` requests spread over the 23 hours before the recent window."""
    return [record(NOW - 600 - i * HOUR, **kwargs) for i in range(n)]


def recent(n: int = 6, **kwargs: Any) -> list[RequestRecord]:
    """``n`` requests in the last 5 minutes."""
    return [record(NOW - 10 - i * 30, **kwargs) for i in range(n)]


def check(path: Path, **kwargs: Any) -> PerformanceCheck:
    return PerformanceCheck(str(path), DEFAULT_THRESHOLDS, clock=lambda: NOW, **kwargs)


def test_missing_history_file_is_a_warning(tmp_path: Path) -> None:
    out = check(tmp_path / "nope.db")()
    assert out.status is Status.WARN and "not found" in out.detail


def test_too_little_data_is_ok_with_not_enough_data(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    fill(db, baseline(20) + recent(3, ttft=9.0))
    out = check(db)()
    assert out.status is Status.OK
    assert out.detail.startswith("not enough data: need 5 requests per model in the last 5 min")
    assert "llama3.2:latest 3/20" in out.detail


def test_steady_performance_is_ok(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    fill(db, baseline(20) + recent(6, ttft=0.6, duration=2.2, tps=38.0))
    out = check(db)()
    assert out.status is Status.OK
    assert out.detail == "no degradation in 1 model(s) over the last 5 min against the 24 h before"
    model = out.data["models"]["llama3.2:latest"]
    assert model["recent"]["requests"] == 6 and model["baseline"]["requests"] == 20
    assert model["baseline"]["ttft_s"] == 0.5


@pytest.mark.parametrize("recent_kwargs, status, finding", [
    ({"ttft": 1.5}, Status.WARN, "time to first token 1.50 s vs 0.50 s baseline (3.0x) (warn)"),
    ({"duration": 10.0}, Status.CRITICAL,
     "request duration 10.00 s vs 2.00 s baseline (5.0x) (critical)"),
    ({"tps": 15.0}, Status.WARN, "15.0 tokens/s vs 40.0 baseline (38% of it) (warn)"),
    ({"tps": 8.0}, Status.CRITICAL, "8.0 tokens/s vs 40.0 baseline (20% of it) (critical)"),
])
def test_degradation_against_the_baseline(
    tmp_path: Path, recent_kwargs: dict, status: Status, finding: str
) -> None:
    db = tmp_path / "h.db"
    fill(db, baseline(20) + recent(6, **recent_kwargs))
    out = check(db)()
    assert out.status is status
    assert out.detail == f"llama3.2:latest: {finding}"


def test_error_rate_increase(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    failed = recent(2, error="upstream_status", ttft=None, tps=None)
    fill(db, baseline(20) + recent(6) + failed)
    out = check(db)()
    assert out.status is Status.CRITICAL  # 25% of requests failed, none before
    assert "error rate 25.0% vs 0.0% baseline (critical)" in out.detail


def test_models_are_judged_apart_and_metadata_requests_ignored(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    slow_big_model = recent(6, model="llama3.3:70b", ttft=4.0, duration=30.0, tps=5.0)
    probes = recent(6, model="none", ttft=None, tps=None, duration=0.001)
    fill(db, baseline(20) + baseline(20, model="llama3.3:70b", ttft=4.0, duration=30.0, tps=5.0)
         + recent(6) + slow_big_model + probes)
    out = check(db)()
    assert out.status is Status.OK, out.detail
    assert set(out.data["models"]) == {"llama3.2:latest", "llama3.3:70b"}


def test_millisecond_jitter_is_not_degradation(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    fill(db, baseline(20, ttft=0.002) + recent(6, ttft=0.02))
    assert check(db)().status is Status.OK


def test_windows_and_minimum_are_configurable(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    fill(db, baseline(3) + recent(2, ttft=5.0))
    out = check(db, min_requests=2, window_s=120, baseline_s=2 * 86400)()
    assert out.status is Status.CRITICAL and "time to first token" in out.detail
