"""``GET /health``: the dashboard's state as JSON, shaped like the proxy's and healthd's.

``status`` is ``ok`` when every source the page reads answered its last poll, ``degraded``
when one did not; either way the dashboard serves (HTTP 200), so a liveness check does not
restart it for a proxy that is down. ``sources`` names each one and its state.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, jsonify

from llama_core import version

from ..sources import get_sources
from .errors import check_params

logger = logging.getLogger(__name__)

bp = Blueprint("health", __name__)


def _state(reachable: bool | None) -> str:
    return {True: "ok", False: "unreachable", None: "not configured"}[reachable]


@bp.get("/health")
def health() -> Response:
    check_params(())
    parts = get_sources()
    current = parts.live.snapshot()
    sources: dict[str, Any] = {
        name: {"status": _state(source.get("reachable")), "error": source.get("error")}
        for name, source in current.get("sources", {}).items()
    }
    history = parts.history
    # The history source is asked when a page draws a window; here it is only named.
    sources["history"] = {"status": "configured" if history is not None else "not configured",
                          "source": history.name if history is not None else None}
    degraded = any(s["status"] == "unreachable" for s in sources.values())
    return jsonify({
        "status": "degraded" if degraded else "ok",
        "version": version(),
        "checked_at": current.get("ts"),
        "sources": sources,
    })
