"""config/grafana/: the dashboard JSON and its provisioning, naming only series we export."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.stack.catalogue import problems, proxy_series
from tests.stack.tools import (
    CONFIG,
    DEPLOY,
    dashboard,
    dashboard_panels,
    dashboard_queries,
    grafana_promql,
    load_yaml,
)

GRAFANA = CONFIG / "grafana"
QUERIES = dashboard_queries()


def variables() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard()["templating"]["list"]}


def test_dashboard_shape() -> None:
    d = dashboard()
    assert d["uid"] == "llama-metrics"
    assert 36 <= d["schemaVersion"] <= 41
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for p in d["panels"]:
        grid = p["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, p["title"]
    for p in dashboard_panels():
        assert p["targets"], p["title"]
        assert p["description"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]


def test_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for p in dashboard()["panels"]:
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]


def test_every_query_uses_the_datasource_variable() -> None:
    ds = variables()["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    for p in dashboard_panels():
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        for t in p["targets"]:
            assert t["datasource"] == p["datasource"], p["title"]
    for v in variables().values():
        if v["type"] == "query":
            assert v["datasource"]["uid"] == "${datasource}"


def test_every_query_is_filtered_by_the_instance_variable() -> None:
    """Several proxies are shown as one (All) or picked out by their instance name."""
    for title, expr in dashboard_queries():
        for selector in re.findall(r"ollama_proxy_\w+\{[^}]*\}|ollama_proxy_\w+(?!\{)", expr):
            assert 'instance=~"$instance"' in selector, f"{title}: {selector}"


@pytest.mark.parametrize(("title", "expr"), QUERIES, ids=[title for title, _ in QUERIES])
def test_query_names_only_exported_series(title: str, expr: str) -> None:
    assert problems(grafana_promql(expr), proxy_series()) == []


def test_variable_queries_name_exported_series() -> None:
    for v in variables().values():
        if v["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", v["definition"])
        assert m, v["definition"]
        selector, label = m.groups()
        assert problems(selector, proxy_series()) == []
        metric = selector.split("{")[0]
        assert label in proxy_series()[metric] | {"instance", "job"}
        assert v["query"] == v["definition"]


def test_dashboard_covers_the_catalogue() -> None:
    """The panels the stack promises: traffic, tokens, latency, errors, queue, models, machine."""
    used = set()
    for _, expr in dashboard_queries():
        used |= set(re.findall(r"ollama_proxy_\w+", expr))
    for name in (
        "requests_total", "generated_tokens_total", "prompt_tokens_total",
        "time_to_first_token_seconds_bucket", "inter_token_latency_seconds_bucket",
        "time_per_output_token_seconds_bucket", "request_duration_seconds_bucket",
        "tokens_per_second_sum", "errors_total", "usage_estimated_total", "active_requests",
        "queue_depth", "queue_wait_seconds_bucket", "upstream_up", "model_loaded",
        "model_vram_bytes", "model_loads_total", "system_cpu_percent",
        "system_memory_used_bytes", "ollama_process_rss_bytes", "gpu_utilization_percent",
        "gpu_memory_used_bytes", "gpu_temperature_celsius", "gpu_power_watts",
        "history_dropped_total", "energy_joules_total", "gpu_idle_energy_joules_total",
        "gpu_energy_joules_total",
    ):
        assert f"ollama_proxy_{name}" in used, name


def test_energy_panels_divide_like_by_like() -> None:
    """Joules per token by model and by client, watt-hours a day, idle against active: the
    panels docs/energy.md names, each saying so in words where there is no meter."""
    panels = {p["title"]: p for p in dashboard_panels()}
    for by in ("model", "client"):
        [target] = panels[f"Joules per generated token by {by}"]["targets"]
        numerator, denominator = target["expr"].split(" / ")
        assert numerator.startswith(f"sum by ({by}) (rate(ollama_proxy_energy_joules_total{{")
        assert denominator == numerator.replace("energy_joules_total", "generated_tokens_total")
    per_day = panels["Energy per day by model"]
    assert per_day["fieldConfig"]["defaults"]["unit"] == "watth"
    assert "[1d])) / 3600" in per_day["targets"][0]["expr"]
    for title in ("GPU power: active and idle", "Energy in the time range: active and idle"):
        legends = [t["legendFormat"] for t in panels[title]["targets"]]
        assert legends == ["active", "idle"], title
    for title, panel in panels.items():
        if any("energy_joules" in t["expr"] for t in panel["targets"]):
            assert panel["fieldConfig"]["defaults"]["noValue"] == "no GPU energy meter", title


def test_provisioning_files() -> None:
    sources = load_yaml(GRAFANA / "provisioning" / "datasources" / "llama-metrics.yml")
    compose_sources = load_yaml(DEPLOY / "compose" / "grafana-datasource.yml")
    for config, url in ((sources, "http://127.0.0.1:9090"),
                        (compose_sources, "http://prometheus:9090")):
        assert config["apiVersion"] == 1
        [source] = config["datasources"]
        assert source["type"] == "prometheus" and source["url"] == url
        assert source["isDefault"] is True
        # $__rate_interval is computed from the scrape interval of prometheus.yml.
        scrape = load_yaml(CONFIG / "prometheus.yml")["global"]["scrape_interval"]
        assert source["jsonData"]["timeInterval"] == scrape

    providers = load_yaml(GRAFANA / "provisioning" / "dashboards" / "llama-metrics.yml")
    [provider] = providers["providers"]
    assert provider["type"] == "file"
    # The Compose stack mounts the dashboard where the provider looks for it.
    compose = load_yaml(DEPLOY / "compose.yaml")
    mounts = [v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"]]
    target = dict((Path(src).name, dst) for src, dst in mounts)["llama-metrics.json"]
    assert Path(target).parent == Path(provider["options"]["path"])
