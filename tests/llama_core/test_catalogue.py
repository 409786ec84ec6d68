"""llama_core/catalogue.py: the entries are well formed, and the collectors show exactly them."""

from __future__ import annotations

import dataclasses

import pytest
from prometheus_client import generate_latest

from llama_core import catalogue
from llama_core.catalogue import Series
from tests.stack.catalogue import exported, help_problems, scrape_problems


@pytest.mark.parametrize("entry", catalogue.ALL, ids=lambda e: e.name)
def test_every_help_text_is_one_sentence_with_its_unit(entry: Series) -> None:
    assert help_problems(entry) == []


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (Series("x_build_info", "info", "This proxy", ""), "does not end with a period"),
        (Series("x_requests_total", "counter", "Finished. By endpoint.", "requests",
                ("endpoint",)), "is more than one sentence"),
        (Series("x_ttft_seconds", "histogram", "Time to the first token, by model.", "seconds",
                ("model",), (1.0,)), "does not name its unit 'seconds'"),
        (Series("x_size_bytes", "gauge", "Memory in all.", ""), "its unit is ''"),
        (Series("x_queue_depth", "gauge", "Requests waiting.", "requests", ("priority",)),
         "does not say what it is by"),
        (Series("x_up", "gauge", "when the poll worked.", ""), "does not start with a capital"),
    ],
)
def test_a_bad_help_text_is_named(entry: Series, problem: str) -> None:
    assert any(problem in found for found in help_problems(entry)), help_problems(entry)


def test_names_are_unique_and_prefixed() -> None:
    assert len(catalogue.BY_NAME) == len(catalogue.ALL)
    assert all(s.name.startswith(catalogue.PROXY_PREFIX) for s in catalogue.PROXY)
    assert all(s.name.startswith(catalogue.DASHBOARD_PREFIX) for s in catalogue.DASHBOARD)
    assert all(s.name.startswith(catalogue.HEALTHD_PREFIX) for s in catalogue.HEALTHD)
    assert catalogue.INTERNAL_REQUESTS.labels == ("source", "endpoint", "status")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "x_requests", "type": "counter"}, "must end in _total"),
        ({"name": "x_build", "type": "info"}, "must end in _info"),
        ({"name": "x_seconds", "type": "histogram"}, "buckets are for histograms"),
        ({"name": "x_bytes", "type": "gauge", "buckets": (1.0,)}, "buckets are for histograms"),
    ],
)
def test_a_malformed_entry_is_refused(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Series(**{"help": "X.", "unit": "", **fields})


def test_sample_names() -> None:
    assert catalogue.TTFT.samples() == {
        "ollama_proxy_time_to_first_token_seconds_bucket": {"endpoint", "model", "le"},
        "ollama_proxy_time_to_first_token_seconds_sum": {"endpoint", "model"},
        "ollama_proxy_time_to_first_token_seconds_count": {"endpoint", "model"},
    }
    assert catalogue.REQUESTS.family == "ollama_proxy_requests"
    assert catalogue.BUILD.family == "ollama_proxy_build"
    assert catalogue.QUEUE_DEPTH.family == catalogue.QUEUE_DEPTH.name
    assert catalogue.samples((catalogue.UPSTREAM_UP,)) == {"ollama_proxy_upstream_up": set()}


def test_one_two_five() -> None:
    assert catalogue.one_two_five(1, 600) == (1, 2, 5, 10, 20, 50, 100, 200, 500)


def test_the_proxy_collectors_show_the_catalogue() -> None:
    """Names, types, labels and help of everything the proxy exports are the catalogue's."""
    text = generate_latest(exported()).decode()
    assert scrape_problems(text, catalogue.PROXY) == []
    for family in exported().collect():
        name = family.name + "_total" if family.type == "counter" else family.name
        name = name + "_info" if family.type == "info" else name
        entry = catalogue.BY_NAME[name]
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == set(entry.labels), sample
            if sample.name.endswith("_bucket"):
                bounds = sorted(float(sample.labels["le"]) for sample in family.samples
                                if sample.name.endswith("_bucket"))
                assert tuple(bounds[:-1]) == entry.buckets, entry.name


def test_the_proxy_exports_every_entry() -> None:
    shown = {line.split()[2] for line in generate_latest(exported()).decode().splitlines()
             if line.startswith("# HELP ")}
    assert {s.name for s in catalogue.PROXY} - shown == set()


def test_the_catalogue_is_frozen_data() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        catalogue.REQUESTS.name = "other"  # type: ignore[misc]
