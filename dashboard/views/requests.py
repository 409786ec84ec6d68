"""``/api/requests?limit=N``: the latest finished requests, newest first, without any text.

They come from the proxy's ``/requests`` (what it finished most recently, history or not;
with several proxies, the newest of all of them); when no proxy can be reached, from the
history file.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, abort, jsonify, request

from .. import proxies
from ..history_sqlite import SqliteHistory
from ..sources import get_sources
from ..windows import SourceError
from .errors import check_params, error

logger = logging.getLogger(__name__)

bp = Blueprint("requests", __name__)

MAX_LIMIT = 500


def _limit() -> int:
    raw = request.args.get("limit", "50")
    # ASCII digits only, and few: str.isdigit() takes '²', and int() refuses 4301 digits.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6) or not 1 <= int(raw) <= MAX_LIMIT:
        abort(400, description=f"limit must be an integer 1-{MAX_LIMIT}, not {raw[:50]!r}")
    return int(raw)


@bp.get("/api/requests")
def api_requests() -> Response | tuple[Response, int]:
    check_params(("limit",))
    limit = _limit()
    sources = get_sources()
    settings = sources.settings
    urls = proxies.split_urls(settings["proxy_metrics_url"])
    timeout = settings["request_timeout_seconds"]
    answers = proxies.recent_requests_of_all(sources.client, urls, limit, timeout)
    rows = [a for a in answers if isinstance(a, list)]
    if rows:
        return jsonify({"source": "proxy", "requests": proxies.merge_recent(rows, limit)})
    reason = "; ".join(a for a in answers if isinstance(a, str))
    if isinstance(sources.history, SqliteHistory):
        try:
            return jsonify({"source": "history", "requests": sources.history.recent(limit)})
        except SourceError as exc:
            reason += f"; history: {exc}"
    return error(503, f"recent requests unavailable: {reason}")
