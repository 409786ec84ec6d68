"""What a check found: its status, how long it took, what it saw; and the overall verdict."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


class Status(enum.IntEnum):
    """A check's status; the number is the ``healthd_check_status`` gauge value."""

    OK = 0
    WARN = 1
    CRITICAL = 2

    @property
    def label(self) -> str:
        return self.name.lower()


class Overall(enum.IntEnum):
    """The verdict over all checks: the worst status decides."""

    HEALTHY = 0
    DEGRADED = 1
    UNHEALTHY = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a check function returns; the runner adds the name and timing."""

    status: Status
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


def ok(detail: str, **data: Any) -> Outcome:
    return Outcome(Status.OK, detail, data)


def warn(detail: str, **data: Any) -> Outcome:
    return Outcome(Status.WARN, detail, data)


def critical(detail: str, **data: Any) -> Outcome:
    return Outcome(Status.CRITICAL, detail, data)


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    """One run of one check. ``checked_at`` is wall-clock epoch seconds at the start."""

    name: str
    status: Status
    detail: str
    duration_s: float
    checked_at: float
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status.label,
            "detail": self.detail,
            "duration_s": round(self.duration_s, 6),
            "checked_at": self.checked_at,
            "data": self.data,
        }


def overall_of(statuses: Iterable[Status]) -> Overall:
    """Healthy when every check is ok, degraded at the worst a warning, else unhealthy."""
    return Overall(max(statuses, default=Status.OK).value)
