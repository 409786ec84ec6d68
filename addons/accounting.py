"""What a finished flow amounts to: its RequestRecord, from the flow's state and its stream's stats.

One pure step, no mitmproxy: the tap (``addons/tap.py``) gathers a ``FlowState`` while the
flow runs and, once it ends, hands it here with the parser's ``StreamStats``; metrics and
history take the record this returns as their only input. Whether the request loaded its
model is decided here, once, and stored on the record (``loaded_model``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING

from llama_core.endpoints import NO_MODEL
from llama_core.record import RequestRecord

from .lifecycle import LOAD, action_of
from .streams import StreamStats

if TYPE_CHECKING:
    from .stream_tap import StreamTap

logger = logging.getLogger(__name__)

# Text kept per request when storing prompts and responses is configured.
MAX_STORED_TEXT = 64 * 1024
# The client closed the request before any answer: nginx's convention.
CLIENT_CLOSED_STATUS = 499


class FlowState:
    """What the tap knows about one flow between its hooks."""

    __slots__ = (
        "started_at", "t_arrival", "t_forwarded", "t_headers", "endpoint", "inference", "model",
        "label", "priority", "stream", "strip_usage", "request_bytes", "queue_wait_s", "prompt",
        "tap", "active", "finished", "admitted", "error_type", "internal", "client", "user",
        # Requests that are not generations (addons/lifecycle.py, item 2 and 6 of issue 15).
        "expected_action", "method",
    )

    def __deepcopy__(self, memo: dict) -> None:
        # Live state, not data: a saved flow (mitmdump -w) keeps None here instead of failing.
        return None

    def __init__(self) -> None:
        self.started_at = time.time()
        self.t_arrival = time.perf_counter()
        self.t_forwarded: float | None = None
        self.t_headers: float | None = None
        self.endpoint = "other"
        self.inference = False
        self.model = ""
        self.label = NO_MODEL
        self.priority = "normal"
        self.stream = False
        self.strip_usage = False
        self.request_bytes = 0
        self.queue_wait_s = 0.0
        self.prompt: str | None = None
        self.tap: StreamTap | None = None
        self.active = False
        self.finished = False
        self.admitted = False
        self.error_type: str | None = None
        # Our own process's source (llama_core.traffic) when the request is ours, else None.
        self.internal: str | None = None
        # "load"/"unload" when the body asks for no generation (lifecycle.expected_action).
        self.expected_action: str | None = None
        # The method of a request to an inference endpoint that is not a POST (a CORS
        # preflight, HEAD, GET): Ollama answers it without a model; counted apart.
        self.method: str | None = None
        # Set by addons/access.py: the client the request authenticated as, and its user.
        self.client: str | None = None
        self.user: str | None = None


def outcome(
    st: FlowState, stats: StreamStats, response_status: int | None, ended_by: str | None,
    *, ended_early: bool = False,
) -> tuple[int, str | None]:
    """The status the client saw and the error type, from how the flow ended.

    ``response_status`` is the response's status (None: there was none); ``ended_by`` the
    error the hook that ended the flow saw (None: it ended normally); ``ended_early``: the
    stream ended cleanly without its last event (``Parser.ended_early``).
    """
    if response_status is not None:
        status = response_status
    elif ended_by == "client_cancelled":
        status = CLIENT_CLOSED_STATUS
    elif ended_by == "unauthorized":
        status = 401
    else:
        status = 502
    error_type = ended_by or st.error_type
    if error_type is None:
        if status >= 400:
            error_type = "upstream_status"
        elif stats.error is not None:
            error_type = "stream_error"
        elif stats.malformed:
            error_type = "malformed_response"
        elif ended_early:
            # Ollama's OpenAI, Anthropic and Responses writers swallow a mid-stream error:
            # the stream just stops, without [DONE] / message_stop / response.completed.
            error_type = "stream_error"
    return status, error_type


def account(
    st: FlowState,
    stats: StreamStats,
    *,
    response_status: int | None,
    ended_by: str | None,
    response_bytes: int,
    estimates_tokens: bool,
    now: float,
    load_threshold_s: float,
    ended_early: bool = False,
) -> RequestRecord:
    """The record of one finished flow. ``now`` is ``perf_counter()`` at its end.

    ``estimates_tokens``: the parser counts content chunks as tokens when the server sent no
    usage. Time to first token is measured for streamed answers only: a non-streamed answer
    arrives whole, and its wait is its duration.
    """
    status, error_type = outcome(st, stats, response_status, ended_by, ended_early=ended_early)
    action = lifecycle_of(st, stats, status, error_type)
    usage = stats.usage
    reported = usage is not None and (
        usage.generated_tokens is not None or usage.prompt_tokens is not None
    )
    prompt_tokens = usage.prompt_tokens if usage is not None else None
    generated = usage.generated_tokens if usage is not None else None
    if not reported and estimates_tokens:
        generated = stats.content_chunks or None

    ttft = None
    if st.stream and stats.first_token_at is not None and st.t_forwarded is not None:
        ttft = max(0.0, stats.first_token_at - st.t_forwarded)
    tpot = None
    span = None
    if stats.first_token_at is not None and stats.last_token_at is not None:
        span = stats.last_token_at - stats.first_token_at
        if stats.content_chunks > 1:
            tpot = span / (stats.content_chunks - 1)
    rate = None
    if usage is not None and usage.generated_tokens and usage.eval_duration_s:
        rate = usage.generated_tokens / usage.eval_duration_s
    elif span and stats.content_chunks > 1:
        rate = (stats.content_chunks - 1) / span
    load_s = usage.load_duration_s if usage is not None else None

    record = RequestRecord(
        started_at=st.started_at,
        endpoint=st.endpoint,
        model=st.model,
        status=status,
        error_type=error_type,
        priority=st.priority,
        stream=st.stream,
        prompt_tokens=prompt_tokens,
        generated_tokens=generated,
        usage_reported=reported,
        ttft_s=ttft,
        tpot_s=tpot,
        duration_s=now - st.t_arrival,
        queue_wait_s=st.queue_wait_s,
        tokens_per_second=rate,
        load_duration_s=load_s,
        # Ollama reports milliseconds of "load" for a model already in memory: not a load.
        loaded_model=load_s is not None and load_s >= load_threshold_s,
        prompt_eval_duration_s=usage.prompt_eval_duration_s if usage is not None else None,
        request_bytes=st.request_bytes,
        response_bytes=response_bytes,
        prompt=st.prompt,
        response="".join(stats.text)[:MAX_STORED_TEXT] if stats.text is not None else None,
        cached_prompt_tokens=usage.cached_prompt_tokens if usage is not None else None,
        client=st.client,
        user=st.user,
    )
    return record if action is None else as_lifecycle(record, action, load_threshold_s)


# -- loads and unloads (addons/lifecycle.py) ---------------------------------------------------


def lifecycle_of(
    st: FlowState, stats: StreamStats, status: int, error_type: str | None
) -> str | None:
    """``load`` or ``unload`` for a request that only did that; None for everything else."""
    if not st.inference or error_type is not None:
        return None
    return action_of(st.endpoint, st.expected_action, status, stats.done_reason)


def as_lifecycle(record: RequestRecord, action: str, load_threshold_s: float) -> RequestRecord:
    """The record of a load or unload: no tokens, no token timings, nothing streamed.

    Ollama reports no durations for these; a load's duration is the proxy's wall time, and
    it loaded the model when that is over the threshold (a model already in memory answers
    at once). An unload has no column of its own yet: its row is an answer without tokens.
    """
    waited = max(0.0, record.duration_s - record.queue_wait_s)  # the proxy's queue is not a load
    loaded = action == LOAD and waited >= load_threshold_s
    return dataclasses.replace(
        record, stream=False, prompt_tokens=None, generated_tokens=None, usage_reported=False,
        ttft_s=None, tpot_s=None, tokens_per_second=None, prompt_eval_duration_s=None,
        load_duration_s=waited if action == LOAD else None, loaded_model=loaded,
        response=None,
    )
