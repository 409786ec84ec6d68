"""The one HTML page; everything on it is drawn by static/dashboard.js from the JSON API."""

from __future__ import annotations

import json
import logging

from flask import Blueprint, render_template

from llama_core import thresholds

from ..services import get_services
from ..windows import DEFAULT_WINDOW, WINDOWS

logger = logging.getLogger(__name__)

bp = Blueprint("pages", __name__)


@bp.get("/")
def index() -> str:
    settings = get_services().settings
    return render_template(
        "index.html",
        windows=list(WINDOWS),
        default_window=DEFAULT_WINDOW,
        push_interval=settings["push_interval_seconds"],
        narrative_model=settings["narrative_model"],
        thresholds=json.dumps(thresholds.as_json()),
    )
