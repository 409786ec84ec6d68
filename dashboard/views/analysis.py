"""``/api/analysis`` (findings with their numbers) and ``POST /api/narrative`` (streamed).

The narrative answers NDJSON, one event a line: ``start``, ``chunk`` (``text``), ``done``,
or a single ``skipped`` (``reason``) or ``error`` (``error``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

from flask import Blueprint, Response, jsonify, stream_with_context

from ..analysis import analyse
from ..evidence import gather
from ..services import get_services
from .errors import check_params

logger = logging.getLogger(__name__)

bp = Blueprint("analysis", __name__)


def _findings() -> tuple[list[dict], str, float]:
    services = get_services()
    now = services.clock()
    evidence, basis = gather(services.live, services.history, now)
    return [f.to_dict() for f in analyse(evidence)], basis, now


@bp.get("/api/analysis")
def api_analysis() -> Response:
    check_params(())
    findings, basis, now = _findings()
    return jsonify({"generated_at": now, "basis": basis, "findings": findings})


@bp.post("/api/narrative")
def api_narrative() -> Response:
    check_params(())
    services = get_services()
    findings, _, _ = _findings()
    current = services.live.snapshot()

    def lines() -> Iterator[str]:
        outcome = "aborted"  # the page went away mid-stream
        try:
            for event in services.narrator.stream(current, findings):
                if event["type"] in ("done", "skipped", "error"):
                    outcome = event["type"]
                yield json.dumps(event) + "\n"
        finally:
            services.metrics.narratives.labels(outcome).inc()

    return Response(stream_with_context(lines()), mimetype="application/x-ndjson",
                    headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
