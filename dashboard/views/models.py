"""``/api/models``: per-model numbers and the models Ollama has loaded.

Without ``window`` the numbers are the proxy's counters since it started; with
``window=15m|1h|24h|7d|30d`` they come from the history source.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, abort, jsonify, request

from ..sources import get_sources
from ..windows import SourceError, parse_window
from .errors import check_params, error

logger = logging.getLogger(__name__)

bp = Blueprint("models", __name__)


@bp.get("/api/models")
def api_models() -> Response | tuple[Response, int]:
    check_params(("window",))
    sources = get_sources()
    current = sources.live.snapshot()
    loaded = current["loaded"]
    if "window" not in request.args:
        return jsonify({"window": None, "source": "proxy", "models": current["models"],
                        "loaded": loaded})
    try:
        window = parse_window(request.args["window"])
    except ValueError as exc:
        abort(400, description=str(exc))
    if sources.history is None:
        return error(503, "no history source: set history_path or prometheus_url")
    try:
        rows = sources.history.models(window, sources.clock())
    except SourceError as exc:
        return error(503, str(exc))
    return jsonify({"window": window.name, "source": sources.history.name, "models": rows,
                    "loaded": loaded})
