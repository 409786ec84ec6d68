"""Checks of the services around the proxy over HTTP: Ollama, the proxy, dashboard, Prometheus.

Each function probes one service and returns an ``Outcome``; none raises for a service that is
down or slow (the runner turns any unexpected exception into a critical result anyway).
Services on the request path (Ollama, the proxy) are critical when down; the dashboard and
Prometheus only watch, so they are a warning.

Every probe carries ``X-Llama-Metrics-Source: healthd``: the end-to-end probe goes through the
proxy, which must count it apart from client traffic, and ``upstream`` may itself be a proxy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from healthd.client import ProbeError, Response, request
from healthd.results import Outcome, Status, critical, ok
from llama_core import traffic

logger = logging.getLogger(__name__)

OWN_TRAFFIC = traffic.header("healthd")


def _ours(headers: dict[str, str] | None = None) -> dict[str, str]:
    return {**(headers or {}), **OWN_TRAFFIC}


def _ms(response: Response) -> str:
    return f"{response.elapsed_s * 1000:.0f} ms"


def _status_text(what: str, response: Response) -> str:
    text = response.error_text()
    return f"{what} answered {response.status}" + (f": {text}" if text else "")


def check_ollama(upstream: str, *, timeout: float) -> Outcome:
    """``/api/version`` and ``/api/ps`` on the upstream: reachable, version, loaded models."""
    try:
        version = request(f"{upstream}/api/version", timeout=timeout, headers=_ours())
        if not version.ok:
            return critical(_status_text(f"Ollama at {upstream}/api/version", version))
        number = str(version.json_object().get("version", "unknown"))
        ps = request(f"{upstream}/api/ps", timeout=timeout, headers=_ours())
        if not ps.ok:
            return critical(_status_text(f"Ollama at {upstream}/api/ps", ps), version=number)
        models = sorted(
            str(m.get("name") or m.get("model")) for m in ps.json_object().get("models") or []
            if isinstance(m, dict)
        )
    except ProbeError as exc:
        return critical(str(exc))
    loaded = f"{len(models)} model(s) loaded" + (f" ({', '.join(models)})" if models else "")
    return ok(f"Ollama {number} at {upstream}, {loaded}", version=number, loaded_models=models)


def check_generate(upstream: str, model: str, *, timeout: float) -> Outcome:
    """A one-token generation on the upstream (loads ``model`` if it is not loaded)."""
    payload = {"model": model, "prompt": "ping", "stream": False, "options": {"num_predict": 1}}
    try:
        response = request(f"{upstream}/api/generate", timeout=timeout, method="POST",
                           payload=payload, headers=_ours())
        if not response.ok:
            return critical(_status_text(f"generation with {model}", response), model=model)
        body = response.json_object()
    except ProbeError as exc:
        return critical(f"generation with {model}: {exc}", model=model)
    load_s = float(body.get("load_duration") or 0) / 1e9
    return ok(f"{model} generated a token in {_ms(response)}"
              + (f" (model load {load_s:.1f} s)" if load_s >= 0.25 else ""),
              model=model, seconds=round(response.elapsed_s, 6))


def check_proxy(
    metrics_url: str, *, timeout: float, headers: dict[str, str] | None = None
) -> Outcome:
    """The proxy's ``/health`` on its metrics port (``headers``: the access token, if any)."""
    try:
        response = request(f"{metrics_url}/health", timeout=timeout, headers=_ours(headers))
        body = response.json_object() if response.ok else {}
    except ProbeError as exc:
        return critical(str(exc))
    if body.get("status") != "ok":
        return critical(_status_text(f"proxy at {metrics_url}/health", response))
    upstream_up = body.get("upstream_up")
    note = ("its upstream is up" if upstream_up is True else
            "it sees its upstream down" if upstream_up is False else "upstream state unknown")
    version = body.get("version")
    return ok(f"proxy {version or '(version unknown)'} serving at {metrics_url}; {note}",
              version=version, upstream_up=upstream_up)


def check_proxy_e2e(
    proxy_url: str,
    *,
    timeout: float,
    headers: dict[str, str] | None = None,
    ollama_down: Callable[[], bool] | None = None,
) -> Outcome:
    """``GET /api/version`` through the proxy port: the whole path from client to Ollama.

    ``ollama_down`` says whether the Ollama check sees Ollama down now: then the proxy's own
    502 is that outage, which the Ollama check reports, not a second problem of the path.
    """
    try:
        response = request(f"{proxy_url}/api/version", timeout=timeout,
                           headers=_ours(headers))
        version = response.json_object().get("version") if response.ok else None
    except ProbeError as exc:
        return critical(f"through the proxy: {exc}")
    if version is None:
        if response.status == 502 and ollama_down is not None and ollama_down():
            return ok(f"the proxy {proxy_url} answers; it cannot reach Ollama, which the "
                      "ollama check reports", upstream_down=True)
        return critical(_status_text(f"request through the proxy {proxy_url}", response))
    return ok(f"GET /api/version through {proxy_url}: Ollama {version} in {_ms(response)}",
              version=str(version), seconds=round(response.elapsed_s, 6))


def check_dashboard(
    dashboard_url: str, *, timeout: float, headers: dict[str, str] | None = None
) -> Outcome:
    """The dashboard's ``/api/snapshot`` (its page ``/`` where that is missing); warn when down."""
    outcome = _watcher("dashboard", f"{dashboard_url}/api/snapshot", timeout, headers)
    if outcome.data.get("status") == 404:
        return _watcher("dashboard", f"{dashboard_url}/", timeout, headers)
    return outcome


def check_prometheus(prometheus_url: str, *, timeout: float) -> Outcome:
    """Prometheus ``/-/ready``; a warning when down or not ready."""
    return _watcher("Prometheus", f"{prometheus_url}/-/ready", timeout)


def _watcher(
    what: str, url: str, timeout: float, headers: dict[str, str] | None = None
) -> Outcome:
    try:
        response = request(url, timeout=timeout, headers=_ours(headers))
    except ProbeError as exc:
        return Outcome(Status.WARN, f"{what}: {exc}")
    if not response.ok:
        return Outcome(Status.WARN, _status_text(f"{what} at {url}", response),
                       {"status": response.status})
    return ok(f"{what} answered {url} in {_ms(response)}", seconds=round(response.elapsed_s, 6))

