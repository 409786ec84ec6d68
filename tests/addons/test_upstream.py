"""addons/upstream.py: its options, the wait for a refusing Ollama, and its hooks never raise."""

from __future__ import annotations

import asyncio
import socket

import pytest
from mitmproxy import connection, exceptions
from mitmproxy.proxy import server_hooks
from mitmproxy.test import taddons, tflow
from prometheus_client import CollectorRegistry

from addons.upstream import UpstreamGuard, timeout_response
from tests.support.addons import running, start
from tests.support.ports import free_port


@pytest.mark.parametrize(("value", "seconds"), [("5", 5.0), (" 0.25 ", 0.25), ("0", 0.0)])
def test_seconds_are_read_from_text(value: str, seconds: float) -> None:
    guard = UpstreamGuard(CollectorRegistry())
    with taddons.context() as tctx:
        start(tctx, guard, command_line=(f"upstream_connect_retry_seconds={value}",))
        assert guard.retry_s == seconds


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "soon", "", "301"])
def test_a_bad_value_at_start_names_the_option(
    value: str, caplog: pytest.LogCaptureFixture
) -> None:
    with taddons.context() as tctx, pytest.raises(SystemExit):
        start(tctx, UpstreamGuard(CollectorRegistry()),
              command_line=(f"upstream_connect_retry_seconds={value}",))
    assert "proxy.upstream_connect_retry_seconds" in caplog.text


def test_the_timeout_answer_is_ollama_shaped() -> None:
    head, _, body = timeout_response(2.5).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 504 ")
    assert b"Content-Length: %d" % len(body) in head
    assert body == b'{"error": "llama-metrics proxy: Ollama did not begin its answer within ' \
                   b'2.5 s (upstream_timeout_seconds)"}'


def test_a_later_bad_value_is_refused_and_the_last_good_one_kept() -> None:
    guard = UpstreamGuard(CollectorRegistry())
    with taddons.context() as tctx:
        script = start(tctx, guard, command_line=("upstream_timeout_seconds=7",))
        running(tctx, script)
        assert guard.timeout_s == 7.0
        tctx.options.upstream_timeout_seconds = "3"
        assert guard.timeout_s == 3.0
        with pytest.raises(exceptions.OptionsError, match="upstream_timeout_seconds"):
            tctx.options.upstream_timeout_seconds = "-3"
        assert guard.timeout_s == 3.0


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_a_refusing_address_is_waited_for_then_given_up() -> None:
    registry = CollectorRegistry()
    guard = UpstreamGuard(registry)
    assert run(guard.wait_until_accepting(("127.0.0.1", free_port()), 0.3)) is False
    assert (registry.get_sample_value("ollama_proxy_upstream_connect_retries_total") or 0) >= 2
    assert registry.get_sample_value("ollama_proxy_upstream_connect_waits_total",
                                     {"outcome": "gave_up"}) == 1


def test_a_listening_address_is_not_waited_for() -> None:
    registry = CollectorRegistry()
    guard = UpstreamGuard(registry)
    with socket.create_server(("127.0.0.1", 0)) as server:
        assert run(guard.wait_until_accepting(server.getsockname(), 5)) is True
    assert registry.get_sample_value("ollama_proxy_upstream_connect_retries_total") == 0


@pytest.mark.parametrize("address", [None, ("127.0.0.1", 0), ("no such host.invalid", 1)])
def test_server_connect_never_raises(address: tuple[str, int] | None) -> None:
    guard = UpstreamGuard(CollectorRegistry())
    guard.retry_s = 0.1
    server = connection.Server(address=address)
    data = server_hooks.ServerConnectionHookData(server=server, client=tflow.tclient_conn())
    run(guard.server_connect(data))  # returns; mitmproxy then connects (or fails) as usual
