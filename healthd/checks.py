"""Which checks run, built from the settings, and running one: timed, never raising."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from healthd.config import Settings
from healthd.degradation import PerformanceCheck
from healthd.resource_checks import ResourceCheck
from healthd.results import CheckResult, Outcome, Status
from healthd.service_checks import (
    check_dashboard,
    check_generate,
    check_ollama,
    check_prometheus,
    check_proxy,
    check_proxy_e2e,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Check:
    """One configured check: its name, how often it runs, and the function that runs it."""

    name: str
    interval_s: float
    probe: Callable[[], Outcome]


def build_checks(
    s: Settings,
    *,
    resources: ResourceCheck | None = None,
    ollama_back_at: Callable[[], float | None] | None = None,
    ollama_down: Callable[[], bool] | None = None,
) -> list[Check]:
    """The checks the settings turn on, in report order.

    A check is off when its URL or path is empty, or when ``check_intervals`` gives it 0;
    the generation probe is on only with a ``probe_model``. ``ollama_back_at`` and
    ``ollama_down`` tell the performance and end-to-end checks what the Ollama check saw, so
    that an outage of Ollama is reported once, by it.
    """
    timeout = s.timeout_seconds
    own = s.security.headers()  # the access token, sent to our own services only
    candidates: list[tuple[str, bool, Callable[[], Outcome]]] = [
        ("ollama", True, functools.partial(check_ollama, s.upstream, timeout=timeout)),
        ("ollama_generate", bool(s.probe_model), functools.partial(
            check_generate, s.upstream, s.probe_model, timeout=s.probe_timeout_seconds)),
        ("proxy", bool(s.proxy_metrics_url),
         functools.partial(check_proxy, s.proxy_metrics_url, timeout=timeout,
                           headers=own)),
        ("proxy_e2e", bool(s.proxy_url),
         functools.partial(check_proxy_e2e, s.proxy_url, timeout=timeout,
                           headers=own, ollama_down=ollama_down)),
        ("dashboard", bool(s.dashboard_url),
         functools.partial(check_dashboard, s.dashboard_url, timeout=timeout,
                           headers=own)),
        ("prometheus", bool(s.prometheus_url),
         functools.partial(check_prometheus, s.prometheus_url, timeout=timeout)),
    ]
    checks = [Check(name, s.interval(name), probe) for name, on, probe in candidates if on]
    if s.interval("resources"):
        probe = resources or ResourceCheck(s.thresholds, disk_path=s.disk_path)
        checks.append(Check("resources", s.interval("resources"), probe))
    if s.history_path:
        performance = PerformanceCheck(
            s.history_path, s.thresholds, window_s=s.degradation_window_seconds,
            baseline_s=s.baseline_seconds, min_requests=s.degradation_min_requests,
            ollama_back_at=ollama_back_at)
        checks.append(Check("performance", s.interval("performance"), performance))
    return [c for c in checks if c.interval_s > 0]


def run_check(check: Check, *, clock: Callable[[], float] = time.time) -> CheckResult:
    """Run one check; an unexpected exception is a critical result that names it."""
    checked_at = clock()
    started = time.perf_counter()
    try:
        outcome = check.probe()
    except Exception as exc:
        logger.exception("check %s failed unexpectedly", check.name)
        outcome = Outcome(Status.CRITICAL, f"check failed: {type(exc).__name__}: {exc}")
    return CheckResult(
        name=check.name,
        status=outcome.status,
        detail=outcome.detail,
        duration_s=time.perf_counter() - started,
        checked_at=checked_at,
        data=outcome.data,
    )
