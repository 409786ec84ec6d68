"""The tap's request side (issue 15): loads and unloads, non-POST requests, one label per
model, bodies Go reads, and hooks that never raise whatever they are fed."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mitmproxy import flow as mflow
from mitmproxy.test import taddons, tflow, tutils
from prometheus_client import CollectorRegistry

from addons.metrics import ProxyMetrics
from addons.routes import ModelLabels
from addons.tap import TrafficTap
from addons.upstream import UpstreamGuard
from llama_core.record import RequestRecord
from tests.addons.test_tap import make_flow, respond, start, value

LISTED = {"llama3.2:latest"}
LOAD = b'{"model":"Llama3.2","created_at":"2026-01-01T00:00:00Z","response":"","done":true,"done_reason":"load"}'  # noqa: E501


def listed(name: str) -> str | None:
    from addons.inventory import normalize_model
    return next((m for m in LISTED if normalize_model(m) == normalize_model(name)), None)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def records() -> list[RequestRecord]:
    return []


@pytest.fixture
def tap(registry: CollectorRegistry, records: list[RequestRecord]) -> TrafficTap:
    labels = ModelLabels(is_known=lambda m: listed(m) is not None, listed_name=listed)
    return TrafficTap(ProxyMetrics(registry), labels, on_record=records.append)


def test_a_load_is_no_generation(tap: TrafficTap, registry: CollectorRegistry,
                                 records: list[RequestRecord]) -> None:
    flow = make_flow("/api/generate", {"model": "Llama3.2", "stream": True})
    start(tap, flow)
    respond(tap, flow, 200, "application/json; charset=utf-8", [LOAD])
    [record] = records
    assert (record.model, record.stream, record.ttft_s, record.generated_tokens) == (
        "llama3.2:latest", False, None, None)
    labels = {"model": "llama3.2:latest", "action": "load"}
    assert value(registry, "model_lifecycle_requests_total", **labels) == 1
    assert value(registry, "model_lifecycle_duration_seconds_count", **labels) == 1
    assert value(registry, "requests_total", endpoint="/api/generate",
                 model="llama3.2:latest", status="200") == 1
    assert value(registry, "time_to_first_token_seconds_count", endpoint="/api/generate",
                 model="llama3.2:latest") == 0
    assert value(registry, "request_duration_seconds_count", endpoint="/api/generate",
                 model="llama3.2:latest") == 0


def test_an_unload_through_the_answer(tap: TrafficTap, registry: CollectorRegistry) -> None:
    flow = make_flow("/api/chat", {"model": "llama3.2", "keep_alive": 0})
    start(tap, flow)
    body = LOAD.replace(b'"response":""', b'"message":{"role":"assistant","content":""}')
    respond(tap, flow, 200, "application/json; charset=utf-8",
            [body.replace(b'"load"', b'"unload"')])
    assert value(registry, "model_lifecycle_requests_total", model="llama3.2:latest",
                 action="unload") == 1


@pytest.mark.parametrize("method", ["OPTIONS", "HEAD", "GET", "BREW"])
def test_non_post_on_an_inference_path_is_counted_apart(
    tap: TrafficTap, registry: CollectorRegistry, records: list[RequestRecord], method: str
) -> None:
    tap.admission.configure(1, 10)
    assert tap.admission.try_acquire()  # the only slot is taken: a POST would wait
    flow = tflow.tflow(req=tutils.treq(method=method.encode(), path=b"/api/chat", content=b""))
    tap.requestheaders(flow)
    assert tap.request(flow) is None  # nothing to await: never queued
    respond(tap, flow, 405, "text/plain", [b"405 method not allowed"])
    assert records == []
    shown = method if method != "BREW" else "other"
    assert value(registry, "non_post_requests_total", endpoint="/api/chat", method=shown,
                 status="405") == 1
    assert value(registry, "requests_total", endpoint="/api/chat", model="none",
                 status="405") == 0


@pytest.mark.parametrize("name", ["Llama3.2", "llama3.2", "llama3.2:latest", " LLAMA3.2:Latest",
                                  "library/llama3.2", "registry.ollama.ai/library/llama3.2"])
def test_one_model_one_label(tap: TrafficTap, records: list[RequestRecord], name: str) -> None:
    flow = make_flow("/api/chat", {"model": name, "messages": [], "stream": False})
    start(tap, flow)
    assert flow.metadata["llama_metrics"].label == "llama3.2:latest"


def test_an_unknown_model_is_one_label_too(tap: TrafficTap) -> None:
    labels = {tap.labels.label(n) for n in ("Mistral", "mistral:latest", "MISTRAL")}
    assert labels == {"mistral:latest"}


def test_usage_is_spliced_onto_the_clients_bytes(tap: TrafficTap) -> None:
    raw = b'{"model":"llama3.2","Stream":true,"messages":[{"role":"user","content":"\\ud83d"}]} x'
    flow = make_flow("/v1/chat/completions", raw)
    start(tap, flow)
    assert flow.request.content == raw.replace(
        b"]}", b'],"stream_options":{"include_usage":true}}')
    assert flow.metadata["llama_metrics"].strip_usage


def test_an_encoded_body_goes_unchanged_and_is_marked(
    tap: TrafficTap, registry: CollectorRegistry
) -> None:
    flow = make_flow("/v1/chat/completions", b"\x28\xb5\x2f\xfd...",
                     {"content-encoding": "zstd"})
    start(tap, flow)
    assert flow.request.raw_content == b"\x28\xb5\x2f\xfd..."
    assert value(registry, "request_body_unread_total", endpoint="/v1/chat/completions",
                 reason="encoded") == 1


# -- every hook, fed hostile bodies and headers -----------------------------------------------

header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
bodies = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([b'{"model":"\\ud83d","stream":true}', b'{"Model":1e400}',
                     b'{"model":"a","model":{"x":[]}}', b'{"model":"m"}garbage',
                     b'{"stream":"yes","keep_alive":{"a":1},"messages":"x"}',
                     b'{"model":"' + b"\xff" * 50 + b'"}', b"[" * 5000, b'{"prompt":' * 3000]),
)
paths = st.sampled_from(["/api/generate", "/api/chat", "/api/embed", "/api/embeddings",
                         "/v1/chat/completions", "/v1/completions", "/api/tags", "/x"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=paths, method=st.sampled_from(["POST", "OPTIONS", "HEAD", "GET"]), body=bodies,
       headers=st.dictionaries(st.sampled_from(["content-encoding", "x-priority", "origin",
                                                "content-length", "transfer-encoding",
                                                "x-llama-metrics-source", "content-type"]),
                               header_text, max_size=4),
       status=st.sampled_from([200, 204, 400, 405, 500]), response=st.binary(max_size=200),
       content_type=st.sampled_from(["application/json", "application/x-ndjson",
                                     "text/event-stream", "text/plain", "", "\xff"]))
def test_no_hook_raises_whatever_it_is_fed(path: str, method: str, body: bytes,
                                           headers: dict[str, str], status: int,
                                           response: bytes, content_type: str) -> None:
    registry = CollectorRegistry()
    tap = TrafficTap(ProxyMetrics(registry), ModelLabels(listed_name=listed))
    with taddons.context() as tctx:
        guard = UpstreamGuard(registry)
        tctx.master.addons.add(guard)
        for ended in ("response", "error"):
            flow = tflow.tflow(req=tutils.treq(method=method.encode(), path=path.encode(),
                                               content=body))
            for k, v in headers.items():
                flow.request.headers[k] = v
            tap.requestheaders(flow)
            assert tap.request(flow) is None  # unlimited admission: nothing to await
            guard.request(flow)
            flow.response = tutils.tresp(status_code=status, content=None)
            flow.response.headers["content-type"] = content_type
            tap.responseheaders(flow)
            guard.responseheaders(flow)
            stream = flow.response.stream
            assert callable(stream)
            for piece in (response[:7], response[7:], b""):
                stream(piece)
            if ended == "response":
                tap.response(flow)
                guard.response(flow)
            else:
                flow.error = mflow.Error("Client disconnected.")
                tap.error(flow)
                guard.error(flow)
