"""addons/upstream_client.py: every GET that got no answer is one ``UpstreamError`` raised from
its cause; an HTTP error status is an answer; a real local server and an injected transport."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from addons.upstream_client import Request, Response, UpstreamClient, UpstreamError
from tests.local_http import serving


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path == "/cut":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"short")
            self.close_connection = True
            return
        body = b'{"error": "boom"}' if self.path == "/fails" else b'{"version": "0.9.0"}'
        self.send_response(500 if self.path == "/fails" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def base() -> Iterator[str]:
    with serving(_Handler) as url:
        yield url


def test_an_answer_and_an_error_status_are_responses(base: str) -> None:
    client = UpstreamClient()
    answer = client.get(base + "/api/version", timeout=5)
    assert (answer.status, answer.ok, answer.json()) == (200, True, {"version": "0.9.0"})
    failed = client.get(base + "/fails", timeout=5)
    assert (failed.status, failed.ok, failed.json()) == (500, False, {"error": "boom"})


def test_a_cut_body_is_an_upstream_error_from_its_cause(base: str) -> None:
    with pytest.raises(UpstreamError, match=f"could not reach {base}/cut: broken HTTP") as e:
        UpstreamClient().get(base + "/cut", timeout=5)
    assert e.value.__cause__ is not None


def test_a_refused_connection_says_so() -> None:
    with serving(_Handler) as gone:
        pass  # stopped: nothing listens on its port any more
    with pytest.raises(UpstreamError, match="connection refused$"):
        UpstreamClient().get(gone + "/api/ps", timeout=5)


def test_an_injected_transport_failure_is_translated_the_same_way() -> None:
    def send(request: Request) -> Response:
        assert request.headers["Accept"] == "application/json"
        raise TimeoutError("timed out")

    with pytest.raises(UpstreamError, match="timed out after 2 s") as caught:
        UpstreamClient(send).get("http://ollama.test/api/tags", timeout=2)
    assert isinstance(caught.value.__cause__, TimeoutError)
