"""Latency over one set of requests: streamed answers; everything else counted apart."""

from __future__ import annotations

from typing import Any

import pytest

from dashboard.latency import LatencyWindow, kind, summarise

T = 1_000.0


def row(**fields: Any) -> dict[str, Any]:
    return {"started_at": T, "endpoint": "/api/chat", "model": "llama3.2:latest",
            "status": 200, "error_type": None, "stream": True, "ttft_s": 0.2,
            "duration_s": 1.0, "tokens_per_second": 40.0, **fields}


@pytest.mark.parametrize(("fields", "expected"), [
    ({}, "streamed"),
    ({"stream": False, "ttft_s": None}, "answer"),
    ({"stream": False, "ttft_s": 1.5, "duration_s": 1.5}, "answer"),  # older proxies
    ({"endpoint": "/api/tags", "model": "none", "ttft_s": None}, "metadata"),
    ({"status": 502, "error_type": "upstream_unreachable"}, "proxy_error"),
    ({"status": 503, "error_type": "queue_full"}, "proxy_error"),
    ({"status": 500, "error_type": "upstream_status"}, "ollama_error"),
    ({"error_type": "stream_error"}, "ollama_error"),
])
def test_kind(fields: dict[str, Any], expected: str) -> None:
    assert kind(row(**fields)) == expected


def test_a_non_streamed_answer_leaves_ttft_alone() -> None:
    rows = [row(ttft_s=0.1 * i, duration_s=1.0 + i, started_at=T + i) for i in range(1, 6)]
    rows.append(row(stream=False, ttft_s=30.0, duration_s=30.0))  # its whole duration
    rows.append(row(endpoint="/api/version", model="none", ttft_s=None, duration_s=0.001))
    rows.append(row(status=502, error_type="upstream_unreachable", duration_s=0.0))
    out = summarise(rows, 60.0)
    assert out["ttft_p95"] == pytest.approx(0.48)
    assert out["duration_p95"] == pytest.approx(5.8)
    assert out["counts"] == {"streamed": 5, "answer": 1, "metadata": 1, "proxy_error": 1,
                             "ollama_error": 0}


def test_ttft_p95_never_exceeds_duration_p95() -> None:
    # Short answers with slow first tokens, long ones with fast: the order differs.
    rows = [row(ttft_s=2.0, duration_s=2.1, started_at=T + i) for i in range(5)]
    rows += [row(ttft_s=0.1, duration_s=9.0, started_at=T + 10 + i) for i in range(5)]
    out = summarise(rows, 60.0)
    assert out["ttft_p95"] <= out["duration_p95"]
    assert out["ttft_p50"] <= out["duration_p50"]


def test_busiest_models_and_the_rest_as_other() -> None:
    rows = [row(model=m, ttft_s=t, started_at=T + i)
            for i, (m, t) in enumerate([("a", 0.1)] * 4 + [("b", 0.2)] * 3 + [("c", 0.3)] * 2
                                       + [("d", 0.4), ("e", 0.5)])]
    by_model = summarise(rows, 60.0, top=3)["ttft_p95_by_model"]
    assert list(by_model) == ["a", "b", "c", "other"]
    assert by_model["other"] == pytest.approx(0.495)


def test_the_window_keeps_each_request_once_and_forgets_old_ones() -> None:
    window = LatencyWindow(seconds=60.0)
    first = [row(started_at=T), row(started_at=T + 1)]
    window.add(first, now=T + 2)
    window.add(first + [row(started_at=T + 2)], now=T + 3)  # the next scrape repeats two
    assert window.summary()["counts"]["streamed"] == 3
    window.add([], now=T + 61.5)  # the first finished at T + 1, over a minute before
    assert window.summary()["counts"]["streamed"] == 2
