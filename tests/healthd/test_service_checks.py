"""Tests for healthd/service_checks.py: each HTTP check against real tiny servers, down and slow."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from healthd import service_checks
from healthd.results import Outcome, Status
from llama_core import traffic
from tests.healthd.conftest import Seen, StubServer

T = 2.0  # timeout for servers that answer


def test_ollama_ok_names_version_and_loaded_models(stub: StubServer) -> None:
    stub.routes["/api/version"] = (200, {"version": "0.12.6"})
    stub.routes["/api/ps"] = (200, {"models": [{"name": "qwen3:latest"}, {"name": "a:1b"}]})
    out = service_checks.check_ollama(stub.url, timeout=T)
    assert out.status is Status.OK
    assert out.detail == f"Ollama 0.12.6 at {stub.url}, 2 model(s) loaded (a:1b, qwen3:latest)"
    assert out.data == {"version": "0.12.6", "loaded_models": ["a:1b", "qwen3:latest"]}


@pytest.mark.parametrize("version, ps, expected", [
    ((500, {"error": "boom"}), (200, {"models": []}), "/api/version answered 500: boom"),
    ((200, {"version": "1"}), (503, "overloaded"), "/api/ps answered 503: overloaded"),
    ((200, b"<html>"), (200, {"models": []}), "with a body that is not JSON"),
    ((200, [1, 2]), (200, {"models": []}), "JSON that is not an object"),
])
def test_ollama_bad_answers_are_critical(
    stub: StubServer, version: tuple, ps: tuple, expected: str
) -> None:
    stub.routes["/api/version"], stub.routes["/api/ps"] = version, ps
    out = service_checks.check_ollama(stub.url, timeout=T)
    assert out.status is Status.CRITICAL
    assert expected in out.detail


def test_ollama_down_is_critical(closed_url: str) -> None:
    out = service_checks.check_ollama(closed_url, timeout=T)
    assert out == Outcome(Status.CRITICAL,
                          f"could not reach {closed_url}/api/version: connection refused")


def test_ollama_that_does_not_answer_times_out(stub: StubServer) -> None:
    stub.hang.add("/api/version")
    out = service_checks.check_ollama(stub.url, timeout=0.2)
    assert out.status is Status.CRITICAL
    assert out.detail == f"{stub.url}/api/version timed out after 0.2 s"


def test_generation_probe_sends_one_token_request(stub: StubServer) -> None:
    stub.routes["/api/generate"] = (200, {"response": "p", "done": True,
                                          "load_duration": 1_500_000_000})
    out = service_checks.check_generate(stub.url, "llama3.2", timeout=T)
    assert out.status is Status.OK and "(model load 1.5 s)" in out.detail
    [seen] = stub.requests_to("/api/generate")
    assert seen.method == "POST"
    assert seen.json() == {"model": "llama3.2", "prompt": "ping", "stream": False,
                           "options": {"num_predict": 1}}


def test_generation_probe_reports_ollama_error(stub: StubServer) -> None:
    stub.routes["/api/generate"] = (404, {"error": "model 'nope' not found"})
    out = service_checks.check_generate(stub.url, "nope", timeout=T)
    assert out.status is Status.CRITICAL
    assert out.detail == "generation with nope answered 404: model 'nope' not found"


def test_proxy_ok_and_its_view_of_the_upstream(stub: StubServer) -> None:
    stub.routes["/health"] = (200, {"status": "ok", "version": "0.1.0", "upstream_up": False})
    out = service_checks.check_proxy(stub.url, timeout=T)
    assert out.status is Status.OK
    assert out.detail == f"proxy 0.1.0 serving at {stub.url}; it sees its upstream down"
    assert out.data == {"version": "0.1.0", "upstream_up": False}


@pytest.mark.parametrize("reply", [(503, {"status": "starting"}), (200, {"status": "bad"})])
def test_proxy_not_ok_is_critical(stub: StubServer, reply: tuple) -> None:
    stub.routes["/health"] = reply
    assert service_checks.check_proxy(stub.url, timeout=T).status is Status.CRITICAL


def test_proxy_e2e_ok_and_502(stub: StubServer) -> None:
    stub.routes["/api/version"] = [(200, {"version": "0.12.6"}),
                                   (502, {"error": "could not reach Ollama at x"})]
    first = service_checks.check_proxy_e2e(stub.url, timeout=T)
    assert first.status is Status.OK and "Ollama 0.12.6" in first.detail
    second = service_checks.check_proxy_e2e(stub.url, timeout=T)
    assert second == Outcome(Status.CRITICAL, f"request through the proxy {stub.url} answered "
                                              "502: could not reach Ollama at x")


CheckFn = Callable[..., Outcome]


@pytest.mark.parametrize("check, path", [
    (service_checks.check_dashboard, "/api/snapshot"),
    (service_checks.check_prometheus, "/-/ready"),
])
def test_watchers_warn_when_down_or_failing(
    check: CheckFn, path: str, stub: StubServer, closed_url: str
) -> None:
    stub.routes[path] = [(200, "Prometheus Server is Ready.\n"), (503, "not ready")]
    assert check(stub.url, timeout=T).status is Status.OK
    failing = check(stub.url, timeout=T)
    assert failing.status is Status.WARN and "answered 503: not ready" in failing.detail
    down = check(closed_url, timeout=T)
    assert down.status is Status.WARN and "connection refused" in down.detail


@pytest.mark.parametrize("check", [service_checks.check_proxy, service_checks.check_proxy_e2e])
def test_request_path_services_are_critical_when_down(check: CheckFn, closed_url: str) -> None:
    out = check(closed_url, timeout=T)
    assert out.status is Status.CRITICAL and "connection refused" in out.detail


def test_dashboard_without_snapshot_api_falls_back_to_its_page(stub: StubServer) -> None:
    stub.routes["/"] = (200, "<html>dashboard</html>")
    out = service_checks.check_dashboard(stub.url, timeout=T)
    assert out.status is Status.OK and out.detail.startswith(f"dashboard answered {stub.url}/ ")
    assert [s.path for s in stub.seen] == ["/api/snapshot", "/"]



def source_of(seen: Seen) -> str | None:
    """The own-traffic mark a request carried (header names arrive in any case)."""
    marks = [v for k, v in seen.headers.items() if k.lower() == traffic.HEADER.lower()]
    return marks[0] if marks else None


TOKEN = {"Authorization": "Bearer t"}


@pytest.mark.parametrize("probe, token", [
    (lambda url: service_checks.check_ollama(url, timeout=T), None),
    (lambda url: service_checks.check_generate(url, "llama3.2", timeout=T), None),
    (lambda url: service_checks.check_proxy(url, timeout=T, headers=TOKEN), "Bearer t"),
    (lambda url: service_checks.check_proxy_e2e(url, timeout=T, headers=TOKEN), "Bearer t"),
    (lambda url: service_checks.check_dashboard(url, timeout=T, headers=TOKEN), "Bearer t"),
    (lambda url: service_checks.check_prometheus(url, timeout=T), None),
], ids=["ollama", "generate", "proxy", "proxy_e2e", "dashboard", "prometheus"])
def test_every_probe_is_marked_as_the_health_daemons_own_traffic(
    probe: Callable[[str], Outcome], token: str | None, stub: StubServer
) -> None:
    stub.routes.update({"/api/version": (200, {"version": "1"}), "/api/ps": (200, {}),
                        "/api/generate": (200, {"response": "p"}),
                        "/health": (200, {"status": "ok"}), "/api/snapshot": (200, {}),
                        "/-/ready": (200, "ready")})
    assert probe(stub.url).status is Status.OK
    assert stub.seen and [source_of(s) for s in stub.seen] == ["healthd"] * len(stub.seen)
    assert [s.headers.get("Authorization") for s in stub.seen] == [token] * len(stub.seen)


def test_proxy_e2e_leaves_an_ollama_outage_to_the_ollama_check(stub: StubServer) -> None:
    stub.routes["/api/version"] = (502, {"error": "could not reach Ollama at x"})
    down = service_checks.check_proxy_e2e(stub.url, timeout=T, ollama_down=lambda: True)
    assert down.status is Status.OK and down.data == {"upstream_down": True}
    assert "cannot reach Ollama, which the ollama check reports" in down.detail
    # Ollama up as the daemon sees it (the proxy's upstream is elsewhere): the path is broken
    up = service_checks.check_proxy_e2e(stub.url, timeout=T, ollama_down=lambda: False)
    assert up.status is Status.CRITICAL and "answered 502" in up.detail
    stub.routes["/api/version"] = (503, {"error": "queue full"})
    other = service_checks.check_proxy_e2e(stub.url, timeout=T, ollama_down=lambda: True)
    assert other.status is Status.CRITICAL
