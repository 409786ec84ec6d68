"""The tap addon in mitmproxy's test context: each flow counted once, exactly, whatever happens."""

from __future__ import annotations

import json
import random

import pytest
from mitmproxy import flow as mflow
from mitmproxy import http
from mitmproxy.test import taddons, tflow, tutils
from prometheus_client import CollectorRegistry

from addons.metrics import ProxyMetrics
from addons.routes import ModelLabels
from addons.stream_tap import StreamTap
from addons.streams import SseParser
from addons.tap import KEY, TrafficTap
from addons.usage import UsageEventFilter
from llama_core import catalogue
from llama_core.record import RequestRecord
from tests import fixtures
from tests.addons.test_streams import random_splits


@pytest.fixture
def tap(registry: CollectorRegistry, records: list[RequestRecord]) -> TrafficTap:
    return TrafficTap(ProxyMetrics(registry), ModelLabels(), on_record=records.append)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value; the ``client`` label, where the series has one, is "" unless given."""
    full = "ollama_proxy_" + name
    series = catalogue.BY_NAME.get(full)
    if series is not None and "client" in series.labels:
        labels = {"client": "", **labels}
    return registry.get_sample_value(full, labels) or 0.0


def make_flow(path: str, body: object, headers: dict[str, str] | None = None) -> http.HTTPFlow:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = tutils.treq(method=b"POST", path=path.encode(), content=content)
    for k, v in (headers or {}).items():
        req.headers[k] = v
    return tflow.tflow(req=req)


def respond(
    tap: TrafficTap, flow: http.HTTPFlow, status: int, content_type: str, pieces: list[bytes]
) -> bytes:
    """Run the response side of a flow the way mitmproxy's HTTP layer calls the addon."""
    flow.response = tutils.tresp(status_code=status, content=None)
    flow.response.headers["content-type"] = content_type
    tap.responseheaders(flow)
    stream = flow.response.stream
    assert callable(stream)
    out = []
    for piece in [*pieces, b""]:
        got = stream(piece)
        chunks = [got] if isinstance(got, bytes) else list(got)
        assert all(chunks), "an empty chunk would end the client's response early"
        out.extend(chunks)
    tap.response(flow)
    return b"".join(out)


def start(tap: TrafficTap, flow: http.HTTPFlow) -> None:
    tap.requestheaders(flow)
    tap.request(flow)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(
    "name",
    [
        "01-api-chat-stream.json",
        "03-api-chat-stream-toolcalls.json",
        "05-api-generate-stream.json",
        "06-api-generate-nostream.json",
        "07-api-embed-nostream.json",
        "09-v1-chat-completions-stream.json",
        "11-v1-chat-completions-nostream-toolcalls.json",
    ],
)
def test_recorded_flows_are_counted_exactly(
    tap: TrafficTap, registry: CollectorRegistry, records: list[RequestRecord], name: str,
    seed: int,
) -> None:
    rec = fixtures.load(name)
    expected = fixtures.EXPECTED[name]
    with taddons.context(tap):
        flow = make_flow(rec.path, rec.request_body)
        start(tap, flow)
        model = rec.request_body["model"]
        label = model if ":" in model else model + ":latest"
        assert value(registry, "active_requests", model=label) == 1
        pieces = random_splits(rec.body, random.Random(seed))
        out = respond(tap, flow, 200, rec.content_type, pieces)
    assert out == rec.body
    assert value(registry, "active_requests", model=label) == 0
    assert value(registry, "requests_total", endpoint=rec.path, model=label, status="200") == 1
    assert value(registry, "prompt_tokens_total", model=label) == (expected.prompt_tokens or 0)
    assert value(registry, "generated_tokens_total", model=label) == (
        expected.generated_tokens or 0
    )
    (record,) = records
    assert record.error_type is None
    assert record.usage_reported
    assert record.response_bytes == len(rec.body)
    assert record.request_bytes == len(json.dumps(rec.request_body))
    if expected.content_chunks:
        assert record.ttft_s is not None and record.ttft_s >= 0
        assert value(registry, "inter_token_latency_seconds_count", model=label) == (
            expected.content_chunks - 1
        )


def test_openai_stream_without_usage_gets_it_upstream_and_hides_it(
    tap: TrafficTap, registry: CollectorRegistry, records: list[RequestRecord]
) -> None:
    rec = fixtures.load("09-v1-chat-completions-stream.json")
    body = {k: v for k, v in rec.request_body.items() if k != "stream_options"}
    with taddons.context(tap):
        flow = make_flow("/v1/chat/completions", body, {"accept-encoding": "gzip"})
        start(tap, flow)
        sent = json.loads(flow.request.content or b"")
        assert sent["stream_options"] == {"include_usage": True}
        assert "accept-encoding" not in flow.request.headers
        pieces = random_splits(rec.body, random.Random(3))
        out = respond(tap, flow, 200, "text/event-stream", pieces)
    assert b'"usage"' not in out
    assert out.endswith(b"data: [DONE]\n\n")
    assert value(registry, "generated_tokens_total", model="qwen3:latest") == 289
    assert records[0].request_bytes == len(json.dumps(body))  # what the client sent


def test_stream_without_final_report_is_estimated_and_marked(
    tap: TrafficTap, registry: CollectorRegistry, records: list[RequestRecord]
) -> None:
    rec = fixtures.load("10-v1-chat-completions-stream-nousage.json")
    with taddons.context(tap):
        flow = make_flow(rec.path, rec.request_body)
        start(tap, flow)
        respond(tap, flow, 200, rec.content_type, [rec.body])
    assert value(registry, "generated_tokens_total", model="llama3.1:latest") == 22
    assert value(
        registry, "usage_estimated_total", endpoint=rec.path, model="llama3.1:latest"
    ) == 1
    assert not records[0].usage_reported


@pytest.mark.parametrize(
    ("name", "error_type"),
    [
        ("12-api-chat-nostream-error400.json", "upstream_status"),
        ("13-api-chat-stream-error400.json", "upstream_status"),
        ("14-v1-chat-nostream-error404.json", "upstream_status"),
    ],
)
def test_error_statuses_pass_through_and_count(
    tap: TrafficTap, registry: CollectorRegistry, name: str, error_type: str
) -> None:
    rec = fixtures.load(name)
    with taddons.context(tap):
        flow = make_flow(rec.path, rec.request_body)
        start(tap, flow)
        out = respond(tap, flow, rec.status, rec.content_type, [rec.body])
    assert out == rec.body
    endpoint = "other" if rec.path == "/v1/chat" else rec.path
    assert sum(
        value(registry, "errors_total", endpoint=endpoint, model=m, error_type=error_type)
        for m in ("gemma3:1b", "qwen3:latest", "none")
    ) == 1


def test_error_object_in_a_200_stream(tap: TrafficTap, registry: CollectorRegistry) -> None:
    with taddons.context(tap):
        flow = make_flow("/api/generate", {"model": "m", "prompt": "x"})
        start(tap, flow)
        respond(tap, flow, 200, "application/x-ndjson",
                [b'{"response":"a","done":false}\n', b'{"error":"out of memory"}\n'])
    assert value(registry, "errors_total", endpoint="/api/generate", model="m:latest",
                 error_type="stream_error") == 1


@pytest.mark.parametrize(
    ("message", "headers_seen", "connected", "error_type", "status"),
    [
        ("Client disconnected.", True, True, "client_cancelled", "200"),
        ("Client disconnected.", False, True, "client_cancelled", "499"),
        ("[Errno 111] Connect call failed", False, False, "upstream_unreachable", "502"),
        ("peer closed connection", True, True, "stream_aborted", "200"),
    ],
)
def test_errors_free_the_active_gauge_and_count_once(
    tap: TrafficTap, registry: CollectorRegistry, message: str, headers_seen: bool,
    connected: bool, error_type: str, status: str,
) -> None:
    with taddons.context(tap):
        flow = make_flow("/api/chat", {"model": "m", "messages": []})
        if not connected:
            flow.server_conn.timestamp_tcp_setup = None
        start(tap, flow)
        if headers_seen:
            flow.response = tutils.tresp(content=None)
            flow.response.headers["content-type"] = "application/x-ndjson"
            tap.responseheaders(flow)
            flow.response.stream(b'{"message":{"content":"hi"},"done":false}\n')  # type: ignore[operator]
        else:
            flow.response = None
        flow.error = mflow.Error(message)
        tap.error(flow)
        tap.error(flow)  # a second report of the same flow changes nothing
    assert value(registry, "active_requests", model="m:latest") == 0
    assert value(registry, "errors_total", endpoint="/api/chat", model="m:latest",
                 error_type=error_type) == 1
    assert value(registry, "requests_total", endpoint="/api/chat", model="m:latest",
                 status=status) == 1


def test_the_stream_tap_never_raises(tap: TrafficTap) -> None:
    with taddons.context(tap):
        flow = make_flow("/api/chat", {"model": "m"})
        start(tap, flow)
        flow.response = tutils.tresp(content=None)
        flow.response.headers["content-type"] = "application/x-ndjson"
        tap.responseheaders(flow)
        stream = flow.response.stream
        assert callable(stream)

        def explode(data: bytes, now: float) -> None:
            raise RuntimeError("parser bug")

        flow.metadata[KEY].tap.parser.feed = explode
        assert stream(b"abc") == [b"abc"]
        assert stream(b"def") == [b"def"]
        assert stream(b"") == []


def test_metadata_endpoints_are_counted_but_not_parsed(
    tap: TrafficTap, registry: CollectorRegistry
) -> None:
    rec = fixtures.load("15-api-tags-nostream.json")
    with taddons.context(tap):
        flow = tflow.tflow(req=tutils.treq(method=b"GET", path=b"/api/tags", content=b""))
        start(tap, flow)
        out = respond(tap, flow, 200, rec.content_type, [rec.body])
    assert out == rec.body
    assert value(registry, "requests_total", endpoint="/api/tags", model="none", status="200") == 1


def test_non_json_request_body_is_passed_and_counted(
    tap: TrafficTap, registry: CollectorRegistry
) -> None:
    with taddons.context(tap):
        flow = make_flow("/api/chat", b"\xff\xfe not json")
        start(tap, flow)
        assert flow.request.content == b"\xff\xfe not json"
        respond(tap, flow, 400, "application/json", [b'{"error":"invalid character"}'])
    assert value(registry, "requests_total", endpoint="/api/chat", model="none", status="400") == 1


def test_inter_token_gaps_reach_the_histogram_in_batches(
    tap: TrafficTap, registry: CollectorRegistry
) -> None:
    line = b'{"model":"m","message":{"role":"assistant","content":"x"},"done":false}\n'
    with taddons.context(tap):
        flow = make_flow("/api/chat", {"model": "m"})
        start(tap, flow)
        flow.response = tutils.tresp(content=None)
        flow.response.headers["content-type"] = "application/x-ndjson"
        tap.responseheaders(flow)
        stream = flow.response.stream
        assert callable(stream)
        for _ in range(200):
            stream(line)
        # Before the stream ends, the full batches are already visible.
        seen = value(registry, "inter_token_latency_seconds_count", model="m:latest")
        assert seen == 192
        stream(b'{"done":true,"eval_count":200}\n')
        tap.response(flow)
    assert value(registry, "inter_token_latency_seconds_count", model="m:latest") == 199
    assert value(registry, "inter_token_latency_seconds_bucket", model="m:latest",
                 le="+Inf") == 199
    assert value(registry, "inter_token_latency_seconds_bucket", model="m:latest",
                 le="0.01") == 199  # fed in one go: every gap is tiny


def test_a_failing_usage_filter_still_delivers_every_byte() -> None:
    class FailsSecondTime(UsageEventFilter):
        calls = 0

        def feed(self, data: bytes) -> bytes:
            FailsSecondTime.calls += 1
            if FailsSecondTime.calls == 2:
                raise RuntimeError("filter bug")
            return super().feed(data)

    stream = StreamTap(SseParser(), FailsSecondTime())
    first = stream(b'data: {"choices":[{"delta":{"content":"a"}}]}\n\ndata: {"cho')
    assert first == b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n'
    assert stream(b'ices":[]}\n\n') == [b'data: {"choices":[]}\n\n']  # held part included
    assert stream(b"data: [DONE]\n\n") == [b"data: [DONE]\n\n"]
