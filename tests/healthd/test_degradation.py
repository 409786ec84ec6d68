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
    endpoint: str = "/api/chat", status: int | None = None,
) -> RequestRecord:
    return RequestRecord(
        started_at=ts, endpoint=endpoint, model=model,
        status=status or (500 if error else 200), error_type=error, ttft_s=ttft,
        duration_s=duration, tokens_per_second=tps, generated_tokens=80 if tps else None)


def failed(ts: float, error: str, **kwargs: Any) -> RequestRecord:
    """A request that got no answer: no tokens, no time to first token."""
    return record(ts, error=error, ttft=None, tps=None, **kwargs)


def fill(path: Path, records: list[RequestRecord]) -> None:
    writer = HistoryWriter(path, clock=lambda: NOW)
    writer.start()
    for r in records:
        assert writer.submit(r)
    assert writer.close()


def baseline(n: int = 20, **kwargs: Any) -> list[RequestRecord]:
    """``n`` requests spread over the 23 hours before the recent window."""
    return [record(NOW - 600 - i * HOUR, **kwargs) for i in range(n)]


def recent(n: int = 20, **kwargs: Any) -> list[RequestRecord]:
    """``n`` requests in the last 5 minutes (at most 20: 14 s apart)."""
    return [record(NOW - 10 - i * 14, **kwargs) for i in range(n)]


def check(path: Path, *, at: float = NOW, **kwargs: Any) -> PerformanceCheck:
    return PerformanceCheck(str(path), DEFAULT_THRESHOLDS, clock=lambda: at, **kwargs)


def test_missing_history_file_is_a_warning(tmp_path: Path) -> None:
    out = check(tmp_path / "nope.db")()
    assert out.status is Status.WARN and "not found" in out.detail


def test_too_little_data_is_ok_with_not_enough_data(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    fill(db, baseline(20) + recent(3, ttft=9.0))
    out = check(db)()
    assert out.status is Status.OK
    assert out.detail.startswith(
        "not enough data: need 20 answered requests per model in the last 5 min")
    assert "llama3.2:latest 3/20" in out.detail


def test_steady_performance_is_ok(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    fill(db, baseline(20) + recent(20, ttft=0.6, duration=2.2, tps=38.0))
    out = check(db)()
    assert out.status is Status.OK
    assert out.detail == "no degradation in 1 model(s) over the last 5 min against the 24 h before"
    model = out.data["models"]["llama3.2:latest"]
    assert model["recent"]["requests"] == 20 and model["baseline"]["requests"] == 20
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
    fill(db, baseline(20) + recent(20, **recent_kwargs))
    out = check(db)()
    assert out.status is status
    assert out.detail == f"llama3.2:latest: {finding}"


def test_error_rate_increase(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    errors = recent(5, error="upstream_status", ttft=None, tps=None)
    fill(db, baseline(20) + recent(15) + errors)
    out = check(db)()
    assert out.status is Status.CRITICAL  # 25% of Ollama's answers were errors, none before
    assert "error rate 25.0% vs 0.0% baseline (critical)" in out.detail


def test_models_are_judged_apart_and_requests_naming_no_model_ignored(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    slow_big_model = recent(20, model="llama3.3:70b", ttft=4.0, duration=30.0, tps=5.0)
    # what the proxy stores for requests that name no model: metadata (model ""), and an
    # inference request without one; all of them failing would be critical if judged
    nameless = [failed(NOW - 20 - i, "upstream_status", model="", endpoint=endpoint)
                for i, endpoint in enumerate(["/api/version", "/api/tags", "/api/chat"] * 10)]
    fill(db, baseline(20) + baseline(20, model="llama3.3:70b", ttft=4.0, duration=30.0, tps=5.0)
         + recent(20) + slow_big_model + nameless
         + [failed(NOW - 30, "upstream_status", endpoint="/api/show")] * 30)
    out = check(db)()
    assert out.status is Status.OK, out.detail
    assert set(out.data["models"]) == {"llama3.2:latest", "llama3.3:70b"}


def test_enough_requests_in_both_windows_before_judging(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    fill(db, baseline(19) + recent(20, ttft=5.0) + recent(20, model="b", ttft=5.0)
         + baseline(20, model="b") + baseline(20, model="c") + recent(19, model="c", ttft=5.0))
    out = check(db)()
    assert out.status is Status.CRITICAL and out.detail.startswith("b: time to first token")
    assert "llama3.2:latest" not in out.detail and "c:" not in out.detail


@pytest.mark.parametrize("error", ["queue_full", "unauthorized", "client_cancelled"])
def test_requests_ollama_never_answered_do_not_count(tmp_path: Path, error: str) -> None:
    db = tmp_path / "h.db"
    status = {"queue_full": 503, "unauthorized": 401, "client_cancelled": 499}[error]
    fill(db, baseline(20) + recent(20) + [failed(NOW - 5 - i, error, status=status, duration=60)
                                          for i in range(40)])
    out = check(db)()
    assert out.status is Status.OK, out.detail
    assert out.data["models"]["llama3.2:latest"]["recent"]["requests"] == 20


def outage(start: float, end: float) -> list[RequestRecord]:
    """Ollama goes away at ``start``: 8 streams cut off; then clients get 502 from the proxy
    (and so do metadata requests) until ``end``."""
    cut = [failed(start - 30 + i, "stream_aborted", duration=30 - i) for i in range(8)]
    unreachable = [failed(t, "upstream_unreachable", status=502, duration=0.001)
                   for t in range(int(start), int(end), 5)]
    metadata = [failed(t, "upstream_unreachable", model="", endpoint="/api/version", status=502,
                       duration=0.001) for t in range(int(start), int(end), 10)]
    return cut + unreachable + metadata


def test_the_issue_a_short_outage_leaves_performance_green(tmp_path: Path) -> None:
    """After a short outage /health said "performance critical (: error rate 60.0% vs 6.2%
    baseline)" with a blank model, while everything worked again: the history held the
    daemon's own GET /api/version every 30 s (model ""), 6 of the last 10 failed."""
    db = tmp_path / "h.db"

    def probe(ts: float, error: str | None = None) -> RequestRecord:
        return record(ts, model="", endpoint="/api/version", ttft=None, tps=None, duration=0.01,
                      error=error, status=502 if error else 200)

    probes = [probe(NOW - 600 - i * 60, "upstream_unreachable" if i == 0 else None)
              for i in range(16)]  # 1 of 16 failed before: 6.2%
    probes += [probe(NOW - 290 + i * 30, "upstream_unreachable" if 1 <= i <= 6 else None)
               for i in range(10)]  # the outage from NOW - 260 to NOW - 110
    clients = [failed(NOW - 255 + i * 10, "upstream_unreachable", status=502, duration=0.001)
               for i in range(15)] + [record(NOW - 100 + i * 4) for i in range(20)]
    fill(db, baseline(20) + probes + clients)
    out = check(db)()
    assert out.status is Status.OK, out.detail
    assert out.detail == ("no degradation in 1 model(s) over the 110 s since Ollama was back "
                          "against the 24 h before")
    assert out.data["since_outage"] == pytest.approx(NOW - 110 + 0.01)  # the last 502
    assert set(out.data["models"]) == {"llama3.2:latest"}


def test_the_window_starts_again_after_an_outage(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    back = NOW - 200
    answers = [record(back + 10 + i * 9) for i in range(20)]  # back + 10 .. back + 181
    fill(db, baseline(20) + outage(NOW - 240, back) + answers)
    # Just after the outage: not enough answers yet, so nothing to judge (not red).
    early = check(db, at=back + 60)()
    assert early.status is Status.OK and early.detail.startswith("not enough data"), early.detail
    assert "in the 65 s since Ollama was back" in early.detail  # the last 502 at back - 5
    # Once enough have come back well: judged on them alone.
    assert check(db)().status is Status.OK
    # Without the 502s that mark the outage, the 8 aborted streams among 20 answers are red:
    # the window's new start is what keeps the check green.
    unmarked = tmp_path / "unmarked.db"
    fill(unmarked, baseline(20) + [r for r in outage(NOW - 240, back)
                                   if r.error_type != "upstream_unreachable"] + answers)
    red = check(unmarked)()
    assert red.status is Status.CRITICAL and "error rate 28.6% vs 0.0% baseline" in red.detail


def test_the_ollama_checks_recovery_starts_the_window_again(tmp_path: Path) -> None:
    """No client sent during the outage (no 502 in the history), only streams were cut."""
    db = tmp_path / "h.db"
    cut = [failed(NOW - 250 + i, "stream_aborted", duration=30) for i in range(8)]
    fill(db, baseline(20) + cut + [record(NOW - 190 + i * 9) for i in range(20)])
    assert check(db)().status is Status.CRITICAL  # never down as far as it knows
    seen_back = check(db, ollama_back_at=lambda: NOW - 195)()
    assert seen_back.status is Status.OK, seen_back.detail
    assert seen_back.data["since_outage"] == NOW - 195
    # a recovery before the window is no outage in it
    assert check(db, ollama_back_at=lambda: NOW - 400)().status is Status.CRITICAL


def test_millisecond_jitter_is_not_degradation(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    fill(db, baseline(20, ttft=0.002) + recent(20, ttft=0.02))
    assert check(db)().status is Status.OK


def test_windows_and_minimum_are_configurable(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    fill(db, baseline(3) + recent(2, ttft=5.0))
    out = check(db, min_requests=2, window_s=120, baseline_s=2 * 86400)()
    assert out.status is Status.CRITICAL and "time to first token" in out.detail
