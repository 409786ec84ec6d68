"""Faults through a real mitmdump: nothing is buffered, nothing is hidden, everything is counted."""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.reliability.wire import samples_delta
from tests.support.ports import refusing_port
from tests.support.processes import Proxy, run_proxy

pytestmark = pytest.mark.e2e
CHAT = {"model": "llama3.2", "messages": [{"role": "user", "content": "hello"}]}
LABEL = "llama3.2:latest"


def requests_total(samples: dict) -> float:
    return sum(v for (n, _), v in samples.items() if n == "ollama_proxy_requests_total")


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    return samples_delta(before, after, name, **labels)  # client "" where the series has one


@contextmanager
def posted(port: int, path: str, body: dict, headers: dict[str, str] | None = None
           ) -> Iterator[http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json",
                                                       **(headers or {})})
        yield conn.getresponse()
    finally:
        conn.close()


def post(port: int, path: str, body: dict, headers: dict[str, str] | None = None
         ) -> tuple[int, str, bytes]:
    with posted(port, path, body, headers) as response:
        return response.status, response.getheader("Content-Type", ""), response.read()


def raw_post(port: int, path: str, body: dict, headers: dict[str, str]) -> bytes:
    """Everything the server sends until it closes, chunk framing included."""
    data = json.dumps(body).encode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}"
                     f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_upstream_not_running_gives_an_ollama_shaped_502() -> None:
    with refusing_port() as port, run_proxy(f"http://127.0.0.1:{port}") as proxy:
        status, content_type, data = post(proxy.port, "/api/chat", CHAT)
        assert status == 502
        assert content_type.startswith("application/json")
        assert "could not reach Ollama" in json.loads(data)["error"]
        after = proxy.wait_counted(1)
        assert delta({}, after, "errors_total", endpoint="/api/chat", model=LABEL,
                     error_type="upstream_unreachable") == 1
        assert delta({}, after, "requests_total", endpoint="/api/chat", model=LABEL,
                     status="502") == 1
        assert delta({}, after, "active_requests", model=LABEL) == 0
        assert "Traceback" not in proxy.log


def test_first_token_reaches_the_client_while_the_upstream_holds_the_rest(
    proxy: Proxy, sim: Any
) -> None:
    finished = len(sim.reports)
    with posted(proxy.port, "/api/chat", CHAT, {"X-Sim-Hold": "first-token"}) as response:
        assert response.status == 200
        first = json.loads(response.readline())  # arrives while the simulator still holds
        assert first["done"] is False and first["message"]["content"]
        assert len(sim.reports) == finished  # the upstream has not finished this request
        sim.release("first-token")
        rest = [json.loads(line) for line in response.read().splitlines() if line.strip()]
    assert rest[-1]["done"] is True


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [("malformed_line", "malformed_response"), ("error_in_stream", "stream_error")],
)
def test_bad_streams_pass_through_as_sent_and_are_counted(
    proxy: Proxy, sim: Any, fault: str, error_type: str
) -> None:
    direct = post(sim.port, "/api/chat", CHAT, {"X-Sim-Fault": fault})[2].splitlines()
    before = proxy.scrape()
    through = post(proxy.port, "/api/chat", CHAT, {"X-Sim-Fault": fault})[2].splitlines()
    after = proxy.wait_counted(requests_total(before) + 1)
    # Same lines (timestamps aside): the proxy neither drops nor repairs what it cannot parse.
    assert [strip_time(x) for x in through] == [strip_time(x) for x in direct]
    assert delta(before, after, "errors_total", endpoint="/api/chat", model=LABEL,
                 error_type=error_type) == 1
    assert delta(before, after, "active_requests", model=LABEL) == 0


def strip_time(line: bytes) -> object:
    try:
        obj = json.loads(line)
    except ValueError:
        return line
    if isinstance(obj, dict):
        for key in ("created_at", "total_duration", "load_duration", "prompt_eval_duration",
                    "eval_duration"):
            obj.pop(key, None)
    return obj


def test_upstream_closing_mid_stream_is_passed_on_and_counted(proxy: Proxy, sim: Any) -> None:
    before = proxy.scrape()
    received = raw_post(proxy.port, "/api/chat", CHAT, {"X-Sim-Fault": "close_mid_stream"})
    assert received.startswith(b"HTTP/1.1 200")
    assert b'"done":false' in received
    assert not received.endswith(b"0\r\n\r\n")  # cut off, as the upstream cut it
    after = proxy.wait_counted(requests_total(before) + 1)
    assert delta(before, after, "errors_total", endpoint="/api/chat", model=LABEL,
                 error_type="stream_aborted") == 1
    assert delta(before, after, "active_requests", model=LABEL) == 0


def test_client_leaving_mid_stream_frees_everything_and_closes_upstream(
    proxy: Proxy, sim: Any
) -> None:
    before = proxy.scrape()
    sock = socket.create_connection(("127.0.0.1", proxy.port))
    body = json.dumps(CHAT).encode()
    sock.sendall(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"X-Sim-Hold: never\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    received = b""
    while b'"done":false' not in received:
        received += sock.recv(65536)
    assert proxy.value("active_requests", model=LABEL) == 1
    sock.close()
    sim.wait_for_connections(0, timeout=10)  # the proxy closed its upstream connection
    after = proxy.wait_counted(requests_total(before) + 1)
    assert delta(before, after, "errors_total", endpoint="/api/chat", model=LABEL,
                 error_type="client_cancelled") == 1
    assert delta(before, after, "active_requests", model=LABEL) == 0


def test_a_flood_of_model_names_keeps_labels_bounded(proxy: Proxy) -> None:
    before = requests_total(proxy.scrape())
    for i in range(60):
        post(proxy.port, "/api/generate", {"model": f"flood-{i}", "prompt": "x"})
    after = proxy.wait_counted(before + 60)
    models = {dict(labels).get("model") for (name, labels) in after
              if name == "ollama_proxy_requests_total"}
    flood = {m for m in models if m and m.startswith("flood-")}
    assert len(flood) <= 20 and "other" in models


def test_no_exception_reached_mitmproxy(proxy: Proxy) -> None:
    assert "Traceback" not in proxy.log
    assert "stream tap failed" not in proxy.log


def test_recent_requests_endpoint_lists_finished_requests_without_text(proxy: Proxy) -> None:
    status, _, _ = post(proxy.port, "/api/generate", {"model": "llama3.2", "prompt": "secret"})
    assert status == 200
    proxy.wait_counted(1)
    with urllib.request.urlopen(proxy.metrics_url + "/requests?limit=1", timeout=10) as r:
        (latest,) = json.loads(r.read())
    assert latest["endpoint"] == "/api/generate" and latest["model"] == "llama3.2:latest"
    assert latest["generated_tokens"] == 12
    assert "prompt" not in latest and "response" not in latest
    with pytest.raises(urllib.error.HTTPError) as bad:
        urllib.request.urlopen(proxy.metrics_url + "/requests?limit=zero", timeout=10)
    assert bad.value.code == 400 and "limit" in json.loads(bad.value.read())["error"]
    bad.value.close()
