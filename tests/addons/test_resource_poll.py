"""The machine-resources addon (addons/resource_poll.py): samples from running() to done()."""

from __future__ import annotations

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from addons.context import ProxyContext
from addons.resource_poll import ResourcePoll
from llama_core.sampler import ResourceSampler
from tests.addons.test_resources import FakeNvml, FakePsutil, ollama_procs
from tests.support.addons import done, running, start


def sampler() -> ResourceSampler:
    return ResourceSampler(psutil_module=FakePsutil(procs=ollama_procs()),
                           nvml=FakeNvml(init_error="Driver Not Loaded"))


def test_samples_while_running_and_exports_the_last_sample() -> None:
    context = ProxyContext()
    poll = ResourcePoll(context, sampler())
    with taddons.context() as tctx:
        script = start(tctx, poll, command_line=("resources_interval_seconds=0.1",))
        assert poll.poller.interval == 0.1 and poll.poller.polls == 0
        running(tctx, script)
        assert poll.poller.wait_for_poll(1, timeout=5)
        assert context.registry.get_sample_value("ollama_proxy_system_cpu_percent") == 12.5
        done(tctx, script)
    assert poll.poller._thread is None


def test_a_later_bad_interval_is_refused() -> None:
    poll = ResourcePoll(ProxyContext(), sampler())
    with taddons.context() as tctx:
        script = start(tctx, poll)
        running(tctx, script)
        with pytest.raises(exceptions.OptionsError, match="resources_interval_seconds"):
            tctx.options.resources_interval_seconds = "-1"
        assert poll.poller.interval == 5.0
        done(tctx, script)
