"""Every upstream fault, the same request sent directly and through mitmdump: same answer, counted.

The simulator is deterministic per seed, so what a client gets through the proxy must be the
bytes it gets directly (clocks aside), also up to the byte where the upstream cut the stream.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any

import pytest

from tests.reliability.wire import (
    CHAT,
    GENERATE,
    LABEL,
    assert_same_bytes,
    exchange,
    family_delta,
    requests_total,
    samples_delta,
)
from tests.support.processes import Proxy

pytestmark = pytest.mark.e2e
TOKENS = 12  # the sim fixture's answer length
STREAM_CHAT = {**CHAT, "stream": True}
OPENAI_CHAT = {**CHAT, "stream": True}  # no stream_options: the proxy injects and strips usage
OPENAI_COMPLETION = {"model": "llama3.2", "prompt": "why is the sky blue"}
EMBED = {"model": "nomic-embed-text", "input": ["one text", "two texts here"]}


@dataclass(frozen=True)
class Case:
    """One request with one fault, and what the client and the counters must show."""

    name: str
    path: str
    body: dict
    fault: str
    status: int
    error_type: str | None  # errors_total grows by one with this type, or stays
    generated: int  # generated_tokens_total growth
    estimated: bool = False  # counted from content chunks (no final report)
    # complete; truncated: framed right, but its last line is cut; cut: the connection ends
    # before the framing says, at a chunk edge; cut_inside_line: likewise, inside a line.
    ending: str = "complete"
    model: str = LABEL


CASES = [
    # Native streams.
    Case("chat", "/api/chat", STREAM_CHAT, "none", 200, None, TOKENS),
    Case("chat-split", "/api/chat", STREAM_CHAT, "split", 200, None, TOKENS),
    Case("chat-malformed-line", "/api/chat", STREAM_CHAT, "malformed_line", 200,
         "malformed_response", TOKENS),
    Case("chat-error-object", "/api/chat", STREAM_CHAT, "error_in_stream", 200, "stream_error",
         3, estimated=True),
    Case("chat-final-without-counts", "/api/chat", STREAM_CHAT, "no_counts", 200, None, TOKENS,
         estimated=True),
    Case("chat-truncated-final-line", "/api/chat", STREAM_CHAT, "truncated_tail", 200,
         "malformed_response", TOKENS, estimated=True, ending="truncated"),
    Case("chat-invalid-utf8", "/api/chat", STREAM_CHAT, "invalid_utf8", 200, None, TOKENS),
    Case("chat-close-mid-stream", "/api/chat", STREAM_CHAT, "close_mid_stream", 200,
         "stream_aborted", 3, estimated=True, ending="cut"),
    Case("chat-reset-mid-stream", "/api/chat", STREAM_CHAT, "reset", 200, "stream_aborted", 3,
         estimated=True, ending="cut"),
    Case("chat-500", "/api/chat", STREAM_CHAT, "status:500", 500, "upstream_status", 0),
    Case("chat-503", "/api/chat", STREAM_CHAT, "status:503", 503, "upstream_status", 0),
    Case("chat-404", "/api/chat", STREAM_CHAT, "status:404", 404, "upstream_status", 0),
    Case("chat-unknown-model", "/api/chat", {**STREAM_CHAT, "model": "nosuch"}, "none", 404,
         "upstream_status", 0, model="nosuch:latest"),
    # Native, not streamed.
    Case("generate", "/api/generate", GENERATE, "none", 200, None, TOKENS),
    Case("generate-truncated-body", "/api/generate", GENERATE, "truncated_tail", 200,
         "malformed_response", 0, ending="truncated"),
    Case("generate-invalid-utf8", "/api/generate", GENERATE, "invalid_utf8", 200,
         "malformed_response", 0),
    Case("generate-close-mid-body", "/api/generate", GENERATE, "close_mid_stream", 200,
         "stream_aborted", 0, ending="cut_inside_line"),
    Case("generate-reset-mid-body", "/api/generate", GENERATE, "reset", 200, "stream_aborted", 0,
         ending="cut_inside_line"),
    Case("generate-error-500", "/api/generate", GENERATE, "error_in_stream", 500,
         "upstream_status", 0),
    Case("embed", "/api/embed", EMBED, "none", 200, None, 0, model="nomic-embed-text:latest"),
    Case("embed-503", "/api/embed", EMBED, "status:503", 503, "upstream_status", 0,
         model="nomic-embed-text:latest"),
    # OpenAI-compatible: the injected usage event must not reach the client.
    Case("openai-chat", "/v1/chat/completions", OPENAI_CHAT, "none", 200, None, TOKENS),
    Case("openai-chat-split", "/v1/chat/completions", OPENAI_CHAT, "split", 200, None, TOKENS),
    Case("openai-chat-no-usage", "/v1/chat/completions", OPENAI_CHAT, "no_usage", 200, None,
         TOKENS, estimated=True),
    Case("openai-chat-error-object", "/v1/chat/completions", OPENAI_CHAT, "error_in_stream", 200,
         "stream_error", 3, estimated=True),
    Case("openai-chat-malformed-line", "/v1/chat/completions", OPENAI_CHAT, "malformed_line",
         200, "malformed_response", TOKENS),
    Case("openai-chat-truncated-final", "/v1/chat/completions", OPENAI_CHAT, "truncated_tail",
         200, "malformed_response", TOKENS, estimated=True, ending="truncated"),
    Case("openai-chat-invalid-utf8", "/v1/chat/completions", OPENAI_CHAT, "invalid_utf8", 200,
         None, TOKENS),
    Case("openai-chat-reset", "/v1/chat/completions", OPENAI_CHAT, "reset", 200,
         "stream_aborted", 3, estimated=True, ending="cut"),
    Case("openai-chat-500", "/v1/chat/completions", OPENAI_CHAT, "status:500", 500,
         "upstream_status", 0),
    Case("openai-completion", "/v1/completions", OPENAI_COMPLETION, "none", 200, None, TOKENS),
    Case("openai-completion-404", "/v1/completions", OPENAI_COMPLETION, "status:404", 404,
         "upstream_status", 0),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_client_gets_what_it_would_get_directly_and_it_is_counted(
    proxy: Proxy, sim: Any, case: Case
) -> None:
    headers = {"X-Sim-Fault": case.fault}
    direct = exchange(sim.port, case.path, case.body, headers)
    before = proxy.scrape()
    through = exchange(proxy.port, case.path, case.body, headers)
    after = proxy.wait_counted(requests_total(before) + 1)

    assert (through.status, through.content_type) == (direct.status, direct.content_type)
    assert through.status == case.status
    framed = case.ending in ("complete", "truncated")
    assert through.complete == direct.complete == framed, through.error
    assert_same_bytes(direct, through, cut_inside_line=case.ending.endswith(("line", "truncated")))

    endpoint, model = case.path, case.model
    assert samples_delta(before, after, "requests_total", endpoint=endpoint, model=model,
                         status=str(case.status)) == 1
    errors = family_delta(before, after, "errors_total")
    if case.error_type is None:
        assert errors == 0
    else:
        assert errors == 1
        assert samples_delta(before, after, "errors_total", endpoint=endpoint, model=model,
                             error_type=case.error_type) == 1
    assert samples_delta(before, after, "generated_tokens_total", model=model) == case.generated
    assert family_delta(before, after, "usage_estimated_total") == int(case.estimated)
    assert after.get(("ollama_proxy_active_requests", (("model", model),)), 0.0) == 0


def test_stalled_upstream_holds_only_its_own_client(proxy: Proxy, sim: Any) -> None:
    """A stream that stops mid-way: others are served meanwhile; leaving frees everything."""
    before = proxy.scrape()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as stalled:
        body = json.dumps(STREAM_CHAT).encode()
        stalled.sendall(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nX-Sim-Fault: stall\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        received = b""
        while b'"done":false' not in received:
            chunk = stalled.recv(65536)
            assert chunk, f"the proxy closed before the first token: {received!r}"
            received += chunk
        assert proxy.value("active_requests", model=LABEL) == 1
        other = exchange(proxy.port, "/api/chat", STREAM_CHAT)  # while the first one hangs
        assert other.status == 200 and other.complete and b'"done":true' in other.body
    sim.wait_for_connections(0, timeout=15)  # the proxy dropped its upstream connection
    after = proxy.wait_counted(requests_total(before) + 2)
    assert samples_delta(before, after, "errors_total", endpoint="/api/chat", model=LABEL,
                         error_type="client_cancelled") == 1
    assert after[("ollama_proxy_active_requests", (("model", LABEL),))] == 0


def test_upstream_that_resets_the_connection_gives_an_ollama_shaped_502(
    proxy: Proxy, sim: Any
) -> None:
    headers = {"X-Sim-Fault": "refuse"}
    direct = exchange(sim.port, "/api/chat", STREAM_CHAT, headers)
    assert direct.status == 0  # directly: the connection is reset, nothing to pass on
    before = proxy.scrape()
    through = exchange(proxy.port, "/api/chat", STREAM_CHAT, headers)
    assert through.status == 502
    assert through.content_type.startswith("application/json")
    assert "could not reach Ollama" in through.json()["error"]
    after = proxy.wait_counted(requests_total(before) + 1)
    assert samples_delta(before, after, "requests_total", endpoint="/api/chat", model=LABEL,
                         status="502") == 1
    assert family_delta(before, after, "errors_total", endpoint="/api/chat") == 1


def test_proxy_survived_every_fault(proxy: Proxy) -> None:
    answer = exchange(proxy.port, "/api/chat", STREAM_CHAT)
    assert answer.status == 200 and answer.complete
    assert "Traceback" not in proxy.log and "stream tap failed" not in proxy.log
    assert proxy.process.poll() is None

