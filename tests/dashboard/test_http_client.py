"""dashboard/http_client.py against a real local HTTP server: the token stays where it was sent,
every request that got no answer is one ``FetchError`` raised from its cause."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from dashboard.http_client import Client, FetchError, Request, Response
from llama_core.traffic import header
from tests.local_http import serving

TOKEN = {"Authorization": "Bearer 0123456789abcdef0123"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str | None]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.path, self.headers.get("X-Llama-Metrics-Source")))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        self.wfile.write(body + b"\n" + b"second\n")
        self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.seen.append((self.path, self.headers.get("Authorization")))
        if self.path.startswith("/own/redirect"):
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/own/cut":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"short")
            self.close_connection = True
        else:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def base() -> Iterator[str]:
    _Handler.seen = []
    with serving(_Handler) as url:
        yield url


def test_token_goes_to_own_urls_only_and_not_over_a_redirect(base: str) -> None:
    client = Client(token_headers=TOKEN, own_urls=[base + "/own"])
    answers = [client.get(base + path, timeout=5)
               for path in ("/own/metrics", "/other", "/own/redirect")]
    assert [(a.status, a.body) for a in answers] == [(200, b"ok")] * 3
    assert _Handler.seen == [
        ("/own/metrics", TOKEN["Authorization"]),
        ("/other", None),
        ("/own/redirect", TOKEN["Authorization"]),
        ("/elsewhere", None),
    ]


def test_a_cut_body_is_a_fetch_error_from_its_cause(base: str) -> None:
    with pytest.raises(FetchError, match="broken HTTP answer") as caught:
        Client().get(base + "/own/cut", timeout=5)
    assert caught.value.url == base + "/own/cut" and caught.value.__cause__ is not None
    assert not caught.value.refused and not caught.value.timed_out


def test_a_refused_connection_says_so(base: str) -> None:
    with serving(_Handler) as gone:
        pass  # stopped: nothing listens on its port any more
    with pytest.raises(FetchError) as caught:
        Client().get(gone + "/metrics", timeout=5)
    assert caught.value.refused and caught.value.reason == "connection refused"
    assert str(caught.value) == f"could not reach {gone}/metrics: connection refused"


def test_an_injected_transport_failure_is_translated_the_same_way() -> None:
    def send(request: Request) -> Response:
        raise TimeoutError("timed out")

    with pytest.raises(FetchError, match="timed out after 2 s") as caught:
        Client(send).get("http://peer.test/health", timeout=2)
    assert caught.value.timed_out and isinstance(caught.value.__cause__, TimeoutError)


def test_an_http_error_status_is_an_answer() -> None:
    client = Client(lambda request: Response(request.url, 503, b'{"error": "busy"}'))
    answer = client.get("http://peer.test/x", timeout=1)
    assert (answer.status, answer.ok, answer.json()) == (503, False, {"error": "busy"})


def test_a_stream_is_read_line_by_line_with_its_headers(base: str) -> None:
    with Client().stream(base + "/api/generate", timeout=5, payload={"a": 1},
                         headers=header("dashboard")) as answer:
        assert answer.status == 200
        assert [answer.readline(5), answer.readline(5), answer.readline(5)] == [
            b'{"a": 1}\n', b"second\n", b""]
    assert _Handler.seen == [("/api/generate", "dashboard")]
