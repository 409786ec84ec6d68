"""Issue 15, the request side, through a real mitmdump: what Ollama's own source does with
loads, bodies, preflights, model names, silences and restarts, compared with the direct answer."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from llama_core.history import readers
from ollama_sim import SimServer
from tests.reliability.wire import Answer, exchange, normalize, samples_delta
from tests.support.processes import Proxy, run_proxy
from tests.support.waits import poll

pytestmark = pytest.mark.e2e
LABEL = "llama3.2:latest"
# Headers whose values differ between two answers of the same server, or that name the hop.
VOLATILE_HEADERS = {"date", "server", "via"}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(port=0, tokens=4, seed=3, load_delay=0.3) as server:
        yield server


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("history") / "history.db"


@pytest.fixture(scope="module")
def proxy(sim: SimServer, history: Path) -> Iterator[Proxy]:
    # One slot: a request that is not admitted promptly would show as a wait or a hang.
    with run_proxy(sim.url, "--set", f"history_path={history}", "--set", "max_concurrency=1",
                   "--set", "inventory_interval_seconds=0.2") as running:
        running.wait_for(lambda s: s.get(("ollama_proxy_upstream_up", ())) == 1)
        yield running


def raw_exchange(port: int, request: bytes, timeout: float = 10.0) -> tuple[bytes, list[tuple[
        str, str]], bytes]:
    """Send raw bytes (the connection closes after one answer); the status line, headers, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = [tuple(h.split(": ", 1)) for h in lines[1:] if ": " in h]
        length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
        if not request.startswith(b"HEAD"):
            while len(body) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
    return lines[0].encode(), [(k, v) for k, v in headers if k.lower() not in VOLATILE_HEADERS
                               ], body


def rows(path: Path, count: int) -> list[dict[str, Any]]:
    def read() -> list[dict[str, Any]]:
        with closing(readers.connect_readonly(path)) as conn:
            return readers.recent_requests(conn, 200)
    return poll(read, lambda found: len(found) >= count, timeout=10)


# -- 2. loads and unloads ---------------------------------------------------------------------

LIFECYCLE = [
    ("/api/generate", {"model": "llama3.2"}, "load"),
    ("/api/chat", {"model": "llama3.2", "messages": [], "stream": True}, "load"),
    ("/api/generate", {"model": "llama3.2", "keep_alive": 0}, "unload"),
    ("/api/chat", {"model": "llama3.2", "keep_alive": "0s"}, "unload"),
    ("/api/embed", {"model": "nomic-embed-text", "input": []}, "load"),
    ("/api/embeddings", {"model": "nomic-embed-text", "prompt": ""}, "load"),
    ("/v1/completions", {"model": "llama3.2", "prompt": ""}, "load"),
]


def test_loads_and_unloads_pass_as_sent_and_are_counted_as_what_they_are(
    sim: SimServer, proxy: Proxy, history: Path
) -> None:
    before = proxy.scrape()
    seen_rows = len(rows(history, 0))
    for path, body, _ in LIFECYCLE:
        through = exchange(proxy.port, path, body)  # first: it is the one that loads
        direct = exchange(sim.port, path, body)
        assert (through.status, through.content_type) == (direct.status, direct.content_type)
        assert normalize(through.body) == normalize(direct.body)
        assert not through.body.endswith(b"}\n") or path.startswith("/v1/")  # c.JSON: no \n
    after = proxy.wait_counted(sum(v for (n, _), v in before.items()
                                   if n == "ollama_proxy_requests_total") + len(LIFECYCLE))
    per_endpoint = Counter(path for path, _, _ in LIFECYCLE)
    for path, count in per_endpoint.items():
        model = "nomic-embed-text:latest" if "embed" in path else LABEL
        assert samples_delta(before, after, "requests_total", endpoint=path, model=model,
                             status="200") == count
        for series in ("time_to_first_token_seconds_count", "request_duration_seconds_count"):
            assert samples_delta(before, after, series, endpoint=path, model=model) == 0
    for action, model, count in (("load", LABEL, 3), ("unload", LABEL, 2),
                                 ("load", "nomic-embed-text:latest", 2)):
        assert samples_delta(before, after, "model_lifecycle_requests_total", model=model,
                             action=action) == count
        assert samples_delta(before, after, "model_lifecycle_duration_seconds_count",
                             model=model, action=action) == count
    assert samples_delta(before, after, "generated_tokens_total", model=LABEL) == 0
    written = rows(history, seen_rows + len(LIFECYCLE))[: len(LIFECYCLE)]
    assert all(r["generated_tokens"] is None and r["ttft_s"] is None and not r["stream"]
               for r in written)
    # The first load of each model waited for it (load_delay 0.3 s): the row says it loaded.
    loaded = [r for r in written if r["loaded_model"]]
    assert {r["model"] for r in loaded} <= {LABEL, "nomic-embed-text:latest"} and loaded
    assert all(r["load_duration_s"] >= 0.25 for r in loaded)


# -- 3. bodies Go's decoder accepts -------------------------------------------------------------

HOSTILE = [
    b'{"model":"llama3.2","prompt":"cut emoji \\ud83d","stream":false}',  # ollama-js, cut emoji
    b'{"Model":"Llama3.2","Prompt":"hi","STREAM":false}',  # keys without regard to case
    b'{"model":"nope","prompt":"hi","model":"llama3.2","stream":false}',  # last one wins
    b'{"model":"llama3.2","prompt":"hi","stream":false} {"model":"trailing"}',
    b'{"model":"llama3.2","prompt":"caf\xe9 \xff","stream":false}',  # not UTF-8
    b'{"model":"llama3.2","prompt":"hi","stream":false,"seed2":' + b"9" * 5000 + b"}",
    b'{"model":"llama3.2","prompt":"hi","stream":false,"options":{"temperature":1e400}}',  # 400
]


@pytest.mark.parametrize("body", HOSTILE, ids=range(len(HOSTILE)))
def test_a_body_go_reads_is_attributed_admitted_and_counted(
    sim: SimServer, proxy: Proxy, body: bytes
) -> None:
    direct = exchange(sim.port, "/api/generate", body)
    sim.reset()
    before = proxy.scrape()
    through = exchange(proxy.port, "/api/generate", body)
    assert (through.status, normalize(through.body)) == (direct.status, normalize(direct.body))
    [report] = sim.wait_for_reports(1)
    if direct.status == 200:  # (a 400 is Go's decoder refusing it before any model)
        assert report["model"].lower().startswith("llama3.2")  # what Ollama was asked for
    after = proxy.wait_counted(sum(v for (n, _), v in before.items()
                                   if n == "ollama_proxy_requests_total") + 1)
    assert samples_delta(before, after, "requests_total", endpoint="/api/generate",
                         model=LABEL, status=str(direct.status)) == 1
    assert samples_delta(before, after, "queue_wait_seconds_count", priority="normal") == 1


def test_usage_injection_keeps_the_clients_bytes_and_hides_the_usage(
    sim: SimServer, proxy: Proxy
) -> None:
    body = (b'{"model":"llama3.2","Stream":true,"messages":[{"role":"user",'
            b'"content":"\\ud83d half an emoji"}]} trailing')
    direct = exchange(sim.port, "/v1/chat/completions", body)
    before = proxy.scrape()
    through = exchange(proxy.port, "/v1/chat/completions", body)
    assert through.status == direct.status == 200
    assert normalize(through.body) == normalize(direct.body)  # no usage chunk: as direct
    after = proxy.wait_counted(sum(v for (n, _), v in before.items()
                                   if n == "ollama_proxy_requests_total") + 1)
    assert samples_delta(before, after, "generated_tokens_total", model=LABEL) == 4
    assert samples_delta(before, after, "usage_estimated_total", endpoint="/v1/chat/completions",
                         model=LABEL) == 0  # the count is Ollama's: usage came upstream


# -- 6. preflights and HEAD ---------------------------------------------------------------------

PROBES = [
    b"OPTIONS /api/chat HTTP/1.1\r\nHost: H\r\nOrigin: http://localhost:3000\r\n"
    b"Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n"
    b"Connection: close\r\n\r\n",
    b"OPTIONS /v1/chat/completions HTTP/1.1\r\nHost: H\r\nOrigin: https://evil.example\r\n"
    b"Connection: close\r\n\r\n",
    b"OPTIONS /api/generate HTTP/1.1\r\nHost: H\r\nConnection: close\r\n\r\n",
    b"HEAD /api/chat HTTP/1.1\r\nHost: H\r\nConnection: close\r\n\r\n",
    b"GET /api/embed HTTP/1.1\r\nHost: H\r\nConnection: close\r\n\r\n",
]


def test_preflights_and_head_answer_as_upstream_without_waiting_or_counting(
    sim: SimServer, proxy: Proxy
) -> None:
    host = f"127.0.0.1:{sim.port}".encode()  # the Host mitmproxy's reverse mode sends upstream
    expected = [raw_exchange(sim.port, p.replace(b"Host: H", b"Host: " + host)) for p in PROBES]
    assert [e[0] for e in expected] == [b"HTTP/1.1 204 No Content", b"HTTP/1.1 403 Forbidden",
                                        b"HTTP/1.1 405 Method Not Allowed",
                                        b"HTTP/1.1 405 Method Not Allowed",
                                        b"HTTP/1.1 405 Method Not Allowed"]
    # The only slot is taken by a held stream: an inference POST would wait now.
    held = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
    chat = json.dumps({"model": "llama3.2", "messages": [{"role": "user", "content": "x"}]})
    held.sendall(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nX-Sim-Hold: probes\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(chat), chat.encode()))
    assert held.recv(65536)  # its first token: it holds the slot
    before = proxy.scrape()
    try:
        started = time.monotonic()
        through = [raw_exchange(proxy.port, p) for p in PROBES]
        assert time.monotonic() - started < 5  # none waited for the held slot
    finally:
        sim.release("probes")
        received = b""
        while b'"done":true' not in received and (chunk := held.recv(65536)):
            received += chunk
        held.close()
    for (status, headers, body), (d_status, d_headers, d_body) in zip(
            through, expected, strict=True):
        assert (status, body) == (d_status, d_body)
        assert headers == d_headers  # names, order, values and the repeated Vary lines
    after = proxy.scrape()
    assert samples_delta(before, after, "non_post_requests_total", endpoint="/api/chat",
                         method="OPTIONS", status="204") == 1
    assert samples_delta(before, after, "non_post_requests_total", endpoint="/api/chat",
                         method="HEAD", status="405") == 1
    for endpoint in ("/api/chat", "/v1/chat/completions", "/api/generate", "/api/embed"):
        assert samples_delta(before, after, "requests_total", endpoint=endpoint, model="none",
                             status="405") == 0
    assert samples_delta(before, after, "queue_wait_seconds_count", priority="normal") == 0


# -- 7. one model, one label --------------------------------------------------------------------


def test_every_spelling_of_a_model_is_the_listed_name(sim: SimServer, proxy: Proxy) -> None:
    before = proxy.scrape()
    names = ["Llama3.2", "llama3.2", "llama3.2:latest", "LLAMA3.2:Latest", "library/llama3.2"]
    for name in names:
        answer = exchange(proxy.port, "/api/generate",
                          {"model": name, "prompt": "hi", "stream": False})
        assert answer.status == 200 and answer.json()["model"] == name  # Ollama echoes it
    after = proxy.wait_counted(sum(v for (n, _), v in before.items()
                                   if n == "ollama_proxy_requests_total") + len(names))
    assert samples_delta(before, after, "requests_total", endpoint="/api/generate",
                         model=LABEL, status="200") == len(names)
    grown = {lab for (n, lab), v in after.items() if n == "ollama_proxy_requests_total"
             and v != before.get((n, lab), 0.0)}
    assert grown == {(("client", ""), ("endpoint", "/api/generate"), ("model", LABEL),
                      ("status", "200"))}


# -- 5. long silences ---------------------------------------------------------------------------


def test_a_long_silence_is_not_cut_while_an_idle_connection_is(sim: SimServer) -> None:
    # mitmproxy's idle limit (tcp_timeout, 600 s by default) shortened to 1 s: the request's
    # 2.5 s of silence (a non-streamed generation on a CPU) still gets its whole answer.
    body = {"model": "llama3.2", "prompt": "slow", "stream": False}
    slow = {"X-Sim-TTFT": "2.5"}
    direct = exchange(sim.port, "/api/generate", body, slow)
    with run_proxy(sim.url, "--set", "tcp_timeout=1") as proxy:
        through = exchange(proxy.port, "/api/generate", body, slow)
        assert through.status == 200 and through.complete
        assert normalize(through.body) == normalize(direct.body)
        samples = proxy.wait_counted(1)
        assert samples.get(("ollama_proxy_errors_total", (
            ("client", ""), ("endpoint", "/api/generate"), ("error_type", "client_cancelled"),
            ("model", LABEL))), 0) == 0
        # The limit still closes a connection with nothing in flight.
        idle = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        started = time.monotonic()
        assert idle.recv(1) == b""
        assert 0.5 < time.monotonic() - started < 5
        idle.close()


def test_the_upstream_timeout_answers_an_ollama_shaped_504(sim: SimServer) -> None:
    body = {"model": "llama3.2", "prompt": "slow", "stream": False}
    env = {"LLAMA_METRICS_PROXY_UPSTREAM_TIMEOUT_SECONDS": "0.5"}  # from the environment
    with run_proxy(sim.url, env=env) as proxy:
        sim.reset()
        started = time.monotonic()
        answer = exchange(proxy.port, "/api/generate", body, {"X-Sim-TTFT": "5"})
        assert time.monotonic() - started < 4
        assert answer.status == 504 and answer.content_type == "application/json; charset=utf-8"
        assert "upstream_timeout_seconds" in answer.json()["error"]
        samples = proxy.wait_counted(1)
        key = ("ollama_proxy_errors_total", (("client", ""), ("endpoint", "/api/generate"),
                                             ("error_type", "timeout"), ("model", LABEL)))
        assert samples[key] == 1
        [report] = sim.wait_for_reports(1, timeout=10)
        assert report["outcome"] == "client_gone"  # the proxy let go: Ollama stops
        fast = exchange(proxy.port, "/api/generate", body)
        assert fast.status == 200 and fast.complete


# -- 11. Ollama restarting ----------------------------------------------------------------------


def test_a_request_waits_out_a_restart_and_is_sent_once() -> None:
    with SimServer(port=0, tokens=4, seed=3) as sim, run_proxy(sim.url) as proxy:
        body = {"model": "llama3.2", "prompt": "hi", "stream": False}
        assert exchange(proxy.port, "/api/generate", body).status == 200
        sim.reset()
        sim.restart(down_for=1.0)  # refuses connections for a second
        result: list[Answer] = []
        client = threading.Thread(target=lambda: result.append(
            exchange(proxy.port, "/api/generate", body)))
        started = time.monotonic()
        client.start()
        client.join(timeout=30)
        [answer] = result
        assert answer.status == 200 and answer.complete
        assert 0.5 < time.monotonic() - started < 5
        assert len(sim.wait_for_reports(1)) == 1  # sent once
        samples = proxy.wait_counted(2)
        assert samples[("ollama_proxy_upstream_connect_retries_total", ())] >= 1
        assert samples[("ollama_proxy_upstream_connect_waits_total",
                        (("outcome", "connected"),))] == 1


def test_past_the_budget_the_client_gets_its_502() -> None:
    with SimServer(port=0, tokens=4, seed=3) as sim, run_proxy(
            sim.url, "--set", "upstream_connect_retry_seconds=0.4") as proxy:
        sim.restart(down_for=4.0)
        started = time.monotonic()
        answer = exchange(proxy.port, "/api/generate", {"model": "llama3.2", "prompt": "hi"})
        waited = time.monotonic() - started
        assert answer.status == 502 and "could not reach Ollama" in answer.json()["error"]
        assert 0.3 < waited < 3
        samples = proxy.wait_counted(1)
        assert samples[("ollama_proxy_upstream_connect_waits_total",
                        (("outcome", "gave_up"),))] == 1
        assert samples[("ollama_proxy_errors_total", (
            ("client", ""), ("endpoint", "/api/generate"), ("error_type", "upstream_unreachable"),
            ("model", LABEL)))] == 1
