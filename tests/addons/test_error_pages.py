"""The error pages addon (addons/error_pages.py): Ollama-shaped from running() to done()."""

from __future__ import annotations

import json

from mitmproxy.proxy.layers.http import _http1
from mitmproxy.test import taddons

from addons.error_pages import ErrorPages
from tests.support.addons import done, running, start


def test_a_502_is_ollama_shaped_only_while_running() -> None:
    original = _http1.make_error_response
    with taddons.context() as tctx:
        tctx.options.mode = ["reverse:http://127.0.0.1:11999"]
        script = start(tctx, ErrorPages())
        running(tctx, script)
        answer = _http1.make_error_response(502, "connection refused")
        done(tctx, script)
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body == {"error": "could not reach Ollama at http://127.0.0.1:11999: "
                             "connection refused"}
    assert _http1.make_error_response is original
