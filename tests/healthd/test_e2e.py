"""End to end: the checks and the AI summary's load gate against a real mitmdump and simulator."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from healthd import service_checks
from healthd.results import Status
from healthd.summary import AiSummarizer
from tests.support.processes import Proxy, run_proxy
from tests.support.sim import sim_fixture

pytestmark = pytest.mark.e2e


sim = sim_fixture(tokens=8, seed=5)


@pytest.fixture(scope="module")
def proxy(sim: Any) -> Iterator[Proxy]:
    with run_proxy(sim.url) as p:
        yield p


def active(samples: dict) -> float:
    return sum(v for (name, _), v in samples.items()
               if name == "ollama_proxy_active_requests")


def test_proxy_checks_pass_through_a_real_proxy(proxy: Proxy) -> None:
    health = service_checks.check_proxy(proxy.metrics_url, timeout=5)
    assert health.status is Status.OK and health.detail.startswith("proxy ")
    e2e = service_checks.check_proxy_e2e(proxy.url, timeout=5)
    assert e2e.status is Status.OK and "Ollama 0.12.6" in e2e.detail


def test_ai_summary_waits_while_the_proxy_serves_a_request(sim: Any, proxy: Proxy) -> None:
    body = json.dumps({"model": "llama3.2", "prompt": "hi", "stream": True}).encode()
    request = urllib.request.Request(proxy.url + "/api/generate", data=body,
                                     headers={"X-Sim-Hold": "healthd-e2e"})
    client = threading.Thread(target=lambda: urllib.request.urlopen(request, timeout=30).read())
    client.start()
    summarizer = AiSummarizer(sim.url, "llama3.2", proxy_metrics_url=proxy.metrics_url)
    try:
        proxy.wait_for(lambda samples: active(samples) >= 1)
        assert summarizer.summarize({"checks": {}})["skipped"] == (
            "proxy busy: 1 active and 0 queued request(s), limit 0")
    finally:
        sim.release("healthd-e2e")
        client.join(timeout=30)
    proxy.wait_for(lambda samples: active(samples) == 0)
    assert summarizer.summarize({"checks": {}})["text"]


def test_ollama_down_behind_a_running_proxy(sim: Any, proxy: Proxy) -> None:
    sim.stop()  # last test of the module: the fixture's stop is then a no-op
    assert service_checks.check_proxy(proxy.metrics_url, timeout=5).status is Status.OK
    e2e = service_checks.check_proxy_e2e(proxy.url, timeout=5)
    assert e2e.status is Status.CRITICAL
    assert e2e.detail.startswith(f"request through the proxy {proxy.url} answered 502: ")
    ollama = service_checks.check_ollama(sim.url, timeout=5)
    assert ollama.status is Status.CRITICAL and "connection refused" in ollama.detail
