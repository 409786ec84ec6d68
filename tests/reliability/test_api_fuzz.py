"""Every route and parameter of the dashboard's and the health daemon's HTTP APIs, fuzzed.

Hypothesis sends any method, unknown and known query parameters with hostile values
(unicode, digits that are not ASCII, numbers past Python's int-parsing limit, negatives,
NaN, repeated parameters, empty ones) and garbage bodies. Whatever comes in: never a 5xx,
never a traceback, and an API's 4xx is JSON ``{"error": "..."}``.

The dashboard is its real app (Flask test client, production error handling) over a real
history file; the health daemon is its real HTTP server on a free port.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Iterator
from urllib.parse import quote, urlencode

import pytest
from flask import Flask
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dashboard import create_app
from healthd.alerts import AlertManager
from healthd.check_metrics import make_registry
from healthd.checks import Check
from healthd.monitor import Monitor
from healthd.results import ok
from healthd.server import HealthServer
from llama_core.record import RequestRecord
from tests.dashboard.conftest import HEALTHD, PROXY, T0, Clock, FakeProxy
from tests.history_files import write_history

# In CI (.ci/run sets CI) the same 500 examples every run, so that a landing is not decided
# by a newly drawn input; elsewhere each run draws new ones.
FUZZ = settings(max_examples=500, deadline=None, database=None,
                derandomize=bool(os.environ.get("CI")),
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")

# Values a user, a script or an attacker might put in a parameter.
HOSTILE = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "0", "-1", "1e999", "nan", "NaN", "inf", "-inf", "²", "٣", "１",
                     "9" * 5000, "1_000", " 5", "5 ", "0x10", "null", "[]", "{}", "1h ",
                     "15m", "30d", "%00", "\x00", "../../etc/passwd", "<script>"]),
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
NAMES = st.one_of(st.sampled_from(["window", "limit", "token", "model", "since"]),
                  st.text(min_size=1, max_size=10))
QUERY = st.lists(st.tuples(NAMES, HOSTILE), max_size=4)
BODY = st.one_of(
    st.none(),
    st.binary(max_size=200),
    st.sampled_from([b"{", b"null", b"[]", b'{"window": 1e999}', b'{"limit": -1}',
                     json.dumps({"a": [1] * 100}).encode(), b"\xff\xfe\x00"]),
    st.dictionaries(st.text(max_size=8), HOSTILE, max_size=3).map(
        lambda d: json.dumps(d).encode()),
)
CONTENT_TYPES = st.sampled_from(["application/json", "text/plain",
                                 "application/x-www-form-urlencoded", "", "garbage/\x7f"])


def check_answer(status: int, content_type: str, body: bytes, api: bool, what: str) -> None:
    assert status < 500, f"{what}: {status} {body[:500]!r}"
    assert b"Traceback" not in body, f"{what}: {body[:2000]!r}"
    if api and 400 <= status < 500 and body:  # HEAD answers have no body
        assert content_type.startswith("application/json"), f"{what}: {content_type}"
        document = json.loads(body)
        assert isinstance(document, dict) and isinstance(document.get("error"), str), (
            f"{what}: {body[:500]!r}")


# -- dashboard ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    history = tmp_path_factory.mktemp("fuzz") / "history.db"
    write_history(history, [
        RequestRecord(started_at=T0 - 60 * i, endpoint="/api/chat", model="llama3.2:latest",
                      status=200, prompt_tokens=5, generated_tokens=7, ttft_s=0.1,
                      duration_s=0.5) for i in range(50)])
    fake = FakeProxy()
    fake.observe(prompt_tokens=5, generated_tokens=7, ttft_s=0.1, duration_s=0.5)
    app = create_app({"SETTINGS": {"proxy_metrics_url": PROXY, "healthd_url": HEALTHD,
                                   "history_path": str(history), "narrative_model": ""},
                      "TRANSPORT": fake.send, "CLOCK": Clock(), "AUTOSTART": False})
    app.extensions["llama_metrics"].live.tick()
    yield app
    app.extensions["llama_metrics"].stop()


def dashboard_routes() -> list[str]:
    """Every rule of the app, with a value in place of each variable part."""
    app = create_app({"SETTINGS": {"narrative_model": ""}, "AUTOSTART": False})
    try:
        rules = [rule.rule for rule in app.url_map.iter_rules()]
    finally:
        app.extensions["llama_metrics"].stop()
    assert {"/api/snapshot", "/api/history", "/api/requests", "/api/models", "/api/analysis",
            "/api/narrative", "/metrics", "/"} <= set(rules)
    return rules


ROUTES = dashboard_routes()
FILLERS = st.one_of(st.sampled_from(["app.js", "../../../etc/passwd", "%2e%2e/x", "a" * 300]),
                    st.text(min_size=1, max_size=20))


@st.composite
def dashboard_paths(draw: st.DrawFn) -> str:
    rule = draw(st.sampled_from([*ROUTES, "/api/nope", "/api/", "/api/snapshot/"]))
    while "<" in rule:  # /static/<path:filename> and the like
        start, end = rule.index("<"), rule.index(">")
        rule = rule[:start] + quote(draw(FILLERS), safe="/") + rule[end + 1:]
    return rule


@FUZZ
@given(path=dashboard_paths(), method=st.sampled_from(METHODS), query=QUERY, body=BODY,
       content_type=CONTENT_TYPES)
@example(path="/api/requests", method="GET", query=[("limit", "²")], body=None,
         content_type="")
@example(path="/api/requests", method="GET", query=[("limit", "9" * 5000)], body=None,
         content_type="")
@example(path="/api/history", method="GET", query=[("window", "\x00")], body=None,
         content_type="")
@example(path="/api/narrative", method="POST", query=[], body=b"{", content_type="application/json")
def test_dashboard_api_never_fails_on_what_a_client_sends(
    dashboard: Flask, path: str, method: str, query: list[tuple[str, str]], body: bytes | None,
    content_type: str,
) -> None:
    client = dashboard.test_client()
    headers = {"Content-Type": content_type} if content_type else {}
    url = path + ("?" + urlencode(query) if query else "")
    response = client.open(url, method=method, data=body, headers=headers)
    with response:
        data = response.get_data()
        check_answer(response.status_code, response.content_type or "", data,
                     path.startswith("/api/"), f"{method} {url}")


# -- health daemon -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def healthd() -> Iterator[str]:
    checks = [Check("ollama", 30, lambda: ok("Ollama 0.12.6", version="0.12.6")),
              Check("proxy", 30, lambda: ok("proxy 0.1.0"))]  # healthy: /health is 200
    monitor = Monitor(checks, alerts=AlertManager(after=1))
    monitor.run_all()
    server = HealthServer("127.0.0.1", 0, monitor, make_registry(monitor))
    server.start()
    yield server.url
    server.stop()


HEALTHD_PATHS = st.one_of(
    st.sampled_from(["/health", "/health/", "/health/live", "/health/ready", "/metrics",
                     "/alerts", "/", "/nope", "//health", "/health/../alerts"]),
    st.text(max_size=30).map(lambda t: "/" + quote(t)),
)
ACCEPT = st.one_of(st.none(), st.sampled_from([
    "application/openmetrics-text; version=1.0.0", "application/openmetrics-text;version=9",
    "text/plain;version=0.0.4", "*/*", ";;;", "application/openmetrics-text; q=nan"]),
    st.text(max_size=30).filter(lambda t: t.isprintable() and t.isascii()))


@FUZZ
@given(path=HEALTHD_PATHS, method=st.sampled_from([*METHODS, "FOO", "TRACE"]), query=QUERY,
       body=BODY, accept=ACCEPT)
@example(path="/alerts", method="GET", query=[("limit", "²")], body=None, accept=None)
@example(path="/alerts", method="GET", query=[("limit", "9" * 5000)], body=None, accept=None)
@example(path="/alerts", method="OPTIONS", query=[], body=None, accept=None)
@example(path="/metrics", method="GET", query=[], body=None,
         accept="application/openmetrics-text; version=9")
def test_healthd_api_never_fails_on_what_a_client_sends(
    healthd: str, path: str, method: str, query: list[tuple[str, str]], body: bytes | None,
    accept: str | None,
) -> None:
    host, port = healthd.removeprefix("http://").rsplit(":", 1)
    url = path + ("?" + urlencode(query) if query else "")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        headers = {"Accept": accept} if accept is not None else {}
        connection.request(method, url, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    check_answer(response.status, response.getheader("Content-Type") or "",
                 b"" if method == "HEAD" else data, True, f"{method} {url}")


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"GET /health HTTP/9.9\r\n\r\n",
    b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
    b"GET /health HTTP/1.1\r\n" + b"X: y\r\n" * 120 + b"\r\n",
    b"\xff\xfe /health HTTP/1.1\r\n\r\n",
])
def test_healthd_answers_a_broken_request_with_a_json_error(healthd: str, raw: bytes) -> None:
    host, port = healthd.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert 400 <= status < 500, answer[:300]
    assert b"Content-Type: application/json" in head
    assert isinstance(json.loads(body)["error"], str)
