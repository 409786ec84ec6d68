"""Tests for dashboard.analysis: numbers in, findings (with their numbers) out."""

from __future__ import annotations

import pytest

from dashboard import analysis
from dashboard.analysis import Evidence


def model(name: str = "llama3.2:latest", **fields: object) -> dict:
    return {"model": name, "requests": 10, "errors": 0, "loads": 0, "load_seconds": 0.0,
            "ttft_seconds": 0.0, "tokens_per_second": 40.0, **fields}


def test_frequent_reloads_point_at_keep_alive() -> None:
    [finding] = analysis.model_reloads(
        [model(loads=4, load_seconds=10.0), model("qwen3:latest", loads=2)], window_s=3600)
    assert finding.kind == "model_reloads" and finding.subject == "llama3.2:latest"
    assert finding.title == "llama3.2:latest was loaded 4 times in 60 min"
    assert "10.0 s in all (2.5 s each)" in finding.detail
    assert "OLLAMA_KEEP_ALIVE" in finding.action
    assert finding.numbers == {"loads": 4, "requests": 10, "load_seconds": 10.0,
                               "window_seconds": 3600}


def test_ttft_dominated_by_loading() -> None:
    rows = [model(loads=1, load_seconds=6.0, ttft_seconds=8.0),
            model("b", loads=1, load_seconds=1.0, ttft_seconds=8.0),  # 12 %: not dominated
            model("c", loads=0, load_seconds=0.0, ttft_seconds=8.0)]
    [finding] = analysis.ttft_loading(rows)
    assert finding.subject == "llama3.2:latest" and finding.numbers["share"] == 0.75
    assert "75%" in finding.title


@pytest.mark.parametrize(("depth", "wait", "want"), [
    (0, None, None), (0, 0.2, None), (3, 0.2, "warning"), (0, 0.6, "warning"),
    (1, 6.0, "critical"),
])
def test_queueing_points_at_num_parallel(depth: float, wait: float | None,
                                         want: str | None) -> None:
    found = analysis.queueing(depth, wait, active_requests=4)
    assert [f.severity for f in found] == ([want] if want else [])
    if found:
        assert "OLLAMA_NUM_PARALLEL" in found[0].action
        assert found[0].numbers["queue_depth"] == depth


def test_partial_vram() -> None:
    loaded = [
        {"model": "big", "placement": "partial", "vram_fraction": 0.4,
         "vram_bytes": 4e9, "size_bytes": 10e9},
        {"model": "fits", "placement": "gpu", "vram_fraction": 1.0},
        {"model": "cpu-only", "placement": "cpu", "vram_fraction": 0.0},
    ]
    assert [f.subject for f in analysis.partial_vram(loaded, gpu_present=False)] == ["big"]
    found = analysis.partial_vram(loaded, gpu_present=True)
    assert [f.subject for f in found] == ["big", "cpu-only"]
    assert found[0].title == "big is only 40% in GPU memory"
    assert "4.0 GB of 10.0 GB" in found[0].detail


@pytest.mark.parametrize(("requests", "errors", "want"), [
    (100, {"timeout": 4}, None),  # too few to be a burst
    (100, {"timeout": 10}, None),  # 10 %: below the share
    (20, {"upstream_unreachable": 6, "timeout": 2}, "warning"),  # 40 %
    (10, {"upstream_unreachable": 9}, "critical"),
])
def test_error_burst(requests: int, errors: dict, want: str | None) -> None:
    found = analysis.error_burst(requests, errors, window_s=300)
    assert [f.severity for f in found] == ([want] if want else [])
    if want:
        assert "upstream_unreachable" in found[0].detail
        assert "systemctl status ollama" in found[0].action  # advice for the commonest kind
        assert found[0].numbers["errors"] == sum(errors.values())


def test_slow_generation_against_its_own_baseline() -> None:
    current = [model(tokens_per_second=20.0), model("b", tokens_per_second=38.0),
               model("c", tokens_per_second=5.0, requests=2),  # too few requests
               model("d", tokens_per_second=5.0)]  # no baseline
    [finding] = analysis.slow_generation(current, {"llama3.2:latest": 40.0, "b": 40.0,
                                                   "c": 40.0}, window_s=900)
    assert finding.subject == "llama3.2:latest"
    assert finding.title == "llama3.2:latest generates 20.0 tokens/s, 50% below its usual 40.0"
    assert finding.numbers["baseline_tokens_per_second"] == 40.0


def test_analyse_orders_by_severity_and_is_empty_when_all_is_well() -> None:
    assert analysis.analyse(Evidence()) == []
    found = analysis.analyse(Evidence(
        models=[model(loads=5, load_seconds=5.0)], window_s=3600,
        recent_requests=10, recent_errors={"queue_full": 9}, recent_window_s=300,
        queue_depth=2, queue_wait_mean_s=1.0,
    ))
    assert [f.kind for f in found] == ["error_burst", "queueing", "model_reloads"]
    assert found[0].to_dict()["severity"] == "critical"
