"""Bad requests and huge bodies through a real mitmdump: answered as the upstream answers them.

Also: 100,000 distinct model names keep the ``model`` label bounded. Over sockets that many
would take minutes on a small machine, so the 100,000 go through the addon's real hooks
in-process (one mitmproxy flow object, reset between requests) and 2,000 go through mitmdump.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import aiohttp
import ollama
import pytest
from mitmproxy import http
from mitmproxy.test import tflow
from prometheus_client import CollectorRegistry

from addons.metrics import ProxyMetrics
from addons.routes import ModelLabels
from addons.tap import TrafficTap
from tests.reliability.wire import (
    Answer,
    exchange,
    family_delta,
    normalize,
    peak_rss_bytes,
    requests_total,
    samples_delta,
)
from tests.support.processes import Proxy, run_proxy

pytestmark = pytest.mark.e2e
MIB = 1 << 20
MAX_MODEL_LABELS = 20  # the shipped default of proxy.max_model_labels

BAD = [  # name, method, path, body
    ("not-json", "POST", "/api/chat", b"this is not json"),
    ("empty-body", "POST", "/api/generate", b""),
    ("json-array", "POST", "/api/chat", b"[1, 2, 3]"),
    ("truncated-json", "POST", "/v1/chat/completions", b'{"model": "llama3.2", "messa'),
    # (Bytes that are not UTF-8 inside a string are U+FFFD to Go: Ollama answers those.)
    ("utf8-bom", "POST", "/api/generate", b'\xef\xbb\xbf{"model": "llama3.2", "prompt": "x"}'),
    ("model-is-a-number", "POST", "/api/generate", b'{"model": 123, "prompt": "x"}'),
    ("model-missing", "POST", "/api/chat", b'{"messages": []}'),
    ("messages-not-a-list", "POST", "/api/chat", b'{"model": "llama3.2", "messages": "hi"}'),
    ("num-predict-a-string", "POST", "/api/generate",
     b'{"model": "llama3.2", "prompt": "x", "options": {"num_predict": "many"}}'),
    ("keep-alive-nonsense", "POST", "/api/generate",
     b'{"model": "llama3.2", "prompt": "x", "keep_alive": "forever"}'),
    ("unknown-endpoint", "POST", "/api/nonexistent", b"{}"),
    ("unknown-version", "GET", "/v2/models", None),
    ("wrong-method", "GET", "/api/tags/x", None),  # GET /api/chat: non_post_requests_total
    ("embed-wrong-input", "POST", "/api/embed", b'{"model": "nomic-embed-text", "input": 5}'),
]


@pytest.mark.parametrize(("name", "method", "path", "body"), BAD, ids=[b[0] for b in BAD])
def test_bad_request_gets_the_upstream_answer_and_is_counted(
    proxy: Proxy, sim: Any, name: str, method: str, path: str, body: bytes | None
) -> None:
    direct = exchange(sim.port, path, body, method=method)
    before = proxy.scrape()
    through = exchange(proxy.port, path, body, method=method)
    after = proxy.wait_counted(requests_total(before) + 1)
    assert direct.status >= 400 and direct.complete
    assert (through.status, through.content_type, through.body) == (
        direct.status, direct.content_type, direct.body)
    assert family_delta(before, after, "requests_total", status=str(direct.status)) == 1
    assert family_delta(before, after, "errors_total", error_type="upstream_status") == 1
    if path.startswith(("/api/nonexistent", "/v2/")):
        assert family_delta(before, after, "requests_total", endpoint="other") == 1
    assert "Traceback" not in proxy.log


def test_100_mib_responses_stream_through_without_being_held(proxy: Proxy, sim: Any) -> None:
    """Streamed and not: the same bytes as directly, and the proxy's memory barely moves."""
    pid = proxy.process.pid
    base = peak_rss_bytes(pid)
    for stream in (True, False):
        payload = {"model": "llama3.2", "prompt": "a lot", "stream": stream}
        headers = {"X-Sim-Fault": "big_body:100"}
        direct = exchange(sim.port, "/api/generate", payload, headers)
        before = proxy.scrape()
        through = exchange(proxy.port, "/api/generate", payload, headers)
        after = proxy.wait_counted(requests_total(before) + 1)
        assert through.status == 200 and through.complete and len(through.body) > 100 * MIB
        assert digest(through) == digest(direct)
        label = {"model": "llama3.2:latest"}
        # Streamed: 1,600 chunks of 64 KiB, each counted as it passed. Not streamed: too big
        # to parse (32 MiB limit), passed on, and counted from its tail (addons/tail_counts.py).
        assert samples_delta(before, after, "generated_tokens_total", **label) == 1600
        assert family_delta(before, after, "errors_total") == 0
        grown = peak_rss_bytes(pid) - base
        print(f"peak RSS of mitmdump after a 100 MiB {'streamed' if stream else 'plain'} "
              f"response: +{grown / MIB:.0f} MiB (from {base / MIB:.0f} MiB)")
        assert grown < 64 * MIB  # nowhere near the 100 MiB that went through


def test_huge_request_body_is_answered_as_the_upstream_answers_it(proxy: Proxy, sim: Any) -> None:
    prompt = "word " * (64 * MIB // 5)
    payload = json.dumps({"model": "llama3.2", "prompt": prompt, "stream": False}).encode()
    del prompt
    direct = exchange(sim.port, "/api/generate", payload)
    base = peak_rss_bytes(proxy.process.pid)
    before = proxy.scrape()
    through = exchange(proxy.port, "/api/generate", payload)
    after = proxy.wait_counted(requests_total(before) + 1)
    grown = peak_rss_bytes(proxy.process.pid) - base
    print(f"peak RSS of mitmdump after a 64 MiB request body: +{grown / MIB:.0f} MiB")
    assert (through.status, through.body) == (direct.status, direct.body)
    assert family_delta(before, after, "requests_total", status=str(direct.status)) == 1
    assert exchange(proxy.port, "/api/version", None, method="GET").status == 200
    assert proxy.process.poll() is None


def digest(answer: Answer) -> str:
    return hashlib.sha256(normalize(answer.body)).hexdigest()


def test_2000_model_names_through_mitmdump_keep_labels_bounded(proxy: Proxy) -> None:
    names = 2000
    before = proxy.scrape()

    async def send_all() -> list[int]:
        connector = aiohttp.TCPConnector(limit=20)  # keep-alive connections, reused
        async with aiohttp.ClientSession(connector=connector) as session:
            async def one(i: int) -> int:
                body = {"model": f"flood-{i}", "prompt": "x", "stream": False}
                async with session.post(proxy.url + "/api/generate", json=body) as r:
                    await r.read()
                    return r.status
            return list(await asyncio.gather(*(one(i) for i in range(names))))

    statuses = asyncio.run(send_all())
    assert statuses == [404] * names  # the upstream does not know them, as Ollama would say
    after = proxy.wait_counted(requests_total(before) + names)
    flood = {dict(labels)["model"] for (n, labels) in after
             if n == "ollama_proxy_requests_total" and dict(labels)["model"].startswith("flood-")}
    assert len(flood) <= MAX_MODEL_LABELS
    # Every request still counted exactly, under its own name or under "other".
    assert family_delta(before, after, "requests_total", endpoint="/api/generate",
                        status="404") == names
    assert family_delta(before, after, "errors_total", error_type="upstream_status") == names
    models = {dict(labels).get("model") for (n, labels) in after
              if n == "ollama_proxy_requests_total"}
    assert len(models) <= MAX_MODEL_LABELS + 10  # the flood, the known models, other, none


def test_100000_model_names_through_the_addon_hooks_keep_labels_bounded() -> None:
    registry = CollectorRegistry()
    known = {"llama3.2:latest"}
    tap = TrafficTap(ProxyMetrics(registry), ModelLabels(is_known=known.__contains__))
    flow = tflow.tflow()
    flow.request.method, flow.request.path = "POST", "/api/generate"
    answer = http.Response.make(404, b"", {"Content-Type": "application/json; charset=utf-8"})
    names = 100_000
    for i in range(names):
        model = "llama3.2" if i % 10 == 0 else f"name-{i}"
        flow.metadata.clear()  # one flow object, reset: building 100,000 costs minutes
        flow.response = None
        flow.request.data.content = b'{"model":"%s","prompt":"x","stream":false}' % model.encode()
        tap.requestheaders(flow)
        tap.request(flow)
        flow.response = answer
        tap.responseheaders(flow)
        assert callable(answer.stream)
        answer.stream(b'{"error":"model not found"}')
        answer.stream(b"")
        tap.response(flow)
    series = {s.labels["model"]: s.value for m in registry.collect()
              if m.name == "ollama_proxy_requests" for s in m.samples
              if s.name == "ollama_proxy_requests_total"}
    assert len(series) == 1 + MAX_MODEL_LABELS + 1  # llama3.2, 20 others, "other"
    assert series["llama3.2:latest"] == names // 10
    assert series["other"] == names - names // 10 - MAX_MODEL_LABELS
    assert sum(series.values()) == names


def test_model_blob_upload_streams_through_without_being_held(sim: Any, tmp_path: Any) -> None:
    """``ollama create`` pushes model files of gigabytes to /api/blobs/:digest: the proxy
    passes the body on as it arrives instead of holding it (its own proxy, so that the peak
    memory measured is this upload's alone)."""
    blob = tmp_path / "model.gguf"
    with blob.open("wb") as f:
        for i in range(64):  # 64 MiB, no two MiB alike
            f.write(hashlib.sha256(str(i).encode()).digest() * (MIB // 32))
    with run_proxy(sim.url) as proxy, ollama.Client(host=proxy.url) as client:
        base = peak_rss_bytes(proxy.process.pid)
        before = proxy.scrape()
        digest = client.create_blob(blob)
        proxy.wait_counted(requests_total(before) + 1)
        grown = peak_rss_bytes(proxy.process.pid) - base
        print(f"peak RSS of mitmdump after a 64 MiB blob upload: +{grown / MIB:.0f} MiB")
        assert sim.blobs[digest] == 64 * MIB  # every byte arrived, in order (digest checked)
        assert grown < 32 * MIB  # the 64 MiB were never all in the proxy at once
        # The upstream's own answers pass through: a body that does not match its digest.
        wrong = "sha256:" + "0" * 64
        with pytest.raises(ollama.ResponseError) as refused:
            client._request_raw("POST", f"/api/blobs/{wrong}", content=b"x" * (2 * MIB))
        assert refused.value.status_code == 400 and "digest mismatch" in refused.value.error
        after = proxy.wait_counted(requests_total(before) + 2)
        endpoint = "/api/blobs/:digest"
        assert family_delta(before, after, "requests_total", endpoint=endpoint,
                            status="201") == 1
        assert family_delta(before, after, "requests_total", endpoint=endpoint,
                            status="400") == 1
