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
from ..sources import get_sources
from .errors import check_params

logger = logging.getLogger(__name__)

bp = Blueprint("analysis", __name__)


def _findings() -> tuple[list[dict], str, float]:
    sources = get_sources()
    now = sources.clock()
    evidence, basis = gather(sources.live, sources.history, now)
    return [f.to_dict() for f in analyse(evidence)], basis, now


@bp.get("/api/analysis")
def api_analysis() -> Response:
    check_params(())
    findings, basis, now = _findings()
    return jsonify({"generated_at": now, "basis": basis, "findings": findings})


@bp.post("/api/narrative")
def api_narrative() -> Response:
    check_params(())
    sources = get_sources()
    findings, _, _ = _findings()
    current = sources.live.snapshot()

    def lines() -> Iterator[str]:
        outcome = "aborted"  # the page went away mid-stream
        try:
            for event in sources.narrator.stream(current, findings):
                if event["type"] in ("done", "skipped", "error"):
                    outcome = event["type"]
                yield json.dumps(event) + "\n"
        finally:
            sources.metrics.narratives.labels(outcome).inc()

    return Response(stream_with_context(lines()), mimetype="application/x-ndjson",
                    headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
