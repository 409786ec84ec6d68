"""The admission limits addon (addons/admission_limits.py): options into the shared queue."""

from __future__ import annotations

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from addons.admission import Admission
from addons.admission_limits import AdmissionLimits
from addons.context import ProxyContext
from tests.support.addons import running, start


def test_the_options_set_the_queue_limits_and_its_depth_is_exported() -> None:
    context = ProxyContext()
    admission = Admission()
    limits = AdmissionLimits(context, admission)
    with taddons.context() as tctx:
        script = start(tctx, limits, command_line=("max_concurrency=2", "max_queue=3"))
        assert (admission.max_concurrency, admission.max_queue) == (2, 3)
        running(tctx, script)
        tctx.options.max_concurrency = 5
    assert admission.max_concurrency == 5
    assert context.registry.get_sample_value("ollama_proxy_queue_depth",
                                             {"priority": "high"}) == 0


def test_bad_limits_stop_the_start_or_are_refused_later(caplog: pytest.LogCaptureFixture) -> None:
    with taddons.context() as tctx, pytest.raises(SystemExit) as stopped:
        start(tctx, AdmissionLimits(ProxyContext(), Admission()),
              command_line=("max_concurrency=many",))
    assert stopped.value.code == 2 and "proxy.max_concurrency='many'" in caplog.text
    admission = Admission()
    with taddons.context() as tctx:
        script = start(tctx, AdmissionLimits(ProxyContext(), admission))
        running(tctx, script)
        with pytest.raises(exceptions.OptionsError, match="proxy.max_queue=-1"):
            tctx.options.max_queue = -1
        assert tctx.options.max_queue == 100 and admission.max_queue == 100
