"""Tests for dashboard.promtext (checked against prometheus_client's own parser) and stats."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dashboard import promtext
from dashboard.stats import cumulative, histogram_quantile, ratio

label_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)


@settings(max_examples=60, deadline=None)
@given(models=st.lists(label_text, min_size=1, max_size=4, unique=True),
       value=st.floats(min_value=0, max_value=1e12, allow_nan=False))
def test_parse_agrees_with_prometheus_client(models: list[str], value: float) -> None:
    registry = CollectorRegistry()
    counter = Counter("ollama_proxy_things", "doc", ["model", "status"], registry=registry)
    for i, model in enumerate(models):
        counter.labels(model, str(200 + i)).inc(value + i)
    text = generate_latest(registry).decode()
    want = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
        if s.name.startswith("ollama_proxy_")
    }
    assert promtext.parse(text) == want


def test_parse_skips_other_prefixes_comments_and_bad_lines() -> None:
    text = (
        "# HELP ollama_proxy_x doc\n"
        'ollama_proxy_x{model="a\\"b\\\\c\\nd"} 3 1700000000000\n'
        "process_cpu_seconds_total 5\n"
        'ollama_proxy_y{model="unterminated} 1\n'
        "ollama_proxy_z +Inf\n"
        "ollama_proxy_w notanumber\n"
    )
    assert promtext.parse(text) == {
        ("ollama_proxy_x", (("model", 'a"b\\c\nd'),)): 3.0,
        ("ollama_proxy_z", ()): math.inf,
    }


def test_counter_delta_handles_new_series_and_resets() -> None:
    old = {("c", (("m", "a"),)): 10.0, ("c", (("m", "b"),)): 5.0, ("d", ()): 1.0}
    new = {("c", (("m", "a"),)): 12.0, ("c", (("m", "b"),)): 2.0, ("c", (("m", "n"),)): 4.0}
    assert promtext.counter_delta(old, new, "c") == {
        ("c", (("m", "a"),)): 2.0,  # grew
        ("c", (("m", "b"),)): 2.0,  # reset: all of the new value
        ("c", (("m", "n"),)): 4.0,  # new series: from zero
    }
    assert promtext.counter_delta(None, new, "c")[("c", (("m", "a"),))] == 12.0


def test_histogram_buckets_sum_matching_series() -> None:
    registry = CollectorRegistry()
    h = Histogram("ollama_proxy_t_seconds", "doc", ["model"], buckets=(0.1, 1.0),
                  registry=registry)
    for model, value in (("a", 0.05), ("a", 0.5), ("b", 5.0)):
        h.labels(model).observe(value)
    samples = promtext.parse(generate_latest(registry).decode())
    assert promtext.histogram_buckets(samples, "ollama_proxy_t_seconds") == [
        (0.1, 1.0), (1.0, 2.0), (math.inf, 3.0)]
    assert promtext.histogram_buckets(samples, "ollama_proxy_t_seconds", model="a") == [
        (0.1, 1.0), (1.0, 2.0), (math.inf, 2.0)]


@pytest.mark.parametrize(("q", "buckets", "want"), [
    (0.5, [(1.0, 0), (2.0, 10), (math.inf, 10)], 1.5),  # middle of the (1, 2] bucket
    (0.95, [(1.0, 0), (2.0, 10), (math.inf, 10)], 1.95),
    (0.5, [(0.1, 10), (math.inf, 10)], 0.05),  # first bucket starts at 0
    (0.99, [(1.0, 5), (2.0, 5), (math.inf, 10)], 2.0),  # in +Inf: the highest finite bound
    (0.5, [(1.0, 2), (2.0, 2), (4.0, 4), (math.inf, 4)], 1.0),  # rank on a bucket edge
    (0.5, [(1.0, 0), (math.inf, 0)], None),  # no observations
    (0.5, [(1.0, 3), (2.0, 4)], None),  # no +Inf bucket: total unknown
    (0.5, [], None),
])
def test_histogram_quantile(q: float, buckets: list, want: float | None) -> None:
    got = histogram_quantile(q, buckets)
    assert got == (pytest.approx(want) if want is not None else None)


def test_quantile_refuses_q_outside_0_1_and_cumulative_checks_lengths() -> None:
    with pytest.raises(ValueError):
        histogram_quantile(1.5, [(math.inf, 1)])
    assert cumulative((1.0, 2.0), [1, 2, 3]) == [(1.0, 1), (2.0, 3), (math.inf, 6)]
    with pytest.raises(ValueError):
        cumulative((1.0,), [1])
    assert ratio(1, 0) is None and ratio(None, 2) is None and ratio(1, 4) == 0.25
