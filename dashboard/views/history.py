"""``/api/history?window=15m|1h|24h|7d|30d``: chart columns and per-model rows for a window."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, abort, jsonify, request

from ..sources import get_sources
from ..windows import SourceError, parse_window
from .errors import check_params, error

logger = logging.getLogger(__name__)

bp = Blueprint("history", __name__)


@bp.get("/api/history")
def api_history() -> Response | tuple[Response, int]:
    check_params(("window",))
    try:
        window = parse_window(request.args.get("window"))
    except ValueError as exc:
        abort(400, description=str(exc))
    sources = get_sources()
    if sources.history is None:
        return error(503, "no history source: set history_path or prometheus_url")
    now = sources.clock()
    try:
        answer = sources.history.history(window, now)
    except SourceError as exc:
        return error(503, str(exc))
    return jsonify({
        "window": window.name,
        "source": sources.history.name,
        "step_seconds": window.step,
        "since": now - window.seconds,
        "until": now,
        **answer,
        # A row without a name is requests that named no model (metadata calls).
        "models": [row for row in answer.get("models", []) if row.get("model") not in ("", "none")],
    })
