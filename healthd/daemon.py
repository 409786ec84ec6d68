"""Puts the daemon together from its settings: checks, alerts, webhooks, scheduler, HTTP API.

``Daemon`` is the long-running service (APScheduler runs each check on its own interval);
``check_once`` is the one-shot report of ``python -m healthd check``, which neither sends
alerts nor touches the alert state file.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from healthd.alert_store import AlertStore
from healthd.alerts import AlertManager
from healthd.check_metrics import make_registry
from healthd.checks import build_checks
from healthd.config import Settings
from healthd.monitor import Monitor
from healthd.resource_checks import ResourceCheck
from healthd.results import Status
from healthd.server import HealthServer
from healthd.summary import AiSummarizer
from healthd.webhooks import WebhookSender

logger = logging.getLogger(__name__)

UTC = datetime.timezone.utc


def _summarizer(s: Settings) -> AiSummarizer | None:
    if not s.summary_model:
        return None
    return AiSummarizer(s.upstream, s.summary_model, timeout=s.summary_timeout_seconds,
                        proxy_metrics_url=s.proxy_metrics_url,
                        max_active=s.summary_max_active_requests,
                        proxy_headers=s.security.headers())


def _resources(s: Settings, **kwargs: Any) -> ResourceCheck | None:
    if not s.interval("resources"):
        return None
    return ResourceCheck(s.thresholds, disk_path=s.disk_path, **kwargs)


class Daemon:
    """The service: ``start()`` serves the API and schedules the checks; ``stop()`` ends both."""

    def __init__(
        self,
        s: Settings,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] | None = None,
        resources: ResourceCheck | None = None,
    ) -> None:
        self.settings = s
        self.resources = resources if resources is not None else _resources(s)
        checks = build_checks(s, resources=self.resources, ollama_back_at=self._ollama_back_at,
                              ollama_down=self._ollama_down)
        store = AlertStore(s.state_path) if s.state_path else None
        self.alerts = AlertManager(
            after=s.alert_after_checks, repeat_s=s.repeat_interval_seconds,
            min_severity=Status[s.alert_min_severity.upper()], store=store,
            checks=[c.name for c in checks], clock=clock)
        self.sender = WebhookSender(
            s.webhooks, default_format=s.webhook_format, timeout=s.webhook_timeout_seconds,
            retries=s.webhook_retries, backoff_s=s.webhook_backoff_seconds, sleep=sleep)
        self.monitor = Monitor(checks, alerts=self.alerts, sender=self.sender,
                               summarizer=_summarizer(s))
        self.registry = make_registry(self.monitor)
        self.server: HealthServer | None = None
        self.scheduler: BackgroundScheduler | None = None

    # The checks ask these while the daemon runs, after the monitor exists.
    def _ollama_back_at(self) -> float | None:
        return self.monitor.recovered_at("ollama")

    def _ollama_down(self) -> bool:
        return self.monitor.status_of("ollama") is Status.CRITICAL

    @property
    def url(self) -> str:
        assert self.server is not None, "not started"
        return self.server.url

    def start(self) -> None:
        """Bind the port (OSError if taken), then schedule every check to run at once."""
        self.server = HealthServer(self.settings.host, self.settings.port, self.monitor,
                                   self.registry, self.settings.security)
        self.sender.start()
        self.server.start()
        checks = list(self.monitor.checks.values())
        scheduler = BackgroundScheduler(
            timezone=UTC,
            # one thread per check, so a check that hangs until its timeout delays no other
            executors={"default": ThreadPoolExecutor(len(checks) + 1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        now = datetime.datetime.now(UTC)
        for check in checks:
            scheduler.add_job(self.monitor.run, "interval", args=[check.name],
                              seconds=check.interval_s, next_run_time=now,
                              id=f"check-{check.name}", name=f"check {check.name}")
        if self.monitor.summarizer is not None:
            scheduler.add_job(self._summary, "interval",
                              seconds=self.settings.summary_interval_seconds,
                              next_run_time=now, id="summary", name="AI summary")
        scheduler.start()
        self.scheduler = scheduler
        logger.info("healthd on %s: %s", self.url, ", ".join(
            f"{c.name} every {c.interval_s:g} s" for c in checks) or "no checks")

    def _summary(self) -> None:
        # the first summary waits for the first round; later ones find it done
        if self.monitor.wait_ready(timeout=self.settings.summary_interval_seconds):
            self.monitor.refresh_summary()

    def stop(self) -> None:
        """Stop scheduling and serving at once and deliver queued notifications; a check
        already running is not waited for here (``python -m healthd`` then exits without it)."""
        self.monitor.close()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        if self.server is not None:
            self.server.stop()
        self.sender.close(timeout=self.settings.webhook_timeout_seconds + 1)
        if self.resources is not None:
            self.resources.close()


def check_once(s: Settings) -> dict[str, Any]:
    """Run every configured check once (and the AI summary if configured); the report."""
    resources = _resources(s)
    monitor = Monitor(build_checks(s, resources=resources), summarizer=_summarizer(s))
    try:
        monitor.run_all()
        monitor.refresh_summary()
    finally:
        if resources is not None:
            resources.close()
    return monitor.report()
