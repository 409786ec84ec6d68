"""The health report as text for people (``python -m healthd check``)."""

from __future__ import annotations

import logging
import time
from typing import Any

logger = logging.getLogger(__name__)

EXIT_CODES = {"healthy": 0, "degraded": 1, "unhealthy": 2}


def render(report: dict[str, Any]) -> str:
    checked = report.get("checked_at")
    when = time.strftime(" at %Y-%m-%d %H:%M:%S UTC", time.gmtime(checked)) if checked else ""
    lines = [f"llama-metrics healthd: {report['overall'].upper()}{when}"]
    checks = report.get("checks") or {}
    width = max((len(name) for name in checks), default=0)
    for name, check in checks.items():
        status = check["status"]
        label = status if status == "ok" else status.upper()
        lines.append(f"  {label:<8}  {name:<{width}}  {check['detail']}  "
                     f"({check['duration_s'] * 1000:.0f} ms)")
    summary = report.get("summary") or {}
    lines.append(f"summary: {summary.get('text', '')}")
    ai = summary.get("ai")
    if ai:
        said = ai.get("text") or f"not made: {ai.get('skipped') or ai.get('error')}"
        lines.append(f"AI summary ({ai.get('model')}): {said}")
    return "\n".join(lines)


def exit_code(report: dict[str, Any]) -> int:
    """0 healthy, 1 degraded, 2 unhealthy (2 is also what a bad configuration exits with)."""
    return EXIT_CODES.get(report["overall"], 2)
