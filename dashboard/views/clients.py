"""``/api/clients?window=15m|1h|24h|7d|30d``: requests, tokens, TTFT p95, errors and the day's
budget use per client, and per user where users are recorded (``dashboard.clients``)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Blueprint, Flask, Response, abort, current_app, jsonify, request

from ..clients import ClientUsage, usage_source
from ..windows import SourceError, parse_window
from .errors import check_params, error

logger = logging.getLogger(__name__)

bp = Blueprint("clients", __name__)
EXTENSION = "llama_metrics_clients"


def init_app(app: Flask, clients_file: str, clock: Callable[[], float]) -> None:
    app.extensions[EXTENSION] = usage_source(app.config["SETTINGS"]["history_path"],
                                             clients_file, clock)


@bp.get("/api/clients")
def api_clients() -> Response | tuple[Response, int]:
    check_params(("window",))
    try:
        window = parse_window(request.args.get("window"))
    except ValueError as exc:
        abort(400, description=str(exc))
    usage: ClientUsage | None = current_app.extensions.get(EXTENSION)
    if usage is None:
        return error(503, "no history file: clients are read from it (set history_path)")
    try:
        return jsonify(usage.answer(window))
    except SourceError as exc:
        return error(503, str(exc))
