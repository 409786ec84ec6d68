"""The tap's own options (addons/tap.py): label guard, model-load threshold, stored prompts."""

from __future__ import annotations

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons
from prometheus_client import CollectorRegistry

from addons.metrics import ProxyMetrics
from addons.routes import ModelLabels
from addons.tap import TrafficTap
from llama_core.record import RequestRecord
from tests.addons.test_tap import make_flow, respond
from tests.support.addons import running, start


def make_tap() -> tuple[TrafficTap, list[RequestRecord]]:
    records: list[RequestRecord] = []
    return TrafficTap(ProxyMetrics(CollectorRegistry()), ModelLabels(),
                      on_record=records.append), records


def test_the_options_reach_what_the_tap_measures() -> None:
    tap, records = make_tap()
    with taddons.context() as tctx:
        start(tctx, tap, command_line=("max_model_labels=1", "load_threshold_seconds=2",
                                       "store_prompts=true"))
        assert (tap.labels.max_others, tap.load_threshold_s, tap.store_prompts) == (1, 2.0, True)
        for model in ("a", "b"):
            flow = make_flow("/api/generate", {"model": model, "prompt": "hi", "stream": False})
            tap.requestheaders(flow)
            tap.request(flow)
            respond(tap, flow, 200, "application/json",
                    [b'{"response":"x","done":true,"load_duration":1500000000}'])
    assert [(r.model, r.prompt, r.loaded_model) for r in records] == [
        ("a:latest", "hi", False), ("b:latest", "hi", False)]  # 1.5 s is under the threshold
    assert tap.labels.label("c") == "other"  # one unknown name had its own label: "a"


def test_the_defaults_store_no_prompt() -> None:
    tap, _ = make_tap()
    with taddons.context() as tctx:
        start(tctx, tap)
    assert (tap.labels.max_others, tap.load_threshold_s, tap.store_prompts) == (20, 0.25, False)


def test_bad_values_stop_the_start_or_are_refused_later(caplog: pytest.LogCaptureFixture) -> None:
    with taddons.context() as tctx, pytest.raises(SystemExit):
        start(tctx, make_tap()[0], command_line=("max_model_labels=10001",))
    assert "proxy.max_model_labels='10001'" in caplog.text
    tap, _ = make_tap()
    with taddons.context() as tctx:
        script = start(tctx, tap)
        running(tctx, script)
        with pytest.raises(exceptions.OptionsError, match="proxy.load_threshold_seconds"):
            tctx.options.load_threshold_seconds = "-1"
        assert tap.load_threshold_s == 0.25
