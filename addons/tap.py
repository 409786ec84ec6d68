"""The addon that measures every flow: times it, taps its response stream, and counts it once."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from mitmproxy import http
from mitmproxy.connection import ConnectionState

from llama_core.record import RequestRecord

from .admission import Admission, QueueFull, parse_priority
from .metrics import ProxyMetrics
from .routes import (
    INFERENCE_ENDPOINTS,
    NO_MODEL,
    ModelLabels,
    canonical_model,
    endpoint_template,
)
from .streams import Parser, PassthroughParser, StreamStats, parser_for
from .usage import USAGE_ENDPOINTS, UsageEventFilter, wants_injected_usage, with_usage

logger = logging.getLogger(__name__)

KEY = "llama_metrics"
# Text kept per request when storing prompts and responses is configured.
MAX_STORED_TEXT = 64 * 1024
# Streaming endpoints that stream when the request does not say: Ollama's default.
NATIVE_STREAM_DEFAULT = frozenset({"/api/generate", "/api/chat"})
# While a request waits in the queue its client may leave; mitmproxy holds the connection's
# events until the hook returns, so one watcher looks at every queued client this often.
CLIENT_CHECK_S = 0.05
JSON_TYPE = "application/json; charset=utf-8"
# Inter-token gaps reach the histogram in batches of this many (and at the end).
GAP_BATCH = 64
# While recording, the chunks of one response are kept for the cassette up to this size; a
# larger response is not recorded (counted in ollama_proxy_record_dropped_total).
MAX_KEPT_BYTES = 64 * 1024 * 1024
# A request body to an endpoint that is not inference (``ollama create`` uploads model blobs of
# gigabytes to /api/blobs) streams through when it is larger than this or of unknown length,
# instead of being held whole in the proxy's memory; smaller ones are read as usual.
STREAM_REQUEST_BODY_OVER = 1024 * 1024


class StreamTap:
    """``flow.response.stream``: returns every byte, in order; only parses on the side.

    It never raises (an exception would hang the client) and never returns ``b""`` for a
    chunk (that would end the client's chunked response early): nothing to send is ``[]``.
    """

    __slots__ = ("parser", "filter", "sent", "chunks", "kept", "kept_too_much", "_broken",
                 "_gaps", "_flush_gaps")

    def __init__(
        self,
        parser: Parser,
        usage_filter: UsageEventFilter | None,
        flush_gaps: Callable[[list[float]], None] | None = None,
        *,
        keep_chunks: bool = False,
    ) -> None:
        self.parser = parser
        self.filter = usage_filter
        self.sent = 0
        # (perf_counter at arrival, bytes handed to the client), for the cassette recorder.
        self.chunks: list[tuple[float, bytes]] | None = [] if keep_chunks else None
        self.kept = 0
        self.kept_too_much = False  # over MAX_KEPT_BYTES: the chunks were let go
        self._broken = False
        self._gaps = parser.stats.gaps
        self._flush_gaps = flush_gaps

    def flush_gaps(self) -> None:
        """Hand the inter-token gaps seen so far to the histogram (in batches, not per token)."""
        if self._gaps and self._flush_gaps is not None:
            self._flush_gaps(self._gaps)
            self._gaps.clear()

    def __call__(self, data: bytes) -> bytes | list[bytes]:
        now = time.perf_counter()
        if self._broken:
            return self._keep(now, data)
        try:
            if data:
                self.parser.feed(data, now)
                if len(self._gaps) >= GAP_BATCH:
                    self.flush_gaps()
            if self.filter is not None:
                data = self.filter.feed(data) if data else self.filter.flush()
            self.sent += len(data)
            if data and self.chunks is not None:
                self._remember(now, data)
            return data if data else []
        except Exception:
            self._broken = True
            logger.exception("stream tap failed; passing the rest of this response through")
            if self.filter is not None:  # what it held back still belongs to the client
                data = self.filter.take_held() + data
            return self._keep(now, data)

    def _keep(self, now: float, data: bytes) -> list[bytes]:
        if data and self.chunks is not None:
            self._remember(now, data)
        return [data] if data else []

    def _remember(self, now: float, data: bytes) -> None:
        """Keep a chunk for the recorder, up to MAX_KEPT_BYTES of one response."""
        self.kept += len(data)
        if self.kept > MAX_KEPT_BYTES:
            self.chunks = None
            self.kept_too_much = True
        elif self.chunks is not None:
            self.chunks.append((now, data))


class FlowState:
    """What the tap knows about one flow between its hooks."""

    __slots__ = (
        "started_at", "t_arrival", "t_forwarded", "t_headers", "endpoint", "inference", "model",
        "label", "priority", "stream", "strip_usage", "request_bytes", "queue_wait_s", "prompt",
        "tap", "active", "finished", "admitted", "error_type",
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


def request_json(request: http.Request) -> Any:
    if request.headers.get("content-encoding") or not request.raw_content:
        return None
    try:
        return json.loads(request.raw_content)
    except ValueError:
        return None


def prompt_text(body: dict) -> str | None:
    for key in ("messages", "prompt", "input"):
        if key in body:
            value = body[key]
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            return text[:MAX_STORED_TEXT]
    return None


class ClientWatcher:
    """Tells queued requests that their client left, with one task for all of them.

    mitmproxy delivers a connection's events only after the hook that holds it returns, so a
    request waiting in the queue cannot hear its client go; its connection's state says so.
    One task looks at every watched connection each ``interval`` while any is watched (a
    thousand queued requests cost one wake-up per interval, not a thousand).
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._watched: dict[asyncio.Future[None], Any] = {}
        self._task: asyncio.Task[None] | None = None

    def watch(self, conn: Any) -> asyncio.Future[None]:
        """A future that completes when ``conn`` (a client connection) can no longer be read."""
        left: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watched[left] = conn
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        return left

    def unwatch(self, left: asyncio.Future[None]) -> None:
        self._watched.pop(left, None)
        if not left.done():
            left.cancel()

    def __len__(self) -> int:
        return len(self._watched)

    async def _run(self) -> None:
        while self._watched:
            await asyncio.sleep(self.interval)
            for left, conn in list(self._watched.items()):
                if not conn.state & ConnectionState.CAN_READ:
                    del self._watched[left]
                    if not left.done():
                        left.set_result(None)


class TrafficTap:
    """Measures each request from arrival to its last byte and reports it exactly once."""

    def __init__(
        self,
        metrics: ProxyMetrics,
        labels: ModelLabels,
        *,
        load_threshold_s: float = 0.25,
        store_prompts: bool = False,
        on_record: Callable[[RequestRecord], object] | None = None,
        admission: Admission | None = None,
    ) -> None:
        self.metrics = metrics
        self.labels = labels
        self.admission = admission or Admission()
        self.load_threshold_s = load_threshold_s
        self.store_prompts = store_prompts
        self.on_record = on_record
        self.keep_chunks = False  # the cassette recorder wants each chunk the client got
        self.queued_clients = ClientWatcher(CLIENT_CHECK_S)

    # -- hooks -------------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        st = flow.metadata[KEY] = FlowState()
        request = flow.request
        st.endpoint = endpoint_template(request.path)  # a flow cut off now is counted by it
        if st.endpoint not in INFERENCE_ENDPOINTS:
            length = content_length(request.headers)
            if length is None and "chunked" in request.headers.get("transfer-encoding", ""):
                request.stream = True
            elif length is not None and length > STREAM_REQUEST_BODY_OVER:
                request.stream = True

    def request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        st = flow.metadata.get(KEY)
        if st is None:  # the flow began before this addon was loaded
            st = flow.metadata[KEY] = FlowState()
        self.classify(flow, st)
        if flow.response is not None:  # answered before forwarding (addons/access.py: 401)
            return None
        if st.inference and self.admission.max_concurrency:
            if not self.admission.try_acquire():
                return self.admit(flow, st)  # mitmproxy awaits it; other flows go on meanwhile
            st.admitted = True
            self.metrics.queue_wait.labels(st.priority).observe(0.0)
        # Unlimited (the default): no queue of its own, nothing to hold.
        self.forwarded(st)
        return None

    async def admit(self, flow: http.HTTPFlow, st: FlowState) -> None:
        """Wait for a slot in priority order; answer 503 when the queue is full."""
        waiting = asyncio.ensure_future(self.admission.acquire(st.priority))
        left = self.queued_clients.watch(flow.client_conn)
        try:
            either: set[asyncio.Future[Any]] = {waiting, left}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if not waiting.done():
                await self.left_while_queued(flow, st, waiting)
                return
            st.queue_wait_s = waiting.result()
            st.admitted = True
        except QueueFull as e:
            st.error_type = "queue_full"
            body = json.dumps({"error": f"llama-metrics proxy: {e}"})
            headers = {"Content-Type": JSON_TYPE, "Retry-After": str(e.retry_after)}
            flow.response = http.Response.make(503, body, headers)
            return
        finally:
            self.queued_clients.unwatch(left)
        self.metrics.queue_wait.labels(st.priority).observe(st.queue_wait_s)
        self.forwarded(st)

    async def left_while_queued(
        self, flow: http.HTTPFlow, st: FlowState, waiting: asyncio.Future[float]
    ) -> None:
        waiting.cancel()
        try:
            await waiting
            st.admitted = True  # the slot arrived in the same turn: finish() gives it back
        except (asyncio.CancelledError, QueueFull):
            pass
        self.finish(flow, st, "client_cancelled")
        if flow.killable:
            flow.kill()

    def classify(self, flow: http.HTTPFlow, st: FlowState) -> None:
        """Route, model, streaming and usage injection, from the request as the client sent it."""
        request = flow.request
        st.endpoint = endpoint_template(request.path)
        if request.stream:  # streamed through (see requestheaders): never held, never read
            st.request_bytes = content_length(request.headers) or 0
        else:
            st.request_bytes = len(request.raw_content or b"")
        if st.endpoint not in INFERENCE_ENDPOINTS:
            return
        st.inference = True
        st.priority = parse_priority(request.headers.get("x-priority"))
        body = request_json(request)
        if isinstance(body, dict):
            model = body.get("model")
            st.model = canonical_model(model)[:200] if isinstance(model, str) else ""
            stream = body.get("stream")
            st.stream = stream is True or (stream is None and st.endpoint in NATIVE_STREAM_DEFAULT)
            if st.endpoint in USAGE_ENDPOINTS and wants_injected_usage(body):
                request.content = with_usage(body)
                request.headers.pop("accept-encoding", None)  # the filter reads plain bytes
                st.strip_usage = True
            if self.store_prompts:
                st.prompt = prompt_text(body)
        st.label = self.labels.label(st.model)

    def forwarded(self, st: FlowState) -> None:
        """The request leaves for the upstream now: the clock for time to first token starts."""
        st.t_forwarded = time.perf_counter()
        self.metrics.active.labels(st.label).inc()
        st.active = True

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        st = flow.metadata.get(KEY)
        if st is None or flow.response is None:
            return
        st.t_headers = time.perf_counter()
        response = flow.response
        parser: Parser
        usage_filter = None
        if st.inference and 200 <= response.status_code < 300:
            content_type = response.headers.get("content-type", "")
            parser = parser_for(
                content_type,
                content_encoding=response.headers.get("content-encoding", ""),
                capture_text=self.store_prompts,
            )
            if st.strip_usage and content_type.startswith("text/event-stream"):
                usage_filter = UsageEventFilter()
        else:
            parser = PassthroughParser()
        label = st.label
        st.tap = StreamTap(
            parser, usage_filter, lambda gaps: self.metrics.itl.observe_many(label, gaps),
            keep_chunks=self.keep_chunks,
        )
        response.stream = st.tap

    def response(self, flow: http.HTTPFlow) -> None:
        st = flow.metadata.get(KEY)
        if st is None or st.finished:
            return
        if st.tap is None:  # a body-less response is never streamed
            st.tap = StreamTap(PassthroughParser(), None)
            content = flow.response.raw_content if flow.response else None
            st.tap.sent = len(content or b"")
        self.finish(flow, st, None)

    def error(self, flow: http.HTTPFlow) -> None:
        st = flow.metadata.get(KEY)
        if st is None or st.finished:
            return
        self.finish(flow, st, self.error_type(flow, st))

    @staticmethod
    def error_type(flow: http.HTTPFlow, st: FlowState) -> str:
        message = flow.error.msg if flow.error else ""
        if st.error_type == "unauthorized":  # cut off by addons/access.py, not by its client
            return "unauthorized"
        if message.startswith("Client disconnected") or message == "Connection killed.":
            return "client_cancelled"
        if st.t_headers is None and not flow.server_conn.timestamp_tcp_setup:
            return "upstream_unreachable"
        return "stream_aborted"

    # -- accounting ----------------------------------------------------------------------

    def finish(self, flow: http.HTTPFlow, st: FlowState, error_type: str | None) -> None:
        """Count the flow once, whatever way it ended, and free what it held."""
        st.finished = True
        now = time.perf_counter()
        try:
            record, tpot_s, load_happened = self.build_record(flow, st, error_type, now)
            self.metrics.observe(record, st.label, tpot_s=tpot_s, load_happened=load_happened)
            if self.on_record is not None:
                self.on_record(record)
        except Exception:
            logger.exception("could not account for %s %s", flow.request.method, st.endpoint)
        finally:
            self.release(st)

    def release(self, st: FlowState) -> None:
        if st.active:
            st.active = False
            self.metrics.active.labels(st.label).dec()
        if st.admitted:
            st.admitted = False
            self.admission.release()

    def build_record(
        self, flow: http.HTTPFlow, st: FlowState, error_type: str | None, now: float
    ) -> tuple[RequestRecord, float | None, bool]:
        tap = st.tap
        stats = tap.parser.finish(now) if tap is not None else StreamStats()
        if tap is not None:
            tap.flush_gaps()
        response = flow.response
        if response is not None:
            status = response.status_code
        elif error_type == "client_cancelled":
            status = 499  # the client closed the request before any answer: nginx's convention
        elif error_type == "unauthorized":
            status = 401
        else:
            status = 502
        error_type = error_type or st.error_type
        if error_type is None:
            if status >= 400:
                error_type = "upstream_status"
            elif stats.error is not None:
                error_type = "stream_error"
            elif stats.malformed:
                error_type = "malformed_response"

        usage = stats.usage
        reported = usage is not None and (
            usage.generated_tokens is not None or usage.prompt_tokens is not None
        )
        prompt_tokens = usage.prompt_tokens if usage is not None else None
        generated = usage.generated_tokens if usage is not None else None
        if not reported and tap is not None and tap.parser.estimates_tokens:
            generated = stats.content_chunks or None

        ttft = None
        if stats.first_token_at is not None and st.t_forwarded is not None:
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
            duration_s=now - st.t_arrival,
            queue_wait_s=st.queue_wait_s,
            tokens_per_second=rate,
            load_duration_s=load_s,
            prompt_eval_duration_s=usage.prompt_eval_duration_s if usage is not None else None,
            request_bytes=st.request_bytes,
            response_bytes=tap.sent if tap is not None else 0,
            prompt=st.prompt,
            response="".join(stats.text)[:MAX_STORED_TEXT] if stats.text is not None else None,
        )
        load_happened = load_s is not None and load_s >= self.load_threshold_s
        record.loaded_model = load_happened
        return record, tpot, load_happened


def content_length(headers: http.Headers) -> int | None:
    """The request's Content-Length as a number; None when absent or not a number."""
    value = headers.get("content-length", "").strip()
    return int(value) if value.isascii() and value.isdigit() else None
