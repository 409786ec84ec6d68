"""The thresholds module is the one definition: alert rules and shipped config quote it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from llama_core import thresholds
from llama_core.thresholds import Threshold

ROOT = Path(__file__).resolve().parents[2]


def _rules() -> dict[str, str]:
    groups = yaml.safe_load((ROOT / "config" / "alerts.yml").read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


# alert -> (comparison in its expr, the threshold it must quote, how the expr scales it)
ALERTS = {
    "OllamaProxyErrorRatioHigh": (r"\)\s*>\s*([\d.]+)", thresholds.LIVE["error_rate"].warn, 1),
    "OllamaTimeToFirstTokenHigh": (r"\)\s*>\s*([\d.]+)", thresholds.LIVE["ttft_p95"].warn, 1),
    "OllamaGenerationSlow": (r"\)\s*<\s*([\d.]+)",
                             thresholds.LIVE["generation_tokens_per_second"].warn, 1),
    "OllamaProxyQueueBacklog": (r">=\s*([\d.]+)", thresholds.LIVE["queue_depth"].warn, 1),
    "OllamaGPUMemoryNearlyFull": (r">\s*([\d.]+)",
                                  thresholds.LIVE["gpu_memory_percent"].warn, 100),
    "HostMemoryNearlyFull": (r">\s*([\d.]+)",
                             thresholds.LIVE["memory_percent"].critical, 100),
}


@pytest.mark.parametrize("alert", sorted(ALERTS))
def test_alert_rules_quote_the_thresholds(alert: str) -> None:
    pattern, expected, scale = ALERTS[alert]
    match = re.search(pattern, _rules()[alert])
    assert match, f"{alert}: no comparison in its expr"
    assert float(match.group(1)) * scale == pytest.approx(expected)


def test_shipped_healthd_config_states_the_defaults() -> None:
    shipped = yaml.safe_load((ROOT / "config" / "llama-metrics.yml").read_text())
    levels = shipped["healthd"]["thresholds"]
    assert set(levels) == set(thresholds.HEALTHD_DEFAULTS)
    for name, threshold in thresholds.HEALTHD_DEFAULTS.items():
        assert (levels[name]["warn"], levels[name]["critical"]) == (
            threshold.warn, threshold.critical), name


@pytest.mark.parametrize(("threshold", "value", "state"), [
    (Threshold(0.05, 0.25), 0.01, "ok"),
    (Threshold(0.05, 0.25), 0.05, "warn"),
    (Threshold(0.05, 0.25), 0.3, "critical"),
    (Threshold(5.0, 1.0, higher_is_worse=False), 40.0, "ok"),
    (Threshold(5.0, 1.0, higher_is_worse=False), 3.0, "warn"),
    (Threshold(5.0, 1.0, higher_is_worse=False), 0.5, "critical"),
    (Threshold(1.0, None), 3.0, "warn"),
    (Threshold(0.05, 0.25), None, None),
])
def test_state(threshold: Threshold, value: float | None, state: str | None) -> None:
    assert threshold.state(value) == state


def test_unknown_name_has_no_state() -> None:
    assert thresholds.state("requests_per_second", 3.0) is None
    assert thresholds.state("error_rate", 0.5) == "critical"


def test_imports_neither_flask_nor_mitmproxy() -> None:
    source = (ROOT / "llama_core" / "thresholds.py").read_text()
    assert not re.search(r"^\s*(import|from)\s+(flask|mitmproxy|addons|dashboard|healthd)",
                         source, re.M)
