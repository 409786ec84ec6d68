"""The proxy's own log, through a real mitmdump: no line per streamed answer (streaming_log.py)."""

from __future__ import annotations

from collections.abc import Iterator

import ollama
import pytest

from ollama_sim import SimServer
from tests.support.processes import run_proxy

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(port=0, tokens=4, seed=5) as server:
        yield server


def streamed_answers(sim: SimServer, *settings: str) -> str:
    """The proxy's whole log after two streamed chats and one embedding through it."""
    with run_proxy(sim.url, *settings) as proxy:
        with ollama.Client(host=proxy.url) as client:
            for _ in range(2):
                parts = list(client.chat(model="llama3.2", stream=True,
                                         messages=[{"role": "user", "content": "Hi"}]))
                assert parts[-1].done
            client.embed(model="nomic-embed-text", input="Hi")
        proxy.wait_counted(3)
    return proxy.log  # stopped by now, its output read to the end


def test_a_streamed_answer_logs_no_line_of_its_own(sim: SimServer) -> None:
    log = streamed_answers(sim)
    assert "client connect" in log  # mitmproxy's info lines are there
    assert "Streaming response from" not in log
    assert "Streaming request to" not in log


def test_at_debug_verbosity_mitmproxy_s_lines_are_kept(sim: SimServer) -> None:
    log = streamed_answers(sim, "--set", "termlog_verbosity=debug")
    assert log.count("Streaming response from 127.0.0.1.") == 3  # the tap streams every answer
