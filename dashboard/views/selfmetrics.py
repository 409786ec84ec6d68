"""``/metrics``: the dashboard's own series, and the timing of every API request."""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..sources import get_sources

logger = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    body = generate_latest(get_sources().metrics.registry)
    return Response(body, content_type=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    @app.before_request
    def _started() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _timed(response: Response) -> Response:
        started = g.get("started")
        if started is not None and request.path.startswith("/api/"):
            # The route template, never the raw path: unknown paths are one "other" series.
            rule = request.url_rule.rule if request.url_rule is not None else "other"
            get_sources().metrics.api_seconds.labels(rule).observe(
                time.perf_counter() - started)
        return response
