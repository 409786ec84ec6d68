"""Every recording replayed through a real mitmdump: the client gets the recorded bytes unchanged
and the counters say what the recording's server reported."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest

from llama_core.endpoints import INFERENCE_ENDPOINTS, endpoint_template
from tests import fixtures
from tests.e2e.replay_upstream import ReplayUpstream
from tests.reliability.wire import samples_delta
from tests.support.processes import Proxy, run_proxy

pytestmark = pytest.mark.e2e
SEEDS = range(6)


@pytest.fixture(scope="module")
def upstream() -> Iterator[ReplayUpstream]:
    server = ReplayUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(upstream: ReplayUpstream) -> Iterator[Proxy]:
    with run_proxy(upstream.url) as p:
        yield p


def label(model: str | None) -> str:
    if not model:
        return "none"
    return model if ":" in model else model + ":latest"


def send(proxy: Proxy, rec: fixtures.Recording, seed: int) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
    body = None if rec.request_body is None else json.dumps(rec.request_body).encode()
    headers = {**rec.request_headers, "X-Replay": rec.name, "X-Replay-Seed": str(seed)}
    conn.request(rec.method, rec.path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", fixtures.ALL)
def test_recording_through_the_proxy(proxy: Proxy, name: str, seed: int) -> None:
    rec = fixtures.load(name)
    expected = fixtures.EXPECTED[name]
    model = label(rec.request_body.get("model") if isinstance(rec.request_body, dict) else None)
    if endpoint_template(rec.path) not in INFERENCE_ENDPOINTS:
        model = "none"
    before = proxy.scrape()

    status, data = send(proxy, rec, seed)

    assert status == rec.status
    assert data == rec.body
    counted = sum(v for (n, _), v in before.items() if n == "ollama_proxy_requests_total")
    after = proxy.wait_counted(counted + 1)

    def delta(name: str, **labels: str) -> float:
        return samples_delta(before, after, name, **labels)  # client "" where it has one

    endpoint = "other" if rec.path == "/v1/chat" else rec.path
    assert delta("requests_total", endpoint=endpoint, model=model, status=str(rec.status)) == 1
    assert delta("prompt_tokens_total", model=model) == (expected.prompt_tokens or 0)
    assert delta("generated_tokens_total", model=model) == (expected.generated_tokens or 0)
    assert delta("active_requests", model=model) == 0
    error_type = "upstream_status" if rec.status >= 400 else None
    errors = sum(v - before.get(k, 0.0) for k, v in after.items()
                 if k[0] == "ollama_proxy_errors_total")
    assert errors == (1 if error_type else 0)
    if expected.content_chunks:
        assert delta("time_to_first_token_seconds_count", endpoint=endpoint, model=model) == 1
        assert delta("inter_token_latency_seconds_count", model=model) == (
            expected.content_chunks - 1
        )


def test_nothing_went_wrong_inside_the_proxy(proxy: Proxy) -> None:
    assert "Traceback" not in proxy.log
