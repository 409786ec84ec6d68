"""addons/hook_chain.py: mitmproxy asks one addon; each chained hook runs as it did before."""

from __future__ import annotations

import asyncio
import logging

import pytest
from mitmproxy import hooks, http
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy.layers.http import HttpRequestHook, HttpResponseHook
from mitmproxy.test import taddons, tflow

from addons.hook_chain import HookChain
from tests.support.addons import done, running, start


class Recorder:
    """An addon that notes each hook it gets, in one list shared with the others."""

    def __init__(self, name: str, calls: list[str]) -> None:
        self.name = name
        self.calls = calls

    def load(self, loader: Loader) -> None:
        self.calls.append(f"{self.name}.load")
        loader.add_option(f"{self.name}_option", int, 1, "an option of a chained addon")

    def configure(self, updated: set[str]) -> None:
        if f"{self.name}_option" in updated:
            self.calls.append(f"{self.name}.configure")

    def running(self) -> None:
        self.calls.append(f"{self.name}.running")

    def request(self, flow: http.HTTPFlow) -> None:
        self.calls.append(f"{self.name}.request:{flow.metadata.get('admitted', False)}")

    def done(self) -> None:
        self.calls.append(f"{self.name}.done")


class Holding(Recorder):
    """Its request hook returns an awaitable, as the tap's does for a queued request."""

    def request(self, flow: http.HTTPFlow) -> asyncio.Future[None] | None:  # type: ignore[override]
        self.calls.append(f"{self.name}.request")

        async def admit() -> None:
            await asyncio.sleep(0)
            self.calls.append(f"{self.name}.admitted")
            flow.metadata["admitted"] = True

        return asyncio.ensure_future(admit())


class OnlyResponse:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def response(self, flow: http.HTTPFlow) -> None:
        self.calls.append("only.response")


def test_each_hook_runs_once_in_order_and_options_are_declared() -> None:
    calls: list[str] = []
    chain = HookChain([Recorder("a", calls), OnlyResponse(calls), Recorder("b", calls)])
    with taddons.context() as tctx:
        script = start(tctx, chain, command_line=("b_option=5",))
        running(tctx, script)
        flow = tflow.tflow(resp=True)
        tctx.master.event_loop.run_until_complete(
            tctx.master.addons.handle_lifecycle(HttpRequestHook(flow)))
        tctx.master.event_loop.run_until_complete(
            tctx.master.addons.handle_lifecycle(HttpResponseHook(flow)))
        assert tctx.options.b_option == 5
        done(tctx, script)
    assert calls == [
        "a.load", "b.load", "a.configure", "b.configure", "a.running", "b.running",
        "a.request:False", "b.request:False", "only.response", "a.done", "b.done",
    ]


def test_a_hook_that_must_be_awaited_holds_the_ones_after_it() -> None:
    calls: list[str] = []
    chain = HookChain([Holding("tap", calls), Recorder("guard", calls)])
    with taddons.context() as tctx:
        start(tctx, chain)
        flow = tflow.tflow()
        tctx.master.event_loop.run_until_complete(
            tctx.master.addons.handle_lifecycle(HttpRequestHook(flow)))
    # The guard's hook sees the request once admitted, as it would without the chain.
    assert [c for c in calls if "request" in c or "admitted" in c] == [
        "tap.request", "tap.admitted", "guard.request:True"]


def test_only_the_hooks_someone_has_are_offered() -> None:
    chain = HookChain([OnlyResponse([])])
    assert callable(chain.response)  # type: ignore[attr-defined]
    for name in set(hooks.all_hooks) - {"response"}:
        assert not hasattr(chain, name), name  # mitmproxy skips those at once
    assert not hasattr(chain, "addons")  # nor does it walk into the chained ones itself


def test_an_exception_ends_the_event_for_the_addons_after_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    class Failing:
        def request(self, flow: http.HTTPFlow) -> None:
            raise RuntimeError("boom")

    chain = HookChain([Failing(), Recorder("after", calls)])
    with taddons.context() as tctx, caplog.at_level(logging.ERROR):
        start(tctx, chain)
        tctx.master.event_loop.run_until_complete(
            tctx.master.addons.handle_lifecycle(HttpRequestHook(tflow.tflow())))
    # As for the addons of one script without the chain: mitmproxy logs it, the rest wait.
    assert "boom" in caplog.text
    assert not [c for c in calls if "request" in c]


def test_the_proxy_script_hands_mitmproxy_one_chain_of_every_addon() -> None:
    import addons.llama_metrics as script

    [chain] = script.addons
    assert isinstance(chain, HookChain)
    names = [type(a).__name__ for a in chain.chained]
    assert names[0] == "LlamaConfig" and names[-2:] == ["UpstreamGuard", "FrozenHeap"]
    for name in ("requestheaders", "request", "responseheaders", "response", "error",
                 "server_connect", "client_disconnected", "load", "configure", "running",
                 "done"):
        assert callable(getattr(chain, name, None)), name
