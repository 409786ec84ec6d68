"""The alert state machine: per check pending, firing, resolved; one notification per transition.

A failing result (status at or above the minimum severity) makes a check's alert pending; it
fires once ``after`` consecutive results failed. While it fires, a notification repeats every
``repeat_s`` seconds (0: never) and once more when the severity rises from warn to critical.
The first passing result resolves it (one "resolved" notification); a pending alert that
passes is cleared without any. Times are wall-clock epoch seconds from the injected clock, so
that state kept in the ``AlertStore`` means the same after a restart.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from healthd.alert_store import AlertStore
from healthd.results import CheckResult, Status

logger = logging.getLogger(__name__)

HISTORY_LIMIT = 200


@dataclass(slots=True, kw_only=True)
class Alert:
    check: str
    state: str  # pending, firing or resolved
    severity: str  # warn or critical
    detail: str
    started_at: float
    failures: int = 1
    fired_at: float | None = None
    resolved_at: float | None = None
    last_notified_at: float | None = None
    notifications: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    """What a webhook is told. ``event`` is firing or resolved; ``repeat`` marks a reminder."""

    event: str
    repeat: bool
    escalated: bool
    check: str
    severity: str
    detail: str
    started_at: float
    fired_at: float | None
    resolved_at: float | None
    failures: int
    at: float


class AlertManager:
    """Feeds check results through each check's alert; safe to call from several threads."""

    def __init__(
        self,
        *,
        after: int = 3,
        repeat_s: float = 3600.0,
        min_severity: Status = Status.WARN,
        store: AlertStore | None = None,
        checks: Iterable[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if after < 1:
            raise ValueError(f"after must be >= 1, got {after}")
        self._after = after
        self._repeat_s = repeat_s
        self._min = max(min_severity, Status.WARN)
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._alerts: dict[str, Alert] = {}
        self._history: list[dict[str, Any]] = []
        self._restore(None if checks is None else set(checks))

    def _restore(self, known: set[str] | None) -> None:
        data = self._store.load() if self._store is not None else None
        if not data:
            return
        names = {f.name for f in dataclasses.fields(Alert)}
        for check, raw in (data.get("alerts") or {}).items():
            if known is not None and check not in known:
                continue  # a check no longer configured: nothing will resolve it
            try:
                self._alerts[check] = Alert(**{k: v for k, v in raw.items() if k in names})
            except TypeError:
                logger.warning("alert state: dropping unreadable alert for %s", check)
        self._history = [e for e in data.get("history") or [] if isinstance(e, dict)]
        self._history = self._history[-HISTORY_LIMIT:]
        firing = [a.check for a in self._alerts.values() if a.state == "firing"]
        logger.info("alert state restored from %s; firing: %s", self._store and
                    self._store.path, ", ".join(firing) or "none")

    def observe(self, result: CheckResult) -> list[Notification]:
        """Advance ``result.name``'s alert; the notifications to send (none, or one)."""
        now = self._clock()
        failing = result.status >= self._min
        with self._lock:
            alert = self._alerts.get(result.name)
            out: list[Notification] = []
            if failing:
                out = self._fail(alert, result, now)
            elif alert is not None and alert.state in ("pending", "firing"):
                out = self._pass(alert, now)
            else:
                return []
            self._save()
            return out

    def _fail(self, alert: Alert | None, result: CheckResult, now: float) -> list[Notification]:
        severity = result.status.label
        if alert is None or alert.state == "resolved":
            alert = Alert(check=result.name, state="pending", severity=severity,
                          detail=result.detail, started_at=now, failures=0)
            self._alerts[result.name] = alert
            self._event(alert, "pending", now)
        alert.failures += 1
        alert.detail = result.detail
        escalated = Status[severity.upper()] > Status[alert.severity.upper()]
        if escalated:
            alert.severity = severity
        if alert.state == "pending" and alert.failures >= self._after:
            alert.state = "firing"
            alert.fired_at = now
            return [self._notify(alert, "firing", now)]
        if alert.state == "firing" and escalated:
            return [self._notify(alert, "firing", now, escalated=True)]
        if (alert.state == "firing" and self._repeat_s > 0 and alert.last_notified_at is not None
                and now - alert.last_notified_at >= self._repeat_s):
            return [self._notify(alert, "firing", now, repeat=True)]
        return []

    def _pass(self, alert: Alert, now: float) -> list[Notification]:
        if alert.state == "pending":
            del self._alerts[alert.check]
            self._event(alert, "cleared", now)
            return []
        alert.state = "resolved"
        alert.resolved_at = now
        return [self._notify(alert, "resolved", now)]

    def _notify(self, alert: Alert, event: str, now: float, *, repeat: bool = False,
                escalated: bool = False) -> Notification:
        alert.last_notified_at = now
        alert.notifications += 1
        self._event(alert, "repeat" if repeat else "escalated" if escalated else event, now)
        return Notification(
            event=event, repeat=repeat, escalated=escalated, check=alert.check,
            severity=alert.severity, detail=alert.detail, started_at=alert.started_at,
            fired_at=alert.fired_at, resolved_at=alert.resolved_at, failures=alert.failures,
            at=now,
        )

    def _event(self, alert: Alert, event: str, now: float) -> None:
        self._history.append({"at": now, "check": alert.check, "event": event,
                              "severity": alert.severity, "detail": alert.detail})
        del self._history[:-HISTORY_LIMIT]

    def _save(self) -> None:
        if self._store is not None:
            self._store.save({
                "alerts": {name: dataclasses.asdict(a) for name, a in self._alerts.items()},
                "history": self._history,
            })

    # -- what the API shows ----------------------------------------------------------------

    def active(self) -> list[dict[str, Any]]:
        """Pending and firing alerts, firing first, then by when they started."""
        with self._lock:
            alerts = [dataclasses.asdict(a) for a in self._alerts.values()
                      if a.state in ("pending", "firing")]
        return sorted(alerts, key=lambda a: (a["state"] != "firing", a["started_at"]))

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """The last ``limit`` transitions, newest first."""
        with self._lock:
            return [dict(e) for e in reversed(self._history[-limit:])] if limit > 0 else []

    def counts(self) -> dict[str, int]:
        with self._lock:
            states = [a.state for a in self._alerts.values()]
        return {state: states.count(state) for state in ("pending", "firing")}
