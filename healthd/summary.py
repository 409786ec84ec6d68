"""Summaries of a health report: a rule-based one always, and optionally one by a model on Ollama.

The AI summary is sent straight to Ollama (not through the proxy; marked as our own traffic
all the same), with a time limit and a cap on generated tokens. It is skipped, with the reason,
while the proxy reports more active or queued requests than ``max_active`` (the model would
compete with users for the GPU) or when the proxy's load cannot be read.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from healthd.client import ProbeError, request
from healthd.results import CheckResult, Status, overall_of
from llama_core import catalogue, traffic

logger = logging.getLogger(__name__)

LOAD_SERIES = (catalogue.ACTIVE_REQUESTS.name, catalogue.QUEUE_DEPTH.name)
MAX_TOKENS = 200
PROMPT = (
    "You are the on-call assistant for a local Ollama server monitored by llama-metrics. "
    "Below is the latest health report as JSON: each check with its status (ok, warn, "
    "critical) and detail. In at most three short sentences, tell the operator the overall "
    "state, what is wrong if anything, and the first thing to look at. Do not invent "
    "numbers that are not in the report.\n\n"
)


def rule_summary(results: Sequence[CheckResult]) -> str:
    """A sentence or two from the results alone."""
    if not results:
        return "No checks have run yet."
    overall = overall_of(r.status for r in results)
    bad = sorted((r for r in results if r.status is not Status.OK),
                 key=lambda r: (-r.status, r.name))
    if not bad:
        return f"Healthy: all {len(results)} checks ok."
    problems = "; ".join(f"{r.name} {r.status.label} ({r.detail})" for r in bad)
    rest = len(results) - len(bad)
    return f"{overall.label.capitalize()}: {problems}." + (f" {rest} other check(s) ok."
                                                            if rest else "")


class AiSummarizer:
    """Asks ``model`` on the upstream Ollama to summarise a report, unless the proxy is busy."""

    def __init__(
        self,
        upstream: str,
        model: str,
        *,
        timeout: float = 30.0,
        proxy_metrics_url: str = "",
        max_active: int = 0,
        clock: Callable[[], float] = time.time,
        proxy_headers: dict[str, str] | None = None,
    ) -> None:
        self.upstream = upstream
        self.model = model
        self._timeout = timeout
        self._metrics_url = proxy_metrics_url
        self._max_active = max_active
        self._clock = clock
        self._proxy_headers = proxy_headers or {}  # the access token, for the metrics port

    def busy(self) -> str | None:
        """Why not to generate now, or None. Without a proxy configured, load is not known."""
        if not self._metrics_url:
            return None
        try:
            response = request(f"{self._metrics_url}/metrics", timeout=min(self._timeout, 5.0),
                               headers=self._proxy_headers)
            if not response.ok:
                return (f"proxy load unknown ({self._metrics_url}/metrics answered "
                        f"{response.status})")
            families = text_string_to_metric_families(response.body.decode("utf-8", "replace"))
            load = {name: 0.0 for name in LOAD_SERIES}
            for family in families:
                if family.name in load:
                    load[family.name] += sum(s.value for s in family.samples)
        except (ProbeError, ValueError) as exc:
            return f"proxy load unknown ({exc})"
        active, queued = load.values()
        if active + queued > self._max_active:
            return (f"proxy busy: {active:g} active and {queued:g} queued request(s), "
                    f"limit {self._max_active}")
        return None

    def summarize(self, report: dict[str, Any]) -> dict[str, Any]:
        """``{"model", "at", "text"}``, or with ``skipped`` or ``error`` instead of ``text``."""
        out: dict[str, Any] = {"model": self.model, "at": self._clock()}
        if reason := self.busy():
            return {**out, "skipped": reason}
        facts = {"overall": report.get("overall"), "checks": {
            name: {"status": c.get("status"), "detail": c.get("detail")}
            for name, c in (report.get("checks") or {}).items()}}
        payload = {
            "model": self.model, "prompt": PROMPT + json.dumps(facts, indent=1),
            "stream": False, "options": {"num_predict": MAX_TOKENS, "temperature": 0.2},
        }
        try:
            response = request(f"{self.upstream}/api/generate", timeout=self._timeout,
                               method="POST", payload=payload,
                               headers=traffic.header("healthd"))
            if not response.ok:
                return {**out, "error": f"{self.model} on {self.upstream} answered "
                                        f"{response.status}: {response.error_text()}"}
            text = str(response.json_object().get("response") or "").strip()
        except ProbeError as exc:
            return {**out, "error": str(exc)}
        if not text:
            return {**out, "error": f"{self.model} returned no text"}
        return {**out, "text": text, "seconds": round(response.elapsed_s, 3)}
