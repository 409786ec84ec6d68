"""Tests for the ollama_sim package: the simulator speaks Ollama's wire format and its faults."""

from __future__ import annotations

import http.client
import json
import logging
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ollama
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from ollama_sim import SimServer
from tests import fixtures
from tests.support.sim import sim_fixture

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
SIM_PATH = ROOT / "scripts" / "ollama_sim.py"
FIXTURES = fixtures.RECORDINGS


# Key order as recorded from a real Ollama (test_expected_shapes_match_fixtures checks these
# against the files in FIXTURES).
DURATIONS = ["total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
             "eval_count", "eval_duration"]
EXPECTED: dict[str, list[str]] = {
    "chat_chunk": ["model", "created_at", "message", "done"],  # 01
    "chat_final": ["model", "created_at", "message", "done_reason", "done", *DURATIONS],  # 01
    "generate_chunk": ["model", "created_at", "response", "done"],  # 05
    "generate_final": ["model", "created_at", "response", "done", "done_reason", "context",
                       *DURATIONS],  # 05, 06
    "embed": ["model", "embeddings", "total_duration", "load_duration",
              "prompt_eval_count"],  # 07
    "embeddings": ["embedding"],  # 08
    "sse_chunk": ["id", "object", "created", "model", "system_fingerprint", "choices"],  # 09, 10
    "sse_usage": ["id", "object", "created", "model", "system_fingerprint", "choices",
                  "usage"],  # 09
    "usage": ["prompt_tokens", "completion_tokens", "total_tokens"],  # 09, 11
    "chat_completion": ["id", "object", "created", "model", "system_fingerprint", "choices",
                        "usage"],  # 11
    "tag": ["name", "model", "modified_at", "size", "digest", "details"],  # 15
    "details": ["parent_model", "format", "family", "families", "parameter_size",
                "quantization_level"],  # 15
}
MESSAGES: list[dict[str, str]] = [{"role": "user", "content": "Count from 1 to 5"}]
OPENAI_MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Count from 1 to 5"}]
CHAT: dict[str, Any] = {"model": "llama3.2", "messages": MESSAGES}
GENERATE: dict[str, Any] = {"model": "llama3.2", "prompt": "Count from 1 to 5"}
CREATED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


# ---------------------------------------------------------------------------------------------
# A raw HTTP/1.1 client that keeps chunk boundaries, so the wire itself can be checked


@dataclass
class Raw:
    status: int
    headers: dict[str, str]
    chunks: list[bytes] = field(default_factory=list)
    complete: bool = False  # the terminating chunk (or the whole Content-Length) arrived

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def lines(self) -> list[bytes]:
        return self.body.splitlines(keepends=True)

    def events(self) -> list[str]:
        """SSE events, each the text after 'data: '."""
        text = self.body.decode()
        assert text.endswith("\n\n")
        events = text[:-2].split("\n\n")
        assert all(event.startswith("data: ") for event in events), events
        return [event.removeprefix("data: ") for event in events]


class RawConnection:
    """Send one request on a fresh socket and read the response chunk by chunk."""

    def __init__(self, port: int, method: str, path: str, body: object = None,
                 headers: dict[str, str] | None = None, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        payload = b"" if body is None else (
            body if isinstance(body, bytes) else json.dumps(body).encode())
        head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close",
                f"Content-Length: {len(payload)}", "Content-Type: application/json"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        self._buf = b""
        self.response: Raw | None = None

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self._buf += data
        return bool(data)

    def _take(self, n: int) -> bytes | None:
        while len(self._buf) < n:
            if not self._fill():
                return None
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def _line(self) -> bytes | None:
        while b"\r\n" not in self._buf:
            if not self._fill():
                return None
        line, self._buf = self._buf.split(b"\r\n", 1)
        return line

    def head(self) -> Raw:
        status_line = self._line()
        assert status_line is not None, "connection closed before a status line"
        headers: dict[str, str] = {}
        while line := self._line():
            name, value = line.decode().split(":", 1)
            headers[name.strip().lower()] = value.strip()
        self.response = Raw(int(status_line.split()[1]), headers)
        return self.response

    def chunk(self) -> bytes | None:
        """The next HTTP chunk's payload; b'' for the terminating chunk, None at a cut-off."""
        size_line = self._line()
        if size_line is None:
            return None
        size = int(size_line, 16)
        if size == 0:
            self._line()
            return b""
        data = self._take(size + 2)
        return None if data is None else data[:-2]

    def read_all(self) -> Raw:
        response = self.response or self.head()
        if response.headers.get("transfer-encoding") == "chunked":
            while (chunk := self.chunk()) is not None:
                if chunk == b"":
                    response.complete = True
                    break
                response.chunks.append(chunk)
        else:
            length = int(response.headers.get("content-length", "0"))
            while len(self._buf) < length and self._fill():
                pass
            response.chunks = [self._buf[:length]] if length else []
            response.complete = len(self._buf) >= length
        self.close()
        return response


def raw(port: int, method: str, path: str, body: object = None,
        headers: dict[str, str] | None = None) -> Raw:
    return RawConnection(port, method, path, body, headers).read_all()


def get_json(sim: Any, path: str, method: str = "GET", body: object = None) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body))
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def ndjson(response: Raw) -> list[dict[str, Any]]:
    """Parse a native stream, checking that every HTTP chunk is exactly one JSON line."""
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.complete
    assert all(c.endswith(b"\n") and c.count(b"\n") == 1 for c in response.chunks)
    return [json.loads(chunk) for chunk in response.chunks]


def text_of(objs: list[dict[str, Any]]) -> str:
    return "".join(o["message"]["content"] if "message" in o else o["response"] for o in objs)


sim = sim_fixture(scope="function")  # SimServer's own defaults, fresh for each test


@pytest.fixture
def oclient(sim: Any) -> Iterator[ollama.Client]:
    with ollama.Client(host=sim.url, timeout=10) as client:
        yield client


@pytest.fixture
def aclient(sim: Any) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=sim.url + "/v1", api_key="x", max_retries=0,
                       timeout=10) as client:
        yield client


# ---------------------------------------------------------------------------------------------
# The recorded fixtures and the expected shapes


def _fixture(name: str) -> tuple[dict[str, Any], str]:
    data = json.loads((FIXTURES / name).read_text())
    return data["response"], data["response"]["body"]


def test_expected_shapes_match_fixtures() -> None:
    _, body = _fixture("01-api-chat-stream.json")
    lines = [json.loads(line) for line in body.splitlines()]
    assert list(lines[0]) == EXPECTED["chat_chunk"]
    assert list(lines[-1]) == EXPECTED["chat_final"]
    _, body = _fixture("05-api-generate-stream.json")
    lines = [json.loads(line) for line in body.splitlines()]
    assert list(lines[0]) == EXPECTED["generate_chunk"]
    assert list(lines[-1]) == EXPECTED["generate_final"]
    assert list(json.loads(_fixture("06-api-generate-nostream.json")[1])) == EXPECTED[
        "generate_final"]
    assert list(json.loads(_fixture("07-api-embed-nostream.json")[1])) == EXPECTED["embed"]
    assert list(json.loads(_fixture("08-api-embeddings-nostream.json")[1])) == EXPECTED[
        "embeddings"]
    _, body = _fixture("09-v1-chat-completions-stream.json")
    events = [json.loads(e.removeprefix("data: ")) for e in body.split("\n\n")[:-2]]
    assert body.endswith("data: [DONE]\n\n")
    assert list(events[0]) == EXPECTED["sse_chunk"]
    assert list(events[-1]) == EXPECTED["sse_usage"] and events[-1]["choices"] == []
    assert list(events[-1]["usage"]) == EXPECTED["usage"]
    tags = json.loads(_fixture("15-api-tags-nostream.json")[1])["models"]
    assert list(tags[0]) == EXPECTED["tag"]
    assert list(tags[0]["details"]) == EXPECTED["details"]
    chat = json.loads(_fixture("11-v1-chat-completions-nostream-toolcalls.json")[1])
    assert list(chat) == EXPECTED["chat_completion"]


# ---------------------------------------------------------------------------------------------
# Native API


def test_native_chat_stream_has_the_recorded_shape(sim: Any) -> None:
    objs = ndjson(raw(sim.port, "POST", "/api/chat", {**CHAT, "stream": True}))
    content, final = objs[:-1], objs[-1]
    assert all(list(o) == EXPECTED["chat_chunk"] and o["done"] is False for o in content)
    assert all(list(o["message"]) == ["role", "content"] for o in objs)
    assert all(CREATED_AT.match(o["created_at"]) for o in objs)
    assert list(final) == EXPECTED["chat_final"]
    assert final["done"] is True and final["done_reason"] == "stop"
    assert final["message"] == {"role": "assistant", "content": ""}
    assert final["eval_count"] == len(content) == 20
    assert final["total_duration"] >= final["eval_duration"] > 0
    [report] = sim.reports
    assert report == {"endpoint": "/api/chat", "model": "llama3.2", "status": 200,
                      "stream": True, "fault": None,
                      "prompt_eval_count": final["prompt_eval_count"], "eval_count": 20,
                      "done_reason": "stop", "load": True, "outcome": "done"}


def test_native_generate_stream_has_the_recorded_shape(sim: Any) -> None:
    objs = ndjson(raw(sim.port, "POST", "/api/generate", GENERATE))  # streams by default
    content, final = objs[:-1], objs[-1]
    assert all(list(o) == EXPECTED["generate_chunk"] for o in content)
    assert list(final) == EXPECTED["generate_final"]
    assert len(final["context"]) == final["prompt_eval_count"] + final["eval_count"]
    assert final["eval_count"] == len(content) == sim.reports[-1]["eval_count"]


@pytest.mark.parametrize(("path", "body", "keys"), [
    ("/api/chat", CHAT, EXPECTED["chat_final"]),
    ("/api/generate", GENERATE, EXPECTED["generate_final"]),
])
def test_native_stream_false_gives_one_json(sim: Any, path: str, body: dict[str, Any],
                                            keys: list[str]) -> None:
    response = raw(sim.port, "POST", path, {**body, "stream": False})
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert "content-length" in response.headers and response.complete
    value = json.loads(response.body)
    assert list(value) == keys
    assert value["eval_count"] == sim.reports[-1]["eval_count"] == 20


def test_ollama_client_counts_match_reports(sim: Any, oclient: ollama.Client) -> None:
    parts = list(oclient.chat(model="llama3.2", messages=MESSAGES, stream=True))
    final = parts[-1]
    assert final.done and final.eval_count == len(parts) - 1
    whole = oclient.chat(model="llama3.2", messages=MESSAGES)
    assert whole.message.content == "".join(p.message.content or "" for p in parts)
    generated = oclient.generate(model="llama3.2:latest", prompt="Count from 1 to 5")
    reports = sim.reports
    assert [r["eval_count"] for r in reports] == [final.eval_count, whole.eval_count,
                                                  generated.eval_count]
    assert [r["prompt_eval_count"] for r in reports] == [
        final.prompt_eval_count, whole.prompt_eval_count, generated.prompt_eval_count]
    assert [r["stream"] for r in reports] == [True, False, False]
    assert get_json(sim, "/_sim/reports") == reports


@pytest.mark.parametrize(("options", "tokens_header", "count", "reason"), [
    ({}, None, 20, "stop"),
    ({"num_predict": 5}, None, 5, "length"),
    ({"num_predict": 50}, None, 20, "stop"),
    ({}, "7", 7, "stop"),
    ({"num_predict": 3}, "7", 3, "length"),
    ({}, "0", 0, "stop"),
])
def test_num_predict_caps_tokens(sim: Any, options: dict[str, int], tokens_header: str | None,
                                 count: int, reason: str) -> None:
    headers = {"X-Sim-Tokens": tokens_header} if tokens_header else {}
    objs = ndjson(raw(sim.port, "POST", "/api/chat", {**CHAT, "options": options}, headers))
    assert len(objs) - 1 == count
    assert objs[-1]["done_reason"] == reason
    assert objs[-1].get("eval_count", 0) == count  # Go omits a zero count
    assert sim.reports[-1]["eval_count"] == count


def test_text_is_deterministic_and_has_multibyte_utf8() -> None:
    with SimServer(tokens=40) as a, SimServer(tokens=40) as b, SimServer(tokens=40, seed=3) as c:
        texts = [text_of(ndjson(raw(s.port, "POST", "/api/chat", CHAT))[:-1]) for s in (a, b, c)]
    assert texts[0] == texts[1] != texts[2]
    assert all(piece in texts[0] for piece in ("é", "日本", "🦙"))


def test_embeddings_have_the_recorded_shapes(sim: Any, oclient: ollama.Client,
                                             aclient: openai.OpenAI) -> None:
    response = raw(sim.port, "POST", "/api/embed",
                   {"model": "nomic-embed-text", "input": "Hello world"})
    value = json.loads(response.body)
    assert list(value) == EXPECTED["embed"]
    assert value["prompt_eval_count"] == 2 and len(value["embeddings"][0]) == 768
    assert abs(sum(x * x for x in value["embeddings"][0]) - 1.0) < 1e-4
    legacy = json.loads(raw(sim.port, "POST", "/api/embeddings",
                            {"model": "llama3.2", "prompt": "all-minilm"}).body)
    assert list(legacy) == EXPECTED["embeddings"] and len(legacy["embedding"]) == 3072
    embedded = oclient.embed(model="nomic-embed-text", input=["a b", "c"])
    assert [len(v) for v in embedded.embeddings] == [768, 768]
    assert embedded.prompt_eval_count == 3
    result = aclient.embeddings.create(model="nomic-embed-text", input=["x y z"])
    assert len(result.data[0].embedding) == 768 and result.usage.prompt_tokens == 3
    assert [r["endpoint"] for r in sim.reports] == [
        "/api/embed", "/api/embeddings", "/api/embed", "/v1/embeddings"]
    assert [r["prompt_eval_count"] for r in sim.reports] == [2, 1, 3, 3]


def test_metadata_endpoints(sim: Any, oclient: ollama.Client) -> None:
    tags = get_json(sim, "/api/tags")["models"]
    assert [t["name"] for t in tags] == ["llama3.2:latest", "qwen3:latest",
                                         "nomic-embed-text:latest"]
    assert all(list(t) == EXPECTED["tag"] and list(t["details"]) == EXPECTED["details"]
               for t in tags)
    assert get_json(sim, "/api/ps") == {"models": []}
    oclient.chat(model="llama3.2", messages=MESSAGES)
    [loaded] = get_json(sim, "/api/ps")["models"]
    assert list(loaded) == ["name", "model", "size", "digest", "details", "expires_at",
                            "size_vram"]
    assert loaded["name"] == "llama3.2:latest" and CREATED_AT.match(loaded["expires_at"])
    assert [m.model for m in oclient.ps().models] == ["llama3.2:latest"]
    assert re.match(r"^\d+\.\d+\.\d+$", get_json(sim, "/api/version")["version"])
    shown = get_json(sim, "/api/show", "POST", {"model": "llama3.2"})
    assert {"license", "modelfile", "parameters", "template", "details", "model_info",
            "modified_at"} <= set(shown)
    details = oclient.show("qwen3").details
    assert details is not None and details.family == "qwen3"
    root = raw(sim.port, "GET", "/")
    assert (root.status, root.body) == (200, b"Ollama is running")
    head = raw(sim.port, "HEAD", "/")
    assert head.status == 200 and head.headers["content-length"] == "17"
    models = get_json(sim, "/v1/models")
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]][0] == "llama3.2:latest"
    assert get_json(sim, "/v1/models/llama3.2")["id"] == "llama3.2"


# ---------------------------------------------------------------------------------------------
# OpenAI-compatible API


@pytest.mark.parametrize("include_usage", [True, False])
def test_openai_stream_has_the_recorded_sse_structure(sim: Any, include_usage: bool) -> None:
    body = {**CHAT, "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    response = raw(sim.port, "POST", "/v1/chat/completions", body)
    assert response.headers["content-type"] == "text/event-stream" and response.complete
    assert all(c.startswith(b"data: ") and c.endswith(b"\n\n") for c in response.chunks)
    events = response.events()
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    if include_usage:  # like fixture 09
        usage_chunk = chunks.pop()
        assert list(usage_chunk) == EXPECTED["sse_usage"] and usage_chunk["choices"] == []
        assert list(usage_chunk["usage"]) == EXPECTED["usage"]
        assert usage_chunk["usage"]["completion_tokens"] == 20
    assert all(list(c) == EXPECTED["sse_chunk"] for c in chunks)  # like fixture 10
    assert all(c["system_fingerprint"] == "fp_ollama" for c in chunks)
    assert re.match(r"^chatcmpl-\d+$", chunks[0]["id"])
    assert len({c["id"] for c in chunks}) == 1
    content, finish = chunks[:-1], chunks[-1]
    assert all(c["choices"][0]["finish_reason"] is None for c in content)
    assert finish["choices"][0] == {"index": 0, "delta": {"role": "assistant", "content": ""},
                                    "finish_reason": "stop"}
    assert len(content) == sim.reports[-1]["eval_count"] == 20


def test_openai_client_streams_and_counts(sim: Any, aclient: openai.OpenAI) -> None:
    stream = aclient.chat.completions.create(
        model="llama3.2", messages=OPENAI_MESSAGES, stream=True, max_tokens=6,
        stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 6
    assert chunks[-2].choices[0].finish_reason == "length"
    text = "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
    whole = aclient.chat.completions.create(model="llama3.2", messages=OPENAI_MESSAGES,
                                            max_tokens=6)
    assert whole.choices[0].message.content == text
    assert whole.usage is not None and whole.usage.completion_tokens == 6
    completion = aclient.completions.create(model="llama3.2", prompt="Count", stream=True)
    pieces = [c.choices[0].text for c in completion if c.choices]
    assert len(pieces) == 21 and pieces[-1] == ""
    plain = aclient.completions.create(model="llama3.2", prompt="Count")
    assert plain.choices[0].text == "".join(pieces)
    assert plain.usage is not None and plain.usage.prompt_tokens == sim.reports[-1][
        "prompt_eval_count"]
    assert [r["eval_count"] for r in sim.reports] == [6, 6, 20, 20]


def test_openai_non_stream_has_the_recorded_shape(sim: Any) -> None:
    response = raw(sim.port, "POST", "/v1/chat/completions", CHAT)
    assert response.headers["content-type"] == "application/json"
    value = json.loads(response.body)
    assert list(value) == EXPECTED["chat_completion"] and response.body.endswith(b"}\n")
    assert value["object"] == "chat.completion"
    assert value["usage"]["completion_tokens"] == sim.reports[-1]["eval_count"]


# ---------------------------------------------------------------------------------------------
# Errors


def test_unknown_model_and_bad_json_like_ollama(sim: Any, oclient: ollama.Client,
                                                aclient: openai.OpenAI) -> None:
    native = raw(sim.port, "POST", "/api/chat", {**CHAT, "model": "nope"})
    assert native.status == 404
    assert native.headers["content-type"] == "application/json; charset=utf-8"
    assert native.body == b'{"error":"model \\"nope\\" not found, try pulling it first"}'
    compat = raw(sim.port, "POST", "/v1/chat/completions", {**CHAT, "model": "nope"})
    assert compat.status == 404 and json.loads(compat.body) == {"error": {
        "message": 'model "nope" not found, try pulling it first', "type": "api_error",
        "param": None, "code": None}}
    bad = raw(sim.port, "POST", "/api/generate", b"{not json")
    assert bad.status == 400 and list(json.loads(bad.body)) == ["error"]  # like fixture 12
    assert bad.headers["content-type"] == "application/json; charset=utf-8"
    bad_openai = raw(sim.port, "POST", "/v1/completions", b"[1,")
    assert bad_openai.status == 400 and "message" in json.loads(bad_openai.body)["error"]
    with pytest.raises(ollama.ResponseError) as caught:
        oclient.generate(model="missing", prompt="x")
    assert caught.value.status_code == 404 and "missing" in caught.value.error
    with pytest.raises(openai.NotFoundError):
        aclient.chat.completions.create(model="missing", messages=OPENAI_MESSAGES)
    embed_only = raw(sim.port, "POST", "/api/chat", {**CHAT, "model": "nomic-embed-text"})
    assert embed_only.status == 400
    assert [r["status"] for r in sim.reports] == [404, 404, 400, 400, 404, 404, 400]


@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/chat"), ("GET", "/nothing")])
def test_unknown_route_is_go_404(sim: Any, method: str, path: str) -> None:
    response = raw(sim.port, method, path, CHAT if method == "POST" else None)
    assert response.status == 404  # like fixture 14
    assert response.headers["content-type"] == "text/plain"
    assert response.body == b"404 page not found"


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("GET", "/api/chat", "POST"), ("POST", "/api/tags", "HEAD, GET"),
])
def test_a_known_route_with_another_method_is_gins_405(
    sim: Any, method: str, path: str, allow: str
) -> None:
    response = raw(sim.port, method, path, CHAT if method == "POST" else None)
    assert response.status == 405  # HandleMethodNotAllowed, Ollama 0.7.0 and later
    assert response.headers["allow"] == allow
    assert response.headers["content-type"] == "text/plain"
    assert response.body == b"405 method not allowed"


def test_before_0_7_0_a_known_route_with_another_method_is_404() -> None:
    with SimServer(port=0, version="0.6.8") as old:
        response = raw(old.port, "GET", "/api/chat", None)
    assert (response.status, response.body) == (404, b"404 page not found")
    assert "allow" not in response.headers


def test_bad_sim_header_is_400(sim: Any) -> None:
    assert raw(sim.port, "POST", "/api/chat", CHAT, {"X-Sim-Fault": "bogus"}).status == 400
    assert raw(sim.port, "POST", "/api/chat", CHAT, {"X-Sim-Tokens": "many"}).status == 400


# ---------------------------------------------------------------------------------------------
# Faults


def test_close_mid_stream_drops_the_connection_without_terminator(sim: Any) -> None:
    response = raw(sim.port, "POST", "/api/chat", CHAT, {"X-Sim-Fault": "close_mid_stream"})
    assert response.status == 200 and not response.complete
    assert len(response.lines()) == 3 and all(json.loads(x)["done"] is False
                                              for x in response.lines())
    assert sim.reports[-1]["outcome"] == "aborted" and sim.reports[-1]["eval_count"] == 3


def test_malformed_line_then_normal_end(sim: Any) -> None:
    response = raw(sim.port, "POST", "/api/chat", CHAT, {"X-Sim-Fault": "malformed_line"})
    assert response.complete
    parsed: list[dict[str, Any]] = []
    bad = 0
    for line in response.lines():
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            bad += 1
    assert bad == 1 and parsed[-1]["done"] is True
    assert parsed[-1]["eval_count"] == len(parsed) - 1 == 20


def test_error_in_stream_native_and_sse(sim: Any, oclient: ollama.Client,
                                        aclient: openai.OpenAI) -> None:
    headers = {"X-Sim-Fault": "error_in_stream"}
    response = raw(sim.port, "POST", "/api/chat", CHAT, headers)
    assert response.status == 200 and response.complete
    objs = [json.loads(line) for line in response.lines()]
    assert [list(o) for o in objs[-2:]] == [EXPECTED["chat_chunk"], ["error"]]
    sse = raw(sim.port, "POST", "/v1/chat/completions", {**CHAT, "stream": True}, headers)
    events = sse.events()
    assert "[DONE]" not in events
    assert list(json.loads(events[-1])["error"]) == ["message", "type", "param", "code"]
    with ollama.Client(host=sim.url, headers=headers, timeout=10) as client:
        with pytest.raises(ollama.ResponseError, match="simulated error_in_stream"):
            list(client.chat(model="llama3.2", messages=MESSAGES, stream=True))
    with pytest.raises(openai.APIError, match="simulated error_in_stream"):
        list(aclient.chat.completions.create(model="llama3.2", messages=OPENAI_MESSAGES,
                                             stream=True, extra_headers=headers))
    assert [r["outcome"] for r in sim.reports] == ["error"] * 4


@pytest.mark.parametrize("code", [500, 503, 429])
def test_status_fault(sim: Any, code: int) -> None:
    headers = {"X-Sim-Fault": f"status:{code}"}
    native = raw(sim.port, "POST", "/api/chat", CHAT, headers)
    assert native.status == code and list(json.loads(native.body)) == ["error"]
    compat = raw(sim.port, "POST", "/v1/chat/completions", CHAT, headers)
    assert compat.status == code and list(json.loads(compat.body)["error"]) == [
        "message", "type", "param", "code"]
    assert raw(sim.port, "GET", "/api/tags", None, headers).status == code
    assert [r["status"] for r in sim.reports] == [code, code]


def test_split_cuts_chunks_inside_utf8_and_keeps_the_bytes(sim: Any) -> None:
    headers = {"X-Sim-Fault": "split", "X-Sim-Tokens": "27"}
    split = raw(sim.port, "POST", "/api/chat", CHAT, headers)
    plain = raw(sim.port, "POST", "/api/chat", CHAT, {"X-Sim-Tokens": "27"})
    assert split.complete and len(split.chunks) > len(split.lines())
    assert any(not chunk.endswith(b"\n") for chunk in split.chunks)

    def decodes(chunk: bytes) -> bool:
        try:
            chunk.decode()
        except UnicodeDecodeError:
            return False
        return True

    assert not all(decodes(chunk) for chunk in split.chunks)
    split_objs = [json.loads(line) for line in split.lines()]
    assert text_of(split_objs[:-1]) == text_of(ndjson(plain)[:-1])
    assert split_objs[-1]["eval_count"] == 27


def test_split_is_seeded() -> None:
    def cuts(seed: int) -> list[int]:
        with SimServer(seed=seed, fault="split") as server:
            return [len(c) for c in raw(server.port, "POST", "/v1/completions",
                                        {**GENERATE, "stream": True}).chunks]

    assert cuts(1) == cuts(1) != cuts(2)


def test_no_counts_and_no_usage(sim: Any) -> None:
    objs = ndjson(raw(sim.port, "POST", "/api/chat", CHAT, {"X-Sim-Fault": "no_counts"}))
    assert list(objs[-1]) == ["model", "created_at", "message", "done_reason", "done"]
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    for mode in ("no_usage", "no_counts"):
        events = raw(sim.port, "POST", "/v1/chat/completions", body,
                     {"X-Sim-Fault": mode}).events()
        assert events[-1] == "[DONE]"
        assert all("usage" not in json.loads(e) for e in events[:-1])
    assert [r["eval_count"] for r in sim.reports] == [20, 20, 20]


def test_stall_sends_one_chunk_then_waits_for_the_client(sim: Any) -> None:
    conn = RawConnection(sim.port, "POST", "/api/chat", CHAT, {"X-Sim-Fault": "stall"})
    assert conn.head().status == 200
    first = conn.chunk()
    assert first is not None and json.loads(first)["done"] is False
    conn.sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        conn.chunk()
    sim.wait_for_connections(1)
    conn.close()
    sim.wait_for_connections(0)
    [report] = sim.wait_for_reports(1)
    assert (report["outcome"], report["eval_count"]) == ("client_gone", 1)


def _assert_reset(port: int, headers: dict[str, str] | None = None) -> None:
    """The connection ends without an answer: a reset (seen while connecting or sending, on
    a busy machine, or while reading) or, at the least, an end with no byte of a response."""
    try:
        conn = RawConnection(port, "POST", "/api/chat", CHAT, headers)
    except ConnectionResetError:
        return
    try:
        assert conn.sock.recv(1024) == b""
    except ConnectionResetError:
        pass
    finally:
        conn.close()


def test_refuse_resets_connections() -> None:
    with SimServer(fault="refuse") as server:
        _assert_reset(server.port)
        assert server.connections == 0 and server.reports == []
    with SimServer() as server:
        _assert_reset(server.port, {"X-Sim-Fault": "refuse"})
        assert raw(server.port, "GET", "/api/version").status == 200


def test_global_fault_and_header_override() -> None:
    with SimServer(fault="status:503") as server:
        assert raw(server.port, "POST", "/api/chat", CHAT).status == 503
        assert raw(server.port, "POST", "/api/chat", CHAT, {"X-Sim-Fault": "none"}).status == 200
        assert raw(server.port, "GET", "/").status == 200


@pytest.mark.parametrize("mode", ["close_mid_stream", "malformed_line", "split"])
def test_faults_on_a_non_streamed_body(sim: Any, mode: str) -> None:
    response = raw(sim.port, "POST", "/api/chat", {**CHAT, "stream": False},
                   {"X-Sim-Fault": mode})
    if mode == "split":
        assert response.complete and json.loads(response.body)["eval_count"] == 20
        return
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.body)
    assert response.complete == (mode == "malformed_line")


def test_error_in_stream_on_a_non_streamed_body_is_500(sim: Any) -> None:
    response = raw(sim.port, "POST", "/api/generate", {**GENERATE, "stream": False},
                   {"X-Sim-Fault": "error_in_stream"})
    assert response.status == 500 and list(json.loads(response.body)) == ["error"]


# ---------------------------------------------------------------------------------------------
# Timing, models, hold and connections


def test_token_rate_and_ttft_pace_the_stream() -> None:
    with SimServer(token_rate=100, ttft=0.05, tokens=6) as server:
        started = time.perf_counter()
        conn = RawConnection(server.port, "POST", "/api/chat", CHAT)
        conn.head()
        conn.chunk()
        first = time.perf_counter() - started
        response = conn.read_all()
        total = time.perf_counter() - started
    final = json.loads(response.chunks[-1])
    assert first >= 0.05 and total >= 0.05 + 5 / 100
    assert final["prompt_eval_duration"] >= 0.05e9
    assert final["eval_duration"] >= 5 / 100 * 1e9
    assert final["total_duration"] >= final["prompt_eval_duration"] + final["eval_duration"]


def test_timing_headers_override_the_server(sim: Any) -> None:
    started = time.perf_counter()
    response = raw(sim.port, "POST", "/api/chat", CHAT,
                   {"X-Sim-TTFT": "0.05", "X-Sim-Token-Rate": "200", "X-Sim-Tokens": "5"})
    elapsed = time.perf_counter() - started
    final = json.loads(response.chunks[-1])
    assert elapsed >= 0.05 + 4 / 200 and final["eval_count"] == 5
    assert final["prompt_eval_duration"] >= 0.05e9 and final["eval_duration"] >= 4 / 200 * 1e9


def test_concurrent_first_requests_share_one_load() -> None:
    with SimServer(load_delay=0.1) as server:
        conns = [RawConnection(server.port, "POST", "/api/chat", CHAT) for _ in range(3)]
        finals = [json.loads(conn.read_all().chunks[-1]) for conn in conns]
        assert max(f["load_duration"] for f in finals) >= 0.1e9
        assert sorted(r["load"] for r in server.reports) == [False, False, True]


def test_load_delay_and_keep_alive() -> None:
    with SimServer(load_delay=0.1) as server:
        cold = ndjson(raw(server.port, "POST", "/api/chat", CHAT))[-1]
        warm = ndjson(raw(server.port, "POST", "/api/chat", CHAT))[-1]
        assert cold["load_duration"] >= 0.1e9 > warm["load_duration"]
        assert [r["load"] for r in server.reports] == [True, False]
        assert [m["name"] for m in get_json(server, "/api/ps")["models"]] == ["llama3.2:latest"]
        unload = get_json(server, "/api/generate", "POST",
                          {"model": "llama3.2", "keep_alive": 0})
        assert unload["done_reason"] == "unload"
        assert get_json(server, "/api/ps") == {"models": []}
        load = get_json(server, "/api/chat", "POST", {"model": "qwen3", "messages": []})
        assert load["done_reason"] == "load"
        assert [m["name"] for m in get_json(server, "/api/ps")["models"]] == ["qwen3:latest"]


def test_hold_forwards_the_first_token_then_waits_for_release(sim: Any) -> None:
    conn = RawConnection(sim.port, "POST", "/api/chat", CHAT, {"X-Sim-Hold": "k1"})
    conn.head()
    first = conn.chunk()
    assert first is not None and json.loads(first)["message"]["content"]
    conn.sock.settimeout(0.1)
    with pytest.raises(TimeoutError):
        conn.chunk()
    assert sim.reports == []
    conn.sock.settimeout(5)
    assert get_json(sim, "/_sim/release/k1", "POST") == {"released": "k1"}
    response = conn.read_all()
    assert response.complete and len(response.chunks) == 20
    sim.release("k2")  # released before the request: it does not wait
    streamed = ndjson(raw(sim.port, "POST", "/api/chat", CHAT, {"X-Sim-Hold": "k2"}))
    assert streamed[-1]["eval_count"] == 20
    get_json(sim, "/_sim/reset", "POST")
    assert get_json(sim, "/_sim/reports") == []


def test_in_process_release_of_a_waiting_request(sim: Any) -> None:
    conn = RawConnection(sim.port, "POST", "/v1/chat/completions", {**CHAT, "stream": True},
                         {"X-Sim-Hold": "k3"})
    conn.head()
    assert conn.chunk() is not None
    sim.release("k3")
    assert conn.read_all().events()[-1] == "[DONE]"
    assert sim.wait_for_reports(1)[0]["eval_count"] == 20


def test_connections_count_drops_when_the_client_leaves(sim: Any) -> None:
    assert get_json(sim, "/_sim/connections") == {"connections": 0}
    conn = RawConnection(sim.port, "POST", "/api/chat", CHAT, {"X-Sim-Hold": "never"})
    conn.head()
    conn.chunk()
    assert sim.connections == 1
    assert get_json(sim, "/_sim/connections") == {"connections": 1}  # the asking one not counted
    conn.close()
    sim.wait_for_connections(0)
    assert get_json(sim, "/_sim/connections") == {"connections": 0}
    assert sim.wait_for_reports(1)[0]["outcome"] == "client_gone"


# ---------------------------------------------------------------------------------------------
# Life cycle and command line


def test_server_life_cycle_and_validation() -> None:
    server = SimServer(port=0)
    with server:
        assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}"
        with pytest.raises(RuntimeError):
            server.start()
    server.stop()  # stopping twice is harmless
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    with server:  # a stopped server starts again, on the same port
        assert ndjson(raw(server.port, "POST", "/api/chat", CHAT))[-1]["eval_count"] == 20
    bad_configs: list[dict[str, Any]] = [
        {"token_rate": -1.0}, {"fault": "explode"}, {"fault": "status:99"}, {"models": []},
        {"tokens": -2}]
    for bad in bad_configs:
        with pytest.raises(ValueError):
            SimServer(**bad)


def test_stop_ends_held_and_stalled_streams() -> None:
    server = SimServer().start()
    held = RawConnection(server.port, "POST", "/api/chat", CHAT, {"X-Sim-Hold": "x"})
    stalled = RawConnection(server.port, "POST", "/api/chat", CHAT, {"X-Sim-Fault": "stall"})
    for conn in (held, stalled):
        conn.head()
        conn.chunk()
    started = time.perf_counter()
    server.stop()
    assert time.perf_counter() - started < 2
    for conn in (held, stalled):
        try:
            assert conn.read_all().complete is False
        except ConnectionResetError:
            conn.close()


def test_command_line_prints_its_url_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, str(SIM_PATH), "--port", "0", "--tokens", "3", "--models", "tiny"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = line.split()[-1]
        assert line.startswith("ollama-sim listening on http://127.0.0.1:")
        port = int(url.rsplit(":", 1)[1])
        objs = ndjson(raw(port, "POST", "/api/generate", {"model": "tiny", "prompt": "hi"}))
        assert objs[-1]["eval_count"] == 3
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.communicate()


def test_command_line_refuses_a_bad_fault() -> None:
    result = subprocess.run([sys.executable, str(SIM_PATH), "--fault", "explode"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "explode" in result.stderr
