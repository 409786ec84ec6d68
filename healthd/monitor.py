"""The latest result of every check, the report built from them, and the alerts they drive."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from healthd.alerts import AlertManager
from healthd.checks import Check, run_check
from healthd.results import CheckResult, Status, overall_of
from healthd.summary import AiSummarizer, rule_summary
from healthd.webhooks import WebhookSender

logger = logging.getLogger(__name__)


class Monitor:
    """Runs checks on request, keeps their last results, and hands failures to the alerts.

    Thread-safe: the scheduler runs checks on several threads while the HTTP server reads.
    """

    def __init__(
        self,
        checks: Sequence[Check],
        *,
        alerts: AlertManager | None = None,
        sender: WebhookSender | None = None,
        summarizer: AiSummarizer | None = None,
    ) -> None:
        self.checks = {c.name: c for c in checks}
        self.alerts = alerts
        self.sender = sender
        self.summarizer = summarizer
        self._results: dict[str, CheckResult] = {}
        self._recovered: dict[str, float] = {}
        self._ai: dict[str, Any] | None = None
        self._closed = False
        self._changed = threading.Condition()

    def run(self, name: str) -> CheckResult:
        """Run one check now and record its result (what each scheduled job does)."""
        result = run_check(self.checks[name])
        self.record(result)
        return result

    def run_all(self) -> list[CheckResult]:
        """Run every check once, in parallel; the results in report order."""
        if not self.checks:
            return []
        with ThreadPoolExecutor(len(self.checks), thread_name_prefix="check") as pool:
            return list(pool.map(self.run, self.checks))

    def record(self, result: CheckResult) -> None:
        # Alerts first: once a result is visible, its notification is already queued.
        if self.alerts is not None:
            for notification in self.alerts.observe(result):
                logger.warning("alert %s: %s %s", notification.event, notification.check,
                               notification.detail)
                if self.sender is not None:
                    self.sender.submit(notification)
        with self._changed:
            previous = self._results.get(result.name)
            self._results[result.name] = result
            if (previous is not None and previous.status is not Status.OK
                    and result.status is Status.OK):
                self._recovered[result.name] = result.checked_at
            self._changed.notify_all()
        if previous is None or previous.status != result.status:
            log = logger.info if result.status is Status.OK else logger.warning
            log("check %s: %s (%s)", result.name, result.status.label, result.detail)

    # -- reading ---------------------------------------------------------------------------

    def results(self) -> list[CheckResult]:
        with self._changed:
            return [self._results[n] for n in self.checks if n in self._results]

    def status_of(self, name: str) -> Status | None:
        """The last status of check ``name`` (None before it ran)."""
        with self._changed:
            result = self._results.get(name)
            return None if result is None else result.status

    def recovered_at(self, name: str) -> float | None:
        """When check ``name`` last turned ok after a failure (None: it never failed here)."""
        with self._changed:
            return self._recovered.get(name)

    @property
    def ready(self) -> bool:
        """Every configured check has run at least once."""
        with self._changed:
            return all(name in self._results for name in self.checks)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until every check has run once; False on timeout or once closed."""
        with self._changed:
            self._changed.wait_for(
                lambda: self._closed or all(n in self._results for n in self.checks), timeout)
            return not self._closed and all(n in self._results for n in self.checks)

    def close(self) -> None:
        """Wake whoever waits in ``wait_ready`` (the daemon is stopping)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def overall(self) -> str:
        """healthy, degraded or unhealthy; unknown until every check has run once."""
        return self._overall(self.results())

    def _overall(self, results: list[CheckResult]) -> str:
        if len(results) < len(self.checks):
            return "unknown"
        return overall_of(r.status for r in results).label

    def refresh_summary(self) -> dict[str, Any] | None:
        """Ask the summary model about the current report (slow: seconds, time-limited)."""
        if self.summarizer is None:
            return None
        ai = self.summarizer.summarize(self.report())
        if "text" not in ai:
            logger.info("AI summary not made: %s", ai.get("skipped") or ai.get("error"))
        with self._changed:
            self._ai = ai
        return ai

    def report(self) -> dict[str, Any]:
        """The ``/health`` document."""
        results = self.results()
        counts = {s.label: sum(r.status is s for r in results) for s in Status}
        with self._changed:
            ai = self._ai
        overall = self._overall(results)
        return {
            "overall": overall,
            "status": overall,  # the same, under the name other health endpoints use
            "ready": len(results) == len(self.checks),
            "checked_at": max((r.checked_at for r in results), default=None),
            "checks": {r.name: r.to_json() for r in results},
            "pending_checks": [n for n in self.checks if n not in {r.name for r in results}],
            "summary": {"text": rule_summary(results), "counts": counts, "ai": ai},
            "alerts": self.alerts.counts() if self.alerts is not None else {},
        }
