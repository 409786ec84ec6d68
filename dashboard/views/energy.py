"""``/api/energy[?window=15m|1h|24h|7d|30d]``: joules per token and watt-hours per day by model,
idle against active energy; live from the proxies, and over a window from the history file
(``dashboard.energy_source``). Without a GPU meter, ``metered`` is false and ``note`` says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, jsonify, request

from ..energy_source import EnergyHistory, assemble, live_energy
from ..sources import get_sources
from ..windows import SourceError, parse_window
from .errors import check_params

logger = logging.getLogger(__name__)

bp = Blueprint("energy", __name__)
EXTENSION = "llama_metrics_energy"


def init_app(app: Flask, clock: Callable[[], float]) -> None:
    path = app.config["SETTINGS"]["history_path"]
    app.extensions[EXTENSION] = EnergyHistory(path, clock) if path else None


@bp.get("/api/energy")
def api_energy() -> Response:
    check_params(("window",))
    window = None
    if "window" in request.args:
        try:
            window = parse_window(request.args["window"])
        except ValueError as exc:
            abort(400, description=str(exc))
    live = live_energy(get_sources().live)
    history: dict[str, Any] | None = None
    history_error = None
    if window is not None:
        source: EnergyHistory | None = current_app.extensions.get(EXTENSION)
        if source is None:
            history_error = "no history file: energy over a window is read from it (history_path)"
        else:
            try:
                history = source.answer(window)
            except SourceError as exc:
                history_error = str(exc)
    return jsonify(assemble(live, history, history_error))
