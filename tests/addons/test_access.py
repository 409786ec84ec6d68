"""The access addon beside the tap: a refused request is answered on its headers, never sent on."""

from __future__ import annotations

import pytest
from mitmproxy import http
from prometheus_client import CollectorRegistry

from addons.access import AccessControl
from addons.context import ProxyContext
from addons.metrics import ProxyMetrics
from addons.routes import ModelLabels
from addons.tap import STREAM_REQUEST_BODY_OVER, TrafficTap
from llama_core.record import RequestRecord
from llama_core.security import Security
from tests.addons.test_tap import make_flow, value

TOKEN = "t" * 32


def blob_flow(headers: dict[str, str]) -> http.HTTPFlow:
    """An upload as ``ollama create`` sends it, with only the length headers given."""
    flow = make_flow("/api/blobs/sha256:" + "0" * 64, b"blob", headers)
    if "Content-Length" not in headers:
        flow.request.headers.pop("content-length", None)
    return flow


def run_request_side(flow: http.HTTPFlow) -> tuple[TrafficTap, CollectorRegistry]:
    """The hooks in the order addons/llama_metrics.py composes them: tap, then access."""
    registry = CollectorRegistry()
    records: list[RequestRecord] = []
    tap = TrafficTap(ProxyMetrics(registry), ModelLabels(), on_record=records.append)
    access = AccessControl(ProxyContext(security=Security(TOKEN)))
    for addon in (tap, access):
        addon.requestheaders(flow)
    # mitmproxy sends a streamed request's headers upstream right after requestheaders
    assert not flow.request.stream or flow.response is None
    if flow.error is not None:  # killed: mitmproxy closes the connection, then the error hook
        tap.error(flow)
        return tap, registry
    assert tap.request(flow) is None
    tap.response(flow)
    return tap, registry


@pytest.mark.parametrize("headers, read", [
    ({"Transfer-Encoding": "chunked"}, False),  # unknown length: could be gigabytes
    ({"Content-Length": str(STREAM_REQUEST_BODY_OVER + 1)}, False),
    ({"Content-Length": "4"}, True),
    ({}, True),
])
@pytest.mark.parametrize("authorization", [
    None, b"Bearer wrong-token-wrong-token",
    b"Bearer \xff\xfe" + TOKEN.encode(),  # not UTF-8: mitmproxy's str holds surrogates
])
def test_refused_on_its_headers(
    headers: dict[str, str], read: bool, authorization: bytes | None
) -> None:
    """A small body is read and answered 401; a large one (or of unknown length) is not read
    at all: the connection is closed. Either way nothing goes upstream and it is counted."""
    flow = blob_flow(headers)
    if authorization is not None:
        flow.request.headers.fields += ((b"authorization", authorization),)
    _, registry = run_request_side(flow)
    if read:
        assert flow.response is not None and flow.response.status_code == 401
    else:
        assert flow.response is None and flow.error is not None and not flow.live
    assert not flow.request.stream
    assert "authorization" not in flow.request.headers
    assert value(registry, "errors_total", endpoint="/api/blobs/:digest", model="none",
                 error_type="unauthorized") == 1
    assert value(registry, "requests_total", endpoint="/api/blobs/:digest", model="none",
                 status="401") == 1


def test_accepted_loses_the_header_and_may_stream() -> None:
    flow = blob_flow({"Transfer-Encoding": "chunked", "Authorization": f"Bearer {TOKEN}"})
    registry = CollectorRegistry()
    tap = TrafficTap(ProxyMetrics(registry), ModelLabels())
    for addon in (tap, AccessControl(ProxyContext(security=Security(TOKEN)))):
        addon.requestheaders(flow)
    assert flow.response is None and flow.request.stream
    assert "authorization" not in flow.request.headers


def test_a_new_configuration_brings_its_token() -> None:
    """The token is the context's (LlamaConfig resolves it); a new llama_config, a new token."""
    context = ProxyContext()
    access = AccessControl(context)
    assert not access.security.access_token
    context.security = Security(TOKEN)
    access.configure({"max_queue"})
    assert not access.security.access_token  # only a new configuration changes it
    access.configure({"llama_config"})
    assert access.security.access_token == TOKEN
