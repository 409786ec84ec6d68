"""Live data: ``/api/snapshot`` over HTTP and the same snapshots pushed over ``/ws``.

The websocket first sends ``{"type": "hello", "series": [...], "snapshot": {...}}`` (the
recent chart points, so a new page draws at once), then ``{"type": "snapshot", "data": ...}``
after each tick of the live poller.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, current_app, jsonify
from flask_sock import Sock

from ..sources import get_sources
from .errors import check_params

logger = logging.getLogger(__name__)

bp = Blueprint("live", __name__)
sock = Sock()


@bp.get("/api/snapshot")
def api_snapshot() -> Response:
    check_params(())
    return jsonify(get_sources().live.snapshot())


@sock.route("/ws", bp=bp)
def ws(socket: Any) -> None:
    sources = get_sources()
    live = sources.live
    dumps = current_app.json.dumps
    interval = sources.settings["push_interval_seconds"]
    current = live.snapshot()
    seq = live.seq
    clients = sources.metrics.websockets
    clients.inc()
    try:
        socket.send(dumps({"type": "hello", "series": live.series(), "snapshot": current}))
        while socket.connected:
            seq, newer = live.wait_next(seq, timeout=max(4 * interval, 2.0))
            if newer is not None:
                socket.send(dumps({"type": "snapshot", "data": newer}))
    finally:
        clients.dec()
