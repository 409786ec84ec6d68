"""dashboard/transport.py against a real local HTTP server: the token stays where it was sent."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from dashboard.transport import authorized_fetch, urllib_fetch
from tests.local_http import serving

TOKEN = {"Authorization": "Bearer 0123456789abcdef0123"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str | None]] = []

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
    fetch = authorized_fetch(TOKEN, [base + "/own"])
    assert fetch(base + "/own/metrics", 5) == (200, b"ok")
    assert fetch(base + "/other", 5) == (200, b"ok")
    assert fetch(base + "/own/redirect", 5) == (200, b"ok")
    assert _Handler.seen == [
        ("/own/metrics", TOKEN["Authorization"]),
        ("/other", None),
        ("/own/redirect", TOKEN["Authorization"]),
        ("/elsewhere", None),
    ]


def test_a_cut_body_is_an_oserror(base: str) -> None:
    with pytest.raises(OSError, match="broken HTTP answer"):
        urllib_fetch(base + "/own/cut", 5)
