"""Ollama's answers as its source writes them, through a real mitmdump: same bytes, exact counts.

The simulator's clock stands still for these requests (``X-Sim-Clock``), so an answer taken
directly from it and one taken through the proxy are compared byte for byte.
(docs/ollama-wire.md, "Responses", says which Ollama versions write what.)
"""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest

from addons.codings import decode_all, zstd
from tests.support.processes import Proxy

pytestmark = pytest.mark.e2e
LABEL = "llama3.2:latest"
CLOCK = {"X-Sim-Clock": "1755800000"}
COMPLETION = {"model": "llama3.2", "prompt": "Why is the sky blue?", "stream": True}
CHAT = {"model": "llama3.2", "messages": [{"role": "user", "content": "hello"}], "stream": True}


def exchange(port: int, path: str, body: bytes | dict, headers: dict[str, str] | None = None
             ) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-cased names) and body bytes as sent, without decoding them."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, data, {"Content-Type": "application/json", **CLOCK,
                                          **(headers or {})})
        response = conn.getresponse()
        return (response.status, {k.lower(): v for k, v in response.getheaders()},
                response.read())
    finally:
        conn.close()


def total(samples: dict, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items()
               if n == "ollama_proxy_" + name and want <= set(lab))


def requests_total(samples: dict) -> float:
    return total(samples, "requests_total")


def through(proxy: Proxy, path: str, body: bytes | dict, headers: dict[str, str] | None = None
            ) -> tuple[tuple[int, dict[str, str], bytes], dict, dict]:
    """One exchange through the proxy, with the scrapes before and once it is counted."""
    before = proxy.scrape()
    answer = exchange(proxy.port, path, body, headers)
    after = proxy.wait_counted(requests_total(before) + 1)
    return answer, before, after


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


# -- 1. injected usage leaves no trace -------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
@pytest.mark.parametrize("options", [None, {"include_usage": False}, {}])
@pytest.mark.parametrize("fault", ["none", "split"])
def test_injected_usage_is_hidden_byte_for_byte(
    proxy: Proxy, sim: Any, path: str, options: dict | None, fault: str
) -> None:
    body = {**(COMPLETION if path == "/v1/completions" else CHAT)}
    if options is not None:
        body["stream_options"] = options
    headers = {"X-Sim-Fault": fault}
    direct = exchange(sim.port, path, body, headers)
    assert b'"usage"' not in direct[2] and direct[2].endswith(b"data: [DONE]\n\n")
    (status, _, data), before, after = through(proxy, path, body, headers)
    assert (status, data) == (200, direct[2])
    report = sim.reports[-1]
    assert delta(before, after, "prompt_tokens_total", model=LABEL) == report["prompt_eval_count"]
    assert delta(before, after, "generated_tokens_total", model=LABEL) == report["eval_count"]
    assert delta(before, after, "usage_estimated_total") == 0  # the server's own counts
    assert delta(before, after, "errors_total") == 0


def test_completions_writer_puts_zero_usage_in_every_chunk(sim: Any) -> None:
    body = {**COMPLETION, "stream_options": {"include_usage": True}}
    events = [e for e in exchange(sim.port, "/v1/completions", body)[2].split(b"\n\n") if e]
    zero = b',"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}'
    assert all(e.endswith(zero) for e in events[:-2])  # each content chunk and the finish
    assert b'"choices":[]' in events[-2] and zero not in events[-2]


def test_client_that_asked_for_usage_gets_it_unchanged(proxy: Proxy, sim: Any) -> None:
    body = {**COMPLETION, "stream_options": {"include_usage": True}}
    direct = exchange(sim.port, "/v1/completions", body)
    (_, _, data), _, _ = through(proxy, "/v1/completions", body)
    assert data == direct[2] and b'"choices":[]' in data


def test_zstd_request_body_is_attributed_and_injected(proxy: Proxy, sim: Any) -> None:
    raw = zstd.compress(json.dumps(COMPLETION).encode())
    headers = {"Content-Encoding": "zstd"}
    direct = exchange(sim.port, "/v1/completions", raw, headers)
    assert direct[0] == 200 and b'"usage"' not in direct[2]
    (status, _, data), before, after = through(proxy, "/v1/completions", raw, headers)
    assert (status, data) == (200, direct[2])
    report = sim.reports[-1]
    assert delta(before, after, "requests_total", endpoint="/v1/completions", model=LABEL) == 1
    assert delta(before, after, "prompt_tokens_total", model=LABEL) == report["prompt_eval_count"]
    assert delta(before, after, "usage_estimated_total") == 0


@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
def test_injected_usage_is_hidden_in_a_compressed_stream(
    proxy: Proxy, sim: Any, coding: str
) -> None:
    headers = {"X-Sim-Encoding": coding}
    _, direct_headers, direct = exchange(sim.port, "/v1/completions", COMPLETION, headers)
    assert direct_headers["content-encoding"] == coding
    (status, got_headers, data), before, after = through(
        proxy, "/v1/completions", COMPLETION, headers)
    # The proxy had to read the stream to take the usage out: it sends it decoded.
    assert "content-encoding" not in got_headers
    assert (status, data) == (200, decode_all(direct, coding))
    assert delta(before, after, "usage_estimated_total") == 0


def test_stream_that_ends_without_done_after_an_error(proxy: Proxy, sim: Any) -> None:
    # Ollama's OpenAI writers turn a mid-stream error into an empty chunk, then stop.
    headers = {"X-Sim-Fault": "swallowed_error"}
    direct = exchange(sim.port, "/v1/completions", COMPLETION, headers)
    assert b"[DONE]" not in direct[2] and b'"error"' not in direct[2]
    (_, _, data), before, after = through(proxy, "/v1/completions", COMPLETION, headers)
    assert data == direct[2]
    assert delta(before, after, "errors_total", endpoint="/v1/completions",
                 error_type="stream_error") == 1


@pytest.mark.parametrize(
    ("path", "body"),
    [("/api/chat", {**CHAT}), ("/v1/chat/completions", CHAT)],
)
def test_generation_streams_with_an_error_are_errors(
    proxy: Proxy, sim: Any, path: str, body: dict
) -> None:
    headers = {"X-Sim-Fault": "swallowed_error"}
    direct = exchange(sim.port, path, body, headers)
    (_, _, data), before, after = through(proxy, path, body, headers)
    assert data == direct[2]
    assert delta(before, after, "errors_total", endpoint=path, error_type="stream_error") == 1


# -- 4. big answers are still counted --------------------------------------------------------


EMBED = {"model": "nomic-embed-text", "input": ["a document of five words"] * 4}


@pytest.mark.parametrize("path", ["/api/embed", "/v1/embeddings"])
def test_an_answer_over_the_parse_limit_is_counted(proxy: Proxy, sim: Any, path: str) -> None:
    headers = {"X-Sim-Fault": "big_body:34"}  # over the 32 MiB the proxy parses whole
    direct = exchange(sim.port, path, EMBED, headers)
    assert len(direct[2]) > 33 << 20
    (status, _, data), before, after = through(proxy, path, EMBED, headers)
    assert status == 200 and data == direct[2]
    count = sim.reports[-1]["prompt_eval_count"]
    assert count > 1000
    assert delta(before, after, "prompt_tokens_total", model="nomic-embed-text:latest") == count
    assert delta(before, after, "uncounted_requests_total") == 0


def test_an_answer_over_the_limit_without_counts_is_uncounted(proxy: Proxy, sim: Any) -> None:
    # Inputs of no words: the simulator counts 0 prompt tokens, and Go's omitempty leaves the
    # key out, so the end of the body holds no count to read.
    body = {"model": "nomic-embed-text", "input": ["   "]}
    (status, _, data), before, after = through(proxy, "/api/embed", body,
                                               {"X-Sim-Fault": "big_body:33"})
    assert status == 200 and data.endswith(b"]]}") and len(data) > 32 << 20
    assert delta(before, after, "uncounted_requests_total", endpoint="/api/embed",
                 reason="body_too_large") == 1
    assert delta(before, after, "prompt_tokens_total") == 0


# -- 8. errors inside a 200 stream of pull, push or create -----------------------------------


@pytest.mark.parametrize("path", ["/api/pull", "/api/push", "/api/create"])
def test_an_error_line_after_progress_is_an_error(proxy: Proxy, sim: Any, path: str) -> None:
    body = {"model": "llama3.2"}
    ok, before, after = through(proxy, path, body)
    assert ok[0] == 200 and ok[2].endswith(b'{"status":"success"}\n')
    assert delta(before, after, "errors_total", endpoint=path) == 0
    headers = {"X-Sim-Fault": "error_in_stream"}
    direct = exchange(sim.port, path, body, headers)
    (status, _, data), before, after = through(proxy, path, body, headers)
    assert (status, data) == (200, direct[2])
    assert json.loads(data.splitlines()[-1]) == {
        "error": f"simulated error_in_stream during {path}"}
    assert delta(before, after, "errors_total", endpoint=path, error_type="stream_error") == 1
    assert delta(before, after, "requests_total", endpoint=path, status="200") == 1


def test_pull_of_a_missing_model_fails_inside_the_stream(proxy: Proxy, sim: Any) -> None:
    (status, _, data), before, after = through(proxy, "/api/pull", {"model": "no-such-model"})
    assert status == 200
    assert data == (b'{"status":"pulling manifest"}\n'
                    b'{"error":"pull model manifest: file does not exist"}\n')
    assert delta(before, after, "errors_total", endpoint="/api/pull",
                 error_type="stream_error") == 1


# -- 9. cached prompt tokens ----------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_cached_prompt_tokens_are_counted_where_reported(
    proxy: Proxy, sim: Any, stream: bool
) -> None:
    body = {**CHAT, "stream": stream}
    (_, _, data), before, after = through(proxy, "/v1/chat/completions", body,
                                          {"X-Sim-Cached": "5"})
    assert b"prompt_tokens_details" not in data or not stream  # injected usage stays hidden
    assert delta(before, after, "cached_prompt_tokens_total", model=LABEL) == 5
    (_, _, _), before, after = through(proxy, "/v1/chat/completions", body)
    assert delta(before, after, "cached_prompt_tokens_total", model=LABEL) == 0
    assert delta(before, after, "prompt_tokens_total", model=LABEL) > 0


# -- 10. encodings between the proxy and Ollama ----------------------------------------------


@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
@pytest.mark.parametrize("path", ["/api/chat", "/api/embed"])
def test_compressed_answers_pass_unchanged_and_are_counted(
    proxy: Proxy, sim: Any, coding: str, path: str
) -> None:
    body = CHAT if path == "/api/chat" else EMBED
    headers = {"X-Sim-Encoding": coding}
    direct = exchange(sim.port, path, body, headers)
    (status, got_headers, data), before, after = through(proxy, path, body, headers)
    assert (status, got_headers["content-encoding"], data) == (200, coding, direct[2])
    model = LABEL if path == "/api/chat" else "nomic-embed-text:latest"
    assert delta(before, after, "prompt_tokens_total", model=model) == \
        sim.reports[-1]["prompt_eval_count"]
    assert delta(before, after, "uncounted_requests_total") == 0
