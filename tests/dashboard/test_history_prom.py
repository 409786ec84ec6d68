"""Tests for the Prometheus history source: a fake server for exact answers, a real one
(when ``prometheus`` is installed) for the PromQL itself."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from prometheus_client import make_wsgi_app

from dashboard import create_app
from dashboard.history_prom import (
    BY_MODEL_QUERIES,
    MODEL_QUERIES,
    SERIES_QUERIES,
    PrometheusHistory,
)
from dashboard.http_client import Client
from dashboard.snapshot import SERIES
from dashboard.windows import WINDOWS, SourceError
from tests.dashboard.conftest import FakeProxy
from tests.support.prometheus import Prometheus, run_prometheus

NOW = 1_790_006_400.0 + 3.0


class FakePrometheus(ThreadingHTTPServer):
    daemon_threads = True
    answers: dict[str, Any]
    queries: list[dict[str, str]]


class _Handler(BaseHTTPRequestHandler):
    server: FakePrometheus

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.server.queries.append({"path": parts.path, **params})
        body = self.server.answers.get(params.get("query", ""))
        if body is None:
            body = {"status": "success", "data": {"resultType": "vector", "result": []}}
        data = json.dumps(body).encode()
        self.send_response(400 if body.get("status") == "error" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def fake_prometheus(answers: dict[str, Any]) -> Iterator[FakePrometheus]:
    server = FakePrometheus(("127.0.0.1", 0), _Handler)
    server.answers, server.queries = answers, []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def url(server: FakePrometheus) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_every_chart_series_has_a_query() -> None:
    assert set(SERIES_QUERIES) == set(SERIES)


def test_history_maps_each_evaluation_to_the_bucket_it_closes() -> None:
    window = WINDOWS["15m"]
    rps = SERIES_QUERIES["requests_per_second"].format(r="60s")
    last_start = NOW - 3.0
    matrix = {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {}, "values": [[last_start, "1.5"], [last_start + 5, "2"],
                                  [last_start - 10, "NaN"]]}]}}
    models = {
        MODEL_QUERIES["requests"].format(w="900s"): {
            "status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {"model": "a:latest"}, "value": [NOW, "12"]},
                {"metric": {"model": "gone:latest"}, "value": [NOW, "0"]}]}},
    }
    with fake_prometheus({rps: matrix, **models}) as server:
        source = PrometheusHistory(url(server), client=Client(), timeout=5)
        answer = source.history(window, NOW)
    series = answer["series"]
    assert len(series["ts"]) == window.points and series["ts"][-1] == last_start
    # The value at t describes [t - step, t): the bucket that started one step earlier.
    assert series["requests_per_second"][-3:] == [None, 1.5, 2.0]
    assert series["cpu_percent"] == [None] * window.points
    assert [m["model"] for m in answer["models"]] == ["a:latest"]
    assert answer["models"][0]["requests"] == 12
    ranges = [q for q in server.queries if q["path"] == "/api/v1/query_range"]
    assert len(ranges) == len(SERIES) + len(BY_MODEL_QUERIES) and ranges[0]["step"] == "5"
    assert answer["by_model"] == {"tokens_by_model": {}, "ttft_p95_by_model": {}}


def test_per_model_series_from_prometheus() -> None:
    window = WINDOWS["15m"]
    last_start = NOW - 3.0

    def matrix(*series: tuple[dict[str, str], str]) -> dict[str, Any]:
        return {"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": labels, "values": [[last_start, value]]} for labels, value in series]}}

    tokens = matrix(({"model": "a"}, "40"), ({"model": "b"}, "20"), ({"model": "c"}, "10"),
                    ({"model": "d"}, "5"), ({"model": "e"}, "1"))
    # a: every answer within 0.5 s; d and e (the rest) within 1 s and 5 s.
    ttft = matrix(*[({"model": m, "le": le}, v) for m, le, v in (
        ("a", "0.5", "2"), ("a", "+Inf", "2"),
        ("d", "0.5", "0"), ("d", "1", "1"), ("d", "+Inf", "1"),
        ("e", "0.5", "0"), ("e", "1", "0"), ("e", "5", "1"), ("e", "+Inf", "1"))])
    answers = {BY_MODEL_QUERIES["tokens_by_model"].format(r="60s"): tokens,
               BY_MODEL_QUERIES["ttft_p95_by_model"].format(r="60s"): ttft}
    with fake_prometheus(answers) as server:
        by_model = PrometheusHistory(url(server), client=Client(), timeout=5).history(
            window, NOW)["by_model"]
    rates = by_model["tokens_by_model"]
    assert list(rates) == ["a", "b", "c", "other"]
    assert [rates[m][-2] for m in rates] == [40.0, 20.0, 10.0, 6.0]
    quantiles = by_model["ttft_p95_by_model"]
    assert list(quantiles) == ["a", "d", "e"]  # only three models have answers: no other
    assert 0 < quantiles["a"][-2] <= 0.5 and quantiles["a"][-1] is None
    assert 1.0 < quantiles["e"][-2] <= 5.0


def test_prometheus_errors_are_source_errors() -> None:
    error = {"status": "error", "errorType": "bad_data", "error": "parse error"}
    rps = SERIES_QUERIES["requests_per_second"].format(r="60s")
    with fake_prometheus({rps: error}) as server:
        source = PrometheusHistory(url(server), client=Client(), timeout=5)
        with pytest.raises(SourceError, match="HTTP 400: parse error"):
            source.history(WINDOWS["15m"], NOW)
    with pytest.raises(SourceError, match="prometheus http://127.0.0.1:9"):
        PrometheusHistory("http://127.0.0.1:9", client=Client(), timeout=5).models(
            WINDOWS["1h"], NOW)


def test_api_reads_prometheus_when_configured(fake_proxy: FakeProxy) -> None:
    with fake_prometheus({}) as server:
        app = create_app({"SETTINGS": {"prometheus_url": url(server)},
                          "AUTOSTART": False})
        body = app.test_client().get("/api/history?window=7d").get_json()
    assert body["source"] == "prometheus" and body["step_seconds"] == 1800
    assert body["unavailable"] == []


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def scrapes_stored(prometheus: Prometheus, count: int) -> None:
    """Ask until Prometheus has stored ``count`` scrapes: no event crosses from it."""
    stored = prometheus.poll(
        lambda: (prometheus.value("count_over_time(up[1m])") or 0) >= count, timeout=30)
    assert stored, f"prometheus stored no {count} scrapes in time"


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus is not installed")
def test_queries_run_on_a_real_prometheus(tmp_path: Path, fake_proxy: FakeProxy) -> None:
    """Every PromQL expression parses and answers on a real server scraping a proxy."""
    exporter: WSGIServer = make_server("127.0.0.1", 0, make_wsgi_app(fake_proxy.registry),
                                       handler_class=_Quiet)
    threading.Thread(target=exporter.serve_forever, args=(0.05,), daemon=True).start()
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 500ms}\nscrape_configs:\n  - job_name: proxy\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{exporter.server_port}']}}]\n")
    binary = str(shutil.which("prometheus"))
    try:
        with run_prometheus(binary, tmp_path / "prometheus.yml", tmp_path) as prometheus:
            source = PrometheusHistory(prometheus.url, client=Client(), timeout=5)
            for i in range(5):  # counts are exact, also for a series born inside the window
                fake_proxy.observe(model="llama3.2:latest", ttft_s=0.2 + i, duration_s=2.0,
                                   generated_tokens=10, tokens_per_second=30.0)
                if i == 0:
                    scrapes_stored(prometheus, 2)
            scrapes_stored(prometheus, 4)
            answer = source.history(WINDOWS["15m"], time.time())
            assert any(v is not None for v in answer["series"]["cpu_percent"])
            assert any(v is not None for v in answer["series"]["requests_per_second"])
            by_model = answer["by_model"]
            assert any(v for v in by_model["tokens_by_model"]["llama3.2:latest"])
            assert any(v is not None for v in by_model["ttft_p95_by_model"]["llama3.2:latest"])
            rows = source.models(WINDOWS["15m"], time.time())
            assert [r["model"] for r in rows] == ["llama3.2:latest"]
            assert rows[0]["requests"] == 5 and rows[0]["ttft_p95"] is not None
            assert rows[0]["generated_tokens"] == 50
            assert rows[0]["tokens_per_second"] == pytest.approx(30.0)
            assert source.baseline_tps(time.time() - 600, time.time()) == {
                "llama3.2:latest": pytest.approx(30.0)}
    finally:
        exporter.shutdown()
        exporter.server_close()
