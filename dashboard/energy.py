"""Energy numbers for the page: joules per token and watt-hours per day by model, idle vs active.

Pure functions. ``live`` reads scrapes of the proxies' /metrics (the counters since each
proxy started, and their growth over the recent window as watts); ``per_day`` and
``per_model`` read the history rows' ``energy_j`` summed per UTC day and model
(``llama_core.history.readers.energy_by_day``), and ``window`` adds what the GPUs used in
all over the window, integrated from the power samples the history keeps, so that idle
energy is what of it no request was given.
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
# The counters move at the proxy's GPU polls (every 5 s by default), so growth over a span is
# off by up to one poll: at 30 s apart the watts are within a sixth, at the 5 min the live
# view keeps within 2 %.
MIN_AVERAGE_S = 30.0


def _shares(joules: dict[str, float], tokens: dict[str, float], key: str
            ) -> list[dict[str, Any]]:
    return [
        {key: name, "joules": value, "generated_tokens": tokens.get(name, 0.0),
         "joules_per_token": ratio(value, tokens.get(name))}
        for name, value in sorted(joules.items(), key=lambda kv: (-kv[1], kv[0]))
    ]


def _growth(older: Samples | None, newer: Samples, name: str) -> float:
    return math.fsum(promtext.counter_delta(older, newer, name).values())


def average_watts(older: Samples | None, newer: Samples, seconds: float
                  ) -> dict[str, Any] | None:
    """GPU, idle and active watts from the counters' growth between two scrapes (None when
    they are under ``MIN_AVERAGE_S`` apart).

    A series the older scrape lacks grew from zero: the proxy exports its energy counters
    from its first metered interval on, so a scrape from before that saw them at zero.
    """
    if older is None or not seconds >= MIN_AVERAGE_S:
        return None
    gpu = _growth(older, newer, C.GPU_ENERGY.name)
    idle = _growth(older, newer, C.GPU_IDLE_ENERGY.name)
    active = _growth(older, newer, C.ENERGY.name)
    return {"seconds": seconds, "gpu_w": gpu / seconds, "idle_w": idle / seconds,
            "active_w": active / seconds}


def live(samples: Samples | None, older: Samples | None = None, seconds: float = 0.0
         ) -> dict[str, Any]:
    """Since the proxy started: GPU, idle and attributed joules, joules per token by model
    (and by client, where clients are named); the power draw now, and the average watts
    between ``older`` and ``samples``, ``seconds`` apart.

    ``metered`` is False without a GPU the proxy can meter (the energy series are absent);
    ``sources`` names how the GPUs' joules were measured (``counter``, ``integrated``).
    Joules per token divides a model's attributed joules by its generated tokens, as the
    PromQL in docs/energy.md does.
    """
    gpu = None if samples is None else promtext.total(samples, C.GPU_ENERGY.name)
    if samples is None or gpu is None:
        return {"metered": False, "sources": [], "gpu_j": None, "idle_j": None,
                "active_j": None, "power_w": None, "average": None, "models": [], "clients": []}
    idle = promtext.total(samples, C.GPU_IDLE_ENERGY.name) or 0.0
    by_model = promtext.by_label(samples, C.ENERGY.name, "model")
    by_client = promtext.by_label(samples, C.ENERGY.name, "client")
    tokens = promtext.by_label(samples, C.GENERATED_TOKENS.name, "model")
    client_tokens = promtext.by_label(samples, C.GENERATED_TOKENS.name, "client")
    return {
        "metered": True,
        "sources": sorted(promtext.by_label(samples, C.GPU_ENERGY.name, "source")),
        "gpu_j": gpu, "idle_j": idle, "active_j": math.fsum(by_model.values()),
        "power_w": promtext.total(samples, C.GPU_POWER.name),
        "average": average_watts(older, samples, seconds),
        "models": _shares(by_model, tokens, "model"),
        # Only where a clients file names them: else every request is client "".
        "clients": (_shares(by_client, client_tokens, "client")
                    if by_client.keys() - {""} else []),
    }


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
        for model, s in sorted(sums.items(), key=lambda kv: (-kv[1]["joules"], kv[0]))
    ]


def window(rows: list[dict[str, Any]], gpus: list[dict[str, Any]], seconds: float
           ) -> dict[str, Any]:
    """A history window: per model and per day from ``energy_by_day`` ``rows``, and idle
    against active from ``gpus`` (``gpu_energy_sampled``: each GPU's joules from its power
    samples).

    Active is the requests' own joules (from the energy counter, as attributed); the GPUs'
    total is an estimate from one power reading every 15 s, so idle (total less active) is
    one too, and never below zero. Per day divides by the time the samples cover when there
    are any (the proxy may have run for only part of the window: what it did not see is not
    zero), else by the window. ``metered`` is False when the window has neither.
    """
    metered = bool(rows or any(g["seconds"] > 0 for g in gpus))
    sampled = [g for g in gpus if g["seconds"] > 0]
    active = math.fsum(row["joules"] for row in rows)
    gpu_j = math.fsum(g["joules"] for g in sampled) if sampled else None
    covered = max((g["seconds"] for g in sampled), default=0.0)
    per_day_s = min(covered, seconds) if covered > 0 else seconds
    total = gpu_j if gpu_j is not None else active
    return {
        "metered": metered,
        "active_j": active if metered else None,
        "gpu_j": gpu_j,
        "idle_j": None if gpu_j is None else max(0.0, gpu_j - active),
        "sampled_seconds": covered,
        "per_day_seconds": per_day_s,
        "gpus": [{"gpu": str(g["gpu"]), "name": g["name"], "joules": g["joules"],
                  "seconds": g["seconds"]} for g in sampled],
        "wh_per_day": (total / JOULES_PER_WH / (per_day_s / DAY)
                       if metered and per_day_s > 0 else None),
        "models": per_model(rows, per_day_s),
        # Newest day first, and within a day the model that used the most.
        "days": sorted(per_day(rows), key=lambda d: (-d["day"], -d["joules"], d["model"])),
    }
