"""healthd/client.py against a real local HTTP server: the token is not carried over a redirect."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from healthd.client import request
from tests.local_http import serving

TOKEN = "Bearer 0123456789abcdef0123"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.seen.append((self.path, self.headers.get("Authorization")))
        redirect = self.path == "/health"
        self.send_response(302 if redirect else 200)
        if redirect:
            self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def base() -> Iterator[str]:
    _Handler.seen = []
    with serving(_Handler) as url:
        yield url


def test_headers_are_not_carried_over_a_redirect(base: str) -> None:
    response = request(base + "/health", timeout=5, headers={"Authorization": TOKEN})
    assert response.status == 200
    assert _Handler.seen == [("/health", TOKEN), ("/elsewhere", None)]
