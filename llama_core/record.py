"""The record of one finished request, as the proxy hands it to metrics and history."""

from __future__ import annotations

from dataclasses import dataclass

PRIORITIES = ("high", "normal", "low")


@dataclass(slots=True, kw_only=True)
class RequestRecord:
    """Everything measured about one request once its last byte went to the client.

    Times are seconds. ``started_at`` is wall-clock (``time.time()``) at arrival; the
    durations are differences of ``time.perf_counter()`` readings. ``None`` means "not
    known" (the server did not report it, or the request never got that far).
    ``ttft_s`` is only measured for streamed answers: a non-streamed answer arrives whole, so
    its wait is its ``duration_s``. ``loaded_model`` is whether the request loaded its model.
    """

    started_at: float
    endpoint: str
    model: str
    status: int
    error_type: str | None = None
    priority: str = "normal"
    stream: bool = False
    prompt_tokens: int | None = None
    generated_tokens: int | None = None
    usage_reported: bool = False
    ttft_s: float | None = None
    duration_s: float = 0.0
    queue_wait_s: float = 0.0
    tokens_per_second: float | None = None
    load_duration_s: float | None = None
    prompt_eval_duration_s: float | None = None
    request_bytes: int = 0
    response_bytes: int = 0
    prompt: str | None = None
    response: str | None = None
    loaded_model: bool = False  # decided once, by the proxy's accounting (addons/accounting)
    tpot_s: float | None = None  # time per output token: (last - first token) / (tokens - 1)
    # The configured client the request authenticated as (``anonymous`` where allowed), and the
    # user a front end forwarded (only when configured: it is personal data); None: not known.
    client: str | None = None
    user: str | None = None
    cached_prompt_tokens: int | None = None  # prompt tokens the server reported as cached
    energy_j: float | None = None  # GPU energy attributed to this request while it generated
