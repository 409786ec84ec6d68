"""The official ollama and openai clients through the proxy: same answers, exact metrics."""

from __future__ import annotations

from typing import Any

import ollama
import openai
import pytest

from tests.support.processes import Proxy

pytestmark = pytest.mark.e2e
MODEL = "llama3.2"
LABEL = "llama3.2:latest"
MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]




def requests_total(samples: dict) -> float:
    return sum(v for (n, _), v in samples.items() if n == "ollama_proxy_requests_total")


def tokens_delta(proxy: Proxy, before: dict) -> tuple[float, float]:
    after = proxy.wait_counted(requests_total(before) + 1)
    key = (("client", ""), ("model", LABEL))  # no clients file: no client

    def d(name: str) -> float:
        full = "ollama_proxy_" + name
        return after.get((full, key), 0.0) - before.get((full, key), 0.0)

    return d("prompt_tokens_total"), d("generated_tokens_total")


def last_report(sim: Any, before: int) -> dict:
    return sim.wait_for_reports(before + 1)[-1]


@pytest.mark.parametrize("stream", [True, False])
def test_ollama_chat(
    proxy: Proxy, sim: Any, stream: bool, request: pytest.FixtureRequest
) -> None:
    direct = ollama.Client(host=sim.url)
    through = ollama.Client(host=proxy.url)
    request.addfinalizer(direct.close)
    request.addfinalizer(through.close)

    def answer(client: ollama.Client) -> tuple[str, Any]:
        if stream:
            parts = list(client.chat(model=MODEL, messages=MESSAGES, stream=True))
            return "".join(p.message.content or "" for p in parts), parts[-1]
        response = client.chat(model=MODEL, messages=MESSAGES)
        return response.message.content or "", response

    expected_text, expected_final = answer(direct)
    before, reports = proxy.scrape(), len(sim.reports)
    text, final = answer(through)
    assert text == expected_text
    assert (final.eval_count, final.prompt_eval_count) == (
        expected_final.eval_count, expected_final.prompt_eval_count
    )
    report = last_report(sim, reports)
    assert tokens_delta(proxy, before) == (report["prompt_eval_count"], report["eval_count"])


def test_ollama_generate_and_embed(
    proxy: Proxy, sim: Any, request: pytest.FixtureRequest
) -> None:
    client = ollama.Client(host=proxy.url)
    request.addfinalizer(client.close)
    before, reports = proxy.scrape(), len(sim.reports)
    response = client.generate(model=MODEL, prompt="Say hi", stream=False)
    report = last_report(sim, reports)
    assert response.eval_count == report["eval_count"]
    assert tokens_delta(proxy, before) == (report["prompt_eval_count"], report["eval_count"])

    before, reports = proxy.scrape(), len(sim.reports)
    embedded = client.embed(model=MODEL, input="hello world")
    assert len(embedded.embeddings) == 1
    report = last_report(sim, reports)
    assert tokens_delta(proxy, before) == (report["prompt_eval_count"], 0)


def openai_client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


def chunk_shapes(chunks: list[Any]) -> list[dict]:
    """The chunks as the client parsed them, without the fields that differ per request."""
    return [c.model_dump(exclude={"id", "created"}) for c in chunks]


@pytest.mark.parametrize("include_usage", [False, True])
def test_openai_stream_is_what_the_client_would_get_directly(
    proxy: Proxy, sim: Any, include_usage: bool
) -> None:
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    with openai_client(sim.url) as client:
        direct = list(client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, **options))  # type: ignore[call-overload]
    before, reports = proxy.scrape(), len(sim.reports)
    with openai_client(proxy.url) as client:
        through = list(client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, **options))  # type: ignore[call-overload]
    assert chunk_shapes(through) == chunk_shapes(direct)
    assert any(c.usage is not None for c in through) is include_usage
    report = last_report(sim, reports)
    assert tokens_delta(proxy, before) == (report["prompt_eval_count"], report["eval_count"])


def test_openai_non_streamed_and_embeddings(
    proxy: Proxy, sim: Any, request: pytest.FixtureRequest
) -> None:
    client = openai_client(proxy.url)
    request.addfinalizer(client.close)
    before, reports = proxy.scrape(), len(sim.reports)
    completion = client.chat.completions.create(
        model=MODEL, messages=MESSAGES  # type: ignore[arg-type]
    )
    report = last_report(sim, reports)
    assert completion.usage is not None
    assert completion.usage.completion_tokens == report["eval_count"]
    assert tokens_delta(proxy, before) == (report["prompt_eval_count"], report["eval_count"])

    before = proxy.scrape()
    embedding = client.embeddings.create(model=MODEL, input="hello")
    assert embedding.usage.prompt_tokens > 0
    assert tokens_delta(proxy, before) == (embedding.usage.prompt_tokens, 0)


def test_errors_reach_the_client_as_ollama_sent_them(proxy: Proxy, sim: Any) -> None:
    with ollama.Client(host=sim.url) as client, pytest.raises(ollama.ResponseError) as direct:
        client.chat(model="no-such-model", messages=MESSAGES)
    with ollama.Client(host=proxy.url) as client, pytest.raises(ollama.ResponseError) as through:
        client.chat(model="no-such-model", messages=MESSAGES)
    assert (through.value.status_code, through.value.error) == (
        direct.value.status_code, direct.value.error
    )
    with openai_client(proxy.url) as oc, pytest.raises(openai.NotFoundError):
        oc.chat.completions.create(model="nope", messages=MESSAGES)  # type: ignore[arg-type]
