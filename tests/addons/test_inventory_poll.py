"""The upstream inventory addon (addons/inventory_poll.py): polls from running() to done()."""

from __future__ import annotations

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from addons.context import ProxyContext
from addons.inventory_poll import InventoryPoll
from tests.addons.test_inventory import FakeOllama, ollama  # noqa: F401 (the fixture)
from tests.support.addons import done, running, start


def test_polls_the_upstream_mitmproxy_proxies_to(ollama: FakeOllama) -> None:  # noqa: F811
    context = ProxyContext()
    poll = InventoryPoll(context)
    with taddons.context() as tctx:
        tctx.options.mode = [f"reverse:{ollama.url}"]
        script = start(tctx, poll, command_line=("inventory_interval_seconds=0.1",))
        assert context.inventory is None  # nothing polls before the proxy runs
        running(tctx, script)
        inventory = context.inventory
        assert inventory is not None and inventory.interval == 0.1
        assert inventory.wait_for_poll(1, timeout=5)
        assert inventory.up and context.is_known("llama3")
        assert context.registry.get_sample_value("ollama_proxy_upstream_up") == 1
        tctx.options.inventory_interval_seconds = "2"
        assert inventory.interval == 2.0
        done(tctx, script)
        polls = inventory.polls
    assert inventory._thread is None and inventory.polls == polls  # stopped


def test_a_bad_interval_stops_the_start(caplog: pytest.LogCaptureFixture) -> None:
    with taddons.context() as tctx, pytest.raises(SystemExit):
        start(tctx, InventoryPoll(ProxyContext()),
              command_line=("inventory_interval_seconds=0",))
    assert "proxy.inventory_interval_seconds='0'" in caplog.text


def test_a_later_bad_interval_is_refused(ollama: FakeOllama) -> None:  # noqa: F811
    poll = InventoryPoll(ProxyContext())
    with taddons.context() as tctx:
        tctx.options.mode = [f"reverse:{ollama.url}"]
        script = start(tctx, poll)
        running(tctx, script)
        with pytest.raises(exceptions.OptionsError, match="inventory_interval_seconds"):
            tctx.options.inventory_interval_seconds = "soon"
        assert poll.interval == 5.0
        done(tctx, script)
