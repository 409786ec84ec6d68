"""The text a real mitmdump serves at /metrics: the catalogue's series, no _created, clean help."""

from __future__ import annotations

import platform
import urllib.request

import ollama
import pytest
from mitmproxy.version import VERSION as MITMPROXY_VERSION

from llama_core import catalogue
from tests.stack.catalogue import scrape_problems
from tests.support.processes import Proxy

pytestmark = pytest.mark.e2e


def metrics_text(proxy: Proxy) -> str:
    request = urllib.request.Request(proxy.metrics_url + "/metrics", headers=proxy.headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def test_a_scrape_after_a_streamed_chat(proxy: Proxy, request: pytest.FixtureRequest) -> None:
    client = ollama.Client(host=proxy.url)
    request.addfinalizer(client.close)
    before = proxy.scrape()
    done = sum(v for (n, _), v in before.items() if n == catalogue.REQUESTS.name)
    list(client.chat(model="llama3.2", messages=[{"role": "user", "content": "hi"}],
                     stream=True))
    proxy.wait_counted(done + 1)
    text = metrics_text(proxy)

    assert "_created" not in text
    assert scrape_problems(text, catalogue.PROXY) == []
    helps = [line for line in text.splitlines() if line.startswith("# HELP ")]
    for entry in (catalogue.REQUESTS, catalogue.TTFT, catalogue.ACTIVE_REQUESTS,
                  catalogue.QUEUE_DEPTH, catalogue.UPSTREAM_UP, catalogue.BUILD):
        assert f"# HELP {entry.name} {entry.help}" in helps
    [build] = [line for line in text.splitlines() if line.startswith(catalogue.BUILD.name + "{")]
    assert f'python="{platform.python_version()}"' in build
    assert f'mitmproxy="{MITMPROXY_VERSION}"' in build
    assert 'version=""' not in build and 'version="' in build
