"""The listen addon (addons/listen.py): the configured address, never every interface."""

from __future__ import annotations

import pytest
from mitmproxy.addons import proxyserver
from mitmproxy.test import taddons

from addons.context import ProxyContext
from addons.listen import Listen
from llama_core.security import Security
from tests.support.addons import start


def test_no_address_given_means_the_configured_one_and_lazy_connections() -> None:
    context = ProxyContext()
    context.settings["listen_host"] = "127.0.0.2"
    listen = Listen(context)
    with taddons.context(proxyserver.Proxyserver()) as tctx:
        start(tctx, listen)
        assert (tctx.options.listen_host, tctx.options.connection_strategy) == (
            "127.0.0.2", "lazy")
    assert listen.rebind  # mitmproxy bound before the script could say where


def test_an_address_given_to_mitmdump_is_kept() -> None:
    listen = Listen(ProxyContext())
    with taddons.context(proxyserver.Proxyserver()) as tctx:
        tctx.options.listen_host = "::1"
        start(tctx, listen)
        assert tctx.options.listen_host == "::1"
    assert not listen.rebind


@pytest.mark.parametrize(("security", "refused"), [
    (Security(), True),
    (Security("t" * 32), False),
    (Security(allow_remote_without_token=True), False),
])
def test_an_address_others_reach_needs_a_token(
    security: Security, refused: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with taddons.context(proxyserver.Proxyserver()) as tctx:
        tctx.options.listen_host = "0.0.0.0"
        if refused:
            with pytest.raises(SystemExit) as stopped:
                start(tctx, Listen(ProxyContext(security=security)))
            assert stopped.value.code == 2
            assert "proxy.listen_host (--listen-host)" in caplog.text
        else:
            start(tctx, Listen(ProxyContext(security=security)))
