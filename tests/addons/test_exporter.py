"""The metrics port addon (addons/exporter.py): its options, its server's life, its answers."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from addons.context import ProxyContext
from addons.exporter import Exporter
from llama_core.record import RequestRecord
from llama_core.security import Security
from tests.support.addons import done, running, start
from tests.support.ports import free_port

TOKEN = "t" * 32


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def base(exporter: Exporter) -> str:
    assert exporter.server is not None
    return f"http://127.0.0.1:{exporter.server.port}"


def test_serves_from_running_to_done() -> None:
    context = ProxyContext()
    exporter = Exporter(context)
    with taddons.context() as tctx:
        tctx.options.mode = ["reverse:http://127.0.0.1:11999"]
        script = start(tctx, exporter, command_line=("metrics_port=0",))
        assert exporter.server is None  # configured, not serving: running() starts it
        running(tctx, script)
        url = base(exporter)
        context.publish(RequestRecord(started_at=1.0, endpoint="/api/chat", model="m",
                                      status=200, prompt="secret", response="answer"))
        status, body = get(url + "/health")
        assert status == 200
        health = json.loads(body)
        assert (health["status"], health["upstream"], health["upstream_up"]) == (
            "ok", "http://127.0.0.1:11999", None)
        status, body = get(url + "/requests?limit=5")
        [row] = json.loads(body)
        assert (row["endpoint"], "prompt" in row, "response" in row) == ("/api/chat", False, False)
        status, body = get(url + "/metrics")
        assert status == 200 and b"ollama_proxy_build_info" in body
        done(tctx, script)
    assert exporter.server is None
    with pytest.raises(OSError):
        get(url + "/health")


def test_a_later_port_moves_the_server() -> None:
    exporter = Exporter(ProxyContext())
    with taddons.context() as tctx:
        script = start(tctx, exporter, command_line=("metrics_port=0",))
        running(tctx, script)
        port = free_port()
        tctx.options.metrics_port = port
        assert exporter.server is not None and exporter.server.port == port
        assert get(f"http://127.0.0.1:{port}/health")[0] == 200
        done(tctx, script)


def test_a_later_port_taken_is_refused_and_the_old_one_serves_on() -> None:
    exporter = Exporter(ProxyContext())
    with taddons.context() as tctx, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        script = start(tctx, exporter, command_line=("metrics_port=0",))
        running(tctx, script)
        with pytest.raises(exceptions.OptionsError, match=f"metrics_port {taken.getsockname()[1]}"):
            tctx.options.metrics_port = taken.getsockname()[1]
        assert tctx.options.metrics_port == 0
        assert get(base(exporter) + "/health")[0] == 200
        done(tctx, script)


def test_a_later_port_out_of_range_is_refused() -> None:
    exporter = Exporter(ProxyContext())
    with taddons.context() as tctx:
        script = start(tctx, exporter, command_line=("metrics_port=0",))
        running(tctx, script)
        with pytest.raises(exceptions.OptionsError, match="proxy.metrics_port=70000"):
            tctx.options.metrics_port = 70000
        done(tctx, script)


@pytest.mark.parametrize(("command_line", "named"), [
    (("metrics_port=99999",), "proxy.metrics_port='99999' (from command line)"),
    (("metrics_host=0.0.0.0",), "proxy.metrics_host"),  # other machines reach it, no token
])
def test_a_bad_address_stops_the_start(
    command_line: tuple[str, ...], named: str, caplog: pytest.LogCaptureFixture
) -> None:
    with taddons.context() as tctx, pytest.raises(SystemExit) as stopped:
        start(tctx, Exporter(ProxyContext()), command_line=command_line)
    assert stopped.value.code == 2 and named in caplog.text


def test_the_token_of_the_context_guards_the_port() -> None:
    exporter = Exporter(ProxyContext(security=Security(TOKEN)))
    with taddons.context() as tctx:
        script = start(tctx, exporter, command_line=("metrics_port=0",))
        running(tctx, script)
        assert get(base(exporter) + "/metrics")[0] == 401
        assert get(base(exporter) + "/metrics", TOKEN)[0] == 200
        done(tctx, script)
