"""A real Prometheus, configured by config/prometheus.yml and config/alerts.yml, scraping a real
proxy in front of the Ollama simulator: what it stores equals what the simulator served.

The configuration is the shipped one with the targets moved to this test's free ports and a
1 s scrape and evaluation interval; the health daemon, dashboard and Alertmanager targets
point at closed ports, which must not stop Prometheus.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from dashboard import create_app
from llama_core.history import readers as history
from tests.stack.catalogue import proxy_series
from tests.stack.tools import (
    alert_rules,
    dashboard_queries,
    grafana_promql,
    scrape_config,
    tool,
)
from tests.support.ports import free_port
from tests.support.processes import Proxy, run_proxy
from tests.support.prometheus import Prometheus, run_prometheus
from tests.support.sim import sim_fixture

pytestmark = pytest.mark.e2e


sim = sim_fixture(tokens=12, seed=11)


@pytest.fixture(scope="module")
def history_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("history") / "history.db"


@pytest.fixture(scope="module")
def proxy(sim: Any, history_db: Path) -> Iterator[Proxy]:
    with run_proxy(sim.url, "--set", f"history_path={history_db}") as p:
        yield p


@pytest.fixture(scope="module")
def prometheus(proxy: Proxy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = tool("prometheus", "prometheus")
    tmp = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    config = scrape_config(tmp, [proxy.metrics_port], port)
    with run_prometheus(binary, config, tmp, port) as server:
        yield server


def post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            r.read()
            return int(r.status)
    except urllib.error.HTTPError as e:
        e.read()
        e.close()
        return int(e.code)


def send_traffic(proxy: Proxy) -> int:
    """Streamed and non-streamed, native and OpenAI-compatible, and one upstream error."""
    chat = {"model": "llama3.2", "messages": [{"role": "user", "content": "Why is the sky blue?"}]}
    statuses = []
    for _ in range(3):
        statuses.append(post(proxy.url + "/api/generate",
                             {"model": "llama3.2", "prompt": "Tell me about Prometheus."}))
    for _ in range(2):
        statuses.append(post(proxy.url + "/api/chat", {**chat, "stream": False}))
    for _ in range(2):
        statuses.append(post(proxy.url + "/v1/chat/completions", {**chat, "stream": True}))
    statuses.append(post(proxy.url + "/api/chat", {**chat, "stream": False},
                         {"X-Sim-Fault": "status:500"}))
    assert statuses == [200] * 7 + [500]
    return len(statuses)


@pytest.fixture(scope="module")
def served(sim: Any, proxy: Proxy, prometheus: Prometheus) -> dict[str, float]:
    """Traffic through the proxy; the totals Prometheus should come to, from the simulator."""
    sent = send_traffic(proxy)
    reports = sim.wait_for_reports(sent)
    prompt = sum(r["prompt_eval_count"] or 0 for r in reports if r["status"] == 200)
    generated = sum(r["eval_count"] or 0 for r in reports if r["status"] == 200)
    assert prompt > 0 and generated > 0
    return {
        "sum(ollama_proxy_requests_total)": float(sent),
        'sum(ollama_proxy_requests_total{status="500"})': 1.0,
        'sum(ollama_proxy_errors_total{error_type="upstream_status"})': 1.0,
        "sum(ollama_proxy_prompt_tokens_total)": float(prompt),
        "sum(ollama_proxy_generated_tokens_total)": float(generated),
    }


def test_prometheus_stores_what_the_simulator_served(
    served: dict[str, float], prometheus: Prometheus
) -> None:
    expected = served
    last: dict[str, float | None] = {}

    def scraped() -> bool:
        last.update({expr: prometheus.value(expr) for expr in expected})
        return last == expected

    prometheus.poll(scraped)
    assert last == expected

    # The target carries the instance name config/prometheus.yml gives it.
    assert prometheus.value('up{job="llama-metrics-proxy", instance="local"}') == 1.0
    assert prometheus.poll(lambda: prometheus.value(
        'ollama_proxy_upstream_up{instance="local"}') == 1.0), "upstream_up is not 1"
    # Absent companions are down targets, not a broken Prometheus.
    for job in ("llama-metrics-healthd", "llama-metrics-dashboard"):
        down = f'up{{job="{job}", instance="local"}} == 0'
        assert prometheus.poll(partial(prometheus.has, down)), f"{job} is not a down target"


def test_live_series_are_all_in_the_catalogue(proxy: Proxy, prometheus: Prometheus) -> None:
    assert prometheus.poll(lambda: prometheus.value('up{job="llama-metrics-proxy"}') == 1.0)
    live = {n for n in prometheus.get("/api/v1/label/__name__/values")["data"]
            if n.startswith("ollama_proxy_")}
    assert "ollama_proxy_build_info" in live
    assert live - set(proxy_series()) == set()


def test_every_alert_rule_loads_and_evaluates(prometheus: Prometheus) -> None:
    expected = {r["alert"] for r in alert_rules()}
    state: dict[str, str] = {}

    def evaluated() -> bool:
        groups = prometheus.get("/api/v1/rules")["data"]["groups"]
        state.clear()
        for group in groups:
            for rule in group["rules"]:
                state[rule["name"]] = rule["health"] + ": " + rule.get("lastError", "")
        return set(state) == expected and all(s.startswith("ok") for s in state.values())

    prometheus.poll(evaluated)
    assert state == {name: "ok: " for name in expected}


def test_every_dashboard_query_runs(served: dict[str, float], prometheus: Prometheus) -> None:
    """Each panel's PromQL, as Grafana sends it with All selected, is accepted by Prometheus."""
    variables = {"$instance": ".*", "$model": ".*"}
    queries: dict[str, list[str]] = {}
    for title, expr in dashboard_queries():
        query = grafana_promql(expr, variables)
        answer = prometheus.get("/api/v1/query", query=query)
        assert answer["status"] == "success", f"{title}: {query}: {answer.get('error')}"
        queries.setdefault(title, []).append(query)
    # Panels with data on any machine with traffic (GPU and queue panels may stay empty).
    for title in ("Requests/s by endpoint and status", "Tokens/s by model", "Request duration",
                  "Queue depth by priority", "CPU", "Memory", "Ollama"):
        assert prometheus.poll(partial(prometheus.has, queries[title][0])), f"{title}: no data"


def dashboard_models(settings: dict[str, Any]) -> dict[str, tuple[int, int, int, int]]:
    """Per-model (requests, errors, prompt tokens, generated tokens) as the dashboard shows them."""
    app = create_app({"TESTING": True, "AUTOSTART": False, "SETTINGS": {
        "healthd_url": "", "narrative_model": "", **settings}})
    try:
        response = app.test_client().get("/api/models?window=15m")
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
    finally:
        app.extensions["llama_metrics"].stop()
    return {m["model"]: (m["requests"], m["errors"], m["prompt_tokens"], m["generated_tokens"])
            for m in body["models"]}


def test_dashboard_in_prometheus_mode_and_history_mode_agree(
    served: dict[str, float], proxy: Proxy, prometheus: Prometheus, history_db: Path
) -> None:
    total = int(served["sum(ollama_proxy_requests_total)"])
    assert prometheus.poll(lambda: prometheus.value("sum(ollama_proxy_requests_total)") == total)

    def history_has_every_row() -> bool:
        with closing(history.connect_readonly(history_db)) as conn:
            return history.totals(conn, 0)["requests"] >= total

    assert prometheus.poll(history_has_every_row), "history rows missing"
    common = {"proxy_metrics_url": proxy.metrics_url, "history_path": str(history_db)}
    from_history = dashboard_models({**common, "prometheus_url": ""})
    from_prometheus = dashboard_models({**common, "prometheus_url": prometheus.url})
    assert from_history == from_prometheus
    requests = sum(v[0] for v in from_history.values())
    prompt = sum(v[2] for v in from_history.values())
    generated = sum(v[3] for v in from_history.values())
    assert (requests, prompt, generated) == (
        total, served["sum(ollama_proxy_prompt_tokens_total)"],
        served["sum(ollama_proxy_generated_tokens_total)"])
