"""addons/headers.py: the same value as mitmproxy's Headers.get, from the raw fields."""

from __future__ import annotations

import pytest
from mitmproxy import http

from addons.headers import header


@pytest.mark.parametrize("fields", [
    [],
    [(b"Content-Type", b"application/json")],
    [(b"content-type", b"a"), (b"X-Other", b"b"), (b"CONTENT-TYPE", b"c")],  # folded
    [(b"Content-Type", b"caf\xc3\xa9 \xff")],  # UTF-8, and a byte that is not
    [(b"Content-Type", b"")],
    [(b"X-Priority", b" High ")],
])
@pytest.mark.parametrize("name", ["content-type", "x-priority", "missing"])
def test_the_same_as_headers_get(fields: list[tuple[bytes, bytes]], name: str) -> None:
    headers = http.Headers(fields)
    assert header(headers, name.encode()) == headers.get(name)
