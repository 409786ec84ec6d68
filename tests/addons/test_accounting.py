"""addons/accounting.py: what a finished flow amounts to, from its state and stream statistics."""

from __future__ import annotations

import pytest

from addons.accounting import CLIENT_CLOSED_STATUS, FlowState, account, outcome
from addons.streams import StreamStats, Usage
from llama_core.record import RequestRecord


def state(*, stream: bool, forwarded: float = 10.0, arrival: float = 9.5) -> FlowState:
    st = FlowState()
    st.endpoint, st.model, st.stream = "/api/chat", "llama3.2:latest", stream
    st.t_arrival, st.t_forwarded = arrival, forwarded
    return st


def stats(*, chunks: int = 5, first: float | None = 10.2, last: float | None = 10.6,
          load_s: float | None = None) -> StreamStats:
    found = StreamStats(content_chunks=chunks, first_token_at=first, last_token_at=last)
    found.usage = Usage(prompt_tokens=3, generated_tokens=chunks, load_duration_s=load_s,
                        eval_duration_s=0.5)
    return found


def finish(st: FlowState, found: StreamStats, *, threshold: float = 0.25,
           status: int | None = 200, ended_by: str | None = None) -> RequestRecord:
    return account(st, found, response_status=status, ended_by=ended_by, response_bytes=120,
                   estimates_tokens=False, now=11.0, load_threshold_s=threshold)


def test_a_streamed_answer_has_its_times_from_the_stream() -> None:
    record = finish(state(stream=True), stats())
    assert record.ttft_s == pytest.approx(0.2)  # forwarded at 10.0, first token at 10.2
    assert record.tpot_s == pytest.approx(0.1)  # 0.4 s over 4 gaps
    assert record.duration_s == pytest.approx(1.5)  # arrival at 9.5, done at 11.0
    assert record.tokens_per_second == pytest.approx(10.0)  # server-reported 5 in 0.5 s
    assert (record.prompt_tokens, record.generated_tokens, record.usage_reported) == (3, 5, True)
    assert (record.status, record.error_type, record.response_bytes) == (200, None, 120)


def test_a_non_streamed_answer_has_no_time_to_first_token() -> None:
    # It arrives whole: "first token" would be its last byte, and would be counted as such.
    record = finish(state(stream=False), stats(chunks=1, first=10.9, last=10.9))
    assert record.ttft_s is None and record.tpot_s is None
    assert record.duration_s == pytest.approx(1.5)


@pytest.mark.parametrize(("load_s", "threshold", "loaded"), [
    (None, 0.25, False), (0.004, 0.25, False), (0.25, 0.25, True), (0.5, 0.25, True),
    (0.5, 1.0, False), (1.0, 1.0, True),
])
def test_a_load_is_decided_once_with_the_threshold(
    load_s: float | None, threshold: float, loaded: bool
) -> None:
    record = finish(state(stream=True), stats(load_s=load_s), threshold=threshold)
    assert record.loaded_model is loaded and record.load_duration_s == load_s


@pytest.mark.parametrize(("status", "ended_by", "flags", "want"), [
    (200, None, {}, (200, None)),
    (500, None, {}, (500, "upstream_status")),
    (200, None, {"error": "boom"}, (200, "stream_error")),
    (200, None, {"malformed": True}, (200, "malformed_response")),
    (None, "client_cancelled", {}, (CLIENT_CLOSED_STATUS, "client_cancelled")),
    (None, "unauthorized", {}, (401, "unauthorized")),
    (None, "upstream_unreachable", {}, (502, "upstream_unreachable")),
    (200, "stream_aborted", {}, (200, "stream_aborted")),
])
def test_the_outcome_follows_how_the_flow_ended(
    status: int | None, ended_by: str | None, flags: dict, want: tuple
) -> None:
    found = StreamStats(**flags)
    assert outcome(state(stream=True), found, status, ended_by) == want


def test_a_queue_refusal_marked_on_the_state_is_its_error_type() -> None:
    st = state(stream=True)
    st.error_type = "queue_full"
    assert outcome(st, StreamStats(), 503, None) == (503, "queue_full")


def test_output_tokens_are_estimated_from_chunks_only_without_usage() -> None:
    found = StreamStats(content_chunks=7, first_token_at=10.1, last_token_at=10.7)
    record = account(state(stream=True), found, response_status=200, ended_by=None,
                     response_bytes=0, estimates_tokens=True, now=11.0, load_threshold_s=0.25)
    assert (record.generated_tokens, record.usage_reported) == (7, False)
    assert record.tokens_per_second == pytest.approx(6 / 0.6)
