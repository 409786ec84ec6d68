"""The addon that measures every flow: classifies it, taps its response stream, counts it once.

Hooks only: the stream tap is ``stream_tap``, the queue's client watcher ``client_watcher``,
and what a finished flow amounts to is ``accounting.account``. Owns the options of what it
measures: ``max_model_labels``, ``load_threshold_seconds`` and ``store_prompts``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from mitmproxy import http
from mitmproxy.addonmanager import Loader

from llama_core import traffic
from llama_core.endpoints import INFERENCE_ENDPOINTS, endpoint_template
from llama_core.energy_ledger import EnergyLedger
from llama_core.record import RequestRecord

from . import options
from .accounting import MAX_STORED_TEXT, FlowState, account, lifecycle_of
from .admission import Admission, QueueFull, parse_priority
from .client_watcher import CLIENT_CHECK_S, ClientWatcher
from .codings import CodingError, decode_all
from .headers import header
from .lifecycle import expected_action
from .metrics import ProxyMetrics
from .progress import PROGRESS_ENDPOINTS, progress_parser_for
from .request_body import go_view
from .routes import ModelLabels
from .stream_tap import StreamTap
from .streams import Parser, PassthroughParser, StreamStats, parser_for
from .usage import USAGE_ENDPOINTS, UsageEventFilter, injected_body, wants_injected_usage

logger = logging.getLogger(__name__)

OPTIONS = frozenset({"max_model_labels", "load_threshold_seconds", "store_prompts"})
KEY = "llama_metrics"
# Streaming endpoints that stream when the request does not say: Ollama's default.
NATIVE_STREAM_DEFAULT = frozenset({"/api/generate", "/api/chat"})
JSON_TYPE = "application/json; charset=utf-8"
SOURCE_HEADER = traffic.HEADER.lower().encode()
CONTENT_ENCODING = b"content-encoding"
# A request body to an endpoint that is not inference (``ollama create`` uploads model blobs of
# gigabytes to /api/blobs) streams through when it is larger than this or of unknown length,
# instead of being held whole in the proxy's memory; smaller ones are read as usual.
STREAM_REQUEST_BODY_OVER = 1024 * 1024


# Methods other than POST named in the count of requests to an inference endpoint that are
# not inference (anything else a client sends is "other": the label stays bounded).
NON_POST_METHODS = frozenset({"OPTIONS", "HEAD", "GET", "PUT", "PATCH", "DELETE"})


def plain_body(request: http.Request) -> bytes | None:
    """The request's body without its content coding (Ollama decodes zstd on /v1 from
    0.18.0); None when the coding cannot be undone."""
    encoding = header(request.headers, CONTENT_ENCODING) or ""
    try:
        return decode_all(request.raw_content or b"", encoding)
    except CodingError:
        return None


def request_json(request: http.Request) -> dict[str, Any] | None:
    """The request's body as Ollama's decoder reads it (``request_body.go_view``), or None."""
    if not request.raw_content:
        return None
    return go_view(plain_body(request))


def unread_reason(request: http.Request) -> str | None:
    """Why an inference request's body cannot be read as Ollama reads it; None if it can."""
    if not request.raw_content:
        return None  # nothing to read: Ollama answers "missing request body" itself
    plain = plain_body(request)
    if plain is None:
        return "encoded"
    return None if go_view(plain) is not None else "not_json"


def prompt_text(body: dict) -> str | None:
    for key in ("messages", "prompt", "input"):
        if key in body:
            value = body[key]
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            return text[:MAX_STORED_TEXT]
    return None


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
        energy: EnergyLedger | None = None,
        on_complete: Callable[[RequestRecord], object] | None = None,
    ) -> None:
        self.metrics = metrics
        self.labels = labels
        self.admission = admission or Admission()
        self.load_threshold_s = load_threshold_s
        self.store_prompts = store_prompts
        self.on_record = on_record  # every record, as soon as its flow ends
        # Every record once its energy_j is known: at once without a metered GPU, else after
        # the next resource poll shares out the interval it ended in (llama_core.energy_ledger).
        self.on_complete = on_complete
        self.energy = energy
        self.keep_chunks = False  # the cassette recorder wants each chunk the client got
        self.queued_clients = ClientWatcher(CLIENT_CHECK_S)
        self.started = False

    # -- options -----------------------------------------------------------------------

    def load(self, loader: Loader) -> None:
        options.declare(loader, "max_model_labels",
                        "Model names unknown to the upstream that get their own label.")
        options.declare(loader, "load_threshold_seconds",
                        "A reported load_duration above this (seconds) counts as a model load.")
        options.declare(loader, "store_prompts",
                        "Store prompts and responses in the history.")

    def configure(self, updated: set[str]) -> None:
        if not updated & OPTIONS:
            return
        with options.refusing(starting=not self.started):
            max_labels = options.read("max_model_labels")
            threshold = options.read("load_threshold_seconds")
            store_prompts = options.read("store_prompts")
        self.labels.max_others = max_labels
        self.load_threshold_s = threshold
        self.store_prompts = store_prompts

    def running(self) -> None:
        self.started = True

    # -- hooks -------------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        st = flow.metadata[KEY] = FlowState()
        request = flow.request
        st.endpoint = endpoint_template(request.path)  # a flow cut off now is counted by it
        # Our own processes mark their requests; the mark never reaches the upstream, and an
        # unknown value is client traffic.
        if header(request.headers, SOURCE_HEADER) is not None:
            st.internal = traffic.source_of(request.headers.pop(traffic.HEADER, None))
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
            if st.internal is None:
                self.metrics.children.queue_wait(st.priority).observe(0.0)
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
        if st.internal is None:
            self.metrics.children.queue_wait(st.priority).observe(st.queue_wait_s)
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
        if request.method != "POST":  # Ollama routes only POST here; gin answers the rest
            st.method = request.method if request.method in NON_POST_METHODS else "other"
            return
        st.inference = True
        st.priority = parse_priority(header(request.headers, b"x-priority"))
        body = request_json(request)
        if body is None and (reason := unread_reason(request)) is not None:
            self.body_unread(st, reason)
        if isinstance(body, dict):
            model = body.get("model")
            st.model = self.labels.canonical(model)[:200] if isinstance(model, str) else ""
            stream = body.get("stream")
            st.stream = stream is True or (stream is None and st.endpoint in NATIVE_STREAM_DEFAULT)
            st.expected_action = expected_action(st.endpoint, body)
            if st.endpoint in USAGE_ENDPOINTS and wants_injected_usage(body):
                self.inject_usage(request, st)
            if self.store_prompts:
                st.prompt = prompt_text(body)
        st.label = self.labels.label(st.model)

    def inject_usage(self, request: http.Request, st: FlowState) -> None:
        """Ask upstream for the usage a streaming client did not ask for (addons/usage.py).

        Only bytes are inserted into what the client wrote (through its content coding);
        a body that cannot be changed so goes unchanged, and is counted as not rewritten.
        """
        raw = injected_body(request.raw_content or b"", request.headers.get("content-encoding", ""))
        if raw is None:
            self.body_unread(st, "not_rewritten")
            return
        request.raw_content = raw
        if "transfer-encoding" not in request.headers:
            request.headers["content-length"] = str(len(raw))
        request.headers.pop("accept-encoding", None)  # the filter reads plain bytes
        st.strip_usage = True

    def body_unread(self, st: FlowState, reason: str) -> None:
        if st.internal is None:
            self.metrics.children.body_unread(st.endpoint, reason).inc()

    def forwarded(self, st: FlowState) -> None:
        """The request leaves for the upstream now: the clock for time to first token starts."""
        st.t_forwarded = time.perf_counter()
        if st.internal is None:  # our own requests are never in the client series
            self.metrics.children.active(st.label).inc()
            st.active = True
            if self.energy is not None:
                # Labelled as generated_tokens_total is (addons/metrics.py), so that joules
                # per token divides like by like; the client was named in requestheaders.
                st.energy = self.energy.start((st.label, st.client or ""),
                                              lambda: tokens_so_far(st), st.t_forwarded)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        st = flow.metadata.get(KEY)
        if st is None or flow.response is None:
            return
        st.t_headers = time.perf_counter()
        response = flow.response
        parser: Parser
        usage_filter = None
        if st.inference and 200 <= response.status_code < 300:
            content_type = header(response.headers, b"content-type") or ""
            parser = parser_for(
                content_type,
                content_encoding=header(response.headers, CONTENT_ENCODING) or "",
                capture_text=self.store_prompts,
            )
            if st.strip_usage and content_type.startswith("text/event-stream"):
                usage_filter = self.usage_filter(flow)
        elif st.endpoint in PROGRESS_ENDPOINTS and 200 <= response.status_code < 300:
            parser = progress_parser_for(
                header(response.headers, b"content-type") or "",
                content_encoding=header(response.headers, CONTENT_ENCODING) or "",
            )
        else:
            parser = PassthroughParser()
        label = st.label
        itl = self.metrics.itl
        st.tap = StreamTap(
            parser, usage_filter,
            None if st.internal is not None else lambda gaps: itl.observe_many(label, gaps),
            keep_chunks=self.keep_chunks,
        )
        response.stream = st.tap.stream()

    @staticmethod
    def usage_filter(flow: http.HTTPFlow) -> UsageEventFilter | None:
        """The filter that hides injected usage; it changes the length, and it sends an
        encoded stream (from something between us and Ollama) decoded."""
        response = flow.response
        assert response is not None
        encoding = response.headers.get("content-encoding", "")
        try:
            usage_filter = UsageEventFilter(encoding)
        except CodingError:
            logger.warning("cannot hide injected usage in a %r-encoded stream", encoding)
            return None
        if usage_filter.decodes:
            response.headers.pop("content-encoding", None)
        if "content-length" in response.headers:
            del response.headers["content-length"]
            if response.http_version == "HTTP/1.1":
                response.headers["transfer-encoding"] = "chunked"
        return usage_filter

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
            record = self.account(flow, st, error_type, now)
            if st.internal is not None:  # counted apart, never a client request nor a row
                self.metrics.children.internal_requests(
                    st.internal, record.endpoint, record.status
                ).inc()
                return
            if st.method is not None:  # a preflight or HEAD: not a request of the endpoint
                self.metrics.children.non_post(st.endpoint, st.method, record.status).inc()
                return
            stats = st.tap.parser.stats if st.tap is not None else StreamStats()
            action = lifecycle_of(st, stats, record.status, record.error_type)
            if action is not None:
                self.metrics.observe_lifecycle(record, st.label, action)
            else:
                self.metrics.observe(record, st.label)
            uncounted = st.tap.parser.stats.uncounted if st.tap is not None else None
            if uncounted is not None:
                self.metrics.children.uncounted(record.endpoint, st.label, uncounted).inc()
            if self.on_record is not None:
                self.on_record(record)
            self.complete_energy(st, record, now)
        except Exception:
            logger.exception("could not account for %s %s", flow.request.method, st.endpoint)
        finally:
            self.release(st)

    def account(
        self, flow: http.HTTPFlow, st: FlowState, ended_by: str | None, now: float
    ) -> RequestRecord:
        """The flow's record (``accounting.account``), from what its hooks and tap saw."""
        tap = st.tap
        stats = tap.parser.finish(now) if tap is not None else StreamStats()
        if tap is not None:
            tap.flush_gaps()
        return account(
            st, stats,
            response_status=flow.response.status_code if flow.response is not None else None,
            ended_by=ended_by,
            response_bytes=tap.sent if tap is not None else 0,
            estimates_tokens=tap is not None and tap.parser.estimates_tokens,
            now=now,
            load_threshold_s=self.load_threshold_s,
            ended_early=ended_by is None and tap is not None and tap.parser.ended_early,
        )

    def complete_energy(self, st: FlowState, record: RequestRecord, now: float) -> None:
        """Hand the record on once its energy is known (at once when there is no ledger)."""
        handle, st.energy = st.energy, None
        if handle is None or self.energy is None:
            self.completed(record, None)
            return
        self.energy.finish(handle, now, lambda joules: self.completed(record, joules))

    def completed(self, record: RequestRecord, joules: float | None) -> None:
        """Called on the event loop, or on the resource poller's thread after a poll."""
        record.energy_j = joules
        if self.on_complete is not None:
            try:
                self.on_complete(record)
            except Exception:
                logger.exception("could not hand on the record of %s", record.endpoint)

    def release(self, st: FlowState) -> None:
        if st.energy is not None and self.energy is not None:  # accounting failed midway
            handle, st.energy = st.energy, None
            self.energy.finish(handle, time.perf_counter(), lambda joules: None)
        if st.active:
            st.active = False
            self.metrics.children.active(st.label).dec()
        if st.admitted:
            st.admitted = False
            self.admission.release()


def tokens_so_far(st: FlowState) -> int:
    """The content chunks the flow's parser has counted: read at each poll, never per chunk."""
    tap = st.tap
    return tap.parser.stats.content_chunks if tap is not None else 0


def content_length(headers: http.Headers) -> int | None:
    """The request's Content-Length as a number; None when absent or not a number."""
    value = headers.get("content-length", "").strip()
    return int(value) if value.isascii() and value.isdigit() else None
