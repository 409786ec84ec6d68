"""Marks requests that our own processes send through the proxy, so they are never counted as
client traffic.

The health daemon's probes, the dashboard's narratives and our scripts' probes carry
``X-Llama-Metrics-Source: <source>``. The proxy removes the header before forwarding and counts
such requests apart (``ollama_proxy_internal_requests_total``), never in the request, token,
latency or error series, the history rows, the baselines or the analysis. A value outside
``SOURCES`` is not ours: the request is client traffic (the header is still removed).
"""

from __future__ import annotations

HEADER = "X-Llama-Metrics-Source"
SOURCES = frozenset({"healthd", "dashboard", "scripts"})


def source_of(value: str | None) -> str | None:
    """The internal source a header value names, or None for client traffic."""
    if value is None:
        return None
    value = value.strip().lower()
    return value if value in SOURCES else None


def header(source: str) -> dict[str, str]:
    """The header one of our processes adds to a request it sends through the proxy."""
    if source not in SOURCES:
        raise ValueError(f"unknown internal traffic source {source!r}")
    return {HEADER: source}
