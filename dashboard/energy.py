"""Energy numbers for the page: joules per token and watt-hours per day by model, idle vs active.

Pure functions. ``live`` reads one scrape of the proxies' /metrics (the counters since each
proxy started); ``per_day`` and ``per_model`` read the history rows' ``energy_j`` summed per
UTC day and model (``llama_core.history.readers.energy_by_day``).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from llama_core import catalogue

from . import promtext
from .promtext import Samples
from .stats import ratio

logger = logging.getLogger(__name__)

C = catalogue
JOULES_PER_WH = 3600.0
DAY = 86400.0


def live(samples: Samples | None) -> dict[str, Any]:
    """Since the proxy started: GPU, idle and attributed joules, and joules per token by model.

    ``metered`` is False without a GPU the proxy can meter (the energy series are absent).
    Joules per token divides a model's attributed joules by its generated tokens, as the
    PromQL in docs/energy.md does.
    """
    gpu = None if samples is None else promtext.total(samples, C.GPU_ENERGY.name)
    if samples is None or gpu is None:
        return {"metered": False, "gpu_j": None, "idle_j": None, "active_j": None,
                "models": []}
    idle = promtext.total(samples, C.GPU_IDLE_ENERGY.name) or 0.0
    by_model = promtext.by_label(samples, C.ENERGY.name, "model")
    tokens = promtext.by_label(samples, C.GENERATED_TOKENS.name, "model")
    models = [
        {"model": model, "joules": joules, "generated_tokens": tokens.get(model, 0.0),
         "joules_per_token": ratio(joules, tokens.get(model))}
        for model, joules in sorted(by_model.items(), key=lambda kv: -kv[1])
    ]
    return {"metered": True, "gpu_j": gpu, "idle_j": idle,
            "active_j": math.fsum(by_model.values()), "models": models}


def per_day(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each (UTC day, model) of ``energy_by_day`` with its watt-hours and joules per token."""
    return [
        {"day": row["day"], "model": row["model"], "requests": row["requests"],
         "joules": row["joules"], "wh": row["joules"] / JOULES_PER_WH,
         "generated_tokens": row["generated_tokens"],
         "joules_per_token": ratio(row["joules"], row["generated_tokens"])}
        for row in rows
    ]


def per_model(rows: list[dict[str, Any]], seconds: float) -> list[dict[str, Any]]:
    """Each model over a window of ``seconds``: joules, joules per token, watt-hours per day."""
    sums: dict[str, dict[str, float]] = {}
    for row in rows:
        into = sums.setdefault(row["model"], {"requests": 0, "joules": 0.0, "tokens": 0})
        into["requests"] += row["requests"]
        into["joules"] += row["joules"]
        into["tokens"] += row["generated_tokens"]
    days = seconds / DAY if seconds > 0 else None
    return [
        {"model": model, "requests": s["requests"], "joules": s["joules"],
         "generated_tokens": s["tokens"], "joules_per_token": ratio(s["joules"], s["tokens"]),
         "wh_per_day": None if days is None else s["joules"] / JOULES_PER_WH / days}
        for model, s in sorted(sums.items(), key=lambda kv: -kv[1]["joules"])
    ]
