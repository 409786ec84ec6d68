"""``/api/requests?limit=N``: the latest finished requests, newest first, without any text.

They come from the proxy's ``/requests`` (what it finished most recently, history or not);
when the proxy cannot be reached, from the history file.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, abort, jsonify, request

from ..history_sqlite import SqliteHistory
from ..services import get_services
from ..transport import describe_error, get_json
from ..windows import SourceError
from .errors import check_params, error

logger = logging.getLogger(__name__)

bp = Blueprint("requests", __name__)

MAX_LIMIT = 500


def _limit() -> int:
    raw = request.args.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        abort(400, description=f"limit must be an integer 1-{MAX_LIMIT}, not {raw!r}")
    return int(raw)


@bp.get("/api/requests")
def api_requests() -> Response | tuple[Response, int]:
    check_params(("limit",))
    limit = _limit()
    services = get_services()
    settings = services.settings
    url = f"{settings['proxy_metrics_url']}/requests?limit={limit}"
    try:
        status, rows = get_json(services.fetch, url, settings["request_timeout_seconds"])
        if status == 200 and isinstance(rows, list):
            clean = [{k: v for k, v in r.items() if k not in ("prompt", "response")}
                     for r in rows if isinstance(r, dict)]
            return jsonify({"source": "proxy", "requests": clean})
        reason = f"{url} answered HTTP {status}"
    except (OSError, ValueError) as exc:
        reason = f"{url}: {describe_error(exc)}"
    if isinstance(services.history, SqliteHistory):
        try:
            return jsonify({"source": "history", "requests": services.history.recent(limit)})
        except SourceError as exc:
            reason += f"; history: {exc}"
    return error(503, f"recent requests unavailable: {reason}")
