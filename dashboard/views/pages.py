"""The one HTML page; everything on it is drawn by static/dashboard.js from the JSON API."""

from __future__ import annotations

import json
import logging

from flask import Blueprint, render_template

from llama_core import thresholds

from ..sources import get_sources
from ..windows import DEFAULT_WINDOW, WINDOWS

logger = logging.getLogger(__name__)

bp = Blueprint("pages", __name__)

# The headline numbers: key in the snapshot's point, label with unit, format, window kind
# (rate: the rate window; latency: the last minute of requests; now: the latest gauge).
TILES = (
    ("error_rate", "Error rate (%)", "ratio", "rate"),
    ("ttft_p95", "TTFT p95 (s)", "seconds", "latency"),
    ("duration_p95", "Duration p95 (s)", "seconds", "latency"),
    ("generation_tokens_per_second", "Generation speed (tokens/s per request)", "rate",
     "latency"),
    ("queue_depth", "Queued (requests)", "count", "now"),
    ("active_requests", "Active (requests)", "count", "now"),
    ("requests_per_second", "Requests/s", "rate", "rate"),
    ("generated_tokens_per_second", "Generated tokens/s", "rate", "rate"),
    ("ttft_p50", "TTFT p50 (s)", "seconds", "latency"),
    ("duration_p50", "Duration p50 (s)", "seconds", "latency"),
    ("cpu_percent", "Host CPU (%)", "percent", "now"),
    ("memory_percent", "Host memory (%)", "percent", "now"),
    ("gpu_utilization_percent", "GPU busy (%)", "percent", "now"),
    ("gpu_memory_percent", "GPU memory (%)", "percent", "now"),
)


@bp.get("/")
def index() -> str:
    settings = get_sources().settings
    return render_template(
        "index.html",
        windows=list(WINDOWS),
        default_window=DEFAULT_WINDOW,
        push_interval=settings["push_interval_seconds"],
        rate_window=settings["rate_window_seconds"],
        narrative_model=settings["narrative_model"],
        thresholds=json.dumps(thresholds.as_json()),
        tiles=TILES,
    )
