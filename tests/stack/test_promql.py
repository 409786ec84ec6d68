"""Tests for the PromQL name reader and the catalogue check the other stack tests rely on."""

from __future__ import annotations

import pytest

from tests.stack.catalogue import HEALTHD_SERIES, problems, proxy_series
from tests.stack.promql import Selector, names


@pytest.mark.parametrize(
    ("expr", "selectors", "grouping"),
    [
        ("up == 0", {Selector("up", frozenset())}, set()),
        (
            'sum by (model) (rate(a_total{endpoint="/api/chat", model=~"x|y"}[5m]))',
            {Selector("a_total", frozenset({"endpoint", "model"}))},
            {"model"},
        ),
        (
            "histogram_quantile(0.95, sum(rate(h_bucket[$__rate_interval])) by (le, instance))",
            {Selector("h_bucket", frozenset())},
            {"le", "instance"},
        ),
        (
            "a / on (instance) group_left b and ignoring (gpu) c offset 5m > bool 2e3",
            {Selector(n, frozenset()) for n in "abc"},
            {"instance", "gpu"},
        ),
        # Strings and comments hide what looks like names inside them.
        ('count_values("not_a_metric", m{l!~"x{y}"}) # other_metric', {
            Selector("m", frozenset({"l"}))}, set()),
        ('{__name__="m"}', {Selector("", frozenset({"__name__"}))}, set()),
    ],
)
def test_names(expr: str, selectors: set[Selector], grouping: set[str]) -> None:
    found = names(expr)
    assert set(found.selectors) == selectors
    assert found.grouping == grouping


def test_unreadable_expression_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot read PromQL"):
        names("rate(x[5m]) ; drop")


def test_catalogue_holds_the_design_series() -> None:
    series = proxy_series()
    for name in (
        "ollama_proxy_requests_total", "ollama_proxy_errors_total",
        "ollama_proxy_prompt_tokens_total", "ollama_proxy_generated_tokens_total",
        "ollama_proxy_usage_estimated_total", "ollama_proxy_model_loads_total",
        "ollama_proxy_history_dropped_total", "ollama_proxy_build_info",
        "ollama_proxy_upstream_up", "ollama_proxy_upstream_info", "ollama_proxy_model_loaded",
        "ollama_proxy_model_vram_bytes", "ollama_proxy_model_size_bytes",
        "ollama_proxy_active_requests", "ollama_proxy_queue_depth",
        "ollama_proxy_system_cpu_percent", "ollama_proxy_system_memory_used_bytes",
        "ollama_proxy_system_memory_total_bytes", "ollama_proxy_ollama_process_rss_bytes",
        "ollama_proxy_ollama_process_cpu_percent", "ollama_proxy_gpu_utilization_percent",
        "ollama_proxy_gpu_memory_used_bytes", "ollama_proxy_gpu_memory_total_bytes",
        "ollama_proxy_gpu_temperature_celsius", "ollama_proxy_gpu_power_watts",
    ):
        assert name in series, name
    for histogram in (
        "request_duration_seconds", "time_to_first_token_seconds",
        "time_per_output_token_seconds", "inter_token_latency_seconds", "tokens_per_second",
        "request_prompt_tokens", "request_generated_tokens", "prompt_eval_duration_seconds",
        "model_load_duration_seconds", "queue_wait_seconds", "request_size_bytes",
        "response_size_bytes",
    ):
        for suffix in ("_bucket", "_sum", "_count"):
            assert f"ollama_proxy_{histogram}{suffix}" in series, histogram + suffix
        assert "le" in series[f"ollama_proxy_{histogram}_bucket"]
    assert series["ollama_proxy_errors_total"] == {"endpoint", "model", "error_type", "client"}
    assert series["ollama_proxy_gpu_memory_used_bytes"] == {"gpu", "name"}
    assert series["ollama_proxy_upstream_up"] == frozenset()
    # Nothing of the companions' leaks into the proxy's catalogue.
    assert not set(HEALTHD_SERIES) & set(series)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("sum(rate(ollama_proxy_requests_total[5m]))", []),
        ('ollama_proxy_errors_total{error_type="queue_full", instance="a", job="b"}', []),
        ("rate(ollama_proxy_request_total[5m])", ["unknown metric 'ollama_proxy_request_total'"]),
        ("ollama_proxy_time_to_first_token_seconds",  # a histogram has no bare sample
         ["unknown metric 'ollama_proxy_time_to_first_token_seconds'"]),
        ('ollama_proxy_queue_depth{model="x"}', ["ollama_proxy_queue_depth has no label 'model'"]),
        ("sum by (gpu) (ollama_proxy_requests_total)",
         ["no series here has the label 'gpu' it groups or matches on"]),
        ("max by (instance, check) (healthd_check_status) >= 2", []),
    ],
)
def test_problems(expr: str, expected: list[str]) -> None:
    assert problems(expr) == expected
